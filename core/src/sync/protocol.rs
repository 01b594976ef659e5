//! The sync wire protocol: the JSON bodies a till and the head-office server
//! exchange under `/v1`. Both sides compile these same types, so a field
//! renamed here is renamed on both ends at once.
//!
//! Guarantees the types encode:
//! - every request carries [`PROTOCOL_HEADER`]; a server that does not speak
//!   that version answers [`ErrorCode::UnsupportedProtocolVersion`] with the
//!   range it does speak, never a parse error;
//! - a push gets one [`PushResult`] per submitted change, in request order,
//!   so one rejected change never hides the fate of the others;
//! - reason and error codes are stable snake_case strings: apps match on
//!   them, and new codes are only ever added.
//!
//! Server sequences are tenant-wide, start at 1 and only grow; a pull cursor
//! is the last sequence a device has applied (0 before its first pull).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::changes::{Change, Fields};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// The oldest protocol version this build still accepts.
pub const MIN_PROTOCOL_VERSION: u32 = 1;
/// The request header naming the protocol version a client speaks.
pub const PROTOCOL_HEADER: &str = "till-protocol";

/// Most changes one push may carry.
pub const MAX_PUSH_BATCH: usize = 500;
/// Most changes one pull page returns, whatever the client asks for.
pub const MAX_PULL_PAGE: u32 = 1_000;
/// Changes per pull page when the client does not say.
pub const DEFAULT_PULL_PAGE: u32 = 200;

/// `POST /v1/push`: a batch of outbox changes, oldest first.
///
/// The server reads each change on its own (as `PushRequest<Box<RawValue>>`), so a
/// change it cannot parse is rejected alone instead of failing the batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushRequest<C = Change> {
    /// The changes, in the order the device made them.
    pub changes: Vec<C>,
}

/// The answer to a push: one result per submitted change, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResponse {
    /// One per change of the request, same order.
    pub results: Vec<PushResult>,
}

/// What the server did with one pushed change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResult {
    /// The change's id as sent (empty when it had none).
    pub change_id: String,
    /// Accepted, already seen, or rejected.
    #[serde(flatten)]
    pub outcome: PushOutcome,
}

/// The fate of one pushed change. `accepted` and `duplicate` both mean the
/// device may mark the outbox entry acknowledged; `rejected` means it goes to
/// the device's quarantine with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PushOutcome {
    /// Applied now, at this server sequence.
    Accepted {
        /// Where the change sits in the tenant's server log.
        server_seq: i64,
    },
    /// Applied earlier (the same change id was pushed before), at this sequence.
    Duplicate {
        /// Where the change sits in the tenant's server log.
        server_seq: i64,
    },
    /// Refused; pushing it again gets the same answer.
    Rejected {
        /// Stable code to act on.
        reason: RejectReason,
        /// Human-readable detail; names fields, never personal data.
        message: String,
    },
}

/// Why the server refused a change. Permanent: retrying cannot help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Not a change the server can read (bad id, entity or clock stamp).
    Malformed,
    /// A field value breaks a data rule (e.g. a malformed phone number).
    Validation,
    /// Outside what the device may write (another store's bill, another
    /// device's stamp, a server-owned field).
    Forbidden,
    /// An update of a record the server has never seen created.
    UnknownRecord,
    /// Changes a bill that is final (paid, voided or refunded) in a way the
    /// rules do not allow, or an identity field of any bill.
    BillImmutable,
    /// Moves a bill's status backward (or sideways between final states).
    InvalidTransition,
}

impl RejectReason {
    /// The wire name, e.g. `bill_immutable`.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::Validation => "validation",
            RejectReason::Forbidden => "forbidden",
            RejectReason::UnknownRecord => "unknown_record",
            RejectReason::BillImmutable => "bill_immutable",
            RejectReason::InvalidTransition => "invalid_transition",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<RejectReason> {
        [
            RejectReason::Malformed,
            RejectReason::Validation,
            RejectReason::Forbidden,
            RejectReason::UnknownRecord,
            RejectReason::BillImmutable,
            RejectReason::InvalidTransition,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }
}

/// `GET /v1/pull?cursor=N&limit=M`: the changes after `cursor` visible to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// The last server sequence the device applied; 0 to start.
    #[serde(default)]
    pub cursor: i64,
    /// Page size wanted; capped at [`MAX_PULL_PAGE`].
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One page of server changes. The server sends [`ServerChange`]s; a till
/// reads them as [`RawServerChange`]s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullResponse<C = ServerChange> {
    /// The changes, by ascending server sequence.
    pub changes: Vec<C>,
    /// The cursor to store once this page is applied (in the same
    /// transaction) and to send with the next pull. It may be past the last
    /// change returned: sequences of records outside the device's scope are
    /// skipped over.
    pub cursor: i64,
    /// Another page is waiting; pull again with `cursor`.
    pub has_more: bool,
}

