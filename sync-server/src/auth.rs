//! Device authentication: per-device bearer tokens, random, shown once at
//! enrollment and stored only as SHA-256 digests. The tenant, store and
//! device of every request come from the token, never from the request.
//!
//! A lookup hashes the presented token and finds the digest by index; no
//! token is cached in memory, so a revocation takes effect on the very next
//! request, also when the admin CLI revokes from another process.
//!
//! An authenticated request then takes a cell of its device's rate limit
//! (see [`crate::ratelimit`]): every endpoint that knows its device is limited.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::storage::TokenLookup;
use crate::AppState;

/// Every token starts with this, so leaked tokens are easy to scan for.
const TOKEN_PREFIX: &str = "till_";
/// Random bytes per token: 256 bits.
const TOKEN_BYTES: usize = 32;

/// Who a request speaks for, as its token says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceScope {
    /// The tenant: every record the device reads or writes is the tenant's.
    pub tenant: String,
    /// The device's store: the only store whose bills it sees and writes.
    pub store: String,
    /// The device's code within its store.
    pub device: String,
}

impl DeviceScope {
    /// The node name that stamps the device's changes: `store/device`, as
    /// till-core's `Identity::node` makes it.
    pub fn node(&self) -> String {
        format!("{}/{}", self.store, self.device)
    }
}

/// A new random token. `rand::rng()` is a CSPRNG seeded from the OS.
pub fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// The digest stored for `token`.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Checks an id of a tenant, store or device: 1 to `max` ASCII letters,
/// digits, `_` or `-` (the same shape till-core's identity accepts).
pub fn valid_id(value: &str, max: usize) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl FromRequestParts<AppState> for DeviceScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::Unauthorized("missing bearer token"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| t.starts_with(TOKEN_PREFIX) && t.len() <= 128)
            .ok_or(ApiError::Unauthorized("malformed bearer token"))?;
        match state.storage.device_by_token(&token_hash(token)).await? {
            TokenLookup::Active(scope) => {
                let span = tracing::Span::current();
                span.record("tenant", scope.tenant.as_str());
                span.record("device", scope.node().as_str());
                if let Err(retry_after_secs) = state.limiter.check(&scope) {
                    state.metrics.rate_limited();
                    return Err(ApiError::RateLimited { retry_after_secs });
                }
                Ok(scope)
            }
            TokenLookup::Revoked => Err(ApiError::DeviceRevoked),
            TokenLookup::Unknown => Err(ApiError::Unauthorized("unknown bearer token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 2 * TOKEN_BYTES);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&b));
        assert_eq!(token_hash(&a).len(), 64);
    }

    #[test]
    fn ids_have_the_identity_shape() {
        assert!(valid_id("S01", 16));
        assert!(valid_id("acme-retail_2", 64));
        for bad in ["", "a b", "a/b", "ä", &"x".repeat(17)] {
            assert!(!valid_id(bad, 16), "{bad}");
        }
    }
}
