//! Bootstrap, compaction and a customer's history across stores, with
//! tills and a real server: a fresh till starts from a snapshot instead of
//! the whole log; records changing between snapshot pages still converge; a
//! bootstrap cut short resumes without ever claiming to be caught up; a till
//! offline past the compaction horizon bootstraps again and keeps its
//! unsynced sales and edits; a till reinstalled under its old code goes on
//! numbering after its old bills; a till bootstrapped after a merge (and a
//! compaction, which keeps what the merge needs) follows the merged-away id
//! to the survivor.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{schema, snapshot, Server, StopOnce, Till};
use till_core::{
    CustomerUpdate, NewBill, NewCustomer, NewLine, NoopObserver, Store, StoreOptions, SyncClient,
    SyncObserver, Tender,
};
use till_sync_server::storage::{Horizon, Storage};
use uuid::Uuid;

fn sell_to(till: &Store, customer: Option<Uuid>, item: &str, price: i64) -> till_core::Bill {
    till.sell(
        NewBill {
            customer_id: customer,
            lines: vec![NewLine::item(item, item, 1, price)],
            ..NewBill::default()
        },
        &[Tender::cash(price)],
    )
    .expect("sell")
}

fn customer(till: &Store, name: &str, phone: &str) -> Uuid {
    till.create_customer(NewCustomer::named(name).with_phone(phone))
        .expect("customer")
        .id
}

fn rename(till: &Store, id: Uuid, name: &str) {
    let now = till.customer(id).expect("customer");
    till.update_customer(
        id,
        now.version,
        CustomerUpdate {
            name: Some(name.into()),
            ..CustomerUpdate::default()
        },
    )
    .expect("rename");
}

/// A till of `store`/`device` over a fresh file, as a device enrolled anew.
fn fresh(server: &Server, dir: &std::path::Path, store: &str, device: &str) -> Till {
    Till::new(server, dir, store, device)
}

#[test]
fn a_fresh_till_starts_from_a_snapshot_then_pulls() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let other_store = Till::new(&server, dir.path(), "S2", "T1");
    let mut ids = Vec::new();
    let names = [
        "Asha Rao",
        "Ravi Kumar",
        "Meera Iyer",
        "Kiran Shah",
        "Dev Patel",
    ];
    for (i, name) in names.iter().enumerate() {
        let i = i as i64;
        let c = customer(&a.store, name, &format!("98765 4321{i}"));
        sell_to(&a.store, Some(c), "TEA", 100 + i);
        ids.push(c);
    }
    a.sync();
    other_store.sync();
    let elsewhere = sell_to(&other_store.store, Some(ids[0]), "COFFEE", 999);
    other_store.sync();

    let b = fresh(&server, dir.path(), "S1", "T2");
    // Its ranked index is built (empty) before the snapshot lands.
    assert!(b.store.flush_search_index(Duration::from_secs(30)));
    let summary = b.sync();
    assert_eq!(summary.bootstrapped, 10, "5 customers and S1's 5 bills");
    assert_eq!(summary.pulled, 0, "nothing happened after the snapshot");
    let status = b.store.sync_status().expect("status");
    assert!(!status.bootstrapping && status.bootstrapped_at_ms.is_some());
    assert_eq!(status.cursor, 11, "the head: 10 changes of S1, 1 of S2");
    assert!(
        b.store.bill(elsewhere.id).is_err(),
        "another store's bill stays there"
    );
    a.sync();
    assert_eq!(snapshot(&a.store), snapshot(&b.store));
    for (i, id) in ids.iter().enumerate() {
        let m = b.store.customer_summary(*id).expect("metrics");
        assert_eq!((m.visits, m.total_spent), (1, 100 + i as i64));
    }
    // The ranked index rebuilds after a bootstrap: typos find snapshot customers.
    assert!(b.store.flush_search_index(Duration::from_secs(30)));
    let hits = b.store.search_customers("kiran shha", 5).expect("search");
    assert_eq!(hits.first().map(|h| h.customer.id), Some(ids[3]));
    // The snapshot is state, not history: b's log records the bootstrap once.
    assert!(b
        .store
        .history(&ids[0].to_string(), None, 10)
        .expect("history")
        .items
        .is_empty());
    let marks = b.store.history("bootstrap", None, 10).expect("marks");
    assert_eq!(marks.items.len(), 1);
    assert_eq!(marks.items[0].fields["snapshot_seq"], 11);
    // The lookups a fresh store builds at the end are all there, as defined.
    assert_eq!(schema(&a.store), schema(&b.store));
    let by_digits = b.store.search_customers("43213", 5).expect("search");
    assert_eq!(by_digits.first().map(|h| h.customer.id), Some(ids[3]));
    let report = b.store.verify().expect("verify");
    assert!(report.is_ok(), "{report:?}");
    server.stop();
}