/// A change as the server log holds it: the *effective* change.
///
/// `fields` holds every field the original change touched, valued as the
/// server holds them after resolving it (so a field whose write lost a
/// conflict carries the winner's value), and `before` their values just
/// before. Applying a device's log pages in order therefore reproduces the
/// server's state, and a device learns the fate of its own pushed changes
/// when their entries come back. The server logs changes of its own in the
/// same form: the merges of exact-key dedup (device `server`, see
/// [`super::dedup`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerChange {
    /// Position in the tenant's log.
    pub server_seq: i64,
    /// The effective change; `hlc` is the stamp the server resolved with
    /// (clamped when the device's clock ran ahead).
    #[serde(flatten)]
    pub change: Change,
}

/// A [`ServerChange`] as a till reads it from a pull page: the same flat
/// JSON object, with `fields` and `before` kept as the text the server sent.
/// The till records that text in its change log as it came and decodes a
/// new bill straight from it; reading every change through a map of its
/// fields (and `flatten`, which buffers the whole object first) was most of
/// the cost of applying a pulled page (`cargo bench -p till-sync-server
/// --bench sync`, perf).
#[derive(Debug, Clone, Deserialize)]
pub struct RawServerChange {
    /// Position in the tenant's log.
    pub server_seq: i64,
    /// See [`Change::change_id`].
    pub change_id: uuid::Uuid,
    /// See [`Change::entity`].
    pub entity: String,
    /// See [`Change::entity_id`].
    pub entity_id: String,
    /// See [`Change::op`].
    pub op: String,
    /// See [`Change::fields`]: a JSON object.
    pub fields: Box<RawValue>,
    /// See [`Change::before`]: a JSON object.
    pub before: Box<RawValue>,
    /// See [`Change::hlc`].
    pub hlc: String,
    /// See [`Change::device`].
    pub device: String,
    /// See [`Change::staff`].
    pub staff: String,
    /// See [`Change::at_ms`].
    pub at_ms: i64,
}

/// `GET /v1/wait?cursor=N&timeout_ms=M`: a long poll. The server answers as
/// soon as the device's scope holds a change after `cursor`, or when the
/// timeout runs out, whichever comes first; a till waits, pulls when told
/// there are changes, and waits again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitRequest {
    /// The device's pull cursor.
    #[serde(default)]
    pub cursor: i64,
    /// How long to wait at most, in milliseconds; the server caps it (at
    /// [`DEFAULT_WAIT_MS`] unless configured otherwise) and uses the cap
    /// when absent.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// The answer to a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitResponse {
    /// The device's scope holds a change after the cursor: pull now. When
    /// false the wait timed out with nothing new; wait again.
    pub changes: bool,
}

/// The longest a wait lasts unless the server is configured otherwise: 25 s,
/// under the 30 s request timeouts of server and client and under the 60 s
/// idle timeouts common in proxies and NAT tables, so an idle wait ends with
/// an answer instead of a cut connection.
pub const DEFAULT_WAIT_MS: u64 = 25_000;

/// Most records one bootstrap page returns, whatever the client asks for.
pub const MAX_BOOTSTRAP_PAGE: u32 = 5_000;
/// Records per bootstrap page when the client does not say.
pub const DEFAULT_BOOTSTRAP_PAGE: u32 = 2_000;
/// Most bills one page of a customer's history returns.
pub const MAX_HISTORY_PAGE: u32 = 200;
/// Bills per page of a customer's history when the client does not say.
pub const DEFAULT_HISTORY_PAGE: u32 = 50;

