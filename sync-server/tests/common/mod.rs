//! The harness the server's integration tests share: a real server on
//! 127.0.0.1 port 0 over a temporary data directory with two tenants, the
//! HTTP calls a till makes, changes made by real till-core stores or by
//! hand, and the server's figures read from `/metrics`.

#![allow(dead_code)]

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use till_core::sync::protocol::{PROTOCOL_HEADER, PROTOCOL_VERSION};
use till_core::{NewBill, NewCustomer, NewLine, Store, StoreOptions, Tender};
use till_sync_server::auth::{self, DeviceScope};
use till_sync_server::storage::sqlite::{SqliteStorage, FILE_NAME};
use till_sync_server::storage::Storage;
use till_sync_server::{now_ms, serve, AppState, Limits};
use tokio::sync::oneshot;
use uuid::Uuid;

/// A running server with two tenants: `t1` (stores S1, S2) and `t2` (S1).
pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    pub storage: SqliteStorage,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub dir: Arc<tempfile::TempDir>,
    /// The running server's state: its figures, limits and shutdown token.
    pub state: AppState,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(Limits::default()).await
    }

    pub async fn start_with(limits: Limits) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = SqliteStorage::open(dir.path()).expect("storage");
        let now = now_ms();
        for tenant in ["t1", "t2"] {
            storage
                .create_tenant(tenant, tenant, now)
                .await
                .expect("tenant");
            storage
                .create_store(tenant, "S1", "S1", now)
                .await
                .expect("S1");
        }
        storage
            .create_store("t1", "S2", "S2", now)
            .await
            .expect("S2");
        Server::over(Arc::new(dir), limits).await
    }

    /// A second server instance over this one's database, as several
    /// stateless instances share one database.
    pub async fn beside(&self, limits: Limits) -> Server {
        Server::over(Arc::clone(&self.dir), limits).await
    }

    async fn over(dir: Arc<tempfile::TempDir>, limits: Limits) -> Server {
        let storage = SqliteStorage::open(dir.path()).expect("storage");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let state = AppState::new(Arc::new(storage.clone()), limits);
        let task = tokio::spawn(serve(listener, state.clone(), async {
            stopped.await.ok();
        }));
        Server {
            base,
            http: reqwest::Client::new(),
            storage,
            stop: Some(stop),
            task: Some(task),
            dir,
            state,
        }
    }

    pub async fn enroll(&self, tenant: &str, store: &str, device: &str) -> String {
        let token = auth::new_token();
        self.storage
            .enroll_device(
                &scope(tenant, store, device),
                &auth::token_hash(&token),
                now_ms(),
            )
            .await
            .expect("enroll");
        token
    }

    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string());
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req
    }

    pub async fn push(&self, token: &str, changes: Vec<Value>) -> (StatusCode, Value) {
        let resp = self
            .request(Method::POST, "/v1/push", Some(token))
            .json(&json!({ "changes": changes }))
            .send()
            .await
            .expect("push");
        (resp.status(), resp.json().await.expect("json"))
    }

    /// Pushes and returns each change's outcome; the push must succeed.
    pub async fn push_ok(&self, token: &str, changes: Vec<Value>) -> Vec<Value> {
        let (status, body) = self.push(token, changes).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["results"].as_array().cloned().expect("results")
    }

    pub async fn pull(&self, token: &str, query: &str) -> (StatusCode, Value) {
        let resp = self
            .request(Method::GET, &format!("/v1/pull?{query}"), Some(token))
            .send()
            .await
            .expect("pull");
        (resp.status(), resp.json().await.expect("json"))
    }

    /// A long-poll wait with `query` (e.g. `cursor=3&timeout_ms=1000`).
    pub async fn wait(&self, token: &str, query: &str) -> (StatusCode, Value) {
        let resp = self
            .request(Method::GET, &format!("/v1/wait?{query}"), Some(token))
            .send()
            .await
            .expect("wait");
        (resp.status(), resp.json().await.expect("json"))
    }

    /// Takes the database's write lock from a connection of its own, as a
    /// long write of another process would; the server's writes wait for it
    /// until the returned connection is dropped.
    pub fn hold_write_lock(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.dir.path().join(FILE_NAME)).expect("open");
        conn.execute_batch("BEGIN IMMEDIATE").expect("lock");
        conn
    }

    /// Polls the figures until `check` holds (at most about 10 s).
    pub async fn figures_until(&self, check: impl Fn(&Figures) -> bool) -> Figures {
        for _ in 0..200 {
            let figures = self.figures().await;
            if check(&figures) {
                return figures;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the figures never reached the expected state");
    }

    /// Pulls every page from `cursor` at `limit`; returns the changes and the final cursor.
    pub async fn pull_all(&self, token: &str, limit: u32) -> (Vec<Value>, i64) {
        let (mut cursor, mut all) = (0, Vec::new());
        for _ in 0..1_000 {
            let (status, page) = self
                .pull(token, &format!("cursor={cursor}&limit={limit}"))
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let changes = page["changes"].as_array().cloned().expect("changes");
            assert!(changes.len() <= limit as usize);
            all.extend(changes);
            cursor = page["cursor"].as_i64().expect("cursor");
            if page["has_more"] == json!(false) {
                return (all, cursor);
            }
        }
        panic!("pull never caught up");
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let resp = self
            .request(Method::GET, path, Some(token))
            .send()
            .await
            .expect("get");
        (resp.status(), resp.json().await.expect("json"))
    }

    /// Every bootstrap page from a new snapshot at `limit`: the records,
    /// the snapshot's sequence and the page count. `between` runs after
    /// each page but the last.
    pub async fn bootstrap_all(
        &self,
        token: &str,
        limit: u32,
        mut between: impl AsyncFnMut(usize),
    ) -> (Vec<Value>, i64, usize) {
        let (mut records, mut after, mut pages) = (Vec::new(), None::<String>, 0);
        let mut snapshot = None;
        loop {
            let mut path = format!("/v1/bootstrap?limit={limit}");
            if let Some(after) = &after {
                path.push_str(&format!("&after={after}"));
            }
            let (status, page) = self.get(token, &path).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            pages += 1;
            let seq = page["snapshot_seq"].as_i64().expect("snapshot_seq");
            assert_eq!(*snapshot.get_or_insert(seq), seq, "one snapshot throughout");
            let got = page["records"].as_array().cloned().expect("records");
            assert!(got.len() <= limit as usize);
            records.extend(got);
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => return (records, seq, pages),
            }
            between(pages).await;
        }
    }

    /// Begins a graceful shutdown: the server stops taking connections.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
    }

    /// Shuts down and returns once the server has finished its requests.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("serve");
        }
    }

    /// The server's figures, as `/metrics` serves them now.
    pub async fn figures(&self) -> Figures {
        let resp = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics");
        assert_eq!(resp.status(), StatusCode::OK);
        let text = resp.text().await.expect("text");
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        Figures(prometheus_parse::Scrape::parse(lines).expect("prometheus text"))
    }
}