/// Runs `edit` once, on another thread, after the first bootstrap page.
struct AfterFirstPage<F: Fn() + Send + Sync> {
    edit: F,
    done: AtomicBool,
}

impl<F: Fn() + Send + Sync> SyncObserver for AfterFirstPage<F> {
    fn bootstrapped(&self, _records: usize, _snapshot_seq: i64) {
        if !self.done.swap(true, Ordering::SeqCst) {
            // Another till's sync cannot run on this runtime's thread.
            std::thread::scope(|s| {
                s.spawn(&self.edit).join().expect("edit");
            });
        }
    }
}

#[test]
fn records_changing_between_snapshot_pages_still_converge() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let ids: Vec<Uuid> = (0..6)
        .map(|i| {
            customer(
                &a.store,
                &format!("Customer {i}"),
                &format!("90000 1111{i}"),
            )
        })
        .collect();
    for id in &ids {
        sell_to(&a.store, Some(*id), "TEA", 50);
    }
    a.sync();

    let mut b = fresh(&server, dir.path(), "S1", "T2");
    b.config.bootstrap_page = 2;
    let observer = AfterFirstPage {
        edit: || {
            // One customer already sent, one not yet; a new sale; a delete.
            rename(&a.store, ids[0], "Renamed Early");
            rename(&a.store, ids[5], "Renamed Late");
            a.store.delete_customer(ids[3]).expect("delete");
            sell_to(&a.store, Some(ids[1]), "CAKE", 70);
            a.sync();
        },
        done: AtomicBool::new(false),
    };
    let summary = b.store.sync(&b.config, &observer).expect("sync");
    assert!(
        summary.bootstrapped >= 12 && summary.pulled == 4,
        "{summary:?}"
    );
    a.sync();
    assert_eq!(snapshot(&a.store), snapshot(&b.store));
    assert_eq!(
        b.store.customer(ids[0]).expect("early").name,
        "Renamed Early"
    );
    assert_eq!(b.store.customer(ids[5]).expect("late").name, "Renamed Late");
    assert!(b.store.customer(ids[3]).is_err());
    assert_eq!(b.store.customer_summary(ids[1]).expect("m").visits, 2);
    server.stop();
}

/// Stops the server after the first bootstrap page is applied.
struct StopAfterFirstPage(StopOnce);

impl SyncObserver for StopAfterFirstPage {
    fn bootstrapped(&self, _records: usize, _snapshot_seq: i64) {
        self.0.stop();
    }
}

#[test]
fn a_bootstrap_cut_short_resumes_and_never_claims_to_be_caught_up() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("server");
    let server = Server::start(&data);
    let mut a = Till::new(&server, dir.path(), "S1", "T1");
    for i in 0..10 {
        let c = customer(
            &a.store,
            &format!("Customer {i}"),
            &format!("90000 2222{i}"),
        );
        sell_to(&a.store, Some(c), "TEA", 10 + i);
    }
    a.sync();

    let mut b = fresh(&server, dir.path(), "S1", "T2");
    b.config.bootstrap_page = 3;
    let observer = StopAfterFirstPage(StopOnce::new(server));
    let err = b
        .store
        .sync(&b.config, &observer)
        .expect_err("the server went away");
    assert!(
        matches!(&err, till_core::Error::Sync(s) if s.is_retryable()),
        "{err}"
    );
    let status = b.store.sync_status().expect("status");
    assert!(status.bootstrapping, "the store knows it is half way");
    assert_eq!(status.cursor, 0, "and does not claim to be caught up");
    assert!(status.bootstrapped_at_ms.is_none() && status.last_error.is_some());
    let half = schema(&b.store);
    assert!(
        !half.iter().any(|(name, _)| name == "bills_by_customer"),
        "a fresh store builds its random-keyed indexes at the end"
    );
    let report = b.store.verify().expect("verify");
    assert!(report.is_ok(), "half way is not corrupt: {report:?}");

    let server = Server::open(&data);
    b.config.server_url = server.url.clone();
    a.config.server_url = server.url.clone();
    let resumed = b.sync();
    assert!(
        resumed.bootstrapped > 0 && resumed.bootstrapped < 20,
        "resumed, not restarted: {resumed:?}"
    );
    let status = b.store.sync_status().expect("status");
    assert!(!status.bootstrapping);
    assert_eq!(status.cursor, 20);
    assert_eq!(
        schema(&a.store),
        schema(&b.store),
        "built by the resumed run"
    );
    let by_digits = b.store.search_customers("22225", 5).expect("search");
    assert_eq!(by_digits.len(), 1, "phone search by a part of the number");
    let report = b.store.verify().expect("verify");
    assert!(report.is_ok(), "{report:?}");
    a.sync();
    assert_eq!(snapshot(&a.store), snapshot(&b.store));
    server.stop();
}

