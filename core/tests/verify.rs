//! `Store::verify` reports each kind of corruption made behind the store's back.

use rusqlite::Connection;
use till_core::{
    ChainProblem, NewBill, NewCustomer, NewLine, Problem, RefundLine, Store, StoreOptions, Tender,
};

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Store,
}

/// A store with a few customers, sales, a void and a refund; verify() is clean.
fn day_of_sales() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("till.db");
    let store = Store::open(StoreOptions::new(&path, "acme", "S01", "T01")).expect("open");
    for (i, phone) in ["98765 43210", "+91 91234 56789", "(0)99887-76655"]
        .iter()
        .enumerate()
    {
        let c = store
            .create_customer(NewCustomer::named(&format!("Customer {i}")).with_phone(phone))
            .expect("customer");
        for n in 1..=3 {
            let bill = store
                .open_bill(NewBill {
                    customer_id: Some(c.id),
                    lines: vec![NewLine::item("SKU", "Tea", n, 1_250).taxed("GST5", 500)],
                    ..NewBill::default()
                })
                .expect("bill");
            let paid = store.pay(bill.id, &[Tender::cash(10_000)]).expect("pay");
            if n == 3 {
                store
                    .refund(
                        paid.id,
                        &[RefundLine {
                            line_no: 1,
                            qty_milli: 1_000,
                        }],
                        &[Tender::cash(1_250)],
                    )
                    .expect("refund");
            }
        }
    }
    let open = store.open_bill(NewBill::default()).expect("walk-in");
    store.void_bill(open.id).expect("void");
    let report = store.verify().expect("verify");
    assert!(report.is_ok(), "fresh store: {:?}", report.problems);
    assert_eq!(report.customers_checked, 3);
    assert_eq!(report.bills_checked, 13);
    Fixture {
        _dir: dir,
        path,
        store,
    }
}

fn tamper(f: &Fixture, sql: &str) -> Vec<Problem> {
    let conn = Connection::open(&f.path).expect("raw connection");
    conn.execute_batch(sql).expect("tamper");
    drop(conn);
    f.store.verify().expect("verify").problems
}

#[test]
fn metrics_out_of_step_with_bills_are_reported() {
    let f = day_of_sales();
    let problems = tamper(&f, "UPDATE customer_metrics SET total_spent = total_spent + 1 WHERE customer_id IN (SELECT customer_id FROM customer_metrics LIMIT 1)");
    assert!(
        matches!(problems.as_slice(), [Problem::Metrics { stored, from_bills, .. }] if stored.total_spent == from_bills.total_spent + 1),
        "{problems:?}"
    );
}

#[test]
fn missing_metrics_rows_are_reported() {
    let f = day_of_sales();
    let problems = tamper(&f, "DELETE FROM customer_metrics");
    assert_eq!(
        problems
            .iter()
            .filter(|p| matches!(p, Problem::Metrics { .. }))
            .count(),
        3,
        "{problems:?}"
    );
}

#[test]
fn an_altered_bill_breaks_the_chain() {
    let f = day_of_sales();
    let problems = tamper(
        &f,
        "UPDATE bill_lines SET gross = gross - 100 WHERE bill_rid = 2",
    );
    assert!(
        problems.contains(&Problem::Chain(ChainProblem::Altered {
            number: "S01-T01-000002".into()
        })),
        "{problems:?}"
    );
}

#[test]
fn a_removed_bill_is_missing_from_numbers_and_chain() {
    let f = day_of_sales();
    let problems = tamper(
        &f,
        "DELETE FROM bill_lines WHERE bill_rid = 4; DELETE FROM bill_payments WHERE bill_rid = 4;
         DELETE FROM bills WHERE rid = 4;",
    );
    assert!(
        problems.contains(&Problem::Chain(ChainProblem::MissingNumber { seq: 4 })),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::Chain(ChainProblem::MissingLink { .. }))),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::Chain(ChainProblem::BrokenLink { .. }))),
        "{problems:?}"
    );
}

