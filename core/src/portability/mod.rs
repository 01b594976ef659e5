//! Data portability: what a store owes the people in it and the shops that
//! move onto it.
//!
//! - [`export`]: a customer's access request: everything the store holds
//!   about one person (record, metrics, bills, change history) as one JSON
//!   document read from one snapshot.
//! - [`erase`]: the right to erasure: one transaction that anonymises the
//!   customer, removes their phone from their bills and redacts their
//!   personal values from the change log, leaving money, numbers and the
//!   bill hash chain untouched.
//! - [`import`]: bringing customers in from a CSV file, with the same
//!   validation as a cashier creating them, every good row in one
//!   transaction and a report of each rejected row by line and column.
//!
//! Personal data (names, phones, emails) never appears in the errors or the
//! reports these produce.

pub mod erase;
pub mod export;
pub mod import;

pub use erase::ERASED_NAME;
pub use export::{CustomerExport, EXPORT_FORMAT, EXPORT_VERSION};
pub use import::{ImportReport, RejectedRow, IMPORT_COLUMNS, IMPORT_MAX_BYTES, IMPORT_MAX_ROWS};
