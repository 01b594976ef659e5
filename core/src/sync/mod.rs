//! Sync between a till and the head-office server: the wire protocol both
//! sides speak, the conflict rules the server resolves with, the checks the
//! server runs on the values it receives, and the device-side client that
//! pushes the outbox and applies what it pulls.
//!
//! `protocol`, `conflict` and `validate` are pure (no I/O), so the server
//! and the client share one copy of every rule. `client` drives a sync in
//! phases; `outbox` keeps the device's sync state, `incoming` applies pulled
//! changes, `bootstrap` applies snapshots, `history` reads a customer's
//! bills from every store, `transport` speaks HTTP with retries.

pub(crate) mod bootstrap;
pub mod client;
pub mod conflict;
mod error;
mod history;
mod incoming;
mod outbox;
pub mod protocol;
mod transport;
pub mod validate;

pub use client::{
    AsyncSyncClient, NoopObserver, SyncClient, SyncConfig, SyncObserver, SyncPhase, SyncSummary,
};
pub use error::SyncError;
pub use outbox::{QuarantinedChange, SyncStatus, QUARANTINE_LIST_MAX};
