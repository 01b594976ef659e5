//! `GET /v1/bootstrap`: the snapshot a new or long-offline device starts
//! from, a page at a time (see `till_core::sync::protocol::BootstrapPage`
//! for why pages of current state, followed by a pull from the snapshot's
//! sequence, reproduce the server's state).
//!
//! Pages are keyset-paged by record id and the server keeps nothing between
//! them: the page's `next` names the snapshot and the last record sent, so
//! memory stays bounded on both sides and any server instance can answer
//! the next page. A snapshot the log can no longer continue from (compacted
//! past it meanwhile) is answered `rebootstrap_required`: start again.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde_json::value::RawValue;
use till_core::sync::protocol::{
    BootstrapPage, BootstrapRequest, DEFAULT_BOOTSTRAP_PAGE, MAX_BOOTSTRAP_PAGE,
};
use uuid::Uuid;

use super::page_limit;
use crate::auth::DeviceScope;
use crate::error::ApiError;
use crate::storage::{SnapshotPhase, SnapshotPosition};
use crate::AppState;

/// `GET /v1/bootstrap?after=T&limit=N`: the next page of a snapshot of the
/// device's scope; without `after`, the first page of a new snapshot.
pub async fn bootstrap(
    State(state): State<AppState>,
    scope: DeviceScope,
    query: Result<Query<BootstrapRequest>, QueryRejection>,
) -> Result<Json<BootstrapPage<Box<RawValue>>>, ApiError> {
    let Query(request) = query?;
    let limit = page_limit(request.limit, DEFAULT_BOOTSTRAP_PAGE, MAX_BOOTSTRAP_PAGE)?;
    let from = request.after.as_deref().map(decode).transpose()?;
    let page = state.storage.bootstrap(&scope, from, limit).await?;
    tracing::info!(
        snapshot_seq = page.snapshot_seq,
        records = page.records.len(),
        last = page.next.is_none(),
        "bootstrap"
    );
    Ok(Json(BootstrapPage {
        snapshot_seq: page.snapshot_seq,
        records: page.records,
        next: page.next.as_ref().map(encode),
    }))
}

/// A position as the page's opaque `next`: `SEQ.c.ID` or `SEQ.b.ID`.
pub fn encode(position: &SnapshotPosition) -> String {
    let phase = match position.phase {
        SnapshotPhase::Customers => 'c',
        SnapshotPhase::Bills => 'b',
    };
    format!("{}.{phase}.{}", position.snapshot_seq, position.after_id)
}

/// Reads a `next` made by [`encode`]. It carries no tenant or store: the
/// scope always comes from the token, so a forged position reads nothing
/// the device could not read anyway.
pub fn decode(text: &str) -> Result<SnapshotPosition, ApiError> {
    let bad = || ApiError::BadRequest("after is not a position this server gave".into());
    let mut parts = text.splitn(3, '.');
    let (Some(seq), Some(phase), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let snapshot_seq: i64 = seq.parse().ok().filter(|s| *s >= 0).ok_or_else(bad)?;
    let phase = match phase {
        "c" => SnapshotPhase::Customers,
        "b" => SnapshotPhase::Bills,
        _ => return Err(bad()),
    };
    id.parse::<Uuid>().map_err(|_| bad())?;
    Ok(SnapshotPosition {
        snapshot_seq,
        phase,
        after_id: id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_forgeries_are_refused() {
        let position = SnapshotPosition {
            snapshot_seq: 42,
            phase: SnapshotPhase::Bills,
            after_id: Uuid::now_v7().to_string(),
        };
        let text = encode(&position);
        assert_eq!(decode(&text).expect("decode"), position);
        let id = Uuid::now_v7();
        for bad in [
            String::new(),
            "42".into(),
            format!("-1.c.{id}"),
            format!("x.c.{id}"),
            format!("42.z.{id}"),
            "42.c.not-an-id".into(),
            "42.c.".into(),
        ] {
            assert!(
                matches!(decode(&bad), Err(ApiError::BadRequest(_))),
                "{bad:?}"
            );
        }
    }
}