#[test]
fn a_till_offline_past_the_compaction_horizon_bootstraps_again_keeping_its_outbox() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let mut a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S1", "T2");
    let x = customer(&b.store, "Xavier", "90000 33331");
    let y = customer(&b.store, "Yasmin", "90000 33332");
    b.sync();
    a.sync();
    assert!(a.store.customer(y).is_ok());

    // a goes offline: sales, a new customer, an edit.
    let mut offline_bills = Vec::new();
    for i in 0..5 {
        offline_bills.push(sell_to(&a.store, Some(x), "TEA", 100 + i).id);
    }
    let z = customer(&a.store, "Zara", "90000 33333");
    offline_bills.push(sell_to(&a.store, Some(z), "CAKE", 250).id);
    a.store
        .update_customer(
            x,
            a.store.customer(x).expect("x").version,
            CustomerUpdate {
                notes: Some("likes masala chai".into()),
                ..CustomerUpdate::default()
            },
        )
        .expect("notes");
    // Meanwhile the store goes on without it, and the log is compacted.
    rename(&b.store, x, "Xavier Dsouza");
    let at_b = sell_to(&b.store, Some(y), "COFFEE", 300);
    b.sync();
    let done = server
        .block(server.storage.compact("t1", Horizon::Seq(i64::MAX)))
        .expect("compact");
    assert!(done.removed > 0 && done.horizon == done.head);

    // Back online. A rename made while the snapshot is applied is pending
    // and keeps its local value over the snapshot's older one.
    a.config.bootstrap_page = 1;
    let observer = AfterFirstPage {
        edit: || rename(&a.store, y, "Yasmin Local"),
        done: AtomicBool::new(false),
    };
    let summary = a.store.sync(&a.config, &observer).expect("sync");
    assert_eq!(summary.pushed, 8, "6 sales, Zara and the notes");
    assert_eq!(summary.quarantined, 0);
    assert!(summary.bootstrapped > 0, "{summary:?}");
    assert_eq!(a.store.customer(y).expect("y").name, "Yasmin Local");
    assert_eq!(a.store.sync_status().expect("status").pending_changes, 1);
    let seen = a.store.customer(x).expect("x");
    assert_eq!(
        (seen.name.as_str(), seen.notes.as_str()),
        ("Xavier Dsouza", "likes masala chai")
    );
    assert!(a.store.bill(at_b.id).is_ok());

    a.sync();
    b.sync();
    a.sync();
    assert_eq!(a.store.sync_status().expect("status").pending_changes, 0);
    assert_eq!(snapshot(&a.store), snapshot(&b.store));
    for id in &offline_bills {
        assert!(b.store.bill(*id).is_ok(), "every offline sale reached b");
    }
    assert_eq!(b.store.customer(y).expect("y").name, "Yasmin Local");
    assert_eq!(b.store.customer_summary(x).expect("m").visits, 5);
    // The server holds the same: a till bootstrapped now matches both.
    let c = fresh(&server, dir.path(), "S1", "T3");
    c.sync();
    assert_eq!(snapshot(&c.store), snapshot(&a.store));
    let report = a.store.verify_chain().expect("chain");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    server.stop();
}

#[test]
fn a_till_reinstalled_under_its_old_code_numbers_after_its_old_bills() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let c = customer(&a.store, "Asha", "90000 44441");
    for _ in 0..3 {
        sell_to(&a.store, Some(c), "TEA", 100);
    }
    a.sync();
    let config = a.config.clone();
    drop(a);

    let path = dir.path().join("reinstalled.db");
    let store = Store::open(StoreOptions::new(path, "t1", "S1", "T1")).expect("open");
    store.set_staff("priya").expect("staff");
    let summary = store.sync(&config, &NoopObserver).expect("bootstrap");
    assert_eq!(summary.bootstrapped, 4);
    let bill = sell_to(&store, Some(c), "CAKE", 200);
    assert_eq!(bill.number, "S1-T1-000004");
    let next = customer(&store, "Ravi", "90000 44442");
    assert_eq!(store.customer(next).expect("ravi").number, "S1-T1-C000002");
    let report = store.verify_chain().expect("chain");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(store.sync(&config, &NoopObserver).expect("sync").pushed, 2);
    server.stop();
}