/// `GET /v1/bootstrap?after=T&limit=N`: the next page of a snapshot.
/// Without `after` the server starts a new snapshot at its current head.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BootstrapRequest {
    /// The `next` of the previous page; absent to start.
    #[serde(default)]
    pub after: Option<String>,
    /// Page size wanted; capped at [`MAX_BOOTSTRAP_PAGE`].
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `GET /v1/bootstrap`: one page of the snapshot a new (or long-offline)
/// device starts from: the *current* state of records of its scope (the
/// tenant's customers, then its store's bills), in id order.
///
/// Pages are read one at a time, so a record may change between pages and
/// a page may hold state newer than `snapshot_seq`. That is safe because the
/// device pulls from `snapshot_seq` afterwards: every change after it is in
/// the log, each entry carries the fields it touched as the server resolved
/// them, so replaying them in order over any state between `snapshot_seq`
/// and now ends at the server's state. Records never leave the server (a
/// delete is a field), so keyset order over ids returns every record that
/// existed at `snapshot_seq` exactly once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapPage<F = Fields> {
    /// The server sequence the snapshot starts from; pull from it afterwards.
    pub snapshot_seq: i64,
    /// Current records of the device's scope.
    pub records: Vec<SnapshotRecord<F>>,
    /// Where the next page starts (opaque); `None` on the last page.
    pub next: Option<String>,
}

/// One record as the server holds it now: in a bootstrap page, or in a
/// page of a customer's history. The server sends `fields` as stored
/// (`F` is its raw JSON there); a till reads them as [`Fields`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord<F = Fields> {
    /// `customer` or `bill`.
    pub entity: String,
    /// The record's id.
    pub id: String,
    /// Every field as the server holds it, unknown ones included.
    pub fields: F,
    /// The latest stamp the server resolved into the record. A till moves
    /// its clock past it, so its own edits after bootstrap are stamped later.
    pub hlc: String,
}

/// `GET /v1/customers/{id}/bills?after=T&limit=N`: a customer's bills from
/// every store of the device's tenant, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HistoryRequest {
    /// The `next` of the previous page; absent for the newest bills.
    #[serde(default)]
    pub after: Option<String>,
    /// Page size wanted; capped at [`MAX_HISTORY_PAGE`].
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One page of a customer's bills across the tenant's stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage<F = Fields> {
    /// The bills (entity `bill`), newest first.
    pub bills: Vec<SnapshotRecord<F>>,
    /// Where the next page starts (opaque); `None` on the last page.
    pub next: Option<String>,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable code to act on.
    pub code: ErrorCode,
    /// Human-readable detail; never personal data.
    pub message: String,
    /// With [`ErrorCode::UnsupportedProtocolVersion`]: the versions the
    /// server speaks, `[oldest, newest]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_versions: Option<[u32; 2]>,
}

/// The stable error codes of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed (bad JSON, bad query parameter).
    BadRequest,
    /// No bearer token, or one the server does not know.
    Unauthorized,
    /// The device's token was revoked: enroll the device again.
    DeviceRevoked,
    /// The client speaks a protocol version this server does not.
    UnsupportedProtocolVersion,
    /// The body exceeds the server's size limit.
    PayloadTooLarge,
    /// More changes in one push than [`MAX_PUSH_BATCH`].
    BatchTooLarge,
    /// The device sends too often; retry after the `Retry-After` header.
    RateLimited,
    /// The request took longer than the server allows; retry.
    Timeout,
    /// The cursor is older than the server's compaction horizon: bootstrap
    /// again, keeping the unsynced outbox.
    RebootstrapRequired,
    /// No such endpoint.
    NotFound,
    /// The server is starting or stopping; retry.
    Unavailable,
    /// The server failed; retry later.
    Internal,
}

impl ErrorCode {
    /// Whether retrying the same request later can succeed (network-class
    /// trouble) as opposed to a permanent answer the app must act on.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::Timeout
                | ErrorCode::Unavailable
                | ErrorCode::Internal
        )
    }
}

/// Reads a protocol header value: `Some(version)` when it is a number.
pub fn parse_version(header: &str) -> Option<u32> {
    header.trim().parse().ok()
}

/// Whether this build accepts requests of protocol `version`.
pub fn is_supported(version: u32) -> bool {
    (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version)
}

