//! The sync benchmark: tills syncing through a real `till-server` over
//! loopback on this machine, with the raw SQLite baseline measured in the
//! same run.
//!
//! Run: `cargo bench -p till-sync-server --bench sync` (full scale) or
//! `... --bench sync -- --quick` (about two minutes on a 2-core machine).
//! Everything lives in a temporary folder (`TMPDIR` moves it); figures are
//! printed as a table and written to `target/bench/sync.json`.
//!
//! The server is the real router (`till_sync_server::router`) over the
//! SQLite backend, served by axum on 127.0.0.1 with one extra layer that
//! counts the HTTP requests it answers. Tills are real `till-core` stores
//! calling `Store::sync`.
//!
//! Figures (targets from the project brief):
//! - `sync.drain_1000_s` (<= 1.0) and `sync.drain_1000_requests` (<= 4): a
//!   till that sold 1,000 bills offline (through `Store::sell`, for 50
//!   known customers) syncs, then a second till of its store syncs; the
//!   time from the first sync's start until the second has every bill, and
//!   every HTTP request both made (pushes and pulls);
//! - `sync.bootstrap_s` (<= 30) and `sync.bootstrap_peak_mb` (<= 300): a
//!   new till of a store holding 100,000 customers and 1,000,000 bills
//!   (full scale; quick: 20,000 and 200,000) syncs from an empty file. It
//!   runs as a child process, so its memory is its own: the peak is the
//!   growth of its resident set (`VmHWM` at its end less `VmRSS` before the
//!   sync, from `/proc/self/status`), over the sync and the ranked search
//!   index rebuilding after it (`sync.bootstrap_search_ready_s`). The data
//!   set is pushed through the storage interface (the path a push takes
//!   once HTTP has decoded it), from changes shaped exactly as tills make
//!   them (`Bill` and `Customer` values of till-core, serialised), and
//!   cached under `target/bench/sync-data-*` (each run bootstraps from a
//!   copy of it);
//! - `sync.apply_ratio` (>= 0.5): a till pulling 20,000 (quick) or 100,000
//!   (full) changes, 90% new bills of 1 to 6 lines, 10% new customers:
//!   changes applied per second of its `Store::sync`, over the raw rate of
//!   upserting the same rows (customer, bill, lines, payments) with plain
//!   prepared statements into a SQLite file (WAL, `synchronous=NORMAL`,
//!   primary keys only), one transaction per page of 1,000 changes. Both
//!   are sampled in alternating rounds; the medians are compared;
//! - `sync.server_changes_per_s` (>= 10,000): 50 tills of 5 stores pushing
//!   at once, each its outbox of new customers and bills in pushes of 100
//!   changes, sent as prepared JSON bodies so the clients' own cost stays
//!   out; accepted changes per second of wall time, and the p99 latency of
//!   one push (`sync.push_100_p99_ms`);
//! - `sync.compact_*`: compacting the bootstrap tenant's whole log.

/// The allocator `till-server` ships with (see its `main.rs`), so the server
/// measured here allocates as the real one does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::error::Error;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{named_params, Connection, TransactionBehavior};
use serde_json::{Map, Value};
use till_bench::{Args, Report, Samples, Scale, Target};
use till_core::bills::totals;
use till_core::clock::Hlc;
use till_core::customers::Phone;
use till_core::{
    Address, Bill, BillKind, BillLine, BillStatus, Change, Customer, NewBill, NewLine,
    NoopObserver, Payment, PriceMode, Stage, Store, StoreOptions, SyncConfig, Tender, TenderMethod,
};
use till_sync_server::auth::{self, DeviceScope};
use till_sync_server::storage::sqlite::{SqliteStorage, SCHEMA_VERSION};
use till_sync_server::storage::{Horizon, Storage};
use till_sync_server::{now_ms, router, AppState, Limits};
use tokio::runtime::Runtime;
use uuid::Uuid;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// The environment variable that makes this binary the bootstrapping till.
const CHILD: &str = "TILL_SYNC_BENCH_CHILD";
/// Changes per push when populating and when 50 tills push at once.
const PUSH: usize = 100;
/// Changes per page of the raw baseline's transactions: a full pull page.
const RAW_PAGE: usize = 1_000;
/// The version of the cached bootstrap data set's generator: bump it when
/// the generated changes change (the server schema's version is in the
/// folder name too).
const DATA_VERSION: u32 = 2;
/// Tills pushing at once.
const PUSHERS: usize = 50;
/// The name of the server's threads, to tell their CPU time from the tills'.
const SERVER_THREAD: &str = "till-server";

/// How big a run is.
#[derive(Debug)]
struct Plan {
    customers: usize,
    bills: usize,
    apply_changes: usize,
    apply_rounds: usize,
    changes_per_pusher: usize,
}

impl Plan {
    fn new(scale: Scale) -> Plan {
        Plan {
            customers: scale.pick(20_000, 100_000),
            bills: scale.pick(200_000, 1_000_000),
            apply_changes: scale.pick(20_000, 100_000),
            apply_rounds: scale.pick(3, 3),
            changes_per_pusher: scale.pick(400, 2_000),
        }
    }
}

