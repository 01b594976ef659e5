//! Randomized convergence under real faults. Tills of two stores of one
//! tenant make random customer and bill edits offline and sync in a random
//! order, each through a fault-injecting TCP proxy (answers dropped after the
//! server committed, requests sent twice), while the server is restarted
//! over its data directory (between syncs and in the middle of one) and a
//! till's process is killed with SIGKILL in the middle of a sync. Once the
//! faults stop and everyone has synced twice, every till must equal the
//! server for its scope, field by field, and nothing acknowledged may be
//! lost (see [`World::check`] for the full list).
//!
//! Seeded, so a failure replays:
//!
//! ```sh
//! cargo test -p till-e2e --test convergence                          # seeds 0..200 (CI)
//! TILL_CONVERGENCE_SEEDS=5000 cargo test -p till-e2e --test convergence
//! TILL_CONVERGENCE_SEED=17 cargo test -p till-e2e --test convergence # one seed, with its trace
//! ```
//!
//! `TILL_CONVERGENCE_FROM` moves the first seed; `TILL_CONVERGENCE_JOBS`
//! sets how many seeds run at once (default: one per core). Timing (the
//! moment a kill lands, clock stamps) is not seeded, so a replay takes the
//! same steps but may interleave differently at the edges.
//!
//! The binary has no libtest harness: run plainly it is the driver; run with
//! `TILL_CONVERGENCE_CHILD` set it is a till process that opens a store and
//! syncs until the driver kills it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::inspect::{self, differences, Fields, ServerView};
use common::proxy::{Proxy, Upstream};
use common::{Server, Till};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use till_core::bills::chain::GENESIS;
use till_core::sync::dedup;
use till_core::{
    Bill, BillKind, BillStatus, Customer, CustomerUpdate, Error, NewBill, NewCustomer, NewLine,
    RefundLine, Store, StoreOptions, SyncConfig, SyncError, SyncObserver, Tender,
};
use uuid::Uuid;

const TENANT: &str = "t1";
/// Three tills share store S1 (bills cross between them), one is alone in
/// S2 (it shares only customers).
const DEVICES: [(&str, &str); 4] = [("S1", "T1"), ("S1", "T2"), ("S1", "T3"), ("S2", "T1")];
/// Operations per seed, spread over the tills.
const STEPS: usize = 60;
/// Phone numbers customers are created with: few, so tills collide on them.
const PHONES: u32 = 12;
/// Per request, through the proxies, while faults are on.
const DROP_RATE: f64 = 0.12;
const DUPLICATE_RATE: f64 = 0.12;
/// Per step.
const SYNC_CHANCE: f64 = 0.35;
const RESTART_CHANCE: f64 = 0.03;
const KILL_CHANCE: f64 = 0.04;
/// Per sync: the server restarts at a random point inside it.
const MID_SYNC_RESTART_CHANCE: f64 = 0.06;
const TAGS: [&str; 4] = ["vip", "wholesale", "staff", "credit"];
const CHILD_ENV: &str = "TILL_CONVERGENCE_CHILD";
/// The default run: what CI runs on every change.
const CI_SEEDS: u64 = 200;

/// The server behind the proxies; it can restart from inside a sync.
struct Head {
    data: PathBuf,
    server: Mutex<Option<Server>>,
    upstream: Upstream,
    restarts: AtomicUsize,
}

impl Head {
    /// Stops the server (finishing in-flight requests) and opens it again
    /// over the same data directory on a new port; the proxies follow.
    fn restart(&self) {
        let mut slot = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        let old = slot.take().expect("a running server");
        let data = self.data.clone();
        // A runtime can be neither stopped nor started on a thread that runs
        // one, which the syncing till's thread does.
        let new = std::thread::spawn(move || {
            old.stop();
            Server::open(&data)
        })
        .join()
        .expect("restarted");
        self.upstream.set(&new.url);
        *slot = Some(new);
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    fn stop(&self) {
        let server = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(server) = server {
            server.stop();
        }
    }
}

/// Restarts the server when a sync reaches its `at`-th event.
struct RestartAt<'a> {
    head: &'a Head,
    at: Option<usize>,
    events: AtomicUsize,
    restarted: AtomicBool,
}

impl RestartAt<'_> {
    fn tick(&self) {
        if Some(self.events.fetch_add(1, Ordering::SeqCst)) == self.at {
            self.head.restart();
            self.restarted.store(true, Ordering::SeqCst);
        }
    }
}

impl SyncObserver for RestartAt<'_> {
    fn phase(&self, _phase: till_core::sync::SyncPhase) {
        self.tick();
    }
    fn pushed(&self, _acknowledged: usize, _quarantined: usize) {
        self.tick();
    }
    fn pulled(&self, _changes: usize, _cursor: i64) {
        self.tick();
    }
}

/// One till: its store (closed while its process is being killed), how it
/// syncs, and the proxy it syncs through.
struct Device {
    store_code: &'static str,
    device_code: &'static str,
    store: Option<Store>,
    config: SyncConfig,
    proxy: Proxy,
}

