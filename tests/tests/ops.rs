//! Tills against a real server that pushes back: one that answers 429
//! (a tight per-device rate limit) and 503 (a push held past the server's
//! time limit by another writer's lock), which a till rides out by backing
//! off and retrying, losing and duplicating nothing; and the long-poll wait
//! that lets a second till see a sale within moments.

mod common;

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{snapshot, Server, Till};
use till_core::sync::protocol::ServerChange;
use till_core::sync::AsyncSyncClient;
use till_core::{NewBill, NewCustomer, NewLine, Store, SyncClient, SyncObserver, Tender};
use till_sync_server::auth::DeviceScope;
use till_sync_server::ratelimit::RateLimit;
use till_sync_server::storage::sqlite::FILE_NAME;
use till_sync_server::storage::Storage;
use till_sync_server::Limits;

fn sell(store: &Store, customer: Option<uuid::Uuid>, price: i64) -> till_core::Bill {
    store
        .sell(
            NewBill {
                customer_id: customer,
                lines: vec![NewLine::item("TEA", "Tea", 1, price)],
                ..NewBill::default()
            },
            &[Tender::cash(price)],
        )
        .expect("sell")
}

/// Remembers why each retry happened.
#[derive(Default)]
struct Retries(Mutex<Vec<String>>);

impl SyncObserver for Retries {
    fn retrying(&self, _attempt: u32, _delay: Duration, cause: &str) {
        self.0.lock().expect("lock").push(cause.to_owned());
    }
}

#[test]
fn a_till_rides_out_429_and_503_without_losing_or_duplicating_anything() {
    let dir = tempfile::tempdir().expect("dir");
    let limits = Limits {
        rate: RateLimit {
            per_second: NonZeroU32::new(2).expect("2"),
            burst: NonZeroU32::new(2).expect("2"),
        },
        request_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let server = Server::start_with(&dir.path().join("server"), limits);
    let mut a = Till::new(&server, dir.path(), "S1", "T1");
    let mut b = Till::new(&server, dir.path(), "S1", "T2");
    let mut customers = Vec::new();
    for i in 0..30 {
        let c = a
            .store
            .create_customer(
                NewCustomer::named(&format!("Customer {i}"))
                    .with_phone(&format!("9{:09}", 200_000 + i)),
            )
            .expect("customer");
        sell(&a.store, Some(c.id), 100 + i);
        customers.push(c.id);
    }
    a.config.push_batch = 20;
    a.config.pull_page = 20;
    a.config.max_attempts = 10;
    b.config.pull_page = 100;
    b.config.max_attempts = 10;

    // Another writer holds the database for 1.5 s: the first push waits
    // past the server's 1 s limit and is answered 503, then commits.
    let lock = rusqlite::Connection::open(server.data.join(FILE_NAME)).expect("open");
    lock.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1_500));
        drop(lock);
    });
    let retries = Retries::default();
    let summary = a.store.sync(&a.config, &retries).expect("sync");
    release.join().expect("released");
    let causes = retries.0.lock().expect("lock").clone();
    eprintln!("retries: {causes:?}");
    assert!(causes.iter().any(|c| c == "HTTP 503"), "{causes:?}");
    assert!(causes.iter().any(|c| c == "HTTP 429"), "{causes:?}");
    assert_eq!((summary.pushed, summary.quarantined), (60, 0));
    assert_eq!(a.store.sync_status().expect("status").pending_changes, 0);

    b.store.sync(&b.config, &retries).expect("sync b");
    // The server's log holds each change exactly once, in one sequence.
    let scope = DeviceScope {
        tenant: "t1".into(),
        store: "S1".into(),
        device: "T2".into(),
    };
    let log = server
        .block(server.storage.pull(&scope, 0, 1_000))
        .expect("log");
    let log: Vec<ServerChange> = log
        .changes
        .iter()
        .map(|c| serde_json::from_str(c.get()).expect("a server change"))
        .collect();
    let seqs: Vec<i64> = log.iter().map(|c| c.server_seq).collect();
    assert_eq!(seqs, (1..=60).collect::<Vec<_>>());
    let mut ids: Vec<_> = log.iter().map(|c| c.change.change_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 60, "no change logged twice");
    for (i, id) in customers.iter().enumerate() {
        let summary = b.store.customer_summary(*id).expect("metrics");
        assert_eq!((summary.visits, summary.total_spent), (1, 100 + i as i64));
    }
    a.sync();
    assert_eq!(snapshot(&a.store), snapshot(&b.store));
    server.stop();
}

#[test]
fn a_waiting_till_sees_another_tills_sale_within_moments() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S1", "T2");
    let asha = a
        .store
        .create_customer(NewCustomer::named("Asha Rao").with_phone("98765 43210"))
        .expect("asha");
    a.sync();
    b.sync();

    let client = SyncClient::new(&b.config).expect("client");
    let (bill, woke, seen) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            // An idle till's loop: wait, and sync when told there are changes.
            loop {
                let changed = client
                    .wait_for_changes(&b.store, Duration::from_secs(20))
                    .expect("wait");
                let woke = Instant::now();
                if changed {
                    client
                        .sync(&b.store, &till_core::NoopObserver)
                        .expect("sync");
                    return (woke, Instant::now());
                }
            }
        });
        for _ in 0..200 {
            if server.waiters_open() == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(server.waiters_open(), 1, "the till is waiting");
        let sold = Instant::now();
        let bill = sell(&a.store, Some(asha.id), 250);
        a.sync();
        let (woke, seen) = watcher.join().expect("watcher");
        (bill, woke - sold, seen - sold)
    });
    eprintln!(
        "till B woke {} ms after till A's sale began and showed the bill after {} ms",
        woke.as_millis(),
        seen.as_millis()
    );
    assert_eq!(b.store.bill(bill.id).expect("bill").total, 250);
    assert_eq!(b.store.customer_summary(asha.id).expect("m").visits, 1);
    // Far below the 20 s wait: only a broken wake-up could take this long.
    assert!(woke < Duration::from_secs(5), "{woke:?}");
    assert_eq!(server.waiters_open(), 0);
    server.stop();
}

#[test]
fn the_async_client_waits_in_the_apps_runtime() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S1", "T2");
    // Bootstrapped while the tenant is empty, so the sale below is pulled.
    b.sync();
    let client = AsyncSyncClient::new(&b.config).expect("client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let quiet = runtime
        .block_on(client.wait_for_changes(&b.store, Duration::from_millis(300)))
        .expect("wait");
    assert!(!quiet, "nothing happened");
    sell(&a.store, None, 90);
    a.sync();
    // The change is already there: the wait answers at once.
    let started = Instant::now();
    let changed = runtime
        .block_on(client.wait_for_changes(&b.store, Duration::from_secs(20)))
        .expect("wait");
    assert!(changed);
    assert!(started.elapsed() < Duration::from_secs(5));
    let summary = runtime
        .block_on(client.sync(&b.store, &till_core::NoopObserver))
        .expect("sync");
    assert_eq!(summary.pulled, 1);
    let after = runtime
        .block_on(client.wait_for_changes(&b.store, Duration::ZERO))
        .expect("wait");
    assert!(!after, "caught up");
    server.stop();
}
