//! The sync endpoints under `/v1`: push and pull here, the long-poll wait in
//! [`wait`], bootstrap and a customer's history in their own modules.
//! Handlers only translate between HTTP and the storage interface; the rules
//! live in [`apply`] (and below it in till-core), the transactions in the
//! storage backend.
//!
//! Logged per request: ids and counts, never bodies.

pub mod apply;
pub mod bootstrap;
pub mod history;
pub mod snapshot;
pub mod wait;

use std::sync::Arc;

use axum::extract::{FromRequest, Query, Request, State};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use till_core::clock::Hlc;
use till_core::sync::conflict::Clamp;
use till_core::sync::protocol::{
    PullRequest, PullResponse, PushOutcome, PushRequest, PushResponse, PushResult,
    DEFAULT_PULL_PAGE, MAX_PULL_PAGE, MAX_PUSH_BATCH,
};

use crate::auth::DeviceScope;
use crate::error::ApiError;
use crate::AppState;

/// A JSON body whose rejections become [`ApiError`]s (never echoing the body).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

/// `POST /v1/push`: applies a batch of changes; one result per change.
pub async fn push(
    State(state): State<AppState>,
    scope: DeviceScope,
    ApiJson(request): ApiJson<PushRequest<Box<RawValue>>>,
) -> Result<Json<PushResponse>, ApiError> {
    let now = crate::now_ms();
    let total = request.changes.len();
    if total > MAX_PUSH_BATCH {
        return Err(ApiError::BatchTooLarge {
            got: total,
            max: MAX_PUSH_BATCH,
        });
    }
    // Checked changes go to storage together; a change that fails its own
    // checks is answered in place and never reaches (or blocks) the others.
    let mut results: Vec<Option<PushResult>> = Vec::with_capacity(total);
    let mut checked = Vec::with_capacity(total);
    for value in request.changes {
        match apply::check(&scope, &value) {
            Ok(change) => {
                results.push(None);
                checked.push(change);
            }
            Err((change_id, rejection)) => results.push(Some(PushResult {
                change_id,
                outcome: PushOutcome::Rejected {
                    reason: rejection.reason,
                    message: rejection.message,
                },
            })),
        }
    }
    let ids: Vec<String> = checked.iter().map(|c| c.change_id.to_string()).collect();
    let ahead: Vec<bool> = checked.iter().map(|c| runs_ahead(c, now)).collect();
    // Stored and announced in a task of its own: a batch whose request
    // times out or whose client goes away still commits (its blocking work
    // runs on), and the waits of its tenant still hear of it. The task
    // holds its push permit until then, so batches left running by timed
    // out requests count against the limit.
    let permit = Arc::clone(&state.pushes)
        .acquire_owned()
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let (storage, waiters, pusher) = (
        Arc::clone(&state.storage),
        Arc::clone(&state.waiters),
        scope.clone(),
    );
    let outcomes = tokio::spawn(async move {
        let _permit = permit;
        let outcomes = storage.push(&pusher, checked, now).await?;
        if let Some(head) = outcomes.iter().filter_map(accepted_seq).max() {
            waiters.notify(&pusher.tenant, head);
        }
        Ok::<_, ApiError>(outcomes)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("push task: {e}")))??;
    let clamped = outcomes
        .iter()
        .zip(ahead)
        .filter(|(outcome, ahead)| *ahead && accepted_seq(outcome).is_some())
        .count();
    let mut stored = ids.into_iter().zip(outcomes);
    let results: Vec<PushResult> = results
        .into_iter()
        .map(|slot| {
            slot.or_else(|| {
                stored
                    .next()
                    .map(|(change_id, outcome)| PushResult { change_id, outcome })
            })
            .ok_or_else(|| ApiError::Internal("storage returned too few outcomes".into()))
        })
        .collect::<Result<_, _>>()?;
    let rejected = results
        .iter()
        .filter(|r| matches!(r.outcome, PushOutcome::Rejected { .. }))
        .count();
    state
        .metrics
        .pushed(&results, u64::try_from(clamped).unwrap_or(u64::MAX));
    tracing::info!(changes = total, rejected, clamped, "push");
    Ok(Json(PushResponse { results }))
}

/// The sequence of an accepted change.
fn accepted_seq(outcome: &PushOutcome) -> Option<i64> {
    match outcome {
        PushOutcome::Accepted { server_seq } => Some(*server_seq),
        _ => None,
    }
}

/// Whether storage clamps `change`'s stamp when it accepts it at `now_ms`:
/// the same rule [`apply::resolve`] applies, asked here to count clamps.
fn runs_ahead(change: &till_core::Change, now_ms: i64) -> bool {
    change
        .hlc
        .parse::<Hlc>()
        .is_ok_and(|stamp| Clamp::new(now_ms, None).ahead(&stamp))
}

/// `GET /v1/pull?cursor=N&limit=M`: the next page of the device's scope.
pub async fn pull(
    State(state): State<AppState>,
    scope: DeviceScope,
    query: Result<Query<PullRequest>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PullResponse<Box<RawValue>>>, ApiError> {
    let Query(request) = query?;
    if request.cursor < 0 {
        return Err(ApiError::BadRequest("cursor must not be negative".into()));
    }
    let limit = page_limit(request.limit, DEFAULT_PULL_PAGE, MAX_PULL_PAGE)?;
    let page = state.storage.pull(&scope, request.cursor, limit).await?;
    state.metrics.pulled(page.changes.len());
    tracing::info!(
        cursor = request.cursor,
        changes = page.changes.len(),
        next = page.cursor,
        "pull"
    );
    Ok(Json(page))
}

/// The page size to read: `default` when the client did not say, at most
/// `max`; 0 is refused.
fn page_limit(requested: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    match requested {
        None => Ok(default),
        Some(0) => Err(ApiError::BadRequest("limit must be at least 1".into())),
        Some(n) => Ok(n.min(max)),
    }
}