impl Device {
    fn label(&self) -> String {
        format!("{}/{}", self.store_code, self.device_code)
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("an open store")
    }
}

/// What one seed did, for the closing summary.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    ops: usize,
    syncs: usize,
    syncs_cut_short: usize,
    dropped: usize,
    dropped_pushes: usize,
    duplicated: usize,
    restarts: usize,
    mid_sync_restarts: usize,
    kills: usize,
    quarantined: usize,
    merges: usize,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.ops += o.ops;
        self.syncs += o.syncs;
        self.syncs_cut_short += o.syncs_cut_short;
        self.dropped += o.dropped;
        self.dropped_pushes += o.dropped_pushes;
        self.duplicated += o.duplicated;
        self.restarts += o.restarts;
        self.mid_sync_restarts += o.mid_sync_restarts;
        self.kills += o.kills;
        self.quarantined += o.quarantined;
        self.merges += o.merges;
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Create,
    FindOrCreate,
    Rename,
    Notes,
    Tag,
    Delete,
    Restore,
    Sell,
    Open,
    AddLine,
    Pay,
    Void,
    RefundAll,
    RefundPart,
}

/// Operations and their weights.
const OPS: [(Op, u32); 14] = [
    (Op::Create, 10),
    (Op::FindOrCreate, 8),
    (Op::Rename, 7),
    (Op::Notes, 5),
    (Op::Tag, 7),
    (Op::Delete, 4),
    (Op::Restore, 3),
    (Op::Sell, 14),
    (Op::Open, 6),
    (Op::AddLine, 3),
    (Op::Pay, 6),
    (Op::Void, 4),
    (Op::RefundAll, 4),
    (Op::RefundPart, 5),
];

/// One seed's world: a server, its tills, and what the driver made.
struct World {
    rng: StdRng,
    dir: tempfile::TempDir,
    head: Head,
    devices: Vec<Device>,
    /// Every customer created, in order.
    customers: Vec<Uuid>,
    /// Every bill created, per store, in order, with the till that made it.
    bills: BTreeMap<&'static str, Vec<(Uuid, String)>>,
    trace: Vec<String>,
    stats: Stats,
}

type Outcome<T> = Result<T, String>;

