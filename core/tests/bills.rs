//! Bills and customer metrics through the `Store` facade, on real SQLite
//! files: ringing up, totals and rounding, tenders, voids, refunds, gapless
//! numbers under concurrency, the hash chain against tampering, metrics
//! against the bills, customer bill history and the change log.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;
use till_core::{
    BillKind, BillStatus, ChainProblem, Entity, Error, NewBill, NewLine, PriceMode, RefundLine,
    Store, Tender, TenderMethod,
};
use uuid::Uuid;

use support::*;

/// Fixtures and assertions shared by the tests below.
mod support {
    use std::fmt::Debug;
    use std::path::PathBuf;
    use std::time::Duration;

    use rusqlite::{Connection, OptionalExtension};
    use serde_json::{Map, Value};
    use till_core::{Bill, Change, Customer, Error, NewCustomer, NewLine, Store, StoreOptions};
    use uuid::Uuid;

    /// A store on a file of its own, signed in as `cashier-7`.
    pub struct Till {
        pub _dir: tempfile::TempDir,
        pub path: PathBuf,
        pub store: Store,
    }

    pub fn options(path: &std::path::Path) -> StoreOptions {
        StoreOptions::new(path, "acme", "S01", "T01")
    }

    pub fn till() -> Till {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("till.db");
        let store = Store::open(options(&path)).expect("open store");
        store.set_staff("cashier-7").expect("staff");
        Till {
            _dir: dir,
            path,
            store,
        }
    }

    impl Till {
        /// A plain connection to the file, behind the store's back.
        pub fn raw(&self) -> Connection {
            Connection::open(&self.path).expect("raw connection")
        }

        /// The single integer `sql` selects.
        pub fn scalar(&self, sql: &str) -> i64 {
            self.raw()
                .query_row(sql, [], |r| r.get(0))
                .expect("scalar query")
        }

        /// Records in the change log.
        pub fn change_count(&self) -> i64 {
            self.scalar("SELECT COUNT(*) FROM changes")
        }

        /// The last bill number handed out (0 before the first).
        pub fn last_number(&self) -> i64 {
            self.scalar("SELECT COALESCE(MAX(last), 0) FROM sequences WHERE name = 'bill_number'")
        }

        /// The bill number the device hands out next.
        pub fn next_number(&self) -> String {
            number(self.last_number() + 1)
        }

        /// A customer with a phone.
        pub fn customer(&self, name: &str, phone: &str) -> Customer {
            self.store
                .create_customer(NewCustomer::named(name).with_phone(phone))
                .expect("customer")
        }

