//! `GET /v1/wait?cursor=N&timeout_ms=M`: the long poll that tells a till
//! "changes are waiting for you" the moment another till's push commits, so
//! a second till shows a new bill within a second without polling.
//!
//! How a wait learns of changes:
//! - Each tenant has a `watch` channel holding the tenant's last sequence.
//!   A push publishes to it after its transaction commits
//!   ([`Waiters::notify`]). A wait subscribes *before* its first read of
//!   storage, so a commit landing between the two is never missed.
//! - A notification says only "the tenant's log reached N". N at or below
//!   the wait's cursor cannot concern it; otherwise the wait asks storage
//!   whether its device's scope (the tenant's customers, its store's bills)
//!   holds a change after the cursor: one indexed read
//!   ([`Storage::changes_after`](crate::storage::Storage::changes_after)).
//!   Every answer comes from such a read, never from the notification, so it
//!   is true when sent; at the timeout a last read decides.
//! - Several stateless instances on one database (PostgreSQL, later): a push
//!   on another instance notifies nobody here, so every wait also re-reads
//!   storage every `wait_recheck` (5 s by default). That bounds how late
//!   such a wait answers; it can never make an answer wrong. With
//!   PostgreSQL, the push transaction issues `NOTIFY` on a per-tenant
//!   channel, and one `LISTEN`ing task per instance calls [`Waiters::notify`]
//!   for it, restoring the immediate wake-up; the re-check stays as the
//!   safety net for a dropped listener connection.
//!
//! What a wait may cost: its timeout is capped (25 s by default, below the
//! request timeout); open waits are counted per device and in all, and a
//! wait over either limit is refused at once (429 for the device, 503 for
//! the server) instead of queueing. Waits hold no request-concurrency
//! permit, so they never hold up pushes and pulls. A wait ends when its
//! client goes away (hyper drops the handler when the connection closes,
//! and the slot's guard gives its place back) and at shutdown (answered
//! 503 at once, so shutdown never waits out a timeout).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use prometheus::IntGauge;
use till_core::sync::protocol::{WaitRequest, WaitResponse};
use tokio::sync::watch;
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};

use crate::auth::DeviceScope;
use crate::error::ApiError;
use crate::AppState;

/// The open waits and the per-tenant channels that wake them.
#[derive(Debug)]
pub struct Waiters {
    heads: Mutex<HashMap<String, watch::Sender<i64>>>,
    open: Mutex<Open>,
    max_total: usize,
    max_per_device: usize,
    gauge: IntGauge,
}

/// Open waits, in all and per device.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_device: HashMap<DeviceScope, usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding a lock; a poisoned map is still whole.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Waiters {
    /// At most `max_total` waits in all and `max_per_device` per device;
    /// `gauge` shows how many are open.
    pub fn new(max_total: usize, max_per_device: usize, gauge: IntGauge) -> Waiters {
        Waiters {
            heads: Mutex::new(HashMap::new()),
            open: Mutex::new(Open::default()),
            max_total,
            max_per_device,
            gauge,
        }
    }

    /// Takes a place for a wait of `scope`'s device, or refuses it.
    fn admit(self: &Arc<Self>, scope: &DeviceScope) -> Result<Slot, ApiError> {
        let mut open = lock(&self.open);
        if open.total >= self.max_total {
            return Err(ApiError::WaitsFull { device: false });
        }
        if open.by_device.get(scope).copied().unwrap_or(0) >= self.max_per_device {
            return Err(ApiError::WaitsFull { device: true });
        }
        *open.by_device.entry(scope.clone()).or_default() += 1;
        open.total += 1;
        self.gauge.inc();
        Ok(Slot {
            waiters: Arc::clone(self),
            scope: scope.clone(),
        })
    }

    /// A receiver that sees the tenant's last sequence each time a push of
    /// the tenant commits from now on.
    fn subscribe(&self, tenant: &str) -> watch::Receiver<i64> {
        lock(&self.heads)
            .entry(tenant.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Tells the tenant's waits that its log reached `seq` (call after the
    /// push commits). A tenant nobody waits on loses its channel.
    pub fn notify(&self, tenant: &str, seq: i64) {
        let mut heads = lock(&self.heads);
        let Some(sender) = heads.get(tenant) else {
            return;
        };
        if sender.receiver_count() == 0 {
            heads.remove(tenant);
            return;
        }
        sender.send_if_modified(|head| {
            let newer = seq > *head;
            if newer {
                *head = seq;
            }
            newer
        });
    }
}

/// A wait's place; dropping it (the answer sent, or the handler dropped
/// because the client went away) gives the place back.
#[derive(Debug)]
struct Slot {
    waiters: Arc<Waiters>,
    scope: DeviceScope,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.waiters.open);
        open.total = open.total.saturating_sub(1);
        if let Some(mine) = open.by_device.get_mut(&self.scope) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                open.by_device.remove(&self.scope);
            }
        }
        self.waiters.gauge.dec();
    }
}

/// `GET /v1/wait`: answers `{"changes": true}` as soon as the device's scope
/// holds a change after `cursor`, `{"changes": false}` at the timeout.
pub async fn wait(
    State(state): State<AppState>,
    scope: DeviceScope,
    query: Result<Query<WaitRequest>, QueryRejection>,
) -> Result<Json<WaitResponse>, ApiError> {
    let Query(request) = query?;
    if request.cursor < 0 {
        return Err(ApiError::BadRequest("cursor must not be negative".into()));
    }
    let cap = state.limits.max_wait;
    let timeout = request
        .timeout_ms
        .map_or(cap, |ms| Duration::from_millis(ms).min(cap));
    let _slot = state.waiters.admit(&scope)?;
    let mut heads = state.waiters.subscribe(&scope.tenant);
    let started = Instant::now();
    let deadline = started + timeout;
    // `interval_at` refuses a zero period.
    let every = state.limits.wait_recheck.max(Duration::from_millis(1));
    let mut recheck = interval_at(started + every, every);
    recheck.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let cursor = request.cursor;
    let storage = &state.storage;

    let mut check = true;
    let changes = loop {
        if check && storage.changes_after(&scope, cursor).await? {
            break true;
        }
        check = tokio::select! {
            () = sleep_until(deadline) => break storage.changes_after(&scope, cursor).await?,
            () = state.shutdown.cancelled() => return Err(ApiError::Unavailable),
            _ = recheck.tick() => true,
            changed = heads.changed() => match changed {
                Ok(()) => *heads.borrow_and_update() > cursor,
                // Not while this receiver lives; should it happen, listen anew.
                Err(_) => {
                    heads = state.waiters.subscribe(&scope.tenant);
                    true
                }
            },
        };
    };
    tracing::info!(
        cursor,
        changes,
        waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "wait"
    );
    Ok(Json(WaitResponse { changes }))
}
