//! The errors of till-core, one variant per thing a caller can act on.
//!
//! Messages name fields, entities and ids, never a customer's name, phone or
//! email: they end up in logs and crash reports.

use std::fmt;

/// Result of every fallible till-core call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input was rejected before anything was written; `field` names it.
    #[error("invalid {field}: {reason}")]
    Validation {
        /// The input field at fault, e.g. `phone`, `lines[2].quantity`.
        field: String,
        /// Why it was rejected; never echoes personal data.
        reason: String,
    },

    /// The entity does not exist (or is not visible: deleted or merged).
    #[error("{entity} {id} not found")]
    NotFound {
        /// `customer`, `bill`, `bill line`, ...
        entity: Entity,
        /// The id or number the caller asked for.
        id: String,
    },

    /// Optimistic locking failed: someone changed the record since the caller read it.
    #[error("{entity} {id} was changed since version {expected}; current version is {current}")]
    Conflict {
        /// The entity that changed.
        entity: Entity,
        /// Its id.
        id: String,
        /// The version the caller read.
        expected: i64,
        /// The version now stored; re-read and retry with it.
        current: i64,
    },

    /// The operation is not allowed in the record's current state
    /// (paying a voided bill, adding lines to a paid one, ...).
    #[error("{entity} {id} is {state}: cannot {action}")]
    InvalidState {
        /// The entity whose state forbids the action.
        entity: Entity,
        /// Its id.
        id: String,
        /// Its current state, e.g. `paid`.
        state: String,
        /// What was attempted, e.g. `add a line`.
        action: &'static str,
    },

    /// The live canonical phone or email already belongs to another customer.
    #[error("{field} already belongs to customer {existing}")]
    Duplicate {
        /// `phone` or `email`.
        field: &'static str,
        /// The id of the customer who holds it.
        existing: String,
    },

    /// The database file belongs to another tenant, store or device.
    #[error("store file belongs to {found}, not {expected}")]
    IdentityMismatch {
        /// The identity recorded in the file.
        found: String,
        /// The identity the caller opened it with.
        expected: String,
    },

    /// The database file was written by a newer Till; opening it could lose data.
    #[error("store schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },

    /// Sync with the server did not complete; the variant says whether
    /// trying later can help. Local data is intact and nothing half-applied.
    #[error("sync: {0}")]
    Sync(#[from] crate::sync::SyncError),

    /// The device's storage is full: the operation wrote nothing, and
    /// everything committed before it is intact. Free space and retry.
    #[error("storage full: {detail}")]
    StorageFull {
        /// SQLite's or the OS's description.
        detail: String,
    },

    /// SQLite failed (corruption, locked beyond the busy timeout, ...).
    #[error("storage: {0}")]
    Storage(#[source] rusqlite::Error),

    /// A file could not be read or written.
    #[error("io: {0}")]
    Io(#[source] std::io::Error),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Error::StorageFull {
                detail: e.to_string(),
            },
            _ => Error::Storage(e),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                Error::StorageFull {
                    detail: e.to_string(),
                }
            }
            _ => Error::Io(e),
        }
    }
}

impl Error {
    /// A validation error for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Validation {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A not-found error.
    pub fn not_found(entity: Entity, id: impl fmt::Display) -> Self {
        Error::NotFound {
            entity,
            id: id.to_string(),
        }
    }
}

/// The kinds of records errors can be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// A customer.
    Customer,
    /// A bill.
    Bill,
    /// A line of a bill.
    BillLine,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Entity::Customer => "customer",
            Entity::Bill => "bill",
            Entity::BillLine => "bill line",
        })
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        // Only our own values are serialised; a failure is a stored-data problem.
        Error::Storage(rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
    }
}