fn main() -> Res<()> {
    if std::env::var_os(CHILD).is_some() {
        return bootstrapping_till();
    }
    let args = Args::from_env();
    let scale = args.scale();
    let plan = Plan::new(scale);
    eprintln!("sync benchmark, {} scale: {plan:?}", scale.name());
    let dir = tempfile::Builder::new()
        .prefix("till-bench-sync-")
        .tempdir()?;
    let mut report = Report::new("sync", scale);
    report.scale_param("customers", plan.customers as f64);
    report.scale_param("bills", plan.bills as f64);
    report.scale_param("apply_changes", plan.apply_changes as f64);
    report.scale_param("pushers", PUSHERS as f64);
    report.scale_param("changes_per_pusher", plan.changes_per_pusher as f64);
    report.machine("start");
    let started = Instant::now();
    let server = BenchServer::start(&dir.path().join("server"))?;

    // `TILL_SYNC_BENCH_ONLY=drain,apply,push,bootstrap` runs some phases
    // only (when profiling one); all run when it is unset.
    let only = std::env::var("TILL_SYNC_BENCH_ONLY").ok();
    let runs = |phase: &str| {
        only.as_ref()
            .is_none_or(|o| o.split(',').any(|p| p == phase))
    };
    if runs("drain") {
        drain(&server, dir.path(), &mut report)?;
    }
    if runs("apply") {
        apply(&server, dir.path(), &plan, &mut report)?;
    }
    if runs("push") {
        push_at_once(&server, &plan, &mut report)?;
    }
    if runs("bootstrap") {
        bootstrap(dir.path(), &plan, &mut report)?;
    }

    report.figure("sync.run_s", started.elapsed().as_secs_f64(), "s", None);
    report.machine("end");
    server.stop()?;
    println!();
    report.print_table();
    let json = report.write_json()?;
    println!("wrote {}", json.display());
    for missed in report.missed() {
        println!("target missed: {} = {:.3}", missed.name, missed.value);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The server

/// The real server on 127.0.0.1 port 0, counting the requests it answers.
struct BenchServer {
    url: String,
    storage: SqliteStorage,
    runtime: Runtime,
    requests: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl BenchServer {
    fn start(data: &Path) -> Res<BenchServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(SERVER_THREAD)
            // Kept alive across phases, so their CPU time stays countable.
            .thread_keep_alive(Duration::from_secs(3_600))
            .enable_all()
            .build()?;
        let storage = SqliteStorage::open(data)?;
        let requests = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&requests);
        let app = router(AppState::new(Arc::new(storage.clone()), Limits::default())).layer(
            middleware::from_fn(move |req: Request, next: Next| {
                let counter = Arc::clone(&counter);
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let response: Response = next.run(req).await;
                    response
                }
            }),
        );
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = runtime.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    stopped.await.ok();
                })
                .await
        });
        Ok(BenchServer {
            url,
            storage,
            runtime,
            requests,
            stop: Some(stop),
            task: Some(task),
        })
    }

    fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// A tenant with stores `S1` to `S{stores}`.
    fn tenant(&self, tenant: &str, stores: usize) -> Res<()> {
        self.block(async {
            self.storage.create_tenant(tenant, tenant, now_ms()).await?;
            for s in 1..=stores {
                let store = format!("S{s}");
                self.storage
                    .create_store(tenant, &store, &store, now_ms())
                    .await?;
            }
            Res::Ok(())
        })
    }

    /// Enrolls a device; returns its token.
    fn enroll(&self, scope: &DeviceScope) -> Res<String> {
        let token = auth::new_token();
        self.block(
            self.storage
                .enroll_device(scope, &auth::token_hash(&token), now_ms()),
        )?;
        Ok(token)
    }

    fn config(&self, token: String) -> SyncConfig {
        SyncConfig::new(self.url.clone(), token)
    }

    fn stop(mut self) -> Res<()> {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(task) = self.task.take() {
            self.runtime.block_on(task)??;
        }
        Ok(())
    }
}

fn scope(tenant: &str, store: &str, device: &str) -> DeviceScope {
    DeviceScope {
        tenant: tenant.into(),
        store: store.into(),
        device: device.into(),
    }
}

/// A till of `scope` over a new file in `dir`, with its sync settings.
fn till(server: &BenchServer, dir: &Path, scope: &DeviceScope) -> Res<(Store, SyncConfig)> {
    let path = dir.join(format!(
        "{}-{}-{}.db",
        scope.tenant, scope.store, scope.device
    ));
    let store = Store::open(StoreOptions::new(
        path,
        &scope.tenant,
        &scope.store,
        &scope.device,
    ))?;
    store.set_staff("priya")?;
    Ok((store, server.config(server.enroll(scope)?)))
}

// ---------------------------------------------------------------------------
// Changes shaped as tills make them

/// Names, products and phone numbers to draw from.
struct Generator {
    rng: StdRng,
    first: Vec<&'static str>,
    last: Vec<&'static str>,
    items: Vec<&'static str>,
    clock: Option<Hlc>,
}

const FIRST_NAMES: &str = "Asha Ravi Priya Arjun Meera Vikram Ananya Rahul Kavya Suresh Lakshmi \
    Imran Fatima Rohan Sneha Karthik Divya Manoj Pooja Sanjay Neha Aditya Deepa Harish Nisha \
    Gopal Swati Farhan Anjali Vivek Revathi Naveen Shalini Prakash Zoya Mahesh Bhavna Tarun";
const LAST_NAMES: &str = "Rao Kumar Sharma Iyer Nair Reddy Patel Singh Khan Gupta Das Menon \
    Pillai Joshi Mehta Shetty Verma Bose Chatterjee Desai Kulkarni Naidu Hegde Kapoor Mishra \
    Agarwal Banerjee Fernandes Qureshi";
const ITEMS: &str = "Assam Tea|Basmati Rice|Toor Dal|Sunflower Oil|Sandal Soap|Atta|Sugar|Ghee|\
    Paneer|Curd|Milk|Biscuits|Namkeen|Turmeric|Chilli Powder|Cumin|Shampoo|Toothpaste|Detergent|\
    Dishwash Bar|Coffee|Jaggery|Poha|Rava|Besan|Cashews|Almonds|Pickle|Papad|Agarbatti";

/// A 10-digit Indian mobile number, distinct for each `i` below 900 million
/// (the store benchmark's numbering).
fn mobile(i: u64) -> u64 {
    let r = i.wrapping_mul(282_475_249) % 900_000_000;
    let second = [0, 2, 3, 4, 5, 6, 7, 8, 9][(r / 100_000_000) as usize];
    9_000_000_000 + second * 100_000_000 + r % 100_000_000
}