fn fail<T>(what: impl std::fmt::Display) -> Outcome<T> {
    Err(what.to_string())
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("server");
        let server = Server::start(&data);
        let upstream = Upstream::new(&server.url);
        let devices = DEVICES
            .iter()
            .enumerate()
            .map(|(i, (store_code, device_code))| {
                let till = Till::new(&server, dir.path(), store_code, device_code);
                let proxy = Proxy::start(
                    upstream.clone(),
                    seed.wrapping_mul(31).wrapping_add(i as u64),
                );
                proxy.set_faults(DROP_RATE, DUPLICATE_RATE);
                let mut config = till.config;
                config.server_url = proxy.url.clone();
                // Enough attempts to outlast a dropped answer or a restart
                // most of the time; a sync that still gives up is retried by
                // the next one, as an app would.
                config.max_attempts = 4;
                // Small batches and pages: more requests for the faults to
                // land between, more transactions for a kill to cut.
                config.push_batch = rng.random_range(2..20);
                config.pull_page = rng.random_range(2..20);
                Device {
                    store_code,
                    device_code,
                    store: Some(till.store),
                    config,
                    proxy,
                }
            })
            .collect();
        World {
            rng,
            dir,
            head: Head {
                data,
                server: Mutex::new(Some(server)),
                upstream,
                restarts: AtomicUsize::new(0),
            },
            devices,
            customers: Vec::new(),
            bills: BTreeMap::new(),
            trace: Vec::new(),
            stats: Stats::default(),
        }
    }

    fn note(&mut self, line: String) {
        self.trace.push(line);
    }

    /// The whole run: random steps under faults, then two clean rounds of
    /// syncs, then the checks.
    fn run(&mut self) -> Outcome<()> {
        for step in 0..STEPS {
            let d = self.rng.random_range(0..self.devices.len());
            let done = self.step(d, step)?;
            self.stats.ops += 1;
            let label = self.devices[d].label();
            self.note(format!("{step:3} {label} {done}"));
            if self.rng.random_bool(SYNC_CHANCE) {
                let d = self.rng.random_range(0..self.devices.len());
                self.sync(d, true)?;
            }
            if self.rng.random_bool(RESTART_CHANCE) {
                self.head.restart();
                self.note("    server restarted".into());
            }
            if self.rng.random_bool(KILL_CHANCE) {
                let d = self.rng.random_range(0..self.devices.len());
                self.kill_mid_sync(d)?;
            }
        }
        for device in &self.devices {
            let counts = device.proxy.counts();
            self.stats.dropped += counts.dropped.load(Ordering::Relaxed);
            self.stats.dropped_pushes += counts.dropped_pushes.load(Ordering::Relaxed);
            self.stats.duplicated += counts.duplicated.load(Ordering::Relaxed);
            device.proxy.set_faults(0.0, 0.0);
        }
        for round in 0..2 {
            let mut order: Vec<usize> = (0..self.devices.len()).collect();
            order.shuffle(&mut self.rng);
            self.note(format!("    final round {round}: {order:?}"));
            for d in order {
                self.sync(d, false)?;
            }
        }
        self.stats.restarts = self.head.restarts.load(Ordering::Relaxed);
        self.check()
    }

    /// Syncs till `d`; with `chaos`, maybe restarting the server inside the
    /// sync, and a sync that runs out of attempts is no failure.
    fn sync(&mut self, d: usize, chaos: bool) -> Outcome<()> {
        let events = self.rng.random_range(0..6);
        let at = (chaos && self.rng.random_bool(MID_SYNC_RESTART_CHANCE)).then_some(events);
        let observer = RestartAt {
            head: &self.head,
            at,
            events: AtomicUsize::new(0),
            restarted: AtomicBool::new(false),
        };
        let device = &self.devices[d];
        let outcome = device.store().sync(&device.config, &observer);
        let label = device.label();
        self.stats.syncs += 1;
        if observer.restarted.load(Ordering::SeqCst) {
            self.stats.mid_sync_restarts += 1;
        }
        let restarted = match observer.restarted.load(Ordering::SeqCst) {
            true => " (server restarted inside)",
            false => "",
        };
        match outcome {
            Ok(s) => {
                self.note(format!(
                    "    sync {label}{restarted}: pushed {} quarantined {} pulled {} cursor {}",
                    s.pushed, s.quarantined, s.pulled, s.cursor
                ));
                self.stats.quarantined += s.quarantined;
                Ok(())
            }
            Err(Error::Sync(e @ SyncError::Unreachable { .. })) if chaos => {
                self.note(format!("    sync {label}{restarted}: cut short: {e}"));
                self.stats.syncs_cut_short += 1;
                Ok(())
            }
            Err(e) => fail(format!("sync of {label}{restarted} failed: {e}")),
        }
    }

    /// Closes till `d`'s store, runs a process of it that syncs, kills that
    /// process with SIGKILL after a random number of sync events, reopens
    /// the store and checks it.
    fn kill_mid_sync(&mut self, d: usize) -> Outcome<()> {
        let kill_after = self.rng.random_range(0..8);
        let push_batch = self.rng.random_range(1..6);
        let pull_page = self.rng.random_range(2..12);
        let device = &mut self.devices[d];
        let label = device.label();
        let store = device.store.take().expect("open store");
        let local_before = inspect::till_local_changes(&store);
        let path = store.path().to_owned();
        drop(store);
        let spec = [
            path.to_str().expect("utf-8 path").to_owned(),
            device.store_code.to_owned(),
            device.device_code.to_owned(),
            device.config.server_url.clone(),
            device.config.token.clone(),
            push_batch.to_string(),
            pull_page.to_string(),
        ]
        .join("\n");
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .env(CHILD_ENV, spec)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn till process");
        let stdout = child.stdout.take().expect("child stdout");
        let mut events = 0;
        let mut ended = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("event") {
                events += 1;
                if events > kill_after {
                    break;
                }
            } else if line.starts_with("end") {
                ended = Some(line);
                break;
            }
        }
        // SIGKILL; a process that already ended is only reaped.
        let _ = child.kill();
        let status = child.wait().expect("reap till process");
        let how = match &ended {
            Some(line) => format!("finished first ({line})"),
            None => format!("killed after {events} sync events ({status})"),
        };
        self.stats.kills += usize::from(ended.is_none());
        let store = Till::open_store(self.dir.path(), device.store_code, device.device_code);
        let report = store.verify().map_err(|e| e.to_string())?;
        if !report.is_ok() {
            return fail(format!(
                "{label} after its process was {how}: verify found {:?}",
                report.problems
            ));
        }
        let local_after = inspect::till_local_changes(&store);
        for (id, pushed) in &local_before {
            match local_after.get(id) {
                None => return fail(format!("{label}: local change {id} lost by the kill")),
                Some(false) if *pushed => {
                    return fail(format!("{label}: change {id} became unacknowledged"))
                }
                _ => {}
            }
        }
        self.devices[d].store = Some(store);
        self.note(format!("    {label} process {how}"));
        Ok(())
    }

    fn pick_phone(&mut self) -> String {
        let n = 9_876_500_000u64 + u64::from(self.rng.random_range(0..PHONES));
        let (head, tail) = (n / 100_000, n % 100_000);
        // The same number typed the ways cashiers type it.
        match self.rng.random_range(0..3) {
            0 => format!("{n}"),
            1 => format!("+91 {head} {tail:05}"),
            _ => format!("0{head}-{tail:05}"),
        }
    }

    /// A live customer till `d` holds, from those created anywhere.
    fn pick_customer(&mut self, d: usize) -> Option<Customer> {
        let n = self.customers.len();
        let start = self.rng.random_range(0..n.max(1));
        let store = self.devices[d].store();
        (0..n)
            .map(|i| self.customers[(start + i) % n])
            .find_map(|id| store.customer(id).ok())
    }

    /// A bill of till `d`'s store that it holds and that passes `wanted`.
    fn pick_bill(&mut self, d: usize, wanted: impl Fn(&Bill) -> bool) -> Option<Bill> {
        let device = &self.devices[d];
        let bills = self.bills.get(device.store_code)?;
        let n = bills.len();
        let start = self.rng.random_range(0..n.max(1));
        (0..n)
            .map(|i| bills[(start + i) % n].0)
            .find_map(|id| device.store().bill(id).ok().filter(|b| wanted(b)))
    }

    fn new_bill(&mut self, d: usize) -> NewBill {
        let customer_id = match self.rng.random_bool(0.7) {
            true => self.pick_customer(d).map(|c| c.id),
            false => None,
        };
        let lines = (0..self.rng.random_range(1..4))
            .map(|i| {
                let line = NewLine::item(
                    &format!("SKU{i}"),
                    "Item",
                    self.rng.random_range(1..4),
                    self.rng.random_range(50..2_000),
                );
                match self.rng.random_bool(0.5) {
                    true => line.taxed("GST5", 500),
                    false => line,
                }
            })
            .collect();
        NewBill {
            customer_id,
            lines,
            ..NewBill::default()
        }
    }

    fn made_bill(&mut self, d: usize, bill: &Bill) {
        let label = self.devices[d].label();
        let store_code = self.devices[d].store_code;
        self.bills
            .entry(store_code)
            .or_default()
            .push((bill.id, label));
    }

    /// One random operation on till `d`; says what it did.
    fn step(&mut self, d: usize, step: usize) -> Outcome<String> {
        let total: u32 = OPS.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.random_range(0..total);
        let op = OPS
            .iter()
            .find(|(_, w)| {
                let hit = roll < *w;
                roll = roll.saturating_sub(*w);
                hit
            })
            .map(|(op, _)| *op)
            .expect("an op");
        self.operate(d, step, op)
            .map_err(|e| format!("{op:?} on {} failed: {e}", self.devices[d].label()))
    }

    fn operate(&mut self, d: usize, step: usize, op: Op) -> Result<String, Error> {
        let name = format!("Customer {step}");
        match op {
            Op::Create => {
                let phone = self.rng.random_bool(0.8).then(|| self.pick_phone());
                let mut new = NewCustomer::named(&name);
                if let Some(phone) = &phone {
                    new = new.with_phone(phone);
                }
                match self.devices[d].store().create_customer(new) {
                    Ok(c) => {
                        self.customers.push(c.id);
                        Ok(format!("create {}", c.id))
                    }
                    // The number belongs to a live customer here: the
                    // cashier is told so and nothing is written.
                    Err(Error::Duplicate { field, .. }) => Ok(format!("create refused: {field}")),
                    Err(e) => Err(e),
                }
            }
            Op::FindOrCreate => {
                let phone = self.pick_phone();
                let (c, created) = self.devices[d]
                    .store()
                    .find_or_create_by_phone(&phone, &name)?;
                if created {
                    self.customers.push(c.id);
                }
                Ok(format!("find-or-create {} (created: {created})", c.id))
            }
            Op::Rename | Op::Notes => {
                let Some(c) = self.pick_customer(d) else {
                    return self.operate(d, step, Op::Create);
                };
                let update = match op {
                    Op::Rename => CustomerUpdate {
                        name: Some(format!("Renamed {step}")),
                        ..CustomerUpdate::default()
                    },
                    _ => CustomerUpdate {
                        notes: Some(format!("note {step}")),
                        ..CustomerUpdate::default()
                    },
                };
                self.devices[d]
                    .store()
                    .update_customer(c.id, c.version, update)?;
                Ok(format!("{op:?} {}", c.id))
            }
            Op::Tag => {
                let Some(c) = self.pick_customer(d) else {
                    return self.operate(d, step, Op::Create);
                };
                let i = self.rng.random_range(0..TAGS.len());
                let j = (i + self.rng.random_range(1..TAGS.len())) % TAGS.len();
                let (add, remove): (&[&str], &[&str]) = (&[TAGS[i]], &[TAGS[j]]);
                self.devices[d].store().tag_customer(c.id, add, remove)?;
                Ok(format!("tag {} +{add:?} -{remove:?}", c.id))
            }
            Op::Delete => {
                let Some(c) = self.pick_customer(d) else {
                    return self.operate(d, step, Op::Create);
                };
                self.devices[d].store().delete_customer(c.id)?;
                Ok(format!("delete {}", c.id))
            }
            Op::Restore => {
                let n = self.customers.len();
                let start = self.rng.random_range(0..n.max(1));
                let store = self.devices[d].store();
                let deleted = (0..n).map(|i| self.customers[(start + i) % n]).find(|id| {
                    store
                        .customer_including_deleted(*id)
                        .is_ok_and(|c| c.deleted_at_ms.is_some() && c.merged_into.is_none())
                });
                let Some(id) = deleted else {
                    return self.operate(d, step, Op::Create);
                };
                match store.restore_customer(id) {
                    Ok(_) => Ok(format!("restore {id}")),
                    // Another live customer took the number meanwhile.
                    Err(Error::Duplicate { field, .. }) => {
                        Ok(format!("restore {id} refused: {field}"))
                    }
                    Err(e) => Err(e),
                }
            }
            Op::Sell => {
                let new = self.new_bill(d);
                // Cash beyond the total is given back as change.
                let bill = self.devices[d]
                    .store()
                    .sell(new, &[Tender::cash(100_000)])?;
                self.made_bill(d, &bill);
                Ok(format!("sell {} {}", bill.number, bill.total))
            }
            Op::Open => {
                let new = self.new_bill(d);
                let bill = self.devices[d].store().open_bill(new)?;
                self.made_bill(d, &bill);
                Ok(format!("open {}", bill.number))
            }
            Op::AddLine => {
                let me = self.devices[d].device_code;
                let Some(bill) =
                    self.pick_bill(d, |b| b.device_id == me && b.status == BillStatus::Open)
                else {
                    return self.operate(d, step, Op::Open);
                };
                let line = NewLine::item("SKU9", "Item", 1, self.rng.random_range(50..2_000));
                let bill = self.devices[d].store().add_line(bill.id, line)?;
                Ok(format!("add a line to {} ({})", bill.number, bill.total))
            }
            Op::Pay => {
                let me = self.devices[d].device_code;
                let Some(bill) = self.pick_bill(d, |b| {
                    b.device_id == me && b.status == BillStatus::Open && !b.lines.is_empty()
                }) else {
                    return self.operate(d, step, Op::Open);
                };
                let card = bill.total / 3;
                let tenders = match card {
                    0 => vec![Tender::cash(bill.total)],
                    _ => vec![Tender::card(card, "AUTH"), Tender::cash(bill.total - card)],
                };
                let paid = self.devices[d].store().pay(bill.id, &tenders)?;
                Ok(format!("pay {} {}", paid.number, paid.total))
            }
            Op::Void => {
                let me = self.devices[d].device_code;
                let Some(bill) = self.pick_bill(d, |b| {
                    b.device_id == me
                        && b.kind == BillKind::Sale
                        && (b.status == BillStatus::Open
                            || (b.status == BillStatus::Paid && b.refunded_total == 0))
                }) else {
                    return self.operate(d, step, Op::Sell);
                };
                self.devices[d].store().void_bill(bill.id)?;
                Ok(format!("void {} ({})", bill.number, bill.status))
            }
            Op::RefundAll | Op::RefundPart => {
                let refundable = |b: &Bill| {
                    b.kind == BillKind::Sale
                        && matches!(b.status, BillStatus::Paid | BillStatus::PartlyRefunded)
                };
                let Some(bill) = self.pick_bill(d, refundable) else {
                    return self.operate(d, step, Op::Sell);
                };
                let lines = match op {
                    Op::RefundAll => Vec::new(),
                    _ => {
                        let open: Vec<_> = bill
                            .lines
                            .iter()
                            .filter(|l| l.qty_milli > l.refunded_qty_milli)
                            .collect();
                        let line = open[self.rng.random_range(0..open.len())];
                        let left = line.qty_milli - line.refunded_qty_milli;
                        vec![RefundLine {
                            line_no: line.line_no,
                            qty_milli: left.min(1_000),
                        }]
                    }
                };
                let store = self.devices[d].store();
                let amount = store.refund_quote(bill.id, &lines)?;
                let refund = store.refund(bill.id, &lines, &[Tender::cash(amount)])?;
                self.made_bill(d, &refund);
                Ok(format!(
                    "refund {} of {} ({} lines)",
                    refund.total,
                    bill.number,
                    lines.len()
                ))
            }
        }
    }

    /// After everyone synced twice with no faults:
    /// - the server's log holds every change it acknowledged, once;
    /// - every till's outbox is empty, each of its changes accepted (in the
    ///   log) or quarantined with the server's reason;
    /// - no two live customers on the server share an identity phone or
    ///   email; a merged-away customer points at a survivor that is not
    ///   merged away itself, and no bill names a merged-away customer;
    /// - every till holds every log entry of its scope, and equals the
    ///   server for its scope: each customer of the tenant and each bill of
    ///   its store, field by field (so a till's live customers share no
    ///   key either, and its bills followed every merge);
    /// - every bill the driver made is on the server once; numbers are
    ///   gapless per till; each till's chain links on the server too;
    ///   refunds add up on the bills they refund;
    /// - `verify()` passes on every till.
    fn check(&mut self) -> Outcome<()> {
        let view = ServerView::read(&self.head.data, TENANT);
        self.stats.merges = view.log.iter().filter(|e| e.op == dedup::MERGE_OP).count();
        check_log(&view)?;
        check_bills_on_server(&view)?;
        for store_code in ["S1", "S2"] {
            let on_server = view.store_bills(store_code);
            for (id, label) in self.bills.get(store_code).into_iter().flatten() {
                if !on_server.contains_key(&id.to_string()) {
                    return fail(format!("bill {id} made by {label} is not on the server"));
                }
            }
        }
        check_customers_on_server(&view)?;
        for device in &self.devices {
            self.check_device(device, &view)?;
        }
        Ok(())
    }

    fn check_device(&self, device: &Device, view: &ServerView) -> Outcome<()> {
        let label = device.label();
        let store = device.store();
        let status = store.sync_status().map_err(|e| e.to_string())?;
        if status.pending_changes != 0 {
            return fail(format!(
                "{label}: {} changes still pending",
                status.pending_changes
            ));
        }
        let quarantined: BTreeMap<String, String> = status
            .quarantined
            .iter()
            .map(|q| (q.change_id.to_string(), q.reason.clone()))
            .collect();
        for (id, pushed) in inspect::till_local_changes(store) {
            if !pushed {
                return fail(format!("{label}: change {id} never acknowledged"));
            }
            match (view.received.get(&id), quarantined.get(&id)) {
                (Some(r), None) if r.server_seq.is_some() => {}
                (Some(r), Some(reason)) if r.reject_reason.as_ref() == Some(reason) => {}
                (r, q) => {
                    return fail(format!(
                        "{label}: change {id} acknowledged, but the server says {r:?} and \
                         the quarantine {q:?}"
                    ))
                }
            }
        }
        let held = inspect::till_change_ids(store);
        let snapshot = inspect::till_snapshot_seq(store);
        for entry in view.log.iter().filter(|e| e.seq > snapshot) {
            let in_scope = entry
                .store
                .as_deref()
                .is_none_or(|s| s == device.store_code);
            if in_scope && !held.contains(&entry.change_id) {
                return fail(format!("{label}: never pulled log entry {}", entry.seq));
            }
        }

        let customers = inspect::till_customers(store);
        let on_server: BTreeSet<&String> = view.customers.keys().collect();
        if customers.keys().collect::<BTreeSet<_>>() != on_server {
            return fail(format!(
                "{label}: holds {} customers, the server {}",
                customers.len(),
                on_server.len()
            ));
        }
        for (id, fields) in &customers {
            let server = &view.customers[id].values;
            let diffs = differences(fields, server);
            if !diffs.is_empty() {
                return fail(format!("{label}: customer {id} differs: {diffs:?}"));
            }
        }

        let bills = inspect::till_bills(store);
        let on_server = view.store_bills(device.store_code);
        if bills.keys().collect::<BTreeSet<_>>() != on_server.keys().collect() {
            return fail(format!(
                "{label}: holds {} bills, the server {} for its store",
                bills.len(),
                on_server.len()
            ));
        }
        for (id, fields) in &bills {
            let mine = fields["device_id"] == device.device_code;
            let diffs: Vec<_> = differences(fields, on_server[id])
                .into_iter()
                // Another till's bill takes no place in this till's chain.
                .filter(|(k, ..)| mine || k != "chain_pos")
                .collect();
            if !diffs.is_empty() {
                return fail(format!("{label}: bill {id} differs: {diffs:?}"));
            }
        }

        let report = store.verify().map_err(|e| e.to_string())?;
        if !report.is_ok() {
            return fail(format!("{label}: verify found {:?}", report.problems));
        }
        Ok(())
    }
}

