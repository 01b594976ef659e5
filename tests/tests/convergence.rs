//! Randomized convergence: several tills of one store make random edits
//! and sales while syncing in a random order; once everyone has synced
//! twice, every till holds the same state. Seeded, so a failure replays:
//! `TILL_CONVERGENCE_SEEDS=200 cargo test -p till-e2e --test convergence`
//! runs 200 seeds (default 3); `TILL_CONVERGENCE_SEED=N` runs seed N only.

mod common;

use common::{Server, Till};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, OpenFlags};
use till_core::{CustomerUpdate, NewBill, NewCustomer, NewLine, Store, Tender};
use uuid::Uuid;

const DEVICES: usize = 3;
const STEPS: usize = 40;

fn snapshot(store: &Store) -> Vec<String> {
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
