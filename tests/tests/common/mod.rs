//! The harness of the end-to-end tests: a real sync-server on 127.0.0.1
//! port 0 over a temporary data directory, run on its own runtime thread so
//! the tills under test call the blocking `Store::sync` as an app would.

#![allow(dead_code)]

pub mod inspect;
pub mod proxy;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use till_core::{Store, StoreOptions, SyncConfig};
use till_sync_server::auth::{self, DeviceScope};
use till_sync_server::storage::sqlite::SqliteStorage;
use till_sync_server::storage::Storage;
use till_sync_server::{now_ms, serve, AppState, Limits};
use tokio::sync::oneshot;

/// A running server; stopping it keeps its data directory for a restart.
pub struct Server {
    pub url: String,
    pub storage: SqliteStorage,
    runtime: tokio::runtime::Runtime,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub data: PathBuf,
    /// The running server's state (its figures among it).
    pub state: AppState,
}

impl Server {
    /// A new server over `data` with tenant `t1` holding stores S1 and S2.
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, Limits::default())
    }

    /// [`Server::start`] with `limits`.
    pub fn start_with(data: &Path, limits: Limits) -> Server {
        let server = Server::open_with(data, limits);
        let now = now_ms();
        server.block(async {
            server
                .storage
                .create_tenant("t1", "t1", now)
                .await
                .expect("tenant");
            for store in ["S1", "S2"] {
                server
                    .storage
                    .create_store("t1", store, store, now)
                    .await
                    .expect("store");
            }
        });
        server
    }

    /// The server over an existing data directory.
    pub fn open(data: &Path) -> Server {
        Server::open_with(data, Limits::default())
    }

    /// [`Server::open`] with `limits`.
    pub fn open_with(data: &Path, limits: Limits) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let storage = SqliteStorage::open(data).expect("storage");
        let (listener, url) = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            (listener, url)
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let state = AppState::new(Arc::new(storage.clone()), limits);
        let task = runtime.spawn(serve(listener, state.clone(), async {
            stopped.await.ok();
        }));
        Server {
            url,
            storage,
            runtime,
            stop: Some(stop),
            task: Some(task),
            data: data.to_owned(),
            state,
        }
    }

    pub fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Enrolls `store`/`device` of `t1`; returns its token.
    pub fn enroll(&self, store: &str, device: &str) -> String {
        let token = auth::new_token();
        let scope = DeviceScope {
            tenant: "t1".into(),
            store: store.into(),
            device: device.into(),
        };
        self.block(
            self.storage
                .enroll_device(&scope, &auth::token_hash(&token), now_ms()),
        )
        .expect("enroll");
        token
    }

    /// Long-poll waits open on the server now.
    pub fn waiters_open(&self) -> i64 {
        self.state.metrics.waiters().get()
    }

    /// Stops accepting, finishes in-flight requests, and returns.
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(task) = self.task.take() {
            self.runtime.block_on(task).expect("join").expect("serve");
        }
    }
}

/// A server that a sync observer stops from inside a sync, the first time
/// it is asked to.
pub struct StopOnce(std::sync::Mutex<Option<Server>>);

impl StopOnce {
    pub fn new(server: Server) -> StopOnce {
        StopOnce(std::sync::Mutex::new(Some(server)))
    }

    pub fn stop(&self) {
        let server = self.0.lock().expect("lock").take();
        if let Some(server) = server {
            // A runtime cannot be dropped on the syncing one's thread.
            std::thread::spawn(move || server.stop())
                .join()
                .expect("stopped");
        }
    }
}

/// A till enrolled on a server: its store and its sync configuration.
pub struct Till {
    pub store: Store,
    pub config: SyncConfig,
}

impl Till {
    /// A till `store`/`device` of `t1`, with its file in `dir`.
    pub fn new(server: &Server, dir: &Path, store: &str, device: &str) -> Till {
        let db = Till::open_store(dir, store, device);
        let mut config = SyncConfig::new(server.url.clone(), server.enroll(store, device));
        config.base_delay = Duration::from_millis(5);
        config.max_delay = Duration::from_millis(50);
        config.max_attempts = 3;
        config.request_timeout = Duration::from_secs(10);
        Till { store: db, config }
    }

    /// Opens (again, once it was closed) the store file of till
    /// `store`/`device` of `t1` in `dir`, with a cashier signed in.
    pub fn open_store(dir: &Path, store: &str, device: &str) -> Store {
        let path = dir.join(format!("{store}-{device}.db"));
        let db = Store::open(StoreOptions::new(path, "t1", store, device)).expect("till");
        db.set_staff("priya").expect("staff");
        db
    }

    /// Syncs; the sync must complete.
    pub fn sync(&self) -> till_core::SyncSummary {
        self.store
            .sync(&self.config, &till_core::NoopObserver)
            .expect("sync")
    }
}

/// Everything of a store's scope as rows of text, ordered: customers,
/// bills, lines, payments and metrics. Two tills of one store that pulled
/// to the same point must hold the same.
pub fn snapshot(store: &Store) -> Vec<String> {
    let conn =
        Connection::open_with_flags(store.path(), OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    let queries = [
        "SELECT id, number, name, phone_raw, phone_e164, phone_shared, email_raw, email,
                email_shared, address_line1, city, stage, tags, notes, birthday, created_at,
                deleted_at, merged_into, erased_at, extra
         FROM customers ORDER BY id",
        "SELECT id, number, store_id, device_id, staff_id, customer_id, customer_phone, currency,
                kind, refund_of, status, subtotal, discount_total, tax_total, total, paid_total,
                change_due, refunded_total, opened_at, closed_at, voided_at, prev_hash, hash
         FROM bills ORDER BY id",
        "SELECT b.id, l.line_no, l.product_code, l.qty_milli, l.unit_price, l.gross,
                l.refunded_qty
         FROM bill_lines l JOIN bills b ON b.rid = l.bill_rid ORDER BY b.id, l.line_no",
        "SELECT b.id, p.seq, p.method, p.amount, p.tendered
         FROM bill_payments p JOIN bills b ON b.rid = p.bill_rid ORDER BY b.id, p.seq",
        "SELECT customer_id, visits, total_spent, first_visit, last_visit
         FROM customer_metrics WHERE visits > 0 OR total_spent != 0 ORDER BY customer_id",
    ];
    let mut rows = Vec::new();
    for sql in queries {
        let mut stmt = conn.prepare(sql).expect("prepare");
        let n = stmt.column_count();
        let mut q = stmt.query([]).expect("query");
        while let Some(row) = q.next().expect("row") {
            let cells: Vec<String> = (0..n)
                .map(|i| format!("{:?}", row.get_ref(i).expect("cell")))
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows
}

/// A store's tables, indexes and triggers with their definitions, ordered:
/// two stores at one schema version hold the same.
pub fn schema(store: &Store) -> Vec<(String, String)> {
    let conn =
        Connection::open_with_flags(store.path(), OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    let mut stmt = conn
        .prepare("SELECT name, coalesce(sql, '') FROM sqlite_schema ORDER BY name")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query");
    rows.collect::<Result<_, _>>().expect("schema")
}