/// Every accepted change sits in the log at the sequence its answer named,
/// and the log holds nothing else but the server's own dedup merges.
fn check_log(view: &ServerView) -> Outcome<()> {
    let by_seq: BTreeMap<i64, &str> = view
        .log
        .iter()
        .map(|e| (e.seq, e.change_id.as_str()))
        .collect();
    if by_seq.len() != view.log.len() {
        return fail("the server log repeats a sequence");
    }
    let mut accepted = 0;
    for (id, r) in &view.received {
        match (r.server_seq, &r.reject_reason) {
            (Some(seq), None) => {
                accepted += 1;
                if by_seq.get(&seq) != Some(&id.as_str()) {
                    return fail(format!("accepted change {id} is not in the log at {seq}"));
                }
            }
            (None, Some(_)) => {}
            other => return fail(format!("change {id} has outcome {other:?}")),
        }
    }
    let merges = view
        .log
        .iter()
        .filter(|e| e.device == dedup::SERVER_DEVICE)
        .count();
    if accepted + merges != view.log.len() {
        return fail(format!(
            "the log holds {} entries for {accepted} accepted changes and {merges} made by \
             the server",
            view.log.len()
        ));
    }
    Ok(())
}

/// The server's customers after dedup: no two live ones share an identity
/// phone or email, every merged-away one points at a survivor that is not
/// merged away itself, and no bill was left with a merged-away one.
fn check_customers_on_server(view: &ServerView) -> Outcome<()> {
    let mut holders: BTreeMap<dedup::IdentityKey, &String> = BTreeMap::new();
    for (id, state) in &view.customers {
        if !dedup::is_live(&state.values) {
            continue;
        }
        for key in dedup::identity_keys(&state.values) {
            if let Some(other) = holders.insert(key.clone(), id) {
                return fail(format!("live customers {other} and {id} share {key:?}"));
            }
        }
    }
    for (id, state) in &view.customers {
        if let Some(survivor) = dedup::merged_into(&state.values) {
            // Merges keep the chain one hop long.
            let one_hop = view
                .customers
                .get(survivor)
                .is_some_and(|s| dedup::merged_into(&s.values).is_none());
            if !one_hop {
                return fail(format!(
                    "customer {id} is merged into {survivor}, itself merged"
                ));
            }
        }
    }
    for (id, (_, state)) in &view.bills {
        let Some(customer) = state.values.get("customer_id").and_then(Value::as_str) else {
            continue;
        };
        match view.customers.get(customer) {
            None => return fail(format!("bill {id} names unknown customer {customer}")),
            Some(c) if dedup::merged_into(&c.values).is_some() => {
                return fail(format!(
                    "bill {id} stayed with merged-away customer {customer}"
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn int(fields: &Fields, key: &str) -> i64 {
    fields.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn text<'a>(fields: &'a Fields, key: &str) -> &'a str {
    fields.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Bills as the server holds them: numbers unique and gapless per till,
/// each till's chain linked from genesis, refunds adding up.
fn check_bills_on_server(view: &ServerView) -> Outcome<()> {
    /// A till: its store and device.
    type TillOf = (String, String);
    /// A bill's place in its till's chain: position, previous hash, hash.
    type Link = (i64, String, String);
    let mut numbers: BTreeMap<TillOf, Vec<u64>> = BTreeMap::new();
    let mut chains: BTreeMap<TillOf, Vec<Link>> = BTreeMap::new();
    let mut refunded: BTreeMap<&str, (i64, BTreeMap<u64, i64>)> = BTreeMap::new();
    for (id, (store, state)) in &view.bills {
        let b = &state.values;
        let till = (store.clone(), text(b, "device_id").to_owned());
        let prefix = format!("{}-{}-", till.0, till.1);
        let Some(n) = text(b, "number")
            .strip_prefix(&prefix)
            .and_then(|n| n.parse().ok())
        else {
            return fail(format!("bill {id} has number {:?}", b.get("number")));
        };
        numbers.entry(till.clone()).or_default().push(n);
        if let Some(pos) = b.get("chain_pos").and_then(Value::as_i64) {
            chains.entry(till).or_default().push((
                pos,
                text(b, "prev_hash").to_owned(),
                text(b, "hash").to_owned(),
            ));
        }
        if text(b, "kind") == "refund" && text(b, "status") == "paid" {
            let entry = refunded.entry(text(b, "refund_of")).or_default();
            entry.0 += int(b, "total");
            for line in b["lines"].as_array().into_iter().flatten() {
                if let Some(of) = line["refund_of_line"].as_u64() {
                    *entry.1.entry(of).or_default() += line["qty_milli"].as_i64().unwrap_or(0);
                }
            }
        }
    }
    for (till, mut seen) in numbers {
        seen.sort_unstable();
        if seen != (1..=seen.len() as u64).collect::<Vec<_>>() {
            return fail(format!(
                "bill numbers of {till:?} are not gapless: {seen:?}"
            ));
        }
    }
    for (till, mut chain) in chains {
        chain.sort();
        let mut prev = GENESIS.to_owned();
        for (i, (pos, prev_hash, hash)) in chain.iter().enumerate() {
            if *pos != i as i64 + 1 || *prev_hash != prev {
                return fail(format!("the chain of {till:?} breaks at position {pos}"));
            }
            prev = hash.clone();
        }
    }
    for (id, (_, state)) in &view.bills {
        let b = &state.values;
        if text(b, "kind") != "sale" {
            continue;
        }
        let (total, lines) = refunded.get(id.as_str()).cloned().unwrap_or_default();
        if int(b, "refunded_total") != total {
            return fail(format!(
                "sale {id} says {} refunded, its refunds add up to {total}",
                int(b, "refunded_total")
            ));
        }
        for line in b["lines"].as_array().into_iter().flatten() {
            let no = line["line_no"].as_u64().unwrap_or(0);
            let qty = line["refunded_qty_milli"].as_i64().unwrap_or(0);
            if qty != lines.get(&no).copied().unwrap_or(0) {
                return fail(format!(
                    "sale {id} line {no} says {qty} refunded, its refunds say {:?}",
                    lines.get(&no)
                ));
            }
        }
    }
    Ok(())
}

/// Runs one seed; `Err` says what broke.
fn run_seed(seed: u64, trace: bool) -> (Outcome<()>, Stats, Vec<String>) {
    let mut world = World::new(seed);
    let outcome = catch_unwind(AssertUnwindSafe(|| world.run())).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        fail(format!("panicked: {message}"))
    });
    let stats = world.stats;
    let lines = std::mem::take(&mut world.trace);
    if trace {
        for line in &lines {
            eprintln!("{line}");
        }
    }
    world.devices.clear();
    world.head.stop();
    (outcome, stats, lines)
}

/// The till process: opens the store it is given and syncs, printing each
/// sync event, until it is killed (or finishes).
fn child(spec: &str) {
    let parts: Vec<&str> = spec.split('\n').collect();
    let [path, store_code, device_code, url, token, batch, page] = parts[..] else {
        panic!("bad child spec");
    };
    // Never outlive a driver that stopped reading.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(60));
        std::process::exit(3);
    });
    let store = Store::open(StoreOptions::new(path, TENANT, store_code, device_code))
        .expect("child opens its store");
    let mut config = SyncConfig::new(url, token);
    config.push_batch = batch.parse().expect("batch");
    config.pull_page = page.parse().expect("page");
    config.base_delay = Duration::from_millis(5);
    config.max_delay = Duration::from_millis(50);
    config.max_attempts = 4;
    println!("opened");
    match store.sync(&config, &PrintEvents) {
        Ok(s) => println!("end: synced, pushed {} pulled {}", s.pushed, s.pulled),
        Err(e) => println!("end: {e}"),
    }
}

/// Prints each sync event (stdout is line-buffered: each line leaves at once).
struct PrintEvents;

impl SyncObserver for PrintEvents {
    fn phase(&self, phase: till_core::sync::SyncPhase) {
        println!("event phase {phase:?}");
    }
    fn pushed(&self, acknowledged: usize, quarantined: usize) {
        println!("event pushed {acknowledged} {quarantined}");
    }
    fn pulled(&self, changes: usize, cursor: i64) {
        println!("event pulled {changes} {cursor}");
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    // As libtest does: `--list` lists, and a name filter that does not
    // match this test's name skips it (`cargo test -p till-e2e -- merge`).
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("convergence: test");
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| "convergence".contains(f.as_str())) {
        println!("convergence: filtered out");
        return;
    }
    let (seeds, trace): (Vec<u64>, bool) = match env_u64("TILL_CONVERGENCE_SEED") {
        Some(seed) => (vec![seed], true),
        None => {
            let from = env_u64("TILL_CONVERGENCE_FROM").unwrap_or(0);
            let count = env_u64("TILL_CONVERGENCE_SEEDS").unwrap_or(CI_SEEDS);
            ((from..from + count).collect(), false)
        }
    };
    let jobs = env_u64("TILL_CONVERGENCE_JOBS")
        .map(|j| j as usize)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .clamp(1, seeds.len().max(1));
    println!(
        "convergence: seeds {}..={} on {jobs} thread(s)",
        seeds.first().copied().unwrap_or(0),
        seeds.last().copied().unwrap_or(0)
    );
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&seed) = seeds.get(i) else { break };
                let result = run_seed(seed, trace);
                if let Err(e) = &result.0 {
                    // Said at once: a long run may have hours to go.
                    eprintln!("seed {seed} failed: {e}");
                }
                results
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((seed, result));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(PoisonError::into_inner);
    results.sort_by_key(|(seed, _)| *seed);
    let mut total = Stats::default();
    let mut failed = Vec::new();
    for (seed, (outcome, stats, lines)) in &results {
        total.add(stats);
        if let Err(e) = outcome {
            failed.push(*seed);
            eprintln!("\nseed {seed} failed: {e}");
            if !trace {
                for line in lines.iter().rev().take(25).rev() {
                    eprintln!("    {line}");
                }
            }
            eprintln!(
                "  replay: TILL_CONVERGENCE_SEED={seed} cargo test -p till-e2e --test convergence"
            );
        }
    }
    println!(
        "{} seeds in {:.1} s ({jobs} at once): {} operations, {} syncs ({} cut short by \
         faults), {} answers dropped ({} of pushes the server committed), {} requests \
         duplicated, {} server restarts ({} inside a sync), {} till processes killed \
         mid-sync, {} changes quarantined, {} customers merged by the server",
        results.len(),
        started.elapsed().as_secs_f64(),
        total.ops,
        total.syncs,
        total.syncs_cut_short,
        total.dropped,
        total.dropped_pushes,
        total.duplicated,
        total.restarts,
        total.mid_sync_restarts,
        total.kills,
        total.quarantined,
        total.merges,
    );
    // Over a real run every fault must have happened, or the test proves less
    // than it claims.
    if seeds.len() >= 20 {
        let missing: Vec<&str> = [
            ("dropped answers to pushes", total.dropped_pushes),
            ("duplicated requests", total.duplicated),
            ("restarts", total.restarts),
            ("restarts inside a sync", total.mid_sync_restarts),
            ("kills", total.kills),
            ("merges", total.merges),
        ]
        .into_iter()
        .filter(|(_, n)| *n == 0)
        .map(|(what, _)| what)
        .collect();
        if !missing.is_empty() {
            eprintln!("no {missing:?} were injected");
            failed.push(u64::MAX);
        }
    }
    if failed.is_empty() {
        println!("1 passed, 0 failed");
    } else {
        println!("0 passed, 1 failed");
        std::process::exit(1);
    }
}
