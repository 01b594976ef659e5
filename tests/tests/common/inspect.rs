//! What the server and the tills hold, read for comparison: the server's
//! records, log and idempotency ledger straight from its storage file, and a
//! till's records through its public API, both as the JSON fields the change
//! log speaks (so a till's record and the server's compare field by field).

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use serde_json::{Map, Value};
use till_core::sync::conflict::RecordState;
use till_core::Store;
use till_sync_server::storage::sqlite::FILE_NAME;
use uuid::Uuid;

/// Fields of a record, as the change log names them.
pub type Fields = Map<String, Value>;

/// One entry of the server's log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// Its server sequence.
    pub seq: i64,
    /// The bill's store; `None` for tenant-wide records.
    pub store: Option<String>,
    /// The change it logs.
    pub change_id: String,
    /// The device that made it (`server` for a dedup merge).
    pub device: String,
    /// What it did (`merge` for a customer merged away).
    pub op: String,
}

/// What the server did with one pushed change id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Set when accepted.
    pub server_seq: Option<i64>,
    /// Set when rejected.
    pub reject_reason: Option<String>,
}

/// Everything the server holds for one tenant.
#[derive(Debug, Default)]
pub struct ServerView {
    /// Customer id -> merge state.
    pub customers: BTreeMap<String, RecordState>,
    /// Bill id -> (store, merge state).
    pub bills: BTreeMap<String, (String, RecordState)>,
    /// The log, by sequence.
    pub log: Vec<LogEntry>,
    /// Change id -> outcome.
    pub received: BTreeMap<String, Received>,
}

fn query<T>(
    conn: &Connection,
    sql: &str,
    tenant: &str,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Vec<T> {
    conn.prepare(sql)
        .expect("prepare")
        .query_map([tenant], map)
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

fn state(text: &str) -> RecordState {
    serde_json::from_str(text).expect("stored merge state")
}

impl ServerView {
    /// Reads tenant `tenant` from the server's data directory `data` (the
    /// server may be running: this is one read transaction beside it).
    pub fn read(data: &Path, tenant: &str) -> ServerView {
        let mut conn =
            Connection::open_with_flags(data.join(FILE_NAME), OpenFlags::SQLITE_OPEN_READ_ONLY)
                .expect("open server database");
        let tx = conn.transaction().expect("read transaction");
        let customers = query(
            &tx,
            "SELECT id, state FROM customers WHERE tenant = ?1",
            tenant,
            |r| Ok((r.get::<_, String>(0)?, state(&r.get::<_, String>(1)?))),
        );
        let bills = query(
            &tx,
            "SELECT id, store, state FROM bills WHERE tenant = ?1",
            tenant,
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    (r.get::<_, String>(1)?, state(&r.get::<_, String>(2)?)),
                ))
            },
        );
        let log = query(
            &tx,
            "SELECT seq, store, change FROM log WHERE tenant = ?1 ORDER BY seq",
            tenant,
            |r| {
                let change: Value =
                    serde_json::from_str(&r.get::<_, String>(2)?).expect("logged change");
                Ok(LogEntry {
                    seq: r.get(0)?,
                    store: r.get(1)?,
                    change_id: change["change_id"].as_str().unwrap_or_default().to_owned(),
                    device: change["device"].as_str().unwrap_or_default().to_owned(),
                    op: change["op"].as_str().unwrap_or_default().to_owned(),
                })
            },
        );
        let received = query(
            &tx,
            "SELECT change_id, server_seq, reject_reason FROM received WHERE tenant = ?1",
            tenant,
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Received {
                        server_seq: r.get(1)?,
                        reject_reason: r.get(2)?,
                    },
                ))
            },
        );
        ServerView {
            customers: customers.into_iter().collect(),
            bills: bills.into_iter().collect(),
            log,
            received: received.into_iter().collect(),
        }
    }

    /// The bills of `store`: id -> fields.
    pub fn store_bills(&self, store: &str) -> BTreeMap<String, &Fields> {
        self.bills
            .iter()
            .filter(|(_, (s, _))| s == store)
            .map(|(id, (_, state))| (id.clone(), &state.values))
            .collect()
    }
}

/// `value` as an object without the `derived` fields the change log leaves out.
fn as_fields(value: Value, derived: &[&str]) -> Fields {
    let Value::Object(mut map) = value else {
        panic!("a record serialises as an object")
    };
    for field in derived {
        map.remove(*field);
    }
    map
}

fn ids(store: &Store, table: &str) -> Vec<Uuid> {
    let conn = Connection::open_with_flags(store.path(), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open till");
    let mut stmt = conn
        .prepare(&format!("SELECT id FROM {table} ORDER BY id"))
        .expect("prepare");
    let ids = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .expect("ids")
        .map(|id| id.expect("id").parse().expect("uuid"))
        .collect();
    ids
}

/// Every customer a till holds (deleted and merged ones included): id -> fields.
pub fn till_customers(store: &Store) -> BTreeMap<String, Fields> {
    ids(store, "customers")
        .into_iter()
        .map(|id| {
            let c = store.customer_including_deleted(id).expect("customer");
            let fields = serde_json::to_value(c).expect("json");
            (
                id.to_string(),
                as_fields(fields, &["id", "version", "updated_at_ms"]),
            )
        })
        .collect()
}

/// Every bill a till holds: id -> fields.
pub fn till_bills(store: &Store) -> BTreeMap<String, Fields> {
    ids(store, "bills")
        .into_iter()
        .map(|id| {
            let b = store.bill(id).expect("bill");
            let fields = serde_json::to_value(b).expect("json");
            (id.to_string(), as_fields(fields, &["id", "version"]))
        })
        .collect()
}

/// The local changes of a till: change id -> `pushed_at` is set.
pub fn till_local_changes(store: &Store) -> BTreeMap<String, bool> {
    let conn = Connection::open_with_flags(store.path(), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open till");
    let mut stmt = conn
        .prepare("SELECT change_id, pushed_at IS NOT NULL FROM changes WHERE origin = 'local'")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("changes")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    rows
}

/// Every change id in a till's change log, local or pulled.
pub fn till_change_ids(store: &Store) -> std::collections::BTreeSet<String> {
    let conn = Connection::open_with_flags(store.path(), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open till");
    let mut stmt = conn
        .prepare("SELECT change_id FROM changes")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| r.get(0))
        .expect("changes")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    rows
}

/// The server sequence of the last snapshot `store` bootstrapped from (0
/// when it never did): the log entries up to it reached the till as state,
/// not as changes.
pub fn till_snapshot_seq(store: &Store) -> i64 {
    let conn = Connection::open_with_flags(store.path(), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open till");
    conn.query_row(
        "SELECT coalesce(max(fields ->> '$.snapshot_seq'), 0) FROM changes
         WHERE entity = 'sync' AND op = 'bootstrap'",
        [],
        |r| r.get(0),
    )
    .expect("bootstrap entries")
}

/// The fields where `a` and `b` differ (a missing field counts as `null`),
/// with both values.
pub fn differences(a: &Fields, b: &Fields) -> Vec<(String, Value, Value)> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (
                a.get(k).cloned().unwrap_or(Value::Null),
                b.get(k).cloned().unwrap_or(Value::Null),
            );
            (x != y).then(|| (k.clone(), x, y))
        })
        .collect()
}
