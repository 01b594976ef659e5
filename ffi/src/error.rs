//! The one error of Till's foreign API, and the one function that maps
//! till-core's errors onto it.
//!
//! Each variant is a stable code an app can branch on (`TillException.Conflict`
//! in Kotlin, `TillError.Conflict` in Swift and Python, ...); its fields are
//! what the app needs to act. Messages and fields name fields, entities, ids
//! and server codes, never a customer's name, phone or email: they end up in
//! crash reports.

use till_core::{Error as CoreError, SyncError};

/// Everything a Till call can fail with.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum TillError {
    /// Input was rejected before anything was written; `field` names it
    /// (`phone`, `lines[2].quantity`, `tenders`, `customer_id`, ...).
    #[error("invalid {field}: {reason}")]
    Validation {
        /// The input field at fault.
        field: String,
        /// Why it was rejected; never echoes the value.
        reason: String,
    },

    /// The record does not exist, or is deleted or merged away.
    #[error("{entity} {id} not found")]
    NotFound {
        /// `customer`, `bill` or `bill line`.
        entity: String,
        /// The id or number asked for.
        id: String,
    },

    /// Someone changed the record since the caller read it; nothing was
    /// written. Re-read it, and retry with `current_version` if still wanted.
    #[error("{entity} {id} was changed since version {expected_version}; current version is {current_version}")]
    Conflict {
        /// The record's kind.
        entity: String,
        /// Its id.
        id: String,
        /// The version the caller passed.
        expected_version: i64,
        /// The version now stored.
        current_version: i64,
    },

    /// The record's state forbids the action (paying a voided bill, adding
    /// a line to a paid one, restoring a live customer, ...).
    #[error("{entity} {id} is {state}: cannot {action}")]
    InvalidState {
        /// The record's kind.
        entity: String,
        /// Its id.
        id: String,
        /// Its state, e.g. `paid`.
        state: String,
        /// What was attempted, e.g. `add a line`.
        action: String,
    },

    /// The phone or email already identifies another live customer.
    #[error("{field} already belongs to customer {existing_id}")]
    Duplicate {
        /// `phone` or `email`.
        field: String,
        /// The id of the customer who holds it.
        existing_id: String,
    },

    /// The database file belongs to another tenant, store or device.
    #[error("store file belongs to {found}, not {expected}")]
    WrongStore {
        /// The identity recorded in the file.
        found: String,
        /// The identity it was opened with.
        expected: String,
    },

    /// The database file was written by a newer Till: update the app.
    #[error("store schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// The file's schema version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },

    /// The sync server does not accept this device: `code` is
    /// `unauthorized` (unknown token) or `device_revoked` (enroll again).
    #[error("sync refused this device ({code}): {detail}")]
    Auth {
        /// `unauthorized` or `device_revoked`.
        code: String,
        /// What the server said, without data.
        detail: String,
    },

    /// The sync server could not be reached (or kept failing) through every
    /// retry of this sync; local data is intact. Sync again later.
    #[error("sync server unreachable: {detail}")]
    Network {
        /// What the last attempt met: a status or a transport error kind.
        detail: String,
    },

    /// The sync server refused the request or broke the protocol. `code` is
    /// one of `unsupported_protocol_version` (update the app),
    /// `rebootstrap_required`, `refused`, `protocol`; `retryable` says
    /// whether syncing later can succeed without anyone acting.
    #[error("sync server error ({code}): {detail}")]
    Server {
        /// A stable snake_case code.
        code: String,
        /// Whether a later sync can succeed on its own.
        retryable: bool,
        /// Status and server error code, without data.
        detail: String,
    },

    /// SQLite or the file system failed (file damaged, locked by another
    /// process beyond the timeout, ...).
    #[error("storage: {detail}")]
    Storage {
        /// SQLite's or the OS's description.
        detail: String,
    },

    // New variants go last: the bindings encode a variant by its position.
    /// The device's storage is full: the call wrote nothing, and everything
    /// written before it is intact. Ask the user to free space, then retry.
    #[error("storage full: {detail}")]
    StorageFull {
        /// SQLite's or the OS's description.
        detail: String,
    },
}

