//! `cargo bench -p till-sync-server --bench dedup [-- --quick]`: what
//! exact-key dedup costs a push. Writes `target/bench/dedup.json`.
//!
//! Three tills of one store each make N customers with a sale each (N =
//! 20,000; 2,000 with `--quick`) through `Store`, the product's own write
//! path. Their outboxes are pushed into the embedded SQLite backend in
//! batches of 500 (a full push), as `Storage::push` takes them from the
//! HTTP layer:
//! - T1's and T3's customers are all new: every customer change looks its
//!   keys up and finds only itself, every sale's customer is looked up;
//! - T2's customers each hold the phone of one of T1's: every one of them
//!   is merged (tombstone, survivor, merge record) and every sale, naming
//!   the merged-away customer, is redirected to the survivor.
//!
//! Figures: changes per second of each outbox, the batch latency of the
//! duplicate one, and the duplicate rate over the unique rate (target: at
//! least 0.5, merging every customer may at most halve the push rate). A
//! scan that grows with the tenant shows as that ratio falling with N.

use std::path::Path;
use std::time::Instant;

use rusqlite::Connection;
use till_bench::{Args, Report, Samples, Target};
use till_core::sync::protocol::PushOutcome;
use till_core::{Change, NewBill, NewCustomer, NewLine, Store, StoreOptions, Tender};
use till_sync_server::auth::DeviceScope;
use till_sync_server::storage::sqlite::SqliteStorage;
use till_sync_server::storage::Storage;

/// Changes per push: the protocol's largest batch.
const BATCH: usize = till_core::sync::protocol::MAX_PUSH_BATCH;

/// A till's whole outbox after `n` customers (phones from `first`) with a sale each.
fn outbox(dir: &Path, device: &str, n: usize, first: usize) -> Vec<Change> {
    let path = dir.join(format!("{device}.db"));
    let store = Store::open(StoreOptions::new(&path, "t1", "S1", device)).expect("till");
    store.set_staff("bench").expect("staff");
    for i in 0..n {
        let c = store
            .create_customer(
                NewCustomer::named(&format!("Customer {i}"))
                    .with_phone(&format!("9{:09}", first + i)),
            )
            .expect("customer");
        store
            .sell(
                NewBill {
                    customer_id: Some(c.id),
                    lines: vec![NewLine::item("TEA", "Tea", 1, 100)],
                    ..NewBill::default()
                },
                &[Tender::cash(100)],
            )
            .expect("sale");
    }
    drop(store);
    // The outbox as the client reads it, all of it at once.
    let conn = Connection::open(&path).expect("open");
    let mut stmt = conn
        .prepare(
            "SELECT change_id, entity, entity_id, op, fields, before, hlc, device_id, staff_id, at
             FROM changes ORDER BY seq",
        )
        .expect("prepare");
    let json = |text: Option<String>| {
        text.map(|t| serde_json::from_str(&t).expect("json"))
            .unwrap_or_default()
    };
    stmt.query_map([], |r| {
        Ok(Change {
            change_id: r.get::<_, String>(0)?.parse().expect("uuid"),
            entity: r.get(1)?,
            entity_id: r.get(2)?,
            op: r.get(3)?,
            fields: json(r.get(4)?),
            before: json(r.get(5)?),
            hlc: r.get(6)?,
            device: r.get(7)?,
            staff: r.get(8)?,
            at_ms: r.get(9)?,
        })
    })
    .expect("query")
    .collect::<rusqlite::Result<_>>()
    .expect("rows")
}

/// Pushes `changes` as `device`; returns changes per second and the batch times.
fn push_all(
    runtime: &tokio::runtime::Runtime,
    storage: &SqliteStorage,
    device: &str,
    changes: Vec<Change>,
) -> (f64, Samples) {
    let scope = DeviceScope {
        tenant: "t1".into(),
        store: "S1".into(),
        device: device.into(),
    };
    runtime
        .block_on(storage.enroll_device(&scope, &format!("token-{device}"), 1))
        .expect("enroll");
    let mut batches = Samples::new();
    let started = Instant::now();
    for batch in changes.chunks(BATCH) {
        let outcomes = batches.time(|| {
            runtime
                .block_on(storage.push(&scope, batch.to_vec(), till_sync_server::now_ms()))
                .expect("push")
        });
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, PushOutcome::Accepted { .. })));
    }
    (
        changes.len() as f64 / started.elapsed().as_secs_f64(),
        batches,
    )
}

fn main() {
    let args = Args::from_env();
    let scale = args.scale();
    let n = scale.pick(2_000, 20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let started = Instant::now();
    let first = outbox(dir.path(), "T1", n, 100_000_000);
    let duplicates = outbox(dir.path(), "T2", n, 100_000_000);
    let unique = outbox(dir.path(), "T3", n, 200_000_000);
    let built_s = started.elapsed().as_secs_f64();

    let storage = SqliteStorage::open(&dir.path().join("server")).expect("storage");
    runtime
        .block_on(async {
            storage.create_tenant("t1", "t1", 1).await?;
            storage.create_store("t1", "S1", "S1", 1).await
        })
        .expect("tenant");
    let a_duplicate = duplicates[0].entity_id.clone();
    let (first_rate, _) = push_all(&runtime, &storage, "T1", first);
    let (unique_rate, _) = push_all(&runtime, &storage, "T3", unique);
    let (duplicate_rate, batches) = push_all(&runtime, &storage, "T2", duplicates);
    let merged = runtime
        .block_on(storage.merges("t1", &a_duplicate))
        .expect("merges");
    assert_eq!(merged.len(), 1, "the duplicates were merged");

    let mut report = Report::new("dedup", scale);
    report.scale_param("customers_per_till", n as f64);
    report.scale_param("batch", BATCH as f64);
    report.figure("dedup.build_s", built_s, "s", None);
    report.figure("dedup.push_first_changes_per_s", first_rate, "/s", None);
    report.figure("dedup.push_unique_changes_per_s", unique_rate, "/s", None);
    report.figure(
        "dedup.push_duplicates_changes_per_s",
        duplicate_rate,
        "/s",
        None,
    );
    report.latency("dedup.duplicate_batch", &batches, None);
    report.figure(
        "dedup.duplicate_over_unique",
        duplicate_rate / unique_rate,
        "x",
        Some(Target::AtLeast(0.5)),
    );
    if let Some(load) = till_bench::load_average() {
        report.figure("dedup.load_average", load, "", None);
    }
    report.print_table();
    let written = report.write_json().expect("write json");
    println!("wrote {}", written.display());
}