pub fn scope(tenant: &str, store: &str, device: &str) -> DeviceScope {
    DeviceScope {
        tenant: tenant.into(),
        store: store.into(),
        device: device.into(),
    }
}

/// A till-core store of `tenant`/`store`/`device` in `dir`.
pub fn till(dir: &std::path::Path, tenant: &str, store: &str, device: &str) -> Store {
    let path = dir.join(format!("{tenant}-{store}-{device}.db"));
    let store = Store::open(StoreOptions::new(path, tenant, store, device)).expect("till");
    store.set_staff("priya").expect("staff");
    store
}

/// The recorded changes of `ids` on `till`, in the order the till made them.
pub fn outbox(till: &Store, ids: &[String]) -> Vec<Value> {
    let mut changes: Vec<till_core::Change> = ids
        .iter()
        .flat_map(|id| till.history(id, None, 200).expect("history").items)
        .collect();
    changes.sort_by(|a, b| a.hlc.cmp(&b.hlc));
    changes
        .into_iter()
        .map(|c| serde_json::to_value(c).expect("change json"))
        .collect()
}

/// A customer with a phone and a paid bill for them, made on `till`.
pub fn customer_with_bill(till: &Store, name: &str, phone: &str) -> (String, String) {
    let customer = till
        .create_customer(NewCustomer::named(name).with_phone(phone))
        .expect("customer");
    let bill = till
        .sell(
            NewBill {
                customer_id: Some(customer.id),
                lines: vec![NewLine::item("TEA", "Tea", 2, 150).taxed("GST5", 500)],
                ..NewBill::default()
            },
            &[Tender::cash(500)],
        )
        .expect("sell");
    (customer.id.to_string(), bill.id.to_string())
}

/// A hand-made change stamped at `wall` by `node`.
pub fn change(node: &str, entity: &str, id: &str, fields: Value, wall: i64) -> Value {
    json!({
        "change_id": Uuid::now_v7().to_string(),
        "entity": entity,
        "entity_id": id,
        "op": "update",
        "fields": fields,
        "before": {},
        "hlc": format!("{wall:015}-0000000000-{node}"),
        "device": node,
        "staff": "s",
        "at_ms": wall,
    })
}

/// A scrape of `/metrics`.
pub struct Figures(prometheus_parse::Scrape);

impl Figures {
    /// The sum of the samples named `name` whose labels include `labels`.
    /// Counters, gauges and a histogram's `_count` and `_sum` read alike.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    }
}