/// The result of every fallible call of the foreign API.
pub type Result<T, E = TillError> = std::result::Result<T, E>;

impl From<CoreError> for TillError {
    /// The one mapping from till-core's errors to the foreign API's.
    fn from(error: CoreError) -> Self {
        match error {
            CoreError::Validation { field, reason } => TillError::Validation { field, reason },
            CoreError::NotFound { entity, id } => TillError::NotFound {
                entity: entity.to_string(),
                id,
            },
            CoreError::Conflict {
                entity,
                id,
                expected,
                current,
            } => TillError::Conflict {
                entity: entity.to_string(),
                id,
                expected_version: expected,
                current_version: current,
            },
            CoreError::InvalidState {
                entity,
                id,
                state,
                action,
            } => TillError::InvalidState {
                entity: entity.to_string(),
                id,
                state,
                action: action.into(),
            },
            CoreError::Duplicate { field, existing } => TillError::Duplicate {
                field: field.into(),
                existing_id: existing,
            },
            CoreError::IdentityMismatch { found, expected } => {
                TillError::WrongStore { found, expected }
            }
            CoreError::SchemaTooNew { found, supported } => {
                TillError::SchemaTooNew { found, supported }
            }
            CoreError::Sync(sync) => {
                let detail = sync.to_string();
                match sync {
                    SyncError::Unauthorized | SyncError::DeviceRevoked => TillError::Auth {
                        code: sync.code().into(),
                        detail,
                    },
                    SyncError::Unreachable { .. } => TillError::Network { detail },
                    SyncError::Config(reason) => TillError::Validation {
                        field: "sync_config".into(),
                        reason,
                    },
                    SyncError::UnsupportedProtocol { .. }
                    | SyncError::RebootstrapRequired
                    | SyncError::Refused { .. }
                    | SyncError::Protocol(_) => TillError::Server {
                        code: sync.code().into(),
                        retryable: sync.is_retryable(),
                        detail,
                    },
                }
            }
            CoreError::StorageFull { detail } => TillError::StorageFull { detail },
            CoreError::Storage(e) => TillError::Storage {
                detail: e.to_string(),
            },
            CoreError::Io(e) => TillError::Storage {
                detail: e.to_string(),
            },
        }
    }
}

/// An input id (`customer_id`, `bill_id`, ...) as a UUID, or a validation
/// error naming `field`.
pub(crate) fn parse_id(field: &str, text: &str) -> Result<uuid::Uuid> {
    text.trim().parse().map_err(|_| TillError::Validation {
        field: field.into(),
        reason: "not a UUID".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use till_core::Entity;

    #[test]
    fn conflicts_carry_both_versions() {
        let e = TillError::from(CoreError::Conflict {
            entity: Entity::Customer,
            id: "c1".into(),
            expected: 2,
            current: 3,
        });
        assert!(matches!(
            e,
            TillError::Conflict { ref entity, expected_version: 2, current_version: 3, .. }
                if entity == "customer"
        ));
    }

    #[test]
    fn sync_errors_split_into_auth_network_server_and_config() {
        let auth = TillError::from(CoreError::Sync(SyncError::DeviceRevoked));
        assert!(matches!(auth, TillError::Auth { ref code, .. } if code == "device_revoked"));
        let net = TillError::from(CoreError::Sync(SyncError::Unreachable {
            attempts: 3,
            last: "connect".into(),
        }));
        assert!(matches!(net, TillError::Network { .. }));
        let server = TillError::from(CoreError::Sync(SyncError::RebootstrapRequired));
        assert!(matches!(
            server,
            TillError::Server { ref code, retryable: false, .. } if code == "rebootstrap_required"
        ));
        let config = TillError::from(CoreError::Sync(SyncError::Config("token is empty".into())));
        assert!(
            matches!(config, TillError::Validation { ref field, .. } if field == "sync_config")
        );
    }

    #[test]
    fn ids_that_are_not_uuids_name_their_field() {
        let e = parse_id("bill_id", "42").expect_err("not a uuid");
        assert!(matches!(e, TillError::Validation { ref field, .. } if field == "bill_id"));
        assert!(parse_id("bill_id", " 01890a5d-ac96-774b-bcce-b302099a8057 ").is_ok());
    }
}
