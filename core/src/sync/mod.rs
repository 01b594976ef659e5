//! Sync between a till and the head-office server: the wire protocol both
//! sides speak, the conflict rules the server resolves with, the exact-key
//! dedup the server merges customers by, the checks the server runs on the
//! values it receives, and the device-side client that pushes the outbox
//! and applies what it pulls.
//!
//! `protocol`, `conflict`, `dedup` and `validate` are pure (no I/O; `dedup`
//! runs over a storage port the server implements), so the server and the
//! client share one copy of every rule. `client` drives a sync in phases;
//! `outbox` keeps the device's sync state, `incoming` applies pulled
//! changes (merges included), `bootstrap` applies snapshots (`deferred`
//! builds a fresh store's random-keyed lookups once at its end), `held` keeps
//! the local unique index whole while pulls catch up, `history` reads a
//! customer's bills from every store, `transport` speaks HTTP with retries.

pub(crate) mod bootstrap;
pub mod client;
pub mod conflict;
pub mod dedup;
pub(crate) mod deferred;
pub mod erasure;
mod error;
mod held;
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
