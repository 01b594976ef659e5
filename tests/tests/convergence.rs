//! Randomized convergence: several tills of one store make random edits
//! and sales while syncing in a random order, some creating the same
//! person (one of a few phone numbers) offline; once everyone has synced
//! twice, every till holds the same state, and no two live customers share
//! an identity phone on any till or on the server. Seeded, so a failure replays:
//! `TILL_CONVERGENCE_SEEDS=200 cargo test -p till-e2e --test convergence`
//! runs 200 seeds (default 3); `TILL_CONVERGENCE_SEED=N` runs seed N only.

mod common;

use common::{snapshot, Server, Till};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, OpenFlags};
use till_core::{CustomerUpdate, NewBill, NewCustomer, NewLine, Tender};
use uuid::Uuid;

const DEVICES: usize = 3;
const STEPS: usize = 40;
/// Phones several tills may each give a new customer: the server merges them.
const SHARED_PHONES: [&str; 2] = ["98000 00001", "98000 00002"];

/// Identity phones held by more than one live customer in the database at `path`.
fn duplicate_phones(path: &std::path::Path, live: &str) -> Vec<String> {
    let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    let mut stmt = db
        .prepare(&format!(
            "SELECT phone_e164 FROM customers WHERE phone_e164 IS NOT NULL AND {live}
             GROUP BY phone_e164 HAVING count(*) > 1"
        ))
        .expect("prepare");
    stmt.query_map([], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

fn run(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let tills: Vec<Till> = (0..DEVICES)
        .map(|i| Till::new(&server, dir.path(), "S1", &format!("T{i}")))
        .collect();
    let mut customers: Vec<Uuid> = Vec::new();
    for step in 0..STEPS {
        let till = &tills[rng.random_range(0..DEVICES)];
        let known = (!customers.is_empty())
            .then(|| customers[rng.random_range(0..customers.len())])
            .and_then(|id| till.store.customer(id).ok());
        match (rng.random_range(0..6), known) {
            (0, _) | (_, None) if rng.random_bool(0.5) => {
                let phone = SHARED_PHONES[rng.random_range(0..SHARED_PHONES.len())];
                let (c, _) = till
                    .store
                    .find_or_create_by_phone(phone, &format!("Regular {seed} {step}"))
                    .expect("find or create");
                customers.push(c.id);
            }
            (0, _) | (_, None) => {
                let c = till
                    .store
                    .create_customer(
                        NewCustomer::named(&format!("Customer {seed} {step}"))
                            .with_phone(&format!("9{:09}", 100_000 + step)),
                    )
                    .expect("create");
                customers.push(c.id);
            }
            (1, Some(c)) => {
                till.store
                    .update_customer(
                        c.id,
                        c.version,
                        CustomerUpdate {
                            name: Some(format!("Renamed {step}")),
                            ..CustomerUpdate::default()
                        },
                    )
                    .expect("rename");
            }
            (2, Some(c)) => {
                till.store
                    .update_customer(
                        c.id,
                        c.version,
                        CustomerUpdate {
                            notes: Some(format!("note {step}")),
                            ..CustomerUpdate::default()
                        },
                    )
                    .expect("notes");
            }
            (3, Some(c)) => {
                let tag = ["vip", "wholesale", "staff"][rng.random_range(0..3)];
                till.store.tag_customer(c.id, &[tag], &[]).expect("tag");
            }
            (4, Some(c)) if rng.random_bool(0.3) => {
                till.store.delete_customer(c.id).expect("delete");
            }
            (_, Some(c)) => {
                let price = rng.random_range(10..500);
                till.store
                    .sell(
                        NewBill {
                            customer_id: Some(c.id),
                            lines: vec![NewLine::item("TEA", "Tea", 1, price)],
                            ..NewBill::default()
                        },
                        &[Tender::cash(price)],
                    )
                    .expect("sell");
            }
        }
        if rng.random_bool(0.3) {
            tills[rng.random_range(0..DEVICES)].sync();
        }
    }
    for _ in 0..2 {
        let mut order: Vec<usize> = (0..DEVICES).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        for i in order {
            tills[i].sync();
        }
    }
    let first = snapshot(&tills[0].store);
    for (i, till) in tills.iter().enumerate().skip(1) {
        assert_eq!(
            snapshot(&till.store),
            first,
            "seed {seed}: till {i} differs"
        );
        assert_eq!(
            till.store.sync_status().expect("status").pending_changes,
            0,
            "seed {seed}"
        );
    }
    for till in &tills {
        let dups = duplicate_phones(
            till.store.path(),
            "phone_shared = 0 AND deleted_at IS NULL AND merged_into IS NULL",
        );
        assert!(dups.is_empty(), "seed {seed}: {dups:?}");
        let report = till.store.verify().expect("verify");
        assert!(report.is_ok(), "seed {seed}: {:?}", report.problems);
    }
    let on_server = duplicate_phones(
        &server
            .data
            .join(till_sync_server::storage::sqlite::FILE_NAME),
        "live = 1",
    );
    assert!(on_server.is_empty(), "seed {seed}: {on_server:?}");
    server.stop();
}

#[test]
fn tills_converge_under_random_edits_and_sync_orders() {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    match env("TILL_CONVERGENCE_SEED") {
        Some(seed) => run(seed),
        None => (0..env("TILL_CONVERGENCE_SEEDS").unwrap_or(3)).for_each(run),
    }
}