/// A record as a change records a create: its fields less the bookkeeping
/// ones, without nulls.
fn create_fields<T: serde::Serialize>(record: &T, derived: &[&str]) -> Res<Map<String, Value>> {
    let Value::Object(mut map) = serde_json::to_value(record)? else {
        return Err("a record serialises as an object".into());
    };
    for key in derived {
        map.remove(*key);
    }
    map.retain(|_, v| !v.is_null());
    Ok(map)
}

impl Generator {
    fn new(seed: u64) -> Generator {
        Generator {
            rng: StdRng::seed_from_u64(seed),
            first: FIRST_NAMES.split_whitespace().collect(),
            last: LAST_NAMES.split_whitespace().collect(),
            items: ITEMS.split('|').map(str::trim).collect(),
            clock: None,
        }
    }

    fn stamp(&mut self, node: &str) -> Hlc {
        let next = Hlc::tick(self.clock.as_ref(), now_ms(), node);
        self.clock = Some(next.clone());
        next
    }

    fn change(
        &mut self,
        scope: &DeviceScope,
        entity: &str,
        id: Uuid,
        op: &str,
        fields: Map<String, Value>,
    ) -> Change {
        let node = format!("{}/{}", scope.store, scope.device);
        let hlc = self.stamp(&node);
        Change {
            change_id: Uuid::now_v7(),
            entity: entity.into(),
            entity_id: id.to_string(),
            op: op.into(),
            fields,
            before: Map::new(),
            at_ms: hlc.wall_ms,
            hlc: hlc.to_string(),
            device: node,
            staff: "priya".into(),
        }
    }

    /// Customer number `n` of `scope`'s till, with phone `phone_index`.
    fn customer(
        &mut self,
        scope: &DeviceScope,
        n: u64,
        phone_index: u64,
    ) -> Res<(Uuid, String, Change)> {
        let digits = mobile(phone_index).to_string();
        let (a, b) = digits.split_at(5);
        let e164 = format!("+91{digits}");
        let name = format!(
            "{} {}",
            self.first[self.rng.random_range(0..self.first.len())],
            self.last[self.rng.random_range(0..self.last.len())]
        );
        let now = now_ms();
        let customer = Customer {
            id: Uuid::now_v7(),
            number: format!("{}-{}-C{n:06}", scope.store, scope.device),
            name,
            phone: Some(Phone {
                raw: format!("{a} {b}"),
                e164: e164.clone(),
                shared: false,
            }),
            email: None,
            address: Address::default(),
            stage: Stage::New,
            tags: Vec::new(),
            notes: String::new(),
            birthday: None,
            created_at_ms: now,
            updated_at_ms: now,
            version: 1,
            deleted_at_ms: None,
            merged_into: None,
            erased_at_ms: None,
        };
        let fields = create_fields(&customer, &["id", "version", "updated_at_ms"])?;
        Ok((
            customer.id,
            e164,
            self.change(scope, "customer", customer.id, "create", fields),
        ))
    }

    /// Paid bill number `n` of `scope`'s till, of 1 to 6 lines, for
    /// `customer` (id and phone) or a walk-in.
    fn bill(&mut self, scope: &DeviceScope, n: i64, customer: Option<(Uuid, &str)>) -> Res<Change> {
        let lines: Vec<NewLine> = (0..self.rng.random_range(1..=6))
            .map(|_| {
                let item = self.items[self.rng.random_range(0..self.items.len())];
                let price = self.rng.random_range(10..500) * 100;
                NewLine::item(
                    &item.to_uppercase().replace(' ', "-"),
                    item,
                    self.rng.random_range(1..4),
                    price,
                )
                .taxed("GST5", 500)
            })
            .collect();
        let mut lines: Vec<BillLine> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| BillLine::unpriced(i as u32 + 1, l))
            .collect();
        let t = totals::compute(&mut lines, 0, PriceMode::Exclusive)?;
        let now = now_ms();
        let hash = |k: u64| {
            format!(
                "{:064x}",
                (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ k
            )
        };
        let bill = Bill {
            id: Uuid::now_v7(),
            number: format!("{}-{}-{n:06}", scope.store, scope.device),
            store_id: scope.store.clone(),
            device_id: scope.device.clone(),
            staff_id: "priya".into(),
            customer_id: customer.map(|(id, _)| id),
            customer_phone: customer.map(|(_, phone)| phone.to_owned()),
            currency: "INR".into(),
            price_mode: PriceMode::Exclusive,
            kind: BillKind::Sale,
            refund_of: None,
            status: BillStatus::Paid,
            bill_discount: 0,
            subtotal: t.subtotal,
            discount_total: t.discount,
            tax_total: t.tax,
            total: t.total,
            paid_total: t.total,
            change_due: 0,
            refunded_total: 0,
            opened_at_ms: now,
            closed_at_ms: Some(now),
            voided_at_ms: None,
            chain_pos: Some(n),
            prev_hash: Some(hash(1)),
            hash: Some(hash(2)),
            version: 1,
            last_line_no: lines.len() as u32,
            void_seal: None,
            lines,
            payments: vec![Payment {
                seq: 1,
                method: TenderMethod::Cash,
                amount: t.total,
                tendered: t.total,
                reference: String::new(),
            }],
        };
        let fields = create_fields(&bill, &["id", "version"])?;
        Ok(self.change(scope, "bill", bill.id, "sell", fields))
    }
}

/// The customers and bills of one till as changes, in the order it made
/// them: a new customer before every tenth bill, the bills for earlier
/// customers (15% walk-ins). Phones are numbered from `phone_base`.
fn outbox(
    gen: &mut Generator,
    scope: &DeviceScope,
    changes: usize,
    phone_base: u64,
) -> Res<Vec<Change>> {
    let mut out = Vec::with_capacity(changes);
    let mut customers: Vec<(Uuid, String)> = Vec::new();
    let mut bills = 0;
    while out.len() < changes {
        if out.len() % 10 == 0 {
            let n = customers.len() as u64 + 1;
            let (id, phone, change) = gen.customer(scope, n, phone_base + n)?;
            customers.push((id, phone));
            out.push(change);
            continue;
        }
        bills += 1;
        let who = (!gen.rng.random_bool(0.15))
            .then(|| gen.rng.random_range(0..customers.len()))
            .map(|i| (customers[i].0, customers[i].1.as_str()));
        out.push(gen.bill(scope, bills, who)?);
    }
    Ok(out)
}

