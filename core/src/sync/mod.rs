//! Sync between a till and the head-office server: the wire protocol both
//! sides speak, the conflict rules the server resolves with, and the checks
//! the server runs on the values it receives. Everything here is pure (no
//! I/O), so the server and, later, the device-side client share one copy of
//! every rule.

pub mod conflict;
pub mod protocol;
pub mod validate;
