//! till-core: the embedded, offline-first store of a point-of-sale till.
//!
//! A [`Store`] is one SQLite file holding a device's customers and bills, the
//! customer metrics the bills move, and the append-only change log that is
//! both audit trail and sync outbox. Every user action is one transaction:
//! rows, metrics, search rows and change record commit together or not at all.

pub mod bills;
pub mod changes;
pub mod checkpoint;
pub mod clock;
pub mod customers;
pub mod error;
pub mod metrics;
pub mod money;
pub mod page;
pub mod portability;
mod schema;
mod search;
mod store;
pub mod sync;
pub mod verify;

pub use bills::{
    Bill, BillKind, BillLine, BillStatus, BillSummary, ChainProblem, ChainReport, NewBill, NewLine,
    Payment, PriceMode, ReceiptWidth, RefundLine, Tender, TenderMethod,
};
pub use changes::Change;
pub use customers::{
    Address, Customer, CustomerOrder, CustomerQuery, CustomerUpdate, NewCustomer, Stage,
};
pub use error::{Entity, Error, Result};
pub use metrics::CustomerSummary;
pub use money::Currency;
pub use page::Page;
pub use portability::{
    CustomerExport, ImportReport, RejectedRow, ERASED_NAME, EXPORT_FORMAT, EXPORT_VERSION,
    IMPORT_COLUMNS, IMPORT_MAX_BYTES, IMPORT_MAX_ROWS,
};
pub use schema::VERSION as SCHEMA_VERSION;
pub use search::{BillHit, BillMatch, CustomerHit, Match, MatchField, MatchKind, SEARCH_LIMIT_MAX};
pub use store::{Identity, Store, StoreOptions};
pub use sync::{
    NoopObserver, QuarantinedChange, SyncClient, SyncConfig, SyncError, SyncObserver, SyncStatus,
    SyncSummary,
};
pub use verify::{Problem, VerifyReport};