#[test]
fn lines_and_payments_without_a_bill_are_orphans() {
    let f = day_of_sales();
    let problems = tamper(
        &f,
        "PRAGMA foreign_keys = OFF;
         INSERT INTO bill_lines (bill_rid, line_no, product_code, name, qty_milli, unit_price, discount,
             tax_category, tax_rate_bp, bill_discount, net, tax, gross)
         VALUES (999, 1, 'X', 'X', 1000, 1, 0, '', 0, 0, 1, 0, 1);
         INSERT INTO bill_payments (bill_rid, seq, method, amount, tendered) VALUES (998, 1, 'cash', 1, 1);",
    );
    assert!(
        problems.contains(&Problem::OrphanLines { bill_rid: 999 }),
        "{problems:?}"
    );
    assert!(
        problems.contains(&Problem::OrphanPayments { bill_rid: 998 }),
        "{problems:?}"
    );
}

#[test]
fn search_rows_that_differ_from_customers_are_reported() {
    let f = day_of_sales();
    let problems = tamper(
        &f,
        "UPDATE customers_fts SET name = 'someone else' WHERE rowid = 1",
    );
    assert!(
        problems.contains(&Problem::SearchRowStale {
            number: "S01-T01-C000001".into()
        }),
        "{problems:?}"
    );

    let problems = tamper(&f, "DELETE FROM customers_fts WHERE rowid = 2");
    assert!(
        problems.contains(&Problem::SearchRowStale {
            number: "S01-T01-C000002".into()
        }),
        "{problems:?}"
    );

    let problems = tamper(&f, "INSERT INTO customers_fts (rowid, name, number, phone, email) VALUES (77, 'ghost', '', '', '')");
    assert!(
        problems.contains(&Problem::SearchRowOrphan { rowid: 77 }),
        "{problems:?}"
    );
}

#[test]
fn a_deleted_customer_must_have_no_search_row() {
    let f = day_of_sales();
    let c = f
        .store
        .customer_by_number("S01-T01-C000003")
        .expect("customer");
    f.store.delete_customer(c.id).expect("delete");
    let report = f.store.verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    let problems = tamper(&f, "INSERT INTO customers_fts (rowid, name, number, phone, email) VALUES (3, 'Customer 2', '', '', '')");
    assert!(
        problems.contains(&Problem::SearchRowOrphan { rowid: 3 }),
        "{problems:?}"
    );
    assert!(
        problems.contains(&Problem::SearchRowStale {
            number: "S01-T01-C000003".into()
        }),
        "{problems:?}"
    );
}

#[test]
fn a_chain_head_that_is_not_the_last_bill_is_reported() {
    let f = day_of_sales();
    let problems = tamper(
        &f,
        "UPDATE sequences SET head = (SELECT hash FROM bills WHERE chain_pos = 12)
         WHERE name = 'bill_chain'",
    );
    assert_eq!(
        problems,
        vec![Problem::Chain(ChainProblem::WrongHead { pos: 13 })]
    );
}

#[test]
fn a_removed_last_bill_is_missing_from_numbers_and_chain() {
    let f = day_of_sales();
    let problems = tamper(
        &f,
        "DELETE FROM bill_lines WHERE bill_rid = (SELECT rid FROM bills WHERE chain_pos = 13);
         DELETE FROM bill_payments WHERE bill_rid = (SELECT rid FROM bills WHERE chain_pos = 13);
         DELETE FROM bills WHERE chain_pos = 13;",
    );
    assert!(
        problems.contains(&Problem::Chain(ChainProblem::MissingNumber { seq: 13 })),
        "{problems:?}"
    );
    assert!(
        problems.contains(&Problem::Chain(ChainProblem::MissingLink { pos: 13 })),
        "{problems:?}"
    );
}

#[test]
fn two_bills_at_one_chain_position_are_reported() {
    let f = day_of_sales();
    let problems = tamper(&f, "UPDATE bills SET chain_pos = 2 WHERE chain_pos = 3");
    assert!(
        problems.contains(&Problem::Chain(ChainProblem::MissingLink { pos: 3 })),
        "{problems:?}"
    );
}