/// A pushed change read back as the record it creates.
fn record_of<T: serde::de::DeserializeOwned>(
    change: &Change,
    bookkeeping: &[(&str, Value)],
) -> Res<T> {
    let mut fields = change.fields.clone();
    fields.insert("id".into(), Value::String(change.entity_id.clone()));
    for (key, value) in bookkeeping {
        fields.insert((*key).into(), value.clone());
    }
    Ok(serde_json::from_value(Value::Object(fields))?)
}

/// Applies `changes` of `scope`'s till through the storage interface, in
/// pushes of [`PUSH`], each change checked as the push handler checks it.
fn populate(server: &BenchServer, scope: &DeviceScope, changes: &[Change]) -> Res<()> {
    for batch in changes.chunks(PUSH) {
        let checked = batch
            .iter()
            .map(|c| {
                till_sync_server::sync::apply::check(scope, &serde_json::value::to_raw_value(c)?)
                    .map_err(|(_, r)| format!("generated change refused: {}", r.message).into())
            })
            .collect::<Res<Vec<Change>>>()?;
        let outcomes = server.block(server.storage.push(scope, checked, now_ms()))?;
        if let Some(bad) = outcomes
            .iter()
            .find(|o| !matches!(o, till_core::sync::protocol::PushOutcome::Accepted { .. }))
        {
            return Err(format!("generated change not accepted: {bad:?}").into());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 1,000 offline bills reach a second till

fn drain(server: &BenchServer, dir: &Path, report: &mut Report) -> Res<()> {
    eprintln!("  drain: 1,000 offline bills");
    server.tenant("drain", 1)?;
    let (a, a_config) = till(server, dir, &scope("drain", "S1", "T1"))?;
    let (b, b_config) = till(server, dir, &scope("drain", "S1", "T2"))?;
    let mut gen = Generator::new(1);
    let customers = (0..50)
        .map(|i| {
            let digits = mobile(900_000 + i).to_string();
            let name = format!(
                "{} {}",
                gen.first[i as usize % gen.first.len()],
                gen.last[i as usize % gen.last.len()]
            );
            Ok(
                a.create_customer(till_core::NewCustomer::named(&name).with_phone(&digits))?
                    .id,
            )
        })
        .collect::<Res<Vec<Uuid>>>()?;
    a.sync(&a_config, &NoopObserver)?;
    b.sync(&b_config, &NoopObserver)?;

    let mut sold = Vec::with_capacity(1_000);
    for i in 0..1_000 {
        let lines: Vec<NewLine> = (0..gen.rng.random_range(1..=6))
            .map(|_| {
                let item = gen.items[gen.rng.random_range(0..gen.items.len())];
                NewLine::item(
                    item,
                    item,
                    gen.rng.random_range(1..4),
                    gen.rng.random_range(10..500) * 100,
                )
                .taxed("GST5", 500)
            })
            .collect();
        let cash: i64 = lines
            .iter()
            .map(|l| l.qty_milli / 1_000 * l.unit_price)
            .sum::<i64>()
            * 2;
        let customer = (i % 7 != 0).then(|| customers[i % customers.len()]);
        let bill = a.sell(
            NewBill {
                customer_id: customer,
                lines,
                ..NewBill::default()
            },
            &[Tender::cash(cash)],
        )?;
        sold.push(bill.id);
    }

    let before = server.requests.load(Ordering::Relaxed);
    let started = Instant::now();
    let pushed = a.sync(&a_config, &NoopObserver)?;
    let pulled = b.sync(&b_config, &NoopObserver)?;
    let took = started.elapsed();
    let requests = server.requests.load(Ordering::Relaxed) - before;
    if pushed.pushed != 1_000
        || pulled.pulled != 1_000
        || sold.iter().any(|id| b.bill(*id).is_err())
    {
        return Err(format!("drain incomplete: {pushed:?} {pulled:?}").into());
    }
    report.figure(
        "sync.drain_1000_s",
        took.as_secs_f64(),
        "s",
        Some(Target::AtMost(1.0)),
    );
    report.figure(
        "sync.drain_1000_requests",
        requests as f64,
        "",
        Some(Target::AtMost(4.0)),
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Incremental apply against raw upserts

fn apply(server: &BenchServer, dir: &Path, plan: &Plan, report: &mut Report) -> Res<()> {
    let n = plan.apply_changes;
    eprintln!("  apply: {n} changes, {} rounds", plan.apply_rounds);
    server.tenant("apply", 1)?;
    let producer = scope("apply", "S1", "T1");
    let tills = (0..plan.apply_rounds)
        .map(|r| {
            let (store, config) = till(server, dir, &scope("apply", "S1", &format!("C{r}")))?;
            // Bootstrapped while the tenant is empty: what follows is pulled.
            store.sync(&config, &NoopObserver)?;
            Ok((store, config))
        })
        .collect::<Res<Vec<_>>>()?;
    let changes = outbox(&mut Generator::new(2), &producer, n, 100_000_000)?;
    populate(server, &producer, &changes)?;
    let rows = changes.iter().map(RawRow::of).collect::<Res<Vec<_>>>()?;
    let (mut till_rates, mut raw_rates) = (Vec::new(), Vec::new());
    let (mut till_cpu, mut server_cpu, mut raw_cpu) = (Vec::new(), Vec::new(), Vec::new());
    for (round, (store, config)) in tills.iter().enumerate() {
        let mut raw = RawReplica::create(&dir.join(format!("raw-{round}.db")))?;
        let (_, cpu) = thread_cpu_s()?;
        let started = Instant::now();
        raw.upsert(&rows)?;
        raw_rates.push(n as f64 / started.elapsed().as_secs_f64());
        raw_cpu.push((thread_cpu_s()?.1 - cpu) * 1e6 / n as f64);
        let (server, cpu) = thread_cpu_s()?;
        let started = Instant::now();
        let summary = store.sync(config, &NoopObserver)?;
        let took = started.elapsed().as_secs_f64();
        let (server_after, cpu_after) = thread_cpu_s()?;
        if summary.pulled != n || summary.applied != n {
            return Err(format!("pulled {summary:?}, expected {n} changes").into());
        }
        till_rates.push(n as f64 / took);
        till_cpu.push((cpu_after - cpu) * 1e6 / n as f64);
        server_cpu.push((server_after - server) * 1e6 / n as f64);
    }
    let (till_rate, raw_rate) = (median(&till_rates), median(&raw_rates));
    report.figure("sync.apply_changes_per_s", till_rate, "1/s", None);
    report.figure("sync.raw_upserts_per_s", raw_rate, "1/s", None);
    report.figure(
        "sync.apply_ratio",
        till_rate / raw_rate,
        "x",
        Some(Target::AtLeast(0.5)),
    );
    let (till_cpu, raw_cpu) = (median(&till_cpu), median(&raw_cpu));
    report.figure("sync.apply_till_cpu_us_per_change", till_cpu, "us", None);
    report.figure(
        "sync.apply_server_cpu_us_per_change",
        median(&server_cpu),
        "us",
        None,
    );
    report.figure("sync.raw_cpu_us_per_row", raw_cpu, "us", None);
    report.figure("sync.apply_ratio_cpu", raw_cpu / till_cpu, "x", None);
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One pulled record as plain rows.
enum RawRow {
    Customer(Customer),
    Bill(Bill),
}

impl RawRow {
    fn of(change: &Change) -> Res<RawRow> {
        Ok(match change.entity.as_str() {
            "customer" => RawRow::Customer(record_of(
                change,
                &[
                    ("version", 1.into()),
                    ("updated_at_ms", change.at_ms.into()),
                ],
            )?),
            _ => RawRow::Bill(record_of(change, &[("version", 1.into())])?),
        })
    }
}

/// The same rows in plain SQLite: primary keys only, no change log, no
/// metrics, no search rows, no checks. The floor a till's apply is held to.
struct RawReplica {
    conn: Connection,
}

impl RawReplica {
    fn create(path: &Path) -> Res<RawReplica> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE customers (
                 id TEXT PRIMARY KEY, number TEXT NOT NULL, name TEXT NOT NULL, phone_raw TEXT,
                 phone_e164 TEXT, stage TEXT NOT NULL, tags TEXT NOT NULL, notes TEXT NOT NULL,
                 created_at INTEGER NOT NULL, deleted_at INTEGER);
             CREATE TABLE bills (
                 id TEXT PRIMARY KEY, number TEXT NOT NULL, store_id TEXT NOT NULL,
                 device_id TEXT NOT NULL, staff_id TEXT NOT NULL, customer_id TEXT,
                 customer_phone TEXT, currency TEXT NOT NULL, kind TEXT NOT NULL,
                 status TEXT NOT NULL, subtotal INTEGER NOT NULL, tax_total INTEGER NOT NULL,
                 total INTEGER NOT NULL, paid_total INTEGER NOT NULL, opened_at INTEGER NOT NULL,
                 closed_at INTEGER, hash TEXT);
             CREATE TABLE lines (
                 bill_id TEXT NOT NULL, line_no INTEGER NOT NULL, product_code TEXT NOT NULL,
                 name TEXT NOT NULL, qty_milli INTEGER NOT NULL, unit_price INTEGER NOT NULL,
                 tax_rate_bp INTEGER NOT NULL, net INTEGER NOT NULL, tax INTEGER NOT NULL,
                 gross INTEGER NOT NULL, PRIMARY KEY (bill_id, line_no)) WITHOUT ROWID;
             CREATE TABLE payments (
                 bill_id TEXT NOT NULL, seq INTEGER NOT NULL, method TEXT NOT NULL,
                 amount INTEGER NOT NULL, tendered INTEGER NOT NULL,
                 PRIMARY KEY (bill_id, seq)) WITHOUT ROWID;",
        )?;
        Ok(RawReplica { conn })
    }

    /// Upserts `rows`, one transaction per [`RAW_PAGE`].
    fn upsert(&mut self, rows: &[RawRow]) -> Res<()> {
        for page in rows.chunks(RAW_PAGE) {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut customer = tx.prepare_cached(
                    "INSERT INTO customers (id, number, name, phone_raw, phone_e164, stage, tags,
                         notes, created_at, deleted_at)
                     VALUES (:id, :number, :name, :raw, :e164, :stage, :tags, :notes, :created,
                         :deleted)
                     ON CONFLICT (id) DO UPDATE SET number = excluded.number,
                         name = excluded.name, phone_raw = excluded.phone_raw,
                         phone_e164 = excluded.phone_e164, stage = excluded.stage,
                         tags = excluded.tags, notes = excluded.notes,
                         deleted_at = excluded.deleted_at",
                )?;
                let mut bill = tx.prepare_cached(
                    "INSERT INTO bills (id, number, store_id, device_id, staff_id, customer_id,
                         customer_phone, currency, kind, status, subtotal, tax_total, total,
                         paid_total, opened_at, closed_at, hash)
                     VALUES (:id, :number, :store, :device, :staff, :customer, :phone, :currency,
                         :kind, :status, :subtotal, :tax, :total, :paid, :opened, :closed, :hash)
                     ON CONFLICT (id) DO UPDATE SET customer_id = excluded.customer_id,
                         status = excluded.status, paid_total = excluded.paid_total,
                         closed_at = excluded.closed_at, hash = excluded.hash",
                )?;
                let mut line = tx.prepare_cached(
                    "INSERT INTO lines (bill_id, line_no, product_code, name, qty_milli,
                         unit_price, tax_rate_bp, net, tax, gross)
                     VALUES (:bill, :no, :code, :name, :qty, :price, :rate, :net, :tax, :gross)
                     ON CONFLICT (bill_id, line_no) DO UPDATE SET qty_milli = excluded.qty_milli,
                         net = excluded.net, tax = excluded.tax, gross = excluded.gross",
                )?;
                let mut payment = tx.prepare_cached(
                    "INSERT INTO payments (bill_id, seq, method, amount, tendered)
                     VALUES (:bill, :seq, :method, :amount, :tendered)
                     ON CONFLICT (bill_id, seq) DO NOTHING",
                )?;
                for row in page {
                    match row {
                        RawRow::Customer(c) => {
                            customer.execute(named_params! {
                                ":id": c.id.to_string(), ":number": c.number, ":name": c.name,
                                ":raw": c.phone.as_ref().map(|p| &p.raw),
                                ":e164": c.phone.as_ref().map(|p| &p.e164),
                                ":stage": c.stage.as_str(),
                                ":tags": serde_json::to_string(&c.tags)?, ":notes": c.notes,
                                ":created": c.created_at_ms, ":deleted": c.deleted_at_ms,
                            })?;
                        }
                        RawRow::Bill(b) => {
                            let id = b.id.to_string();
                            bill.execute(named_params! {
                                ":id": id, ":number": b.number, ":store": b.store_id,
                                ":device": b.device_id, ":staff": b.staff_id,
                                ":customer": b.customer_id.map(|c| c.to_string()),
                                ":phone": b.customer_phone, ":currency": b.currency,
                                ":kind": b.kind.as_str(), ":status": b.status.as_str(),
                                ":subtotal": b.subtotal, ":tax": b.tax_total, ":total": b.total,
                                ":paid": b.paid_total, ":opened": b.opened_at_ms,
                                ":closed": b.closed_at_ms, ":hash": b.hash,
                            })?;
                            for l in &b.lines {
                                line.execute(named_params! {
                                    ":bill": id, ":no": l.line_no, ":code": l.product_code,
                                    ":name": l.name, ":qty": l.qty_milli, ":price": l.unit_price,
                                    ":rate": l.tax_rate_bp, ":net": l.net, ":tax": l.tax,
                                    ":gross": l.gross,
                                })?;
                            }
                            for p in &b.payments {
                                payment.execute(named_params! {
                                    ":bill": id, ":seq": p.seq, ":method": p.method.as_str(),
                                    ":amount": p.amount, ":tendered": p.tendered,
                                })?;
                            }
                        }
                    }
                }
            }
            tx.commit()?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// 50 tills pushing at once

fn push_at_once(server: &BenchServer, plan: &Plan, report: &mut Report) -> Res<()> {
    let per = plan.changes_per_pusher;
    eprintln!("  {PUSHERS} tills pushing {per} changes each at once");
    server.tenant("rush", 5)?;
    let mut gen = Generator::new(3);
    let mut pushers = Vec::with_capacity(PUSHERS);
    for d in 0..PUSHERS {
        let scope = scope(
            "rush",
            &format!("S{}", d % 5 + 1),
            &format!("T{}", d / 5 + 1),
        );
        let token = server.enroll(&scope)?;
        let changes = outbox(&mut gen, &scope, per, 200_000_000 + d as u64 * 100_000)?;
        let bodies = changes
            .chunks(PUSH)
            .map(|batch| {
                serde_json::to_vec(&till_core::sync::protocol::PushRequest {
                    changes: batch.to_vec(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        pushers.push((token, bodies));
    }
    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/push", server.url);
    let (server_cpu, _) = thread_cpu_s()?;
    let started = Instant::now();
    let results = clients.block_on(async {
        let tasks: Vec<_> = pushers
            .into_iter()
            .map(|(token, bodies)| {
                let (http, url) = (http.clone(), url.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(bodies.len());
                    let mut accepted = 0usize;
                    for body in bodies {
                        let sent = Instant::now();
                        let response = http
                            .post(&url)
                            .header(
                                till_core::sync::protocol::PROTOCOL_HEADER,
                                till_core::sync::protocol::PROTOCOL_VERSION.to_string(),
                            )
                            .header(reqwest::header::CONTENT_TYPE, "application/json")
                            .bearer_auth(&token)
                            .body(body)
                            .send()
                            .await?;
                        if !response.status().is_success() {
                            return Err(format!("push answered {}", response.status()).into());
                        }
                        let answer: till_core::sync::protocol::PushResponse =
                            response.json().await?;
                        latencies.push(sent.elapsed());
                        accepted += answer
                            .results
                            .iter()
                            .filter(|r| {
                                matches!(
                                    r.outcome,
                                    till_core::sync::protocol::PushOutcome::Accepted { .. }
                                )
                            })
                            .count();
                    }
                    Res::Ok((accepted, latencies))
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.push(task.await?);
        }
        Res::Ok(all)
    })?;
    let wall = started.elapsed().as_secs_f64();
    let server_cpu = thread_cpu_s()?.0 - server_cpu;
    let mut latencies = Samples::new();
    let mut accepted = 0;
    for result in results {
        let (n, times) = result?;
        accepted += n;
        times.into_iter().for_each(|t| latencies.record(t));
    }
    if accepted != PUSHERS * per {
        return Err(format!("{accepted} of {} changes accepted", PUSHERS * per).into());
    }
    report.figure(
        "sync.server_changes_per_s",
        accepted as f64 / wall,
        "1/s",
        Some(Target::AtLeast(10_000.0)),
    );
    report.figure(
        "sync.server_cpu_us_per_change",
        server_cpu * 1e6 / accepted as f64,
        "us",
        None,
    );
    if let Some(s) = latencies.summary() {
        report.figure("sync.push_100_median_ms", s.median_us() / 1e3, "ms", None);
        report.figure("sync.push_100_p99_ms", s.p99_us() / 1e3, "ms", None);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Bootstrap of a big store

/// The bootstrap tenant's server data, cached under `target/bench` (its
/// size in the name) since generating it takes longer than the bootstrap
/// (see `till_bench::cached_data`). Returns the folder and the number of
/// records a till of S1 bootstraps.
fn big_data(plan: &Plan, report: &mut Report) -> Res<(PathBuf, usize)> {
    let name = format!(
        "sync-data-v{DATA_VERSION}-schema{SCHEMA_VERSION}-{}-{}",
        plan.customers, plan.bills
    );
    let data = till_bench::cached_data(&name, |dir| {
        let server = BenchServer::start(dir).expect("server");
        let expected = populate_big(&server, plan, report).expect("populate");
        server.stop().expect("stop");
        std::fs::write(dir.join("expected"), expected.to_string()).expect("record the count");
    });
    let expected = std::fs::read_to_string(data.join("expected"))?
        .trim()
        .parse()?;
    Ok((data, expected))
}

/// Pushes the bootstrap tenant's records through the storage interface:
/// customers, then bills of four tills of S1 and, every twenty-first push, of
/// S2 (in the tenant, not in a till of S1's scope). Returns the records a
/// till of S1 bootstraps.
fn populate_big(server: &BenchServer, plan: &Plan, report: &mut Report) -> Res<usize> {
    eprintln!(
        "  bootstrap: populating {} customers and {} bills",
        plan.customers, plan.bills
    );
    server.tenant("big", 2)?;
    let devices: Vec<DeviceScope> = (1..=4)
        .map(|d| scope("big", "S1", &format!("T{d}")))
        .collect();
    let elsewhere = scope("big", "S2", "T1");
    let mut gen = Generator::new(4);
    let started = Instant::now();
    let mut customers: Vec<(Uuid, String)> = Vec::with_capacity(plan.customers);
    let mut batch = Vec::with_capacity(PUSH);
    let mut made = [0u64; 4];
    for i in 0..plan.customers {
        // A push holds one till's changes: each takes a turn for a batch.
        let k = (i / PUSH) % devices.len();
        let device = &devices[k];
        made[k] += 1;
        let (id, phone, change) = gen.customer(device, made[k], i as u64)?;
        customers.push((id, phone));
        batch.push(change);
        if batch.len() == PUSH || i + 1 == plan.customers {
            populate(server, device, &batch)?;
            batch.clear();
        }
    }
    let mut numbers = [0i64; 5];
    let mut mine = 0;
    let total = plan.bills + plan.bills / 20;
    let mut progress = Instant::now();
    for i in 0..total {
        // Tills take turns a push at a time; S2 has every twenty-first.
        let turn = |i: usize| match (i / PUSH) % 21 {
            20 => 4,
            t => t % 4,
        };
        let k = turn(i);
        let device = if k == 4 { &elsewhere } else { &devices[k] };
        numbers[k] += 1;
        let who = (!gen.rng.random_bool(0.15)).then(|| {
            // Older customers buy more often.
            let u: f64 = gen.rng.random();
            let c = &customers[((u * u) * customers.len() as f64) as usize];
            (c.0, c.1.as_str())
        });
        batch.push(gen.bill(device, numbers[k], who)?);
        if k != 4 {
            mine += 1;
        }
        if batch.len() == PUSH || i + 1 == total {
            populate(server, device, &batch)?;
            batch.clear();
        }
        if progress.elapsed() > Duration::from_secs(10) {
            eprintln!("    {} of {total} bills", i + 1);
            progress = Instant::now();
        }
    }
    let populated = started.elapsed().as_secs_f64();
    let changes = plan.customers + total;
    report.figure("sync.populate_s", populated, "s", None);
    report.figure(
        "sync.populate_changes_per_s",
        changes as f64 / populated,
        "1/s",
        None,
    );
    Ok(plan.customers + mine)
}

/// A new till of S1 bootstraps the cached data set (a copy of it: the run
/// enrolls a device and compacts the log) through a server of its own.
fn bootstrap(dir: &Path, plan: &Plan, report: &mut Report) -> Res<()> {
    let (data, expected) = big_data(plan, report)?;
    let copy = dir.join("big");
    std::fs::create_dir_all(&copy)?;
    for entry in std::fs::read_dir(&data)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), copy.join(entry.file_name()))?;
        }
    }
    let server = BenchServer::start(&copy)?;
    eprintln!("  bootstrap: a new till of S1 syncs");
    let device = scope("big", "S1", "T99");
    let token = server.enroll(&device)?;
    let db = dir.join("bootstrapped.db");
    let before = server.requests.load(Ordering::Relaxed);
    let (server_cpu, _) = thread_cpu_s()?;
    let child = std::process::Command::new(std::env::current_exe()?)
        .env(CHILD, "1")
        .env("TILL_SYNC_BENCH_URL", &server.url)
        .env("TILL_SYNC_BENCH_TOKEN", token)
        .env("TILL_SYNC_BENCH_DB", &db)
        .env("TILL_SYNC_BENCH_EXPECT", expected.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        return Err(format!("the bootstrapping till failed: {}", output.status).into());
    }
    let requests = server.requests.load(Ordering::Relaxed) - before;
    let server_cpu = thread_cpu_s()?.0 - server_cpu;
    let line = output
        .stdout
        .lines()
        .map_while(Result::ok)
        .last()
        .ok_or("the bootstrapping till said nothing")?;
    let got: BTreeMap<String, f64> = serde_json::from_str(&line)?;
    let get = |k: &str| got.get(k).copied().ok_or(format!("no {k} in {line}"));
    let secs = get("sync_s")?;
    report.figure("sync.bootstrap_s", secs, "s", Some(Target::AtMost(30.0)));
    report.figure(
        "sync.bootstrap_records_per_s",
        expected as f64 / secs,
        "1/s",
        None,
    );
    report.figure(
        "sync.bootstrap_peak_mb",
        (get("peak_kb")? - get("start_kb")?) / 1024.0,
        "MB",
        Some(Target::AtMost(300.0)),
    );
    report.figure(
        "sync.bootstrap_sync_peak_mb",
        (get("sync_peak_kb")? - get("start_kb")?) / 1024.0,
        "MB",
        None,
    );
    report.figure(
        "sync.bootstrap_till_cpu_us_per_record",
        get("sync_cpu_s")? * 1e6 / expected as f64,
        "us",
        None,
    );
    report.figure(
        "sync.bootstrap_till_apply_cpu_us_per_record",
        get("apply_cpu_s")? * 1e6 / expected as f64,
        "us",
        None,
    );
    report.figure(
        "sync.bootstrap_server_cpu_us_per_record",
        server_cpu * 1e6 / expected as f64,
        "us",
        None,
    );
    report.figure(
        "sync.bootstrap_search_ready_s",
        get("search_ready_s")?,
        "s",
        None,
    );
    report.figure("sync.bootstrap_requests", requests as f64, "", None);
    report.figure("sync.bootstrap_db_mb", file_mb(&db), "MB", None);
    report.scale_param("bootstrap_records", expected as f64);
    compact(&server, report)?;
    server.stop()
}

fn file_mb(path: &Path) -> f64 {
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    [path.to_path_buf(), wal]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len() as f64)
        .sum::<f64>()
        / 1e6
}

/// The child process: a new till bootstrapping, reporting its times and
/// peak resident memory as one JSON line.
fn bootstrapping_till() -> Res<()> {
    let var = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
    let expected: usize = var("TILL_SYNC_BENCH_EXPECT")?.parse()?;
    let store = Store::open(StoreOptions::new(
        var("TILL_SYNC_BENCH_DB")?,
        "big",
        "S1",
        "T99",
    ))?;
    let config = SyncConfig::new(var("TILL_SYNC_BENCH_URL")?, var("TILL_SYNC_BENCH_TOKEN")?);
    // Growth is what the bootstrap costs: the peak less what the process
    // held before it started.
    let start_kb = status_kb("VmRSS:")?;
    let started = Instant::now();
    let summary = store.sync(&config, &NoopObserver)?;
    let sync_s = started.elapsed().as_secs_f64();
    let sync_peak_kb = peak_kb()?;
    let sync_cpu_s = cpu_s()?;
    // The calling thread writes the pages; the fetch of the next page and
    // its decoding run on others.
    let apply_cpu_s = stat_cpu_s(&std::fs::read_to_string(format!(
        "/proc/self/task/{}/stat",
        std::process::id()
    ))?)?;
    if summary.bootstrapped != expected || summary.pulled != 0 {
        return Err(format!("bootstrapped {summary:?}, expected {expected} records").into());
    }
    if !store.flush_search_index(Duration::from_secs(1_800)) {
        return Err("the search index did not catch up".into());
    }
    let search_ready_s = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "sync_s": sync_s,
            "search_ready_s": search_ready_s,
            "start_kb": start_kb,
            "sync_peak_kb": sync_peak_kb,
            "peak_kb": peak_kb()?,
            "sync_cpu_s": sync_cpu_s,
            "apply_cpu_s": apply_cpu_s,
        })
    );
    Ok(())
}

/// CPU seconds this process has used, all its threads, ended ones too.
fn cpu_s() -> Res<f64> {
    stat_cpu_s(&std::fs::read_to_string("/proc/self/stat")?)
}

/// CPU seconds used so far by this process's live threads, split into the
/// server's (named [`SERVER_THREAD`]) and everyone else's: on a machine
/// shared with other work, wall time says how long a figure took there and
/// CPU time says what it cost.
fn thread_cpu_s() -> Res<(f64, f64)> {
    let (mut server, mut rest) = (0.0, 0.0);
    for task in std::fs::read_dir("/proc/self/task")? {
        let path = task?.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        let cpu = stat_cpu_s(&stat)?;
        if comm.trim_end() == SERVER_THREAD {
            server += cpu;
        } else {
            rest += cpu;
        }
    }
    Ok((server, rest))
}

/// The CPU seconds of a `/proc/.../stat` line.
fn stat_cpu_s(stat: &str) -> Res<f64> {
    // Fields after the command name (which may hold spaces) closed by ')'.
    let rest = stat.rsplit_once(')').ok_or("unreadable stat line")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks =
        |i: usize| -> Res<f64> { Ok(fields.get(i).ok_or("short stat line")?.parse::<f64>()?) };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here,
    // in clock ticks of 1/100 s (Linux's USER_HZ).
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// This process's peak resident set size (`VmHWM`), in kB.
fn peak_kb() -> Res<f64> {
    status_kb("VmHWM:")
}

/// A memory figure of this process (`VmHWM:`, `VmRSS:`), in kB.
fn status_kb(key: &str) -> Res<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .ok_or(format!("no {key} in /proc/self/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or(format!("{key} without a value"))?
        .parse()?)
}

// ---------------------------------------------------------------------------
// Compaction

fn compact(server: &BenchServer, report: &mut Report) -> Res<()> {
    eprintln!("  compaction of the bootstrap tenant's whole log");
    let started = Instant::now();
    let done = server.block(server.storage.compact("big", Horizon::Seq(i64::MAX)))?;
    let secs = started.elapsed().as_secs_f64();
    let chunks = (done.removed as f64 / 10_000.0).ceil().max(1.0);
    report.figure("sync.compact_s", secs, "s", None);
    report.figure(
        "sync.compact_entries_per_s",
        done.removed as f64 / secs,
        "1/s",
        None,
    );
    report.figure("sync.compact_chunk_ms", secs * 1e3 / chunks, "ms", None);
    Ok(())
}