#[test]
fn a_customers_history_comes_from_every_store_and_is_not_kept() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let s2 = Till::new(&server, dir.path(), "S2", "T1");
    let asha = customer(&a.store, "Asha", "90000 55551");
    let here = sell_to(&a.store, Some(asha), "TEA", 100);
    a.sync();
    s2.sync();
    let there: Vec<Uuid> = (0..2)
        .map(|i| sell_to(&s2.store, Some(asha), "COFFEE", 200 + i).id)
        .collect();
    s2.sync();
    a.sync();

    let client = SyncClient::new(&a.config).expect("client");
    let all = client
        .customer_bills(&a.store, asha, None, 10, &NoopObserver)
        .expect("history");
    let ids: Vec<Uuid> = all.items.iter().map(|b| b.id).collect();
    assert_eq!(ids, vec![there[1], there[0], here.id], "newest first");
    assert_eq!(all.items[0].store_id, "S2");
    assert_eq!(all.items[0].total, 201);
    assert!(all.next.is_none());
    let first = client
        .customer_bills(&a.store, asha, None, 2, &NoopObserver)
        .expect("page");
    assert_eq!(first.items.len(), 2);
    let rest = client
        .customer_bills(&a.store, asha, first.next.as_deref(), 2, &NoopObserver)
        .expect("page");
    assert_eq!(
        rest.items.iter().map(|b| b.id).collect::<Vec<_>>(),
        vec![here.id]
    );
    assert!(rest.next.is_none());
    // Nothing of S2 was kept: the local history and metrics are S1's.
    assert!(a.store.bill(there[0]).is_err());
    let local = a.store.customer_bills(asha, None, 10).expect("local");
    assert_eq!(local.items.len(), 1);
    assert_eq!(a.store.customer_summary(asha).expect("m").visits, 1);
    assert!(client
        .customer_bills(&a.store, asha, None, 0, &NoopObserver)
        .is_err());
    server.stop();
}

#[test]
fn a_till_bootstrapped_after_a_merge_and_a_compaction_follows_the_old_id_to_the_survivor() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S1", "T2");
    let elsewhere = Till::new(&server, dir.path(), "S2", "T1");
    for till in [&a, &b, &elsewhere] {
        till.sync();
    }
    // One person signed up at two tills offline: the server merges them
    // into the one created first.
    let survivor = customer(&a.store, "Asha Rao", "98765 40001");
    let kept = sell_to(&a.store, Some(survivor), "TEA", 100);
    let loser = customer(&b.store, "Asha R", "98765 40001");
    let moved = sell_to(&b.store, Some(loser), "COFFEE", 250);
    a.sync();
    b.sync();
    let merges = server
        .block(server.storage.merges("t1", &loser.to_string()))
        .expect("merges");
    assert_eq!(merges.len(), 1);
    assert_eq!(merges[0].survivor, survivor.to_string());

    // The whole log is compacted; the merge's own entries stay for undoing it.
    let done = server
        .block(server.storage.compact("t1", Horizon::Seq(i64::MAX)))
        .expect("compact");
    assert_eq!(done.horizon, done.head);
    assert!(done.removed > 0);
    let db = rusqlite::Connection::open(
        server
            .data
            .join(till_sync_server::storage::sqlite::FILE_NAME),
    )
    .expect("server db");
    let left: Vec<i64> = db
        .prepare("SELECT seq FROM log WHERE tenant = 't1' ORDER BY seq")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("log")
        .collect::<rusqlite::Result<_>>()
        .expect("seqs");
    assert_eq!(left, vec![merges[0].tombstone_seq, merges[0].survivor_seq]);

    // A new till starts from the snapshot: the old id leads to the survivor,
    // who holds both bills, and a sale against the old id lands on it.
    let c = fresh(&server, dir.path(), "S1", "T3");
    assert!(c.sync().bootstrapped > 0);
    assert_eq!(c.store.customer(loser).expect("follows").id, survivor);
    let tombstone = c
        .store
        .customer_including_deleted(loser)
        .expect("tombstone");
    assert_eq!(tombstone.merged_into, Some(survivor));
    assert_eq!(
        c.store.bill(moved.id).expect("moved").customer_id,
        Some(survivor)
    );
    assert_eq!(
        c.store.bill(kept.id).expect("kept").customer_id,
        Some(survivor)
    );
    let summary = c.store.customer_summary(loser).expect("summary");
    assert_eq!((summary.customer_id, summary.visits), (survivor, 2));
    let late = sell_to(&c.store, Some(loser), "CAKE", 75);
    assert_eq!(late.customer_id, Some(survivor));
    c.sync();
    a.sync();
    assert_eq!(a.store.customer_summary(survivor).expect("a").visits, 3);
    assert_eq!(snapshot(&c.store), snapshot(&a.store));

    // Another store's till asks for the old id's history: the survivor's.
    let client = SyncClient::new(&elsewhere.config).expect("client");
    let history = client
        .customer_bills(&elsewhere.store, loser, None, 10, &NoopObserver)
        .expect("history");
    let mut ids: Vec<Uuid> = history.items.iter().map(|b| b.id).collect();
    ids.sort_unstable();
    let mut want = vec![kept.id, moved.id, late.id];
    want.sort_unstable();
    assert_eq!(ids, want);
    server.stop();
}
