//! The per-device rate limit: every authenticated request takes a cell from
//! its device's bucket (GCRA, from the `governor` crate); a device whose
//! bucket is empty is answered 429 with a `Retry-After` saying when its
//! next request will pass. Buckets are per device, so a runaway till only
//! ever slows itself down.
//!
//! The check runs right after the token lookup, before any other storage
//! work, so a flood of requests from one device costs one indexed read each.
//! There is one bucket per device that has made a request since the server
//! started: the map is bounded by the enrolled devices.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::auth::DeviceScope;

/// How fast one device may send requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second a device may keep up indefinitely.
    pub per_second: NonZeroU32,
    /// Requests a rested device may send back to back.
    pub burst: NonZeroU32,
}

impl Default for RateLimit {
    /// A till at work sends about one request a second (a push and a pull
    /// every few seconds, one long-poll wait). After an outage it drains its
    /// outbox in 500-change pushes and pulls 200-change pages back to back:
    /// a burst of 120 passes 120 pages at once (24,000 changes, or 60,000
    /// pushed), and 20 a second after that still moves 4,000 changes a
    /// second, while a device stuck in a loop is held to 20 requests a
    /// second. One device pulls about 340 pages a second on this 2-core
    /// machine (`ops.pull_pages_per_s` of `cargo bench -p till-sync-server
    /// --bench ops -- --quick`, taken under a load average of 16), so a
    /// runaway device gets at most about a seventeenth of the server.
    fn default() -> Self {
        RateLimit {
            per_second: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(120).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// One bucket per device.
pub struct DeviceLimiter {
    limiter: DefaultKeyedRateLimiter<DeviceScope>,
}

impl std::fmt::Debug for DeviceLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceLimiter")
            .field("devices", &self.limiter.len())
            .finish()
    }
}

impl DeviceLimiter {
    /// A limiter giving every device `rate`.
    pub fn new(rate: RateLimit) -> DeviceLimiter {
        let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
        DeviceLimiter {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
        }
    }

    /// Takes one cell of `scope`'s bucket. `Err` carries how long the device
    /// must wait, in whole seconds (at least 1), for `Retry-After`.
    pub fn check(&self, scope: &DeviceScope) -> Result<(), u64> {
        self.limiter.check_key(scope).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            retry_after_secs(wait)
        })
    }
}

/// `Retry-After` counts whole seconds: round up, and never say 0 (which a
/// client could read as "hammer away").
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(device: &str) -> DeviceScope {
        DeviceScope {
            tenant: "t".into(),
            store: "S1".into(),
            device: device.into(),
        }
    }

    #[test]
    fn a_device_past_its_burst_waits_and_others_do_not() {
        let limiter = DeviceLimiter::new(RateLimit {
            per_second: NonZeroU32::MIN,
            burst: NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN),
        });
        for _ in 0..3 {
            assert_eq!(limiter.check(&scope("T1")), Ok(()));
        }
        assert_eq!(limiter.check(&scope("T1")), Err(1));
        assert_eq!(limiter.check(&scope("T2")), Ok(()));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(50)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2_001)), 3);
    }
}