        /// The whole change history of a record, oldest first, page by page.
        pub fn history(&self, id: Uuid) -> Vec<Change> {
            let mut all = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = self
                    .store
                    .history(&id.to_string(), cursor.as_deref(), 3)
                    .expect("history page");
                assert!(page.items.len() <= 3);
                all.extend(page.items);
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => return all,
                }
            }
        }

        /// Metrics of a customer recomputed from the bills with our own SQL:
        /// `(visits, total_spent, first_visit, last_visit)`.
        pub fn metrics_from_bills(&self, customer: Uuid) -> (i64, i64, Option<i64>, Option<i64>) {
            const SOLD: &str =
                "kind = 'sale' AND status IN ('paid', 'partly_refunded', 'refunded')";
            self.raw()
                .query_row(
                    &format!(
                        "SELECT COALESCE(SUM(CASE WHEN {SOLD} THEN 1 ELSE 0 END), 0),
                            COALESCE(SUM(CASE WHEN {SOLD} THEN total
                                              WHEN kind = 'refund' THEN -total
                                              ELSE 0 END), 0),
                            MIN(CASE WHEN {SOLD} THEN closed_at END),
                            MAX(CASE WHEN {SOLD} THEN closed_at END)
                     FROM bills WHERE customer_id = ?1"
                    ),
                    [customer.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .expect("aggregate")
        }

        /// The stored metrics row, if any.
        pub fn metrics_row(&self, customer: Uuid) -> Option<(i64, i64)> {
            self.raw()
                .query_row(
                    "SELECT visits, total_spent FROM customer_metrics WHERE customer_id = ?1",
                    [customer.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .expect("metrics row")
        }

        /// Asserts the summary of `customer` is exactly what its bills say.
        pub fn assert_metrics_match_bills(&self, customer: Uuid) {
            let s = self.store.customer_summary(customer).expect("summary");
            let (visits, spent, first, last) = self.metrics_from_bills(customer);
            assert_eq!(
                (s.visits, s.total_spent, s.first_visit_ms, s.last_visit_ms),
                (visits, spent, first, last),
                "stored metrics differ from the bills"
            );
            let average = if visits == 0 {
                0
            } else {
                round_div(spent, visits)
            };
            assert_eq!(s.average_bill, average);
        }
    }

    /// `num / den` rounded half away from zero, written independently of the crate.
    pub fn round_div(num: i64, den: i64) -> i64 {
        let q = num / den;
        let r = num % den;
        if 2 * r.abs() >= den {
            q + num.signum()
        } else {
            q
        }
    }

    /// The device's `n`th bill number.
    pub fn number(n: i64) -> String {
        format!("S01-T01-{n:06}")
    }

    /// One item at `price`, untaxed.
    pub fn item(code: &str, qty: i64, price: i64) -> NewLine {
        NewLine::item(code, &format!("Item {code}"), qty, price)
    }

    /// The lines of the worked examples (see `tax_exclusive_totals_*`):
    /// 0.750 kg of tea at 19.99 (5%), two kettles at 50.00 with 5.00 off
    /// (18%), three packs of biscuits at 3.33 (untaxed).
    pub fn example_lines() -> Vec<NewLine> {
        vec![
            NewLine {
                qty_milli: 750,
                ..NewLine::item("TEA-LOOSE", "Loose tea", 1, 1_999)
            }
            .taxed("GST5", 500),
            NewLine::item("KETTLE", "Kettle", 2, 5_000)
                .taxed("GST18", 1_800)
                .discounted(500),
            NewLine::item("BISCUIT", "Biscuits", 3, 333),
        ]
    }

    /// The field of a validation error; panics on anything else.
    #[track_caller]
    pub fn invalid_field<T: Debug>(result: till_core::Result<T>) -> String {
        match result {
            Err(Error::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    /// Asserts a validation error on `field`.
    #[track_caller]
    pub fn assert_invalid<T: Debug>(result: till_core::Result<T>, field: &str) {
        assert_eq!(invalid_field(result), field);
    }

    /// Asserts an invalid-state error on a bill in `state`.
    #[track_caller]
    pub fn assert_state<T: Debug>(result: till_core::Result<T>, state: &str) {
        match result {
            Err(Error::InvalidState {
                entity: till_core::Entity::Bill,
                state: s,
                ..
            }) => assert_eq!(s, state),
            other => panic!("expected a bill in state {state}, got {other:?}"),
        }
    }

    /// A bill's fields as the change log records them (no id, no version).
    pub fn recorded_fields(bill: &Bill) -> Map<String, Value> {
        let mut value = serde_json::to_value(bill).expect("bill as json");
        let map = value.as_object_mut().expect("object");
        map.remove("id");
        map.remove("version");
        map.clone()
    }

    /// Lets the wall clock move on, so visit times differ.
    pub fn tick() {
        std::thread::sleep(Duration::from_millis(3));
    }
}

fn tenders_cash(amount: i64) -> Vec<Tender> {
    vec![Tender::cash(amount)]
}

/// A paid sale of `lines` for `customer`.
fn sale(t: &Till, customer: Option<Uuid>, lines: Vec<NewLine>) -> till_core::Bill {
    let bill = t
        .store
        .open_bill(NewBill {
            customer_id: customer,
            lines,
            ..NewBill::default()
        })
        .expect("open");
    let total = bill.total;
    t.store.pay(bill.id, &tenders_cash(total)).expect("pay")
}

fn refund_line(line_no: u32, qty_milli: i64) -> RefundLine {
    RefundLine { line_no, qty_milli }
}

// ---------------------------------------------------------------- ringing up

#[test]
fn walk_in_and_customer_bills_open_with_consecutive_numbers() {
    let t = till();
    let asha = t.customer("Asha Rao", "98765 43210");

    let walk_in = t.store.open_bill(NewBill::default()).expect("walk-in");
    assert_eq!(walk_in.number, "S01-T01-000001");
    assert_eq!(walk_in.status, BillStatus::Open);
    assert_eq!(walk_in.kind, BillKind::Sale);
    assert_eq!(walk_in.customer_id, None);
    assert_eq!(walk_in.customer_phone, None);
    assert_eq!(
        (walk_in.store_id.as_str(), walk_in.device_id.as_str()),
        ("S01", "T01")
    );
    assert_eq!(walk_in.staff_id, "cashier-7");
    assert_eq!(walk_in.currency, "INR");
    assert_eq!(walk_in.price_mode, PriceMode::Inclusive);
    assert_eq!(
        (walk_in.total, walk_in.paid_total, walk_in.version),
        (0, 0, 1)
    );
    assert!(walk_in.lines.is_empty() && walk_in.payments.is_empty());
    assert_eq!(
        (
            walk_in.chain_pos,
            walk_in.hash.as_deref(),
            walk_in.closed_at_ms
        ),
        (None, None, None)
    );

    let theirs = t
        .store
        .open_bill(NewBill {
            customer_id: Some(asha.id),
            lines: vec![item("A", 2, 250)],
            ..NewBill::default()
        })
        .expect("customer bill");
    assert_eq!(theirs.number, "S01-T01-000002");
    assert_eq!(theirs.customer_id, Some(asha.id));
    assert_eq!(theirs.customer_phone.as_deref(), Some("+919876543210"));
    assert_eq!(theirs.total, 500);

    // What was returned is what was stored, by id and by number.
    assert_eq!(t.store.bill(walk_in.id).expect("by id"), walk_in);
    assert_eq!(t.store.bill(theirs.id).expect("by id"), theirs);
    assert_eq!(
        t.store
            .bill_by_number(" S01-T01-000002 ")
            .expect("by number"),
        theirs
    );
    assert!(matches!(
        t.store.bill(Uuid::now_v7()),
        Err(Error::NotFound {
            entity: Entity::Bill,
            ..
        })
    ));
    assert!(matches!(
        t.store.bill_by_number("S01-T01-000003"),
        Err(Error::NotFound {
            entity: Entity::Bill,
            ..
        })
    ));
}

#[test]
fn lines_keep_their_numbers_when_others_are_removed() {
    let t = till();
    let bill = t.store.open_bill(NewBill::default()).expect("open");
    for (code, price) in [("A", 100), ("B", 200), ("C", 300)] {
        t.store
            .add_line(bill.id, item(code, 1, price))
            .expect("add");
    }
    let bill = t.store.remove_line(bill.id, 2).expect("remove B");
    let numbers: Vec<(u32, &str)> = bill
        .lines
        .iter()
        .map(|l| (l.line_no, l.product_code.as_str()))
        .collect();
    assert_eq!(numbers, vec![(1, "A"), (3, "C")]);
    assert_eq!(bill.total, 400);

    let bill = t.store.add_line(bill.id, item("D", 2, 50)).expect("add D");
    let numbers: Vec<u32> = bill.lines.iter().map(|l| l.line_no).collect();
    assert_eq!(numbers, vec![1, 3, 4], "a new line never takes a gap");
    assert_eq!((bill.subtotal, bill.total, bill.version), (500, 500, 6));

    // Removing a line that is not there changes nothing.
    let changes = t.change_count();
    assert!(matches!(
        t.store.remove_line(bill.id, 2),
        Err(Error::NotFound {
            entity: Entity::BillLine,
            ..
        })
    ));
    assert_eq!(t.store.bill(bill.id).expect("reload"), bill);
    assert_eq!(t.change_count(), changes);

    let bill = t.store.remove_line(bill.id, 1).expect("remove A");
    let numbers: Vec<u32> = bill.lines.iter().map(|l| l.line_no).collect();
    assert_eq!(numbers, vec![3, 4]);
    assert_eq!(bill.total, 400);
    assert_eq!(t.store.bill(bill.id).expect("reload"), bill);
}

#[test]
fn a_removed_last_line_keeps_its_number() {
    let t = till();
    let bill = t
        .store
        .open_bill(NewBill {
            lines: vec![item("A", 1, 100), item("B", 1, 200)],
            ..NewBill::default()
        })
        .expect("open");
    let bill = t.store.add_line(bill.id, item("C", 1, 300)).expect("add C");
    let bill = t.store.remove_line(bill.id, 3).expect("remove C");
    let bill = t.store.remove_line(bill.id, 2).expect("remove B");
    let bill = t.store.add_line(bill.id, item("D", 1, 400)).expect("add D");
    let numbers: Vec<(u32, &str)> = bill
        .lines
        .iter()
        .map(|l| (l.line_no, l.product_code.as_str()))
        .collect();
    assert_eq!(numbers, vec![(1, "A"), (4, "D")], "2 and 3 stay retired");

    // Every line removed: the next line still does not reuse a number,
    // also as read back from the file.
    t.store.remove_line(bill.id, 1).expect("remove A");
    t.store.remove_line(bill.id, 4).expect("remove D");
    assert_eq!(t.store.bill(bill.id).expect("reload").last_line_no, 4);
    let bill = t.store.add_line(bill.id, item("E", 1, 500)).expect("add E");
    assert_eq!(
        bill.lines.iter().map(|l| l.line_no).collect::<Vec<_>>(),
        vec![5]
    );
    let paid = t.store.pay(bill.id, &tenders_cash(500)).expect("pay");
    assert_eq!(paid.lines[0].line_no, 5);
    assert!(t.store.verify_chain().expect("chain").is_intact());
}

#[test]
fn tax_exclusive_totals_follow_the_documented_rounding() {
    let t = till();
    let bill = t
        .store
        .open_bill(NewBill {
            price_mode: Some(PriceMode::Exclusive),
            lines: example_lines(),
            ..NewBill::default()
        })
        .expect("open");
    // Tea: 0.750 x 19.99 = 14.9925 -> 14.99; tax 5% = 0.7495 -> 0.75.
    // Kettles: 2 x 50.00 - 5.00 = 95.00; tax 18% = 17.10.
    // Biscuits: 3 x 3.33 = 9.99, untaxed.
    let per_line: Vec<(i64, i64, i64, i64)> = bill
        .lines
        .iter()
        .map(|l| (l.bill_discount, l.net, l.tax, l.gross))
        .collect();
    assert_eq!(
        per_line,
        vec![
            (0, 1_499, 75, 1_574),
            (0, 9_500, 1_710, 11_210),
            (0, 999, 0, 999)
        ]
    );
    assert_eq!(
        (
            bill.subtotal,
            bill.discount_total,
            bill.tax_total,
            bill.total
        ),
        (12_498, 500, 1_785, 13_783)
    );

    // 10.00 off the bill, spread over 14.99 / 95.00 / 9.99 by largest remainder.
    let bill = t.store.set_bill_discount(bill.id, 1_000).expect("discount");
    let per_line: Vec<(i64, i64, i64, i64)> = bill
        .lines
        .iter()
        .map(|l| (l.bill_discount, l.net, l.tax, l.gross))
        .collect();
    assert_eq!(
        per_line,
        vec![
            (125, 1_374, 69, 1_443),     // 68.70 -> 69
            (792, 8_708, 1_567, 10_275), // 1567.44 -> 1567
            (83, 916, 0, 916)
        ]
    );
    assert_eq!(
        (
            bill.bill_discount,
            bill.subtotal,
            bill.discount_total,
            bill.tax_total,
            bill.total
        ),
        (1_000, 12_498, 1_500, 1_636, 12_634)
    );
    assert_eq!(t.store.bill(bill.id).expect("reload"), bill);

    // Removing the discount restores the first figures.
    let bill = t.store.set_bill_discount(bill.id, 0).expect("no discount");
    assert_eq!(bill.total, 13_783);
}

#[test]
fn tax_inclusive_totals_follow_the_documented_rounding() {
    let t = till();
    let bill = t
        .store
        .open_bill(NewBill {
            lines: example_lines(),
            ..NewBill::default()
        })
        .expect("open");
    assert_eq!(bill.price_mode, PriceMode::Inclusive);
    // Tea: 14.99 includes 5%: 14.99 x 5/105 = 0.7138 -> 0.71.
    // Kettles: 95.00 includes 18%: 95 x 18/118 = 14.4915 -> 14.49.
    let per_line: Vec<(i64, i64, i64)> =
        bill.lines.iter().map(|l| (l.net, l.tax, l.gross)).collect();
    assert_eq!(
        per_line,
        vec![(1_428, 71, 1_499), (8_051, 1_449, 9_500), (999, 0, 999)]
    );
    assert_eq!(
        (
            bill.subtotal,
            bill.discount_total,
            bill.tax_total,
            bill.total
        ),
        (12_498, 500, 1_520, 11_998)
    );

    let bill = t.store.set_bill_discount(bill.id, 1_000).expect("discount");
    let per_line: Vec<(i64, i64, i64, i64)> = bill
        .lines
        .iter()
        .map(|l| (l.bill_discount, l.net, l.tax, l.gross))
        .collect();
    assert_eq!(
        per_line,
        vec![
            (125, 1_309, 65, 1_374),
            (792, 7_380, 1_328, 8_708),
            (83, 916, 0, 916)
        ]
    );
    assert_eq!(
        (bill.discount_total, bill.tax_total, bill.total),
        (1_500, 1_393, 10_998)
    );
    for l in &bill.lines {
        assert_eq!(l.net + l.tax, l.gross, "line {}", l.line_no);
    }
}

#[test]
fn halves_round_away_from_zero() {
    let t = till();
    // 0.500 x 3 = 1.5 -> 2; 10 at 5% exclusive = 0.5 -> 1.
    let exclusive = t
        .store
        .open_bill(NewBill {
            price_mode: Some(PriceMode::Exclusive),
            lines: vec![
                NewLine {
                    qty_milli: 500,
                    ..item("HALF", 1, 3)
                },
                item("TEN", 1, 10).taxed("GST5", 500),
            ],
            ..NewBill::default()
        })
        .expect("exclusive");
    let per_line: Vec<(i64, i64, i64)> = exclusive
        .lines
        .iter()
        .map(|l| (l.net, l.tax, l.gross))
        .collect();
    assert_eq!(per_line, vec![(2, 0, 2), (10, 1, 11)]);
    assert_eq!(exclusive.total, 13);

    // 3 including 100% tax: tax = 1.5 -> 2, net 1.
    let inclusive = t
        .store
        .open_bill(NewBill {
            lines: vec![item("THREE", 1, 3).taxed("ALL", 10_000)],
            ..NewBill::default()
        })
        .expect("inclusive");
    assert_eq!(
        (
            inclusive.lines[0].net,
            inclusive.lines[0].tax,
            inclusive.total
        ),
        (1, 2, 3)
    );
}

#[test]
fn bill_discount_is_checked_against_the_bill() {
    let t = till();
    let bill = t
        .store
        .open_bill(NewBill {
            lines: vec![item("A", 1, 1_000), item("B", 1, 500)],
            bill_discount: 300,
            ..NewBill::default()
        })
        .expect("open");
    assert_eq!(
        bill.lines
            .iter()
            .map(|l| l.bill_discount)
            .collect::<Vec<_>>(),
        vec![200, 100]
    );
    assert_eq!((bill.discount_total, bill.total), (300, 1_200));

    let changes = t.change_count();
    assert_invalid(t.store.set_bill_discount(bill.id, 1_501), "bill_discount");
    assert_invalid(t.store.set_bill_discount(bill.id, -1), "bill_discount");
    assert_eq!(t.store.bill(bill.id).expect("reload"), bill);
    assert_eq!(t.change_count(), changes);

    // The whole bill may be given away.
    let free = t.store.set_bill_discount(bill.id, 1_500).expect("all off");
    assert_eq!((free.total, free.discount_total), (0, 1_500));
}

// ---------------------------------------------------------------- paying

#[test]
fn split_tenders_pay_and_only_cash_gives_change() {
    let t = till();
    let open = t
        .store
        .open_bill(NewBill {
            lines: example_lines(),
            ..NewBill::default()
        })
        .expect("open");
    assert_eq!(open.total, 11_998);

    let paid = t
        .store
        .pay(
            open.id,
            &[Tender::cash(5_000), Tender::card(7_000, " AUTH-77 ")],
        )
        .expect("pay");
    assert_eq!(paid.status, BillStatus::Paid);
    assert_eq!((paid.paid_total, paid.change_due), (11_998, 2));
    let payments: Vec<(u32, TenderMethod, i64, i64, &str)> = paid
        .payments
        .iter()
        .map(|p| (p.seq, p.method, p.amount, p.tendered, p.reference.as_str()))
        .collect();
    assert_eq!(
        payments,
        vec![
            (1, TenderMethod::Cash, 4_998, 5_000, ""),
            (2, TenderMethod::Card, 7_000, 7_000, "AUTH-77"),
        ]
    );
    assert!(paid.closed_at_ms.is_some());
    assert_eq!(paid.chain_pos, Some(1));
    assert!(paid.hash.is_some());
    assert_eq!(paid.version, open.version + 1);
    assert_eq!(t.store.bill(paid.id).expect("reload"), paid);

    // Card exactly the total, with nothing else: no change.
    let other = t
        .store
        .open_bill(NewBill {
            lines: vec![item("A", 1, 999)],
            ..NewBill::default()
        })
        .expect("open");
    let other = t
        .store
        .pay(other.id, &[Tender::card(999, "X1")])
        .expect("card");
    assert_eq!((other.paid_total, other.change_due), (999, 0));

    // Card first, cash over: the change comes out of the cash.
    let third = t
        .store
        .open_bill(NewBill {
            lines: vec![item("A", 1, 1_250)],
            ..NewBill::default()
        })
        .expect("open");
    let third = t
        .store
        .pay(third.id, &[Tender::card(1_000, "X2"), Tender::cash(500)])
        .expect("card + cash");
    assert_eq!((third.paid_total, third.change_due), (1_250, 250));
    assert_eq!(
        third
            .payments
            .iter()
            .map(|p| (p.amount, p.tendered))
            .collect::<Vec<_>>(),
        vec![(1_000, 1_000), (250, 500)]
    );
}

#[test]
fn tenders_that_do_not_settle_the_bill_are_rejected_and_write_nothing() {
    let t = till();
    let asha = t.customer("Asha Rao", "98765 43210");
    let open = t
        .store
        .open_bill(NewBill {
            customer_id: Some(asha.id),
            lines: vec![item("A", 3, 1_000)],
            ..NewBill::default()
        })
        .expect("open");
    let changes = t.change_count();
    let history = t.history(open.id).len();

    let cases: Vec<(Vec<Tender>, &str)> = vec![
        (vec![], "tenders"),
        (vec![Tender::cash(2_999)], "tenders"),
        (
            vec![Tender::cash(1_000), Tender::card(1_999, "A")],
            "tenders",
        ),
        (vec![Tender::card(3_001, "A")], "tenders"),
        (
            vec![Tender::card(2_000, "A"), Tender::card(1_500, "B")],
            "tenders",
        ),
        (
            vec![Tender {
                method: TenderMethod::Other,
                amount: 3_500,
                reference: "VOUCHER".into(),
            }],
            "tenders",
        ),
        (vec![Tender::cash(0)], "tenders[0].amount"),
        (vec![Tender::cash(-100)], "tenders[0].amount"),
        (
            vec![Tender::card(3_000, "A"), Tender::cash(-1)],
            "tenders[1].amount",
        ),
        (
            vec![Tender::cash(3_000), Tender::card(0, "A")],
            "tenders[1].amount",
        ),
    ];
    for (tenders, field) in cases {
        assert_eq!(
            invalid_field(t.store.pay(open.id, &tenders)),
            field,
            "{tenders:?}"
        );
    }
    assert_eq!(t.store.bill(open.id).expect("reload"), open);
    assert_eq!(t.change_count(), changes);
    assert_eq!(t.history(open.id).len(), history);
    assert_eq!(t.metrics_row(asha.id), None);
    assert_eq!(
        t.store.customer_summary(asha.id).expect("summary").visits,
        0
    );

    // The same bill still pays afterwards.
    let paid = t.store.pay(open.id, &tenders_cash(3_000)).expect("pay");
    assert_eq!(
        paid.chain_pos,
        Some(1),
        "failed payments took no chain position"
    );
}

#[test]
fn an_empty_bill_cannot_be_paid() {
    let t = till();
    let open = t.store.open_bill(NewBill::default()).expect("open");
    assert_invalid(t.store.pay(open.id, &tenders_cash(100)), "lines");
    assert_invalid(t.store.pay(open.id, &[]), "lines");
    let with_line = t.store.add_line(open.id, item("A", 1, 100)).expect("add");
    let emptied = t.store.remove_line(with_line.id, 1).expect("remove");
    assert_invalid(t.store.pay(emptied.id, &tenders_cash(100)), "lines");
    assert_eq!(
        t.store.bill(open.id).expect("reload").status,
        BillStatus::Open
    );
    // Selling an empty cart in one go is refused too, and takes no number.
    let last = t.last_number();
    assert_invalid(t.store.sell(NewBill::default(), &[]), "lines");
    assert_eq!(t.last_number(), last);
}

#[test]
fn a_paid_bill_is_final() {
    let t = till();
    let asha = t.customer("Asha Rao", "98765 43210");
    let paid = sale(&t, Some(asha.id), vec![item("A", 2, 500)]);
    let changes = t.change_count();
    let history = t.history(paid.id).len();
    let summary = t.store.customer_summary(asha.id).expect("summary");

    assert_state(t.store.add_line(paid.id, item("B", 1, 100)), "paid");
    assert_state(t.store.remove_line(paid.id, 1), "paid");
    assert_state(t.store.set_bill_discount(paid.id, 100), "paid");
    assert_state(t.store.pay(paid.id, &tenders_cash(1_000)), "paid");
    assert_state(t.store.set_bill_customer(paid.id, None), "paid");

    assert_eq!(t.store.bill(paid.id).expect("reload"), paid);
    assert_eq!(t.change_count(), changes);
    assert_eq!(t.history(paid.id).len(), history);
    assert_eq!(
        t.store.customer_summary(asha.id).expect("summary"),
        summary,
        "paying twice must not count a second visit"
    );
    assert!(t.store.verify_chain().expect("chain").is_intact());
}

#[test]
fn sell_rings_up_and_pays_in_one_step() {
    let t = till();
    let asha = t.customer("Asha Rao", "98765 43210");
    let bill = t
        .store
        .sell(
            NewBill {
                customer_id: Some(asha.id),
                lines: example_lines(),
                ..NewBill::default()
            },
            &[Tender::card(10_000, "C1"), Tender::cash(2_000)],
        )
        .expect("sell");
    assert_eq!(bill.number, number(1));
    assert_eq!(bill.status, BillStatus::Paid);
    assert_eq!(
        (bill.total, bill.paid_total, bill.change_due),
        (11_998, 11_998, 2)
    );
    assert_eq!(t.store.bill(bill.id).expect("reload"), bill);
    let summary = t.store.customer_summary(asha.id).expect("summary");
    assert_eq!((summary.visits, summary.total_spent), (1, 11_998));
    assert_eq!(summary.last_visit_ms, bill.closed_at_ms);
}

// ---------------------------------------------------------------- bad input

#[test]
fn bad_lines_name_the_field_and_take_no_number() {
    let t = till();
    let asha = t.customer("Asha Rao", "98765 43210");
    let first = t.store.open_bill(NewBill::default()).expect("first");
    assert_eq!(first.number, number(1));
    let changes = t.change_count();
    let bills = t.scalar("SELECT COUNT(*) FROM bills");

    let good = item("A", 1, 1_000);
    let cases: Vec<(Vec<NewLine>, &str)> = vec![
        (
            vec![NewLine {
                qty_milli: 0,
                ..good.clone()
            }],
            "lines[0].quantity",
        ),
        (
            vec![
                good.clone(),
                NewLine {
                    qty_milli: -1_000,
                    ..good.clone()
                },
            ],
            "lines[1].quantity",
        ),
        (
            vec![NewLine {
                unit_price: -1,
                ..good.clone()
            }],
            "lines[0].unit_price",
        ),
        (
            vec![good.clone(), good.clone(), good.clone().discounted(1_001)],
            "lines[2].discount",
        ),
        (vec![good.clone().discounted(-5)], "lines[0].discount"),
        (
            vec![NewLine {
                qty_milli: 750,
                ..item("W", 1, 1_999)
            }
            .discounted(1_500)],
            "lines[0].discount",
        ),
        (vec![item(" ", 1, 100)], "lines[0].product_code"),
    ];
    for (lines, field) in cases {
        let new = NewBill {
            customer_id: Some(asha.id),
            lines,
            ..NewBill::default()
        };
        assert_eq!(
            invalid_field(t.store.open_bill(new.clone())),
            field,
            "{new:?}"
        );
        assert_eq!(
            invalid_field(t.store.sell(new.clone(), &tenders_cash(1_000_000))),
            field,
            "sell {new:?}"
        );
    }
    assert_invalid(
        t.store.open_bill(NewBill {
            lines: vec![good.clone()],
            bill_discount: 1_001,
            ..NewBill::default()
        }),
        "bill_discount",
    );
    assert_invalid(
        t.store.sell(
            NewBill {
                lines: vec![good.clone()],
                ..NewBill::default()
            },
            &tenders_cash(999),
        ),
        "tenders",
    );
    match t.store.open_bill(NewBill {
        customer_id: Some(Uuid::now_v7()),
        lines: vec![good.clone()],
        ..NewBill::default()
    }) {
        Err(Error::NotFound {
            entity: Entity::Customer,
            ..
        }) => {}
        other => panic!("unknown customer: {other:?}"),
    }

    // Lines added to an open bill are checked the same way.
    for (line, field) in [
        (
            NewLine {
                qty_milli: 0,
                ..good.clone()
            },
            "line.quantity",
        ),
        (
            NewLine {
                qty_milli: -1,
                ..good.clone()
            },
            "line.quantity",
        ),
        (
            NewLine {
                unit_price: -100,
                ..good.clone()
            },
            "line.unit_price",
        ),
        (good.clone().discounted(1_001), "line.discount"),
    ] {
        assert_invalid(t.store.add_line(first.id, line), field);
    }
    assert_eq!(t.store.bill(first.id).expect("reload"), first);

    // Nothing was written: no bill, no change record, no number used.
    assert_eq!(t.change_count(), changes);
    assert_eq!(t.scalar("SELECT COUNT(*) FROM bills"), bills);
    assert_eq!(t.next_number(), number(2));
    assert_eq!(t.history(first.id).len(), 1);
    let next = t.store.open_bill(NewBill::default()).expect("next");
    assert_eq!(next.number, number(2));
    assert!(t.store.verify_chain().expect("chain").is_intact());
}

#[test]
fn bills_too_large_to_record_are_refused_not_wrapped() {
    // Each line is within the per-line limits; a bill above
    // totals::MAX_BILL_TOTAL (10^13 minor units) is refused, never wrapped.
    let t = till();
    let huge = item("BIG", 1, 1_000_000_000_000);
    let changes = t.change_count();
    assert_invalid(
        t.store.open_bill(NewBill {
            lines: vec![huge.clone(); 11],
            ..NewBill::default()
        }),
        "lines",
    );
    assert_invalid(
        t.store.sell(
            NewBill {
                price_mode: Some(PriceMode::Exclusive),
                lines: vec![huge.clone().taxed("ALL", 10_000); 6],
                ..NewBill::default()
            },
            &tenders_cash(i64::MAX),
        ),
        "lines",
    );
    assert_eq!(t.change_count(), changes);
    assert_eq!(t.last_number(), 0);

    // Ten fit exactly; an eleventh added later is refused and the bill stays as it was.
    let bill = t
        .store
        .open_bill(NewBill {
            lines: vec![huge.clone(); 10],
            ..NewBill::default()
        })
        .expect("ten lines");
    assert_eq!(bill.total, 10_000_000_000_000);
    assert_invalid(t.store.add_line(bill.id, huge), "lines");
    assert_eq!(t.store.bill(bill.id).expect("reload"), bill);
}

#[test]
fn an_unknown_currency_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shop").join("till.db");
    for code in ["XYZ", "rupees", "", "XAU"] {
        let mut opts = options(&path);
        opts.currency = code.into();
        match Store::open(opts) {
            Err(Error::Validation { field, .. }) => assert_eq!(field, "currency", "{code}"),
            other => panic!("{code}: {other:?}"),
        }
    }
    assert!(!path.exists(), "a refused open must not create the file");

    let mut opts = options(&path);
    opts.currency = "jpy".into();
    let store = Store::open(opts).expect("JPY");
    assert_eq!(store.currency().code(), "JPY");
    let bill = store
        .open_bill(NewBill {
            lines: vec![item("A", 1, 500)],
            ..NewBill::default()
        })
        .expect("bill");
    assert_eq!(bill.currency, "JPY");
}

// ---------------------------------------------------------------- voids

#[test]
fn a_voided_open_bill_keeps_its_number() {
    let t = till();
    let open = t
        .store
        .open_bill(NewBill {
            lines: vec![item("A", 1, 100)],
            ..NewBill::default()
        })
        .expect("open");
    let voided = t.store.void_bill(open.id).expect("void");
    assert_eq!(voided.number, number(1));
    assert_eq!(voided.status, BillStatus::Voided);
    assert!(voided.voided_at_ms.is_some() && voided.closed_at_ms.is_some());
    assert_eq!(
        voided.chain_pos,
        Some(1),
        "a voided bill stays in the chain"
    );
    assert_eq!(t.store.bill(open.id).expect("reload"), voided);

    let next = t.store.open_bill(NewBill::default()).expect("next");
    assert_eq!(next.number, number(2));

    // A voided bill is final.
    let changes = t.change_count();
    assert_state(t.store.void_bill(open.id), "voided");
    assert_state(t.store.pay(open.id, &tenders_cash(100)), "voided");
    assert_state(t.store.add_line(open.id, item("B", 1, 1)), "voided");
    assert_state(t.store.refund(open.id, &[], &tenders_cash(100)), "voided");
    assert_eq!(t.change_count(), changes);
    assert!(matches!(
        t.store.void_bill(Uuid::now_v7()),
        Err(Error::NotFound {
            entity: Entity::Bill,
            ..
        })
    ));
    let report = t.store.verify_chain().expect("chain");
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.bills_checked, 1);
}

#[test]
fn voiding_a_paid_bill_reverses_its_metrics() {
    let t = till();
    let asha = t.customer("Asha Rao", "98765 43210");
    let first = sale(&t, Some(asha.id), vec![item("A", 1, 1_000)]);
    tick();
    let second = sale(&t, Some(asha.id), vec![item("B", 1, 2_500)]);
    let s = t.store.customer_summary(asha.id).expect("summary");
    assert_eq!((s.visits, s.total_spent), (2, 3_500));
    assert_eq!(s.last_visit_ms, second.closed_at_ms);

    let voided = t.store.void_bill(second.id).expect("void paid");
    assert_eq!(voided.status, BillStatus::Voided);
    assert_eq!(voided.number, second.number);
    assert_eq!(
        voided.hash, second.hash,
        "voiding does not rewrite the chain"
    );
    let s = t.store.customer_summary(asha.id).expect("summary");
    assert_eq!((s.visits, s.total_spent, s.average_bill), (1, 1_000, 1_000));
    assert_eq!(s.first_visit_ms, first.closed_at_ms);
    assert_eq!(s.last_visit_ms, first.closed_at_ms, "last visit moves back");
    t.assert_metrics_match_bills(asha.id);

    let changes = t.change_count();
    assert_state(t.store.void_bill(second.id), "voided");
    assert_state(
        t.store.refund(second.id, &[], &tenders_cash(2_500)),
        "voided",
    );
    assert_eq!(t.change_count(), changes);

    t.store.void_bill(first.id).expect("void the other");
    let s = t.store.customer_summary(asha.id).expect("summary");
    assert_eq!(
        (
            s.visits,
            s.total_spent,
            s.average_bill,
            s.first_visit_ms,
            s.last_visit_ms
        ),
        (0, 0, 0, None, None)
    );
    t.assert_metrics_match_bills(asha.id);
    assert!(t.store.verify().expect("verify").is_ok());
}

#[test]
fn refunded_bills_and_refunds_cannot_be_voided() {
    let t = till();
    let partly = sale(&t, None, vec![item("A", 2, 1_000)]);
    let refund = t
        .store
        .refund(partly.id, &[refund_line(1, 1_000)], &tenders_cash(1_000))
        .expect("refund one");
    let whole = sale(&t, None, vec![item("B", 1, 700)]);
    t.store
        .refund(whole.id, &[], &tenders_cash(700))
        .expect("refund all");

    let changes = t.change_count();
    assert_state(t.store.void_bill(partly.id), "partly_refunded");
    assert_state(t.store.void_bill(whole.id), "refunded");
    assert_state(t.store.void_bill(refund.id), "paid");
    assert_eq!(t.change_count(), changes);
    assert_eq!(
        t.store.bill(partly.id).expect("reload").status,
        BillStatus::PartlyRefunded
    );
}

// ---------------------------------------------------------------- refunds

#[test]
fn partial_refunds_never_exceed_what_was_sold() {
    let t = till();
    let asha = t.customer("Asha Rao", "98765 43210");
    let sold = sale(&t, Some(asha.id), example_lines());
    assert_eq!(sold.total, 11_998);
    assert_eq!(sold.number, number(1));

    // One pack of biscuits: a third of 9.99.
    let quote = t
        .store
        .refund_quote(sold.id, &[refund_line(3, 1_000)])
        .expect("quote");
    assert_eq!(quote, 333);
    let r1 = t
        .store
        .refund(sold.id, &[refund_line(3, 1_000)], &tenders_cash(333))
        .expect("refund 1");
    assert_eq!(r1.number, number(2), "refunds share the bill sequence");
    assert_eq!(r1.kind, BillKind::Refund);
    assert_eq!(r1.refund_of, Some(sold.id));
    assert_eq!(r1.status, BillStatus::Paid);
    assert_eq!(r1.customer_id, Some(asha.id));
    assert_eq!((r1.total, r1.paid_total, r1.change_due), (333, 333, 0));
    assert_eq!(r1.lines.len(), 1);
    assert_eq!(
        (
            r1.lines[0].line_no,
            r1.lines[0].refund_of_line,
            r1.lines[0].product_code.as_str(),
            r1.lines[0].qty_milli,
            r1.lines[0].gross
        ),
        (1, Some(3), "BISCUIT", 1_000, 333)
    );
    assert!(r1.chain_pos.is_some() && r1.hash.is_some());
    assert_eq!(t.store.bill(r1.id).expect("reload refund"), r1);
    let after1 = t.store.bill(sold.id).expect("sale");
    assert_eq!(after1.status, BillStatus::PartlyRefunded);
    assert_eq!(after1.refunded_total, 333);
    assert_eq!(after1.lines[2].refunded_qty_milli, 1_000);

    // Another sale in between takes the next number.
    let between = sale(&t, None, vec![item("X", 1, 10)]);
    assert_eq!(between.number, number(3));

    // One kettle (half of 95.00, tax half of 14.49 -> 7.25) and another pack.
    let lines = [refund_line(2, 1_000), refund_line(3, 1_000)];
    let quote = t.store.refund_quote(sold.id, &lines).expect("quote");
    assert_eq!(quote, 4_750 + 333);
    let r2 = t
        .store
        .refund(sold.id, &lines, &[Tender::cash(4_000), Tender::cash(1_083)])
        .expect("refund 2");
    assert_eq!(r2.number, number(4));
    assert_eq!(r2.total, 5_083);
    assert_eq!(
        r2.lines
            .iter()
            .map(|l| (l.line_no, l.refund_of_line, l.gross, l.tax, l.net))
            .collect::<Vec<_>>(),
        vec![(1, Some(2), 4_750, 725, 4_025), (2, Some(3), 333, 0, 333)]
    );
    assert_eq!(r2.tax_total, 725);
    // 50.00 + 3.33 at list price, less the kettle's share of its 5.00 discount.
    assert_eq!((r2.subtotal, r2.discount_total), (5_333, 250));

    // Asking for more than remains of a line writes nothing.
    let before = t.store.bill(sold.id).expect("sale");
    let changes = t.change_count();
    let last = t.last_number();
    for (lines, field) in [
        (vec![refund_line(3, 2_000)], "lines[0].quantity"),
        (
            vec![refund_line(1, 750), refund_line(3, 1_001)],
            "lines[1].quantity",
        ),
        (vec![refund_line(2, 1_001)], "lines[0].quantity"),
        (vec![refund_line(1, 0)], "lines[0].quantity"),
        (vec![refund_line(1, -250)], "lines[0].quantity"),
        (vec![refund_line(9, 1_000)], "lines[0].line_no"),
        (
            vec![refund_line(1, 250), refund_line(1, 250)],
            "lines[1].line_no",
        ),
    ] {
        assert_eq!(
            invalid_field(t.store.refund(sold.id, &lines, &tenders_cash(1_000_000))),
            field,
            "{lines:?}"
        );
        assert_eq!(
            invalid_field(t.store.refund_quote(sold.id, &lines)),
            field,
            "quote {lines:?}"
        );
    }
    // Tenders must be the refund exactly.
    let rest = t.store.refund_quote(sold.id, &[]).expect("quote rest");
    assert_eq!(rest, 1_499 + 4_750 + 333);
    for tenders in [
        vec![],
        tenders_cash(rest - 1),
        tenders_cash(rest + 1),
        vec![Tender::card(rest, "A"), Tender::cash(1)],
    ] {
        assert_invalid(t.store.refund(sold.id, &[], &tenders), "tenders");
    }
    for (tenders, field) in [
        (
            vec![Tender::cash(rest), Tender::cash(0)],
            "tenders[1].amount",
        ),
        (
            vec![Tender::cash(-100), Tender::cash(rest + 100)],
            "tenders[0].amount",
        ),
        (
            vec![Tender::card(rest + 50, "A"), Tender::card(-50, "B")],
            "tenders[1].amount",
        ),
    ] {
        assert_eq!(
            invalid_field(t.store.refund(sold.id, &[], &tenders)),
            field,
            "{tenders:?}"
        );
    }
    assert_eq!(t.store.bill(sold.id).expect("sale"), before);
    assert_eq!(t.change_count(), changes);
    assert_eq!(t.last_number(), last);

    // Everything that remains, with an empty line list.
    let r3 = t
        .store
        .refund(sold.id, &[], &tenders_cash(rest))
        .expect("refund rest");
    assert_eq!(r3.number, number(5));
    assert_eq!(
        r3.lines
            .iter()
            .map(|l| (l.refund_of_line, l.qty_milli, l.gross, l.tax))
            .collect::<Vec<_>>(),
        vec![
            (Some(1), 750, 1_499, 71),
            (Some(2), 1_000, 4_750, 1_449 - 725),
            (Some(3), 1_000, 333, 0)
        ]
    );
    let done = t.store.bill(sold.id).expect("sale");
    assert_eq!(done.status, BillStatus::Refunded);
    assert_eq!(done.refunded_total, done.total);
    assert_eq!(r1.total + r2.total + r3.total, sold.total);
    for (l, s) in done.lines.iter().zip(&sold.lines) {
        assert_eq!(
            (l.refunded_qty_milli, l.refunded_gross, l.refunded_tax),
            (s.qty_milli, s.gross, s.tax),
            "line {}",
            l.line_no
        );
    }
    // The sale's own figures and hash did not move.
    assert_eq!(
        (done.total, done.paid_total, done.hash.as_deref()),
        (sold.total, sold.paid_total, sold.hash.as_deref())
    );

    let changes = t.change_count();
    assert_state(t.store.refund(sold.id, &[], &tenders_cash(1)), "refunded");
    assert_state(t.store.refund_quote(sold.id, &[]), "refunded");
    // A refund is not refunded again.
    assert_state(t.store.refund(r1.id, &[], &tenders_cash(333)), "paid");
    assert_eq!(t.change_count(), changes);

    let s = t.store.customer_summary(asha.id).expect("summary");
    assert_eq!((s.visits, s.total_spent), (1, 0));
    t.assert_metrics_match_bills(asha.id);
    let report = t.store.verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// A quantity near `i64::MAX` is refused as too much, not added to what was
/// refunded already: the sum would wrap below the line's quantity and pass.
#[test]
fn a_refund_quantity_too_large_to_add_is_refused() {
    let t = till();
    let sold = sale(&t, None, vec![item("TEA", 2, 1_000)]);
    t.store
        .refund(sold.id, &[refund_line(1, 1_000)], &tenders_cash(1_000))
        .expect("one of two");
    let changes = t.change_count();
    let huge = [refund_line(1, i64::MAX)];
    assert_invalid(t.store.refund_quote(sold.id, &huge), "lines[0].quantity");
    assert_invalid(
        t.store
            .refund(sold.id, &huge, &[Tender::card(i64::MAX, "X")]),
        "lines[0].quantity",
    );
    let after = t.store.bill(sold.id).expect("sale");
    assert_eq!(after.status, BillStatus::PartlyRefunded);
    assert_eq!(
        (after.refunded_total, after.lines[0].refunded_qty_milli),
        (1_000, 1_000)
    );
    assert_eq!(t.last_number(), 2, "the refused refund took no number");
    assert_eq!(t.change_count(), changes);
}

#[test]
fn open_bills_cannot_be_refunded() {
    let t = till();
    let open = t
        .store
        .open_bill(NewBill {
            lines: vec![item("A", 1, 100)],
            ..NewBill::default()
        })
        .expect("open");
    assert_state(t.store.refund(open.id, &[], &tenders_cash(100)), "open");
    assert_state(t.store.refund_quote(open.id, &[]), "open");
    assert_eq!(t.last_number(), 1);
}

#[test]
fn unit_by_unit_refunds_never_give_back_more_than_a_line_holds() {
    // Lines whose per-unit amounts round up: refunding them one unit at a
    // time must never give back more gross or tax than the line holds, and
    // never a negative amount.
    let cases: Vec<(PriceMode, NewLine)> = vec![
        // 4 x 0.10 at 5%: net 40, tax 2 (exactly 0.5 per unit).
        (PriceMode::Exclusive, item("T", 4, 10).taxed("GST5", 500)),
        // 4 x 0.01 with 0.02 off: gross 2 (0.5 per unit).
        (PriceMode::Inclusive, item("G", 4, 1).discounted(2)),
        // 3 x 0.01 including 100% tax: tax 2 of 3.
        (PriceMode::Inclusive, item("H", 3, 1).taxed("ALL", 10_000)),
        // 7 x 3.33 at 18%, inclusive.
        (
            PriceMode::Inclusive,
            item("S", 7, 333).taxed("GST18", 1_800),
        ),
        // 0.750 kg at 19.99 refunded 0.250 kg at a time.
        (
            PriceMode::Inclusive,
            NewLine {
                qty_milli: 750,
                ..item("W", 1, 1_999)
            }
            .taxed("GST5", 500),
        ),
    ];
    for (mode, line) in cases {
        let t = till();
        let step = if line.qty_milli == 750 { 250 } else { 1_000 };
        let sold = t
            .store
            .sell(
                NewBill {
                    price_mode: Some(mode),
                    lines: vec![line.clone()],
                    ..NewBill::default()
                },
                &tenders_cash(1_000_000),
            )
            .expect("sell");
        let sold_line = sold.lines[0].clone();
        let (mut gross, mut tax) = (0, 0);
        let mut refunds = Vec::new();
        for _ in 0..(sold_line.qty_milli / step) {
            let quote = t
                .store
                .refund_quote(sold.id, &[refund_line(1, step)])
                .expect("quote");
            let refund = t
                .store
                .refund(sold.id, &[refund_line(1, step)], &tenders_cash(quote))
                .or_else(|e| match e {
                    // A zero refund needs no tender at all.
                    Error::Validation { .. } if quote == 0 => {
                        t.store.refund(sold.id, &[refund_line(1, step)], &[])
                    }
                    e => Err(e),
                })
                .expect("refund a unit");
            let l = &refund.lines[0];
            assert_eq!(l.gross, quote);
            assert!(
                l.gross >= 0 && l.tax >= 0 && l.tax <= l.gross,
                "{line:?}: refund line {l:?}"
            );
            gross += l.gross;
            tax += l.tax;
            assert!(
                gross <= sold_line.gross && tax <= sold_line.tax,
                "{line:?}: refunded {gross}/{tax} of {}/{}",
                sold_line.gross,
                sold_line.tax
            );
            let now = t.store.bill(sold.id).expect("sale");
            assert_eq!(
                (now.lines[0].refunded_gross, now.lines[0].refunded_tax),
                (gross, tax)
            );
            refunds.push((l.gross, l.tax));
        }
        assert_eq!(
            (gross, tax),
            (sold_line.gross, sold_line.tax),
            "{line:?}: {refunds:?}"
        );
        assert_eq!(
            t.store.bill(sold.id).expect("sale").status,
            BillStatus::Refunded
        );
        let report = t.store.verify().expect("verify");
        assert!(report.is_ok(), "{:?}", report.problems);
    }
}

#[test]
fn unit_refunds_take_the_cumulative_share_of_the_line() {
    // 4 x 0.10 at 5% exclusive: gross 42, tax 2. After refunding k of 4
    // units the line has given back round(42k/4) and round(2k/4).
    let t = till();
    let sold = t
        .store
        .sell(
            NewBill {
                price_mode: Some(PriceMode::Exclusive),
                lines: vec![item("T", 4, 10).taxed("GST5", 500)],
                ..NewBill::default()
            },
            &tenders_cash(42),
        )
        .expect("sell");
    assert_eq!((sold.total, sold.tax_total), (42, 2));
    let mut got = Vec::new();
    for _ in 0..4 {
        let quote = t
            .store
            .refund_quote(sold.id, &[refund_line(1, 1_000)])
            .expect("quote");
        let r = t
            .store
            .refund(sold.id, &[refund_line(1, 1_000)], &tenders_cash(quote))
            .expect("refund");
        got.push((r.total, r.tax_total));
    }
    assert_eq!(got, vec![(11, 1), (10, 0), (11, 1), (10, 0)]);
}

/// 0.500 kg at 1.01 is 0.51; refunding 0.250 kg gives back half of it
/// rounded (0.26), a unit above 0.250 kg at list price (0.25). The refund
/// shows no discount rather than a negative one, in both price modes.
#[test]
fn a_refund_rounded_above_list_price_shows_no_negative_discount() {
    for mode in [PriceMode::Inclusive, PriceMode::Exclusive] {
        let t = till();
        let sold = t
            .store
            .sell(
                NewBill {
                    price_mode: Some(mode),
                    lines: vec![NewLine {
                        qty_milli: 500,
                        ..item("RICE", 1, 101)
                    }],
                    ..NewBill::default()
                },
                &tenders_cash(51),
            )
            .expect("sell");
        assert_eq!(
            (sold.subtotal, sold.discount_total, sold.total),
            (51, 0, 51)
        );
        let refund = t
            .store
            .refund(sold.id, &[refund_line(1, 250)], &tenders_cash(26))
            .expect("refund half");
        assert_eq!(
            (refund.subtotal, refund.discount_total, refund.total),
            (26, 0, 26),
            "{mode:?}"
        );
    }
}

// ---------------------------------------------------------------- numbers

#[test]
fn two_threads_selling_at_once_share_one_gapless_sequence() {
    let Till {
        _dir: dir, store, ..
    } = till();
    let asha = store
        .create_customer(till_core::NewCustomer::named("Asha Rao").with_phone("98765 43210"))
        .expect("customer");
    let store = Arc::new(store);
    let handles: Vec<_> = (0..2)
        .map(|thread| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                (0..200)
                    .map(|i| {
                        store
                            .sell(
                                NewBill {
                                    customer_id: (thread == 0).then_some(asha.id),
                                    lines: vec![item("A", 1, 100 + i)],
                                    ..NewBill::default()
                                },
                                &tenders_cash(1_000),
                            )
                            .expect("sell")
                            .number
                    })
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    let per_thread: Vec<Vec<String>> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert_numbers_are_gapless(&per_thread, 400);

    let report = store.verify_chain().expect("chain");
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.bills_checked, 400);
    let s = store.customer_summary(asha.id).expect("summary");
    assert_eq!(s.visits, 200);
    assert_eq!(s.total_spent, (100..300).sum::<i64>());
    assert!(store.verify().expect("verify").is_ok());
    drop(store);
    drop(dir);
}

#[test]
fn two_stores_on_one_file_selling_at_once_share_one_gapless_sequence() {
    let t = till();
    let second = Store::open(options(&t.path)).expect("second instance");
    second.set_staff("cashier-8").expect("staff");
    let per_thread: Vec<Vec<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = [&t.store, &second]
            .into_iter()
            .map(|store| {
                scope.spawn(move || {
                    (0..200)
                        .map(|i| {
                            let bill = store
                                .open_bill(NewBill {
                                    lines: vec![item("A", 1, 100 + i)],
                                    ..NewBill::default()
                                })
                                .expect("open");
                            store
                                .pay(bill.id, &tenders_cash(1_000))
                                .expect("pay")
                                .number
                        })
                        .collect::<Vec<String>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_numbers_are_gapless(&per_thread, 400);
    for store in [&t.store, &second] {
        let report = store.verify_chain().expect("chain");
        assert!(report.is_intact(), "{:?}", report.problems);
        assert_eq!(report.bills_checked, 400);
    }
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM bills WHERE staff_id = 'cashier-8'"),
        200
    );
    // Each instance reads what the other wrote.
    let last = number(400);
    assert_eq!(
        t.store.bill_by_number(&last).expect("first sees"),
        second.bill_by_number(&last).expect("second sees")
    );
}

/// Every thread's numbers rise; together they are exactly 1..=n.
fn assert_numbers_are_gapless(per_thread: &[Vec<String>], n: i64) {
    for numbers in per_thread {
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "numbers of one thread must rise"
        );
    }
    let mut all: Vec<String> = per_thread.iter().flatten().cloned().collect();
    all.sort();
    let expected: Vec<String> = (1..=n).map(number).collect();
    assert_eq!(all, expected, "gapless and without duplicates");
}

#[test]
fn numbers_continue_after_reopening_the_file() {
    let t = till();
    sale(&t, None, vec![item("A", 1, 100)]);
    let path = t.path.clone();
    let Till {
        _dir: dir, store, ..
    } = t;
    drop(store);
    let store = Store::open(options(&path)).expect("reopen");
    let bill = store.open_bill(NewBill::default()).expect("open");
    assert_eq!(bill.number, number(2));
    drop(dir);
}

// ---------------------------------------------------------------- hash chain

/// A day of trading: sales, an open and a paid void, refunds, and a bill
/// left open. Numbers 1..=9; bill 7 is open, the others are chained in
/// number order at positions 1..=8.
fn day_of_trading() -> Till {
    let t = till();
    let asha = t.customer("Asha Rao", "98765 43210");
    let ben = t.customer("Ben Das", "+91 91234 56789");
    sale(&t, Some(asha.id), example_lines()); // 1
    let walk_in = t
        .store
        .open_bill(NewBill {
            lines: vec![item("A", 1, 100)],
            ..NewBill::default()
        })
        .expect("open"); // 2
    t.store.void_bill(walk_in.id).expect("void open");
    let bens = sale(&t, Some(ben.id), vec![item("B", 2, 1_250)]); // 3
    let regret = sale(&t, Some(asha.id), vec![item("C", 1, 800)]); // 4
    t.store.void_bill(regret.id).expect("void paid");
    let kept = sale(&t, Some(asha.id), vec![item("D", 3, 400)]); // 5
    t.store
        .refund(kept.id, &[refund_line(1, 1_000)], &tenders_cash(400))
        .expect("refund part"); // 6
    t.store
        .open_bill(NewBill {
            lines: vec![item("E", 1, 100)],
            ..NewBill::default()
        })
        .expect("left open"); // 7
    sale(&t, None, vec![item("F", 1, 999)]); // 8
    t.store
        .refund(bens.id, &[], &tenders_cash(2_500))
        .expect("refund all"); // 9
    let report = t.store.verify_chain().expect("chain");
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.bills_checked, 8);
    let full = t.store.verify().expect("verify");
    assert!(full.is_ok(), "{:?}", full.problems);
    for n in 1..=9 {
        let bill = t.store.bill_by_number(&number(n)).expect("bill");
        let pos = match n {
            7 => None,
            8 | 9 => Some(n - 1),
            _ => Some(n),
        };
        assert_eq!(bill.chain_pos, pos, "bill {n}");
    }
    t
}

#[test]
fn parked_bills_join_the_chain_when_they_are_settled() {
    let t = till();
    let parked = t
        .store
        .open_bill(NewBill {
            lines: vec![item("A", 1, 100)],
            ..NewBill::default()
        })
        .expect("parked"); // 1
    let quick = sale(&t, None, vec![item("B", 1, 200)]); // 2
    let parked_too = t
        .store
        .open_bill(NewBill {
            lines: vec![item("C", 1, 300)],
            ..NewBill::default()
        })
        .expect("parked too"); // 3
    let voided = t.store.void_bill(parked_too.id).expect("void");
    let paid = t.store.pay(parked.id, &tenders_cash(100)).expect("pay");
    assert_eq!(
        (quick.chain_pos, voided.chain_pos, paid.chain_pos),
        (Some(1), Some(2), Some(3)),
        "the chain follows the order bills became final, not their numbers"
    );
    assert_eq!(voided.prev_hash, quick.hash);
    assert_eq!(paid.prev_hash, voided.hash);
    let report = t.store.verify_chain().expect("chain");
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.bills_checked, 3);
}

fn tampered(t: &Till, sql: &str) -> Vec<ChainProblem> {
    t.raw().execute_batch(sql).expect("tamper");
    t.store.verify_chain().expect("verify chain").problems
}

fn rid_of(t: &Till, n: i64) -> i64 {
    t.raw()
        .query_row(
            "SELECT rid FROM bills WHERE number = ?1",
            [number(n)],
            |r| r.get(0),
        )
        .expect("rid")
}

#[test]
fn an_altered_line_is_detected() {
    let t = day_of_trading();
    let rid = rid_of(&t, 3);
    let problems = tampered(
        &t,
        &format!("UPDATE bill_lines SET gross = gross + 1 WHERE bill_rid = {rid}"),
    );
    assert_eq!(problems, vec![ChainProblem::Altered { number: number(3) }]);
}

#[test]
fn an_altered_total_is_detected() {
    let t = day_of_trading();
    let problems = tampered(
        &t,
        &format!(
            "UPDATE bills SET total = total - 100 WHERE number = '{}'",
            number(5)
        ),
    );
    assert_eq!(problems, vec![ChainProblem::Altered { number: number(5) }]);

    // A changed payment of another bill too.
    let rid = rid_of(&t, 8);
    let problems = tampered(
        &t,
        &format!("UPDATE bill_payments SET amount = amount - 1 WHERE bill_rid = {rid}"),
    );
    assert_eq!(
        problems,
        vec![
            ChainProblem::Altered { number: number(5) },
            ChainProblem::Altered { number: number(8) }
        ]
    );
}

#[test]
fn a_deleted_bill_is_detected() {
    let t = day_of_trading();
    let rid = rid_of(&t, 4);
    let problems = tampered(
        &t,
        &format!(
            "DELETE FROM bill_lines WHERE bill_rid = {rid};
             DELETE FROM bill_payments WHERE bill_rid = {rid};
             DELETE FROM bills WHERE rid = {rid};"
        ),
    );
    assert_eq!(
        problems,
        vec![
            ChainProblem::MissingNumber { seq: 4 },
            ChainProblem::MissingLink { pos: 4 },
            ChainProblem::BrokenLink { number: number(5) },
        ]
    );
}

#[test]
fn a_deleted_last_bill_is_detected() {
    let t = day_of_trading();
    let rid = rid_of(&t, 9);
    let problems = tampered(
        &t,
        &format!(
            "DELETE FROM bill_lines WHERE bill_rid = {rid};
             DELETE FROM bill_payments WHERE bill_rid = {rid};
             DELETE FROM bills WHERE rid = {rid};"
        ),
    );
    // Bill 9 refunded bill 3, which now says more was refunded than the
    // refund bills there are give back.
    assert_eq!(
        problems,
        vec![
            ChainProblem::MissingNumber { seq: 9 },
            ChainProblem::StatusAltered { number: number(3) },
            ChainProblem::MissingLink { pos: 8 },
        ]
    );
}

#[test]
fn a_deleted_open_bill_leaves_a_missing_number() {
    let t = day_of_trading();
    let rid = rid_of(&t, 7);
    let problems = tampered(
        &t,
        &format!(
            "DELETE FROM bill_lines WHERE bill_rid = {rid}; DELETE FROM bills WHERE rid = {rid};"
        ),
    );
    assert_eq!(problems, vec![ChainProblem::MissingNumber { seq: 7 }]);
}

#[test]
fn a_changed_prev_hash_breaks_the_link() {
    let t = day_of_trading();
    // Point bill 5 at bill 3, skipping bill 4.
    let problems = tampered(
        &t,
        &format!(
            "UPDATE bills SET prev_hash = (SELECT hash FROM bills WHERE number = '{}')
             WHERE number = '{}'",
            number(3),
            number(5)
        ),
    );
    assert!(
        problems.contains(&ChainProblem::BrokenLink { number: number(5) }),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .all(|p| matches!(p, ChainProblem::BrokenLink { number: n } | ChainProblem::Altered { number: n } if *n == number(5))),
        "{problems:?}"
    );
}

#[test]
fn a_final_bill_taken_off_the_chain_is_detected() {
    let t = day_of_trading();
    let problems = tampered(
        &t,
        &format!(
            "UPDATE bills SET chain_pos = NULL, prev_hash = NULL, hash = NULL WHERE number = '{}'",
            number(9)
        ),
    );
    assert_eq!(
        problems,
        vec![
            ChainProblem::Unchained { number: number(9) },
            ChainProblem::MissingLink { pos: 8 },
        ]
    );
}

/// The classic edit that hides a sale: a paid sale turned voided in the
/// file, its takings gone from the day. A real void seals the sale (bill 4
/// was voided after payment and verifies); this one has no seal.
#[test]
fn a_paid_sale_turned_voided_in_the_file_is_detected() {
    let t = day_of_trading();
    let problems = tampered(
        &t,
        &format!(
            "UPDATE bills SET status = 'voided', voided_at = closed_at WHERE number = '{}'",
            number(1)
        ),
    );
    assert_eq!(
        problems,
        vec![ChainProblem::UnsealedVoid { number: number(1) }]
    );
    // A real void's seal no longer matches once its time is moved.
    let problems = tampered(
        &t,
        &format!(
            "UPDATE bills SET voided_at = voided_at + 1 WHERE number = '{}'",
            number(4)
        ),
    );
    assert_eq!(
        problems,
        vec![
            ChainProblem::UnsealedVoid { number: number(1) },
            ChainProblem::UnsealedVoid { number: number(4) },
        ]
    );
}

/// Status edits the chain's content contradicts: a voided open bill turned
/// paid (its hash holds no tenders), a refunded sale turned paid again (its
/// refund bill is still chained), a paid sale turned refunded (no refund
/// bill gave anything back).
#[test]
fn statuses_the_chain_contradicts_are_detected() {
    let t = day_of_trading();
    let problems = tampered(
        &t,
        &format!(
            "UPDATE bills SET status = 'paid' WHERE number = '{}';
             UPDATE bills SET status = 'paid', refunded_total = 0 WHERE number = '{}';
             UPDATE bills SET status = 'refunded', refunded_total = 999 WHERE number = '{}';",
            number(2),
            number(3),
            number(8)
        ),
    );
    assert_eq!(
        problems,
        [2, 3, 8]
            .map(|n| ChainProblem::StatusAltered { number: number(n) })
            .to_vec()
    );
}

// ---------------------------------------------------------------- metrics

#[test]
fn metrics_follow_sales_refunds_and_voids() {
    let t = till();
    let asha = t.customer("Asha Rao", "98765 43210");
    let ben = t.customer("Ben Das", "+91 91234 56789");

    let none = t.store.customer_summary(asha.id).expect("summary");
    assert_eq!(
        (
            none.visits,
            none.total_spent,
            none.average_bill,
            none.first_visit_ms,
            none.last_visit_ms
        ),
        (0, 0, 0, None, None)
    );
    assert_eq!(none.currency, "INR");
    assert_eq!(none.customer_id, asha.id);

    let first = sale(&t, Some(asha.id), vec![item("A", 1, 1_000)]);
    tick();
    let second = sale(&t, Some(asha.id), vec![item("B", 1, 2_001)]);
    tick();
    let third = sale(&t, Some(asha.id), vec![item("C", 3, 1_000)]);
    let s = t.store.customer_summary(asha.id).expect("summary");
    assert_eq!((s.visits, s.total_spent, s.average_bill), (3, 6_001, 2_000));
    assert_eq!(s.first_visit_ms, first.closed_at_ms);
    assert_eq!(s.last_visit_ms, third.closed_at_ms);
    assert!(s.first_visit_ms < s.last_visit_ms);
    t.assert_metrics_match_bills(asha.id);

    // Walk-ins, open bills and voided open bills move nobody's metrics.
    let rows = t.scalar("SELECT COUNT(*) FROM customer_metrics");
    sale(&t, None, vec![item("W", 1, 5_000)]);
    let open = t
        .store
        .open_bill(NewBill {
            customer_id: Some(asha.id),
            lines: vec![item("O", 1, 7_000)],
            ..NewBill::default()
        })
        .expect("open");
    assert_eq!(t.store.customer_summary(asha.id).expect("summary"), s);
    t.store.void_bill(open.id).expect("void open");
    assert_eq!(t.store.customer_summary(asha.id).expect("summary"), s);
    assert_eq!(t.scalar("SELECT COUNT(*) FROM customer_metrics"), rows);
    assert_eq!(t.metrics_row(ben.id), None);

    // A refund lowers the spend, not the visits.
    t.store
        .refund(third.id, &[refund_line(1, 1_000)], &tenders_cash(1_000))
        .expect("refund");
    let s = t.store.customer_summary(asha.id).expect("summary");
    assert_eq!((s.visits, s.total_spent, s.average_bill), (3, 5_001, 1_667));
    t.assert_metrics_match_bills(asha.id);

    // Voiding the middle visit takes it out entirely.
    t.store.void_bill(second.id).expect("void paid");
    let s = t.store.customer_summary(asha.id).expect("summary");
    assert_eq!((s.visits, s.total_spent, s.average_bill), (2, 3_000, 1_500));
    assert_eq!(
        (s.first_visit_ms, s.last_visit_ms),
        (first.closed_at_ms, third.closed_at_ms)
    );
    t.assert_metrics_match_bills(asha.id);

    // Voiding the first visit moves the first visit on.
    t.store.void_bill(first.id).expect("void first");
    let s = t.store.customer_summary(asha.id).expect("summary");
    assert_eq!((s.visits, s.total_spent, s.average_bill), (1, 2_000, 2_000));
    assert_eq!(
        (s.first_visit_ms, s.last_visit_ms),
        (third.closed_at_ms, third.closed_at_ms)
    );
    t.assert_metrics_match_bills(asha.id);

    // The rest refunded: a visit that spent nothing.
    t.store
        .refund(third.id, &[], &tenders_cash(2_000))
        .expect("refund rest");
    let s = t.store.customer_summary(asha.id).expect("summary");
    assert_eq!((s.visits, s.total_spent, s.average_bill), (1, 0, 0));
    t.assert_metrics_match_bills(asha.id);

    // Averages round half away from zero: 20.01 / 2 = 10.005 -> 10.01.
    sale(&t, Some(ben.id), vec![item("X", 1, 1_000)]);
    sale(&t, Some(ben.id), vec![item("Y", 1, 1_001)]);
    let b = t.store.customer_summary(ben.id).expect("summary");
    assert_eq!((b.visits, b.total_spent, b.average_bill), (2, 2_001, 1_001));
    t.assert_metrics_match_bills(ben.id);

    assert!(matches!(
        t.store.customer_summary(Uuid::now_v7()),
        Err(Error::NotFound {
            entity: Entity::Customer,
            ..
        })
    ));
    let report = t.store.verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn metrics_move_with_a_bill_moved_to_a_customer_before_payment() {
    let t = till();
    let asha = t.customer("Asha Rao", "98765 43210");
    let ben = t.customer("Ben Das", "+91 91234 56789");
    let bill = t
        .store
        .open_bill(NewBill {
            customer_id: Some(asha.id),
            lines: vec![item("A", 1, 1_500)],
            ..NewBill::default()
        })
        .expect("open");
    let bill = t
        .store
        .set_bill_customer(bill.id, Some(ben.id))
        .expect("to ben");
    assert_eq!(bill.customer_id, Some(ben.id));
    assert_eq!(bill.customer_phone.as_deref(), Some("+919123456789"));
    t.store.pay(bill.id, &tenders_cash(1_500)).expect("pay");
    assert_eq!(t.store.customer_summary(asha.id).expect("asha").visits, 0);
    let b = t.store.customer_summary(ben.id).expect("ben");
    assert_eq!((b.visits, b.total_spent), (1, 1_500));

    let walk_in = t
        .store
        .open_bill(NewBill {
            customer_id: Some(asha.id),
            lines: vec![item("B", 1, 700)],
            ..NewBill::default()
        })
        .expect("open");
    let walk_in = t
        .store
        .set_bill_customer(walk_in.id, None)
        .expect("walk-in");
    assert_eq!((walk_in.customer_id, walk_in.customer_phone), (None, None));
    t.store.pay(walk_in.id, &tenders_cash(700)).expect("pay");
    assert_eq!(t.store.customer_summary(asha.id).expect("asha").visits, 0);
    t.assert_metrics_match_bills(asha.id);
    t.assert_metrics_match_bills(ben.id);
}

// ---------------------------------------------------------------- history

#[test]
fn customer_bills_page_newest_first_and_visit_each_bill_once() {
    let t = till();
    let asha = t.customer("Asha Rao", "98765 43210");
    let ben = t.customer("Ben Das", "+91 91234 56789");
    let mut mine = Vec::new();
    for i in 0..450 {
        let bill = t
            .store
            .sell(
                NewBill {
                    customer_id: Some(asha.id),
                    lines: vec![item("A", 1, 100 + i)],
                    ..NewBill::default()
                },
                &tenders_cash(10_000),
            )
            .expect("sell");
        mine.push(bill.id);
        if i % 9 == 0 {
            sale(&t, Some(ben.id), vec![item("B", 1, 50)]);
        }
    }

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = t
            .store
            .customer_bills(asha.id, cursor.as_deref(), 100)
            .expect("page");
        sizes.push(page.items.len());
        seen.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(sizes, vec![100, 100, 100, 100, 50]);
    let ids: Vec<Uuid> = seen.iter().map(|b| b.id).collect();
    let unique: HashSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 450, "each bill once");
    mine.reverse();
    assert_eq!(ids, mine, "newest first");
    assert!(seen
        .windows(2)
        .all(|w| w[0].opened_at_ms >= w[1].opened_at_ms && w[0].number > w[1].number));
    assert!(seen
        .iter()
        .all(|b| b.kind == BillKind::Sale && b.status == BillStatus::Paid && b.currency == "INR"));

    // A page is capped at 200 whatever is asked.
    let capped = t
        .store
        .customer_bills(asha.id, None, 10_000)
        .expect("capped");
    assert_eq!(capped.items.len(), 200);
    assert!(capped.next.is_some());
    assert_invalid(t.store.customer_bills(asha.id, None, 0), "limit");
    assert_invalid(
        t.store.customer_bills(asha.id, Some("not-a-cursor"), 10),
        "cursor",
    );
    assert!(matches!(
        t.store.customer_bills(Uuid::now_v7(), None, 10),
        Err(Error::NotFound {
            entity: Entity::Customer,
            ..
        })
    ));
    let bens = t.store.customer_bills(ben.id, None, 200).expect("ben");
    assert_eq!(bens.items.len(), 50);
    assert!(bens.next.is_none());
}

#[test]
fn customer_bill_pages_are_stable_while_new_bills_arrive() {
    let t = till();
    let asha = t.customer("Asha Rao", "98765 43210");
    for i in 0..5 {
        sale(&t, Some(asha.id), vec![item("A", 1, 100 + i)]);
    }
    let first = t
        .store
        .customer_bills(asha.id, None, 2)
        .expect("first page");
    let numbers: Vec<&str> = first.items.iter().map(|b| b.number.as_str()).collect();
    assert_eq!(numbers, vec![number(5), number(4)]);
    // A new bill and a refund arrive while the cashier scrolls.
    let old = t.store.bill_by_number(&number(2)).expect("bill 2");
    sale(&t, Some(asha.id), vec![item("N", 1, 1)]);
    t.store
        .refund(old.id, &[], &tenders_cash(old.total))
        .expect("refund");
    let mut rest = Vec::new();
    let mut cursor = first.next;
    while let Some(c) = cursor {
        let page = t.store.customer_bills(asha.id, Some(&c), 2).expect("page");
        rest.extend(page.items);
        cursor = page.next;
    }
    let numbers: Vec<&str> = rest.iter().map(|b| b.number.as_str()).collect();
    assert_eq!(numbers, vec![number(3), number(2), number(1)]);
    assert_eq!(rest[1].status, BillStatus::Refunded);
    assert_eq!(rest[1].refunded_total, old.total);

    // From the top again, the refund is listed as the newest bill.
    let top = t.store.customer_bills(asha.id, None, 2).expect("top");
    assert_eq!(top.items[0].number, number(7));
    assert_eq!(top.items[0].kind, BillKind::Refund);
}

// ---------------------------------------------------------------- change log

#[test]
fn every_bill_operation_is_recorded_and_replays_to_the_final_bill() {
    let t = till();
    let asha = t.customer("Asha Rao", "98765 43210");
    let ben = t.customer("Ben Das", "+91 91234 56789");
    let bill = t
        .store
        .open_bill(NewBill {
            customer_id: Some(asha.id),
            lines: vec![item("A", 1, 1_000)],
            ..NewBill::default()
        })
        .expect("open");
    t.store.set_staff("cashier-9").expect("staff");
    t.store.add_line(bill.id, item("B", 2, 300)).expect("add");
    t.store.add_line(bill.id, item("C", 1, 50)).expect("add");
    t.store.remove_line(bill.id, 3).expect("remove");
    t.store.set_bill_discount(bill.id, 100).expect("discount");
    t.store
        .set_bill_customer(bill.id, Some(ben.id))
        .expect("customer");
    // Failed operations leave no record.
    assert_invalid(t.store.pay(bill.id, &tenders_cash(1)), "tenders");
    assert_invalid(t.store.add_line(bill.id, item("Z", 0, 1)), "line.quantity");
    t.store
        .pay(bill.id, &[Tender::cash(500), Tender::card(1_000, "OK")])
        .expect("pay");
    assert_state(t.store.add_line(bill.id, item("Z", 1, 1)), "paid");
    // Line 2 is 6.00 less its 0.37 share of the discount; half of it back.
    let quote = t
        .store
        .refund_quote(bill.id, &[refund_line(2, 1_000)])
        .expect("quote");
    assert_eq!(quote, 282);
    let refund = t
        .store
        .refund(bill.id, &[refund_line(2, 1_000)], &tenders_cash(quote))
        .expect("refund");
    let last = t.store.bill(bill.id).expect("final");
    assert_eq!(last.status, BillStatus::PartlyRefunded);

    let history = t.history(bill.id);
    let ops: Vec<&str> = history.iter().map(|c| c.op.as_str()).collect();
    assert_eq!(
        ops,
        vec![
            "open",
            "add_line",
            "add_line",
            "remove_line",
            "discount",
            "set_customer",
            "pay",
            "refunded"
        ]
    );
    assert_replays_to(&history, &last);
    for c in &history {
        assert_eq!(c.entity, "bill");
        assert_eq!(c.entity_id, bill.id.to_string());
        assert_eq!(c.device, "S01/T01");
        assert!(!c.fields.is_empty(), "{} records what changed", c.op);
        assert!(c.at_ms > 0);
    }
    assert_eq!(history[0].staff, "cashier-7");
    assert!(history[1..].iter().all(|c| c.staff == "cashier-9"));
    assert!(history[0].before.is_empty(), "a new bill has no before");
    assert!(
        history.windows(2).all(|w| w[0].hlc < w[1].hlc),
        "stamps rise"
    );
    let pay = &history[6];
    assert_eq!(pay.before.get("status"), Some(&Value::from("open")));
    assert_eq!(pay.fields.get("status"), Some(&Value::from("paid")));
    assert!(pay.fields.contains_key("payments") && pay.fields.contains_key("hash"));
    assert!(!pay.fields.contains_key("lines"), "only what changed");
    let discount = &history[4];
    assert_eq!(discount.before.get("bill_discount"), Some(&Value::from(0)));
    assert_eq!(
        discount.fields.get("bill_discount"),
        Some(&Value::from(100))
    );
    let moved = &history[5];
    assert_eq!(
        moved.before.get("customer_id"),
        Some(&Value::from(asha.id.to_string()))
    );

    let refund_history = t.history(refund.id);
    assert_eq!(
        refund_history
            .iter()
            .map(|c| c.op.as_str())
            .collect::<Vec<_>>(),
        vec!["refund"]
    );
    assert_replays_to(&refund_history, &refund);

    // A void and a sale in one step are recorded too.
    let voided = t.store.open_bill(NewBill::default()).expect("open");
    let voided = t.store.void_bill(voided.id).expect("void");
    let h = t.history(voided.id);
    assert_eq!(
        h.iter().map(|c| c.op.as_str()).collect::<Vec<_>>(),
        vec!["open", "void"]
    );
    assert_eq!(h[1].before.get("status"), Some(&Value::from("open")));
    assert_replays_to(&h, &voided);
    let sold = t
        .store
        .sell(
            NewBill {
                lines: vec![item("S", 1, 10)],
                ..NewBill::default()
            },
            &tenders_cash(10),
        )
        .expect("sell");
    let h = t.history(sold.id);
    assert_eq!(
        h.iter().map(|c| c.op.as_str()).collect::<Vec<_>>(),
        vec!["sell"]
    );
    assert_replays_to(&h, &sold);
    let voided_paid = t.store.void_bill(sold.id).expect("void paid");
    let h = t.history(sold.id);
    assert_eq!(h.len(), 2);
    assert_eq!(h[1].op, "void");
    assert_eq!(h[1].fields.get("status"), Some(&Value::from("voided")));
    assert_eq!(h[1].before.get("status"), Some(&Value::from("paid")));
    assert_replays_to(&h, &voided_paid);
}

/// Folds `history` field by field, checking each record's `before` against
/// the state so far, and compares the result with `bill`.
fn assert_replays_to(history: &[till_core::Change], bill: &till_core::Bill) {
    let mut state = serde_json::Map::new();
    for (i, c) in history.iter().enumerate() {
        if i == 0 {
            assert!(c.before.is_empty(), "{}: a new bill has no before", c.op);
        } else {
            assert_eq!(
                c.before.keys().collect::<Vec<_>>(),
                c.fields.keys().collect::<Vec<_>>(),
                "{}: before names exactly the changed fields",
                c.op
            );
        }
        for (key, value) in &c.fields {
            let was = state.get(key).cloned().unwrap_or(Value::Null);
            if i > 0 {
                assert_eq!(c.before.get(key), Some(&was), "{}: before of {key}", c.op);
            }
            assert_ne!(&was, value, "{}: {key} recorded but unchanged", c.op);
            state.insert(key.clone(), value.clone());
        }
    }
    // A field never recorded is null: a create leaves null fields out.
    state.retain(|_, v| !v.is_null());
    let mut expected = recorded_fields(bill);
    expected.retain(|_, v| !v.is_null());
    assert_eq!(state, expected, "replayed {}", bill.number);
}

/// Card refunds return money only to where it came from: a sale's card
/// refunds, across every refund of it, add up to no more than it took by
/// card. Cash may make up the rest.
#[test]
fn card_refunds_never_exceed_what_the_sale_took_by_card() {
    let t = till();
    let open = t
        .store
        .open_bill(NewBill {
            lines: vec![item("A", 2, 5_000)],
            ..NewBill::default()
        })
        .expect("open");
    let sold = t
        .store
        .pay(open.id, &[Tender::card(6_000, "AP-1"), Tender::cash(4_000)])
        .expect("pay");
    t.store
        .refund(
            sold.id,
            &[refund_line(1, 1_000)],
            &[Tender::card(5_000, "RF-1")],
        )
        .expect("first unit back to the card");

    let (changes, last) = (t.change_count(), t.last_number());
    for tenders in [
        vec![Tender::card(5_000, "RF-2")],
        vec![Tender::cash(3_999), Tender::card(1_001, "RF-2")],
    ] {
        let field = invalid_field(t.store.refund(sold.id, &[], &tenders));
        assert_eq!(field, format!("tenders[{}].method", tenders.len() - 1));
    }
    assert_eq!((t.change_count(), t.last_number()), (changes, last));

    let rest = t
        .store
        .refund(
            sold.id,
            &[],
            &[Tender::card(1_000, "RF-2"), Tender::cash(4_000)],
        )
        .expect("the card's last 10.00, the rest in cash");
    assert_eq!(rest.total, 5_000);

    // A sale paid in cash gives nothing back to a card.
    let cash_sale = sale(&t, None, vec![item("B", 1, 700)]);
    assert_invalid(
        t.store
            .refund(cash_sale.id, &[], &[Tender::card(700, "RF-3")]),
        "tenders[0].method",
    );
}

/// A read sees one state of the file: a bill read while another thread
/// adds lines to it has its totals and its lines from the same commit,
/// and a summary's visits agree with the bills it counts.
#[test]
fn a_read_never_mixes_two_commits() {
    let t = till();
    let asha = t.customer("Asha Rao", "98765 43210");
    let bill = t
        .store
        .open_bill(NewBill {
            customer_id: Some(asha.id),
            ..NewBill::default()
        })
        .expect("open");
    let done = std::sync::atomic::AtomicBool::new(false);
    let torn = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut torn = Vec::new();
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || reads < 100 {
                let read = t.store.bill(bill.id).expect("read");
                let gross: i64 = read.lines.iter().map(|l| l.gross).sum();
                if gross != read.total || read.lines.len() as u32 != read.last_line_no {
                    torn.push((read.total, gross, read.lines.len(), read.last_line_no));
                }
                reads += 1;
            }
            torn
        });
        for i in 0..400 {
            t.store
                .add_line(bill.id, item("A", 1, 100 + i))
                .expect("add line");
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().expect("reader")
    });
    assert!(torn.is_empty(), "torn reads: {torn:?}");
}