/// The value a JSON field holds, `null` when absent.
pub(crate) fn field<'a>(fields: &'a Fields, key: &str) -> &'a Value {
    fields.get(key).unwrap_or(&Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_server_change_reads_as_a_raw_one_with_the_same_values() {
        let mut fields = Fields::new();
        fields.insert("name".into(), json!("Asha \"A\" Rao"));
        fields.insert("tags".into(), json!(["x"]));
        let mut before = Fields::new();
        before.insert("name".into(), json!("Asha"));
        let sent = ServerChange {
            server_seq: 42,
            change: Change {
                change_id: uuid::Uuid::now_v7(),
                entity: "customer".into(),
                entity_id: uuid::Uuid::now_v7().to_string(),
                op: "update".into(),
                fields,
                before,
                hlc: "0001-0002-S1/T1".into(),
                device: "S1/T1".into(),
                staff: "priya".into(),
                at_ms: 1_700_000_000_000,
            },
        };
        let page = PullResponse {
            changes: vec![sent.clone()],
            cursor: 42,
            has_more: false,
        };
        let read: PullResponse<RawServerChange> =
            serde_json::from_str(&serde_json::to_string(&page).expect("JSON")).expect("raw page");
        let raw = &read.changes[0];
        let c = &sent.change;
        assert_eq!(
            (
                raw.server_seq,
                raw.change_id,
                &raw.entity,
                &raw.entity_id,
                &raw.op
            ),
            (42, c.change_id, &c.entity, &c.entity_id, &c.op)
        );
        assert_eq!(
            (&raw.hlc, &raw.device, &raw.staff, raw.at_ms),
            (&c.hlc, &c.device, &c.staff, c.at_ms)
        );
        let object = |text: &RawValue| serde_json::from_str::<Fields>(text.get()).expect("object");
        assert_eq!(object(&raw.fields), c.fields);
        assert_eq!(object(&raw.before), c.before);
    }

    #[test]
    fn push_outcomes_have_a_flat_stable_wire_form() {
        let results = vec![
            PushResult {
                change_id: "a".into(),
                outcome: PushOutcome::Accepted { server_seq: 7 },
            },
            PushResult {
                change_id: "b".into(),
                outcome: PushOutcome::Rejected {
                    reason: RejectReason::BillImmutable,
                    message: "bill is paid".into(),
                },
            },
        ];
        let wire = serde_json::to_value(PushResponse {
            results: results.clone(),
        })
        .expect("serialise");
        assert_eq!(
            wire,
            json!({"results": [
                {"change_id": "a", "outcome": "accepted", "server_seq": 7},
                {"change_id": "b", "outcome": "rejected", "reason": "bill_immutable",
                 "message": "bill is paid"},
            ]})
        );
        let back: PushResponse = serde_json::from_value(wire).expect("parse");
        assert_eq!(back.results, results);
    }

    #[test]
    fn reason_codes_round_trip_through_their_names() {
        for reason in [
            RejectReason::Malformed,
            RejectReason::Validation,
            RejectReason::Forbidden,
            RejectReason::UnknownRecord,
            RejectReason::BillImmutable,
            RejectReason::InvalidTransition,
        ] {
            assert_eq!(RejectReason::parse(reason.as_str()), Some(reason));
            assert_eq!(
                serde_json::to_value(reason).expect("serialise"),
                json!(reason.as_str())
            );
        }
        assert_eq!(RejectReason::parse("nope"), None);
    }

    #[test]
    fn error_bodies_name_the_supported_range_only_when_relevant() {
        let body = ErrorBody {
            code: ErrorCode::UnsupportedProtocolVersion,
            message: "x".into(),
            supported_versions: Some([1, 1]),
        };
        assert_eq!(
            serde_json::to_value(&body).expect("serialise"),
            json!({"code": "unsupported_protocol_version", "message": "x",
                   "supported_versions": [1, 1]})
        );
        let plain: ErrorBody =
            serde_json::from_value(json!({"code": "unauthorized", "message": "m"})).expect("parse");
        assert_eq!(plain.supported_versions, None);
        assert!(!ErrorCode::Unauthorized.is_retryable());
        assert!(ErrorCode::RateLimited.is_retryable());
    }

    #[test]
    fn versions_outside_the_range_are_refused() {
        assert!(is_supported(PROTOCOL_VERSION));
        assert!(!is_supported(PROTOCOL_VERSION + 1));
        assert!(!is_supported(0));
        assert_eq!(parse_version(" 1 "), Some(1));
        assert_eq!(parse_version("v1"), None);
    }
}
