//! Receipts printed from a real store file: what a till prints after a
//! sale, a split tender, a refund and a reprint, at every paper width.

use rusqlite::Connection;
use till_core::{
    Bill, Currency, Error, NewBill, NewCustomer, NewLine, PriceMode, ReceiptWidth, RefundLine,
    Store, StoreOptions, Tender,
};
use uuid::Uuid;

const STORE_NAME: &str = "Corner Café, MG Road";

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Store,
}

fn store() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("till.db");
    let mut options = StoreOptions::new(&path, "acme", "S01", "T01");
    options.store_name = STORE_NAME.into();
    let store = Store::open(options).expect("open");
    store.set_staff("asha").expect("staff");
    Fixture {
        _dir: dir,
        path,
        store,
    }
}

/// Weighed goods, a line discount, Unicode and long names, three tax rates.
fn cart() -> Vec<NewLine> {
    vec![
        NewLine::item("LATTE", "Café Latte", 2, 15_000)
            .taxed("GST", 500)
            .discounted(1_000),
        NewLine {
            qty_milli: 750,
            ..NewLine::item("RICE", "Basmati Rice (loose)", 1, 8_000).taxed("GST", 500)
        },
        NewLine::item("MASALA", "चाय मसाला", 1, 12_050).taxed("GST", 1_250),
        NewLine::item(
            "HAMPER",
            "Festive hamper with assorted dry fruits, chocolates and a greeting card",
            1,
            99_900,
        )
        .taxed("GST", 1_800),
    ]
}

fn new_bill(customer_id: Option<Uuid>, mode: PriceMode) -> NewBill {
    NewBill {
        customer_id,
        price_mode: Some(mode),
        lines: cart(),
        bill_discount: 2_500,
    }
}

/// Pays `bill` with a card for part and cash for the rest, plus `change`.
fn pay_split(store: &Store, bill: &Bill, card: i64, change: i64) -> Bill {
    store
        .pay(
            bill.id,
            &[
                Tender::card(card, "AUTH-778812"),
                Tender::cash(bill.total - card + change),
            ],
        )
        .expect("pay")
}

/// Refunds one unit of the first line, in cash.
fn refund_one(store: &Store, sale: &Bill) -> Bill {
    let lines = [RefundLine {
        line_no: 1,
        qty_milli: 1_000,
    }];
    let amount = store.refund_quote(sale.id, &lines).expect("quote");
    store
        .refund(sale.id, &lines, &[Tender::cash(amount)])
        .expect("refund")
}

/// Printed lines that are not indented: the bill-level rows.
fn top_level(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.starts_with(' '))
}

/// The amount at the end of the first row starting with `label`, bill-level
/// rows first, then indented ones.
fn amount<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    top_level(text)
        .chain(text.lines().map(str::trim_start))
        .find(|l| l.starts_with(label))
        .and_then(|l| l.split_whitespace().last())
}

/// Minor units of a printed INR amount such as `-12.05`.
fn minor(printed: &str) -> i64 {
    let digits: String = printed.chars().filter(char::is_ascii_digit).collect();
    let value: i64 = digits.parse().expect("amount");
    if printed.starts_with('-') {
        -value
    } else {
        value
    }
}

fn assert_fits(text: &str, width: ReceiptWidth) {
    for line in text.lines() {
        assert!(
            line.chars().count() <= width.columns(),
            "{width:?}: {line:?} is {} chars\n{text}",
            line.chars().count()
        );
    }
}

/// Checks that what `text` prints is what `bill` holds.
fn assert_totals(text: &str, bill: &Bill, currency: Currency) {
    let printed = |label: &str| amount(text, label).map(minor);
    assert_eq!(printed("Subtotal"), Some(bill.subtotal), "{text}");
    assert_eq!(printed("TOTAL INR"), Some(bill.total), "{text}");
    assert_eq!(printed("Tax total"), Some(bill.tax_total), "{text}");
    // Discounts: the per-line rows make up "Item discounts", and the
    // bill-level rows make up the bill's discount total.
    let line_discounts: i64 = text
        .lines()
        .filter(|l| l.starts_with("  Discount"))
        .filter_map(|l| l.split_whitespace().last())
        .map(minor)
        .sum();
    assert_eq!(
        printed("Item discounts").unwrap_or(0),
        line_discounts,
        "{text}"
    );
    let bill_level: i64 = top_level(text)
        .filter(|l| {
            ["Item discounts", "Bill discount", "Discount"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .filter_map(|l| l.split_whitespace().last())
        .map(minor)
        .sum();
    assert_eq!(-bill_level, bill.discount_total, "{text}");
    // Tax rows add up to the tax total.
    let tax_rows: i64 = text
        .lines()
        .filter(|l| l.starts_with("  GST"))
        .filter_map(|l| l.split_whitespace().last())
        .map(minor)
        .sum();
    assert_eq!(tax_rows, bill.tax_total, "{text}");
    for line in &bill.lines {
        assert!(text.contains(&currency.format(line.unit_price)), "{text}");
    }
}

#[test]
fn every_receipt_fits_every_width_and_prints_the_bills_totals() {
    let f = store();
    let s = &f.store;
    let customer = s
        .create_customer(NewCustomer::named("Ravi").with_phone("98765 43210"))
        .expect("customer");
    let inclusive = s
        .sell(
            new_bill(Some(customer.id), PriceMode::Inclusive),
            &[Tender::cash(300_000)],
        )
        .expect("sell");
    let open = s
        .open_bill(new_bill(None, PriceMode::Exclusive))
        .expect("open");
    let exclusive = pay_split(s, &open, 50_000, 1_000);
    let refund = refund_one(s, &inclusive);
    let currency = s.currency();

    for width in ReceiptWidth::ALL {
        for id in [inclusive.id, exclusive.id, refund.id] {
            let bill = s.bill(id).expect("bill");
            let text = s.receipt(id, width).expect("receipt");
            assert_fits(&text, width);
            let header = text.lines().next().expect("header");
            assert_eq!(header.trim_start(), STORE_NAME);
            assert_eq!(
                header.chars().count() - STORE_NAME.chars().count(),
                (width.columns() - STORE_NAME.chars().count()) / 2,
                "centred"
            );
            assert!(text.contains(&format!("Bill: {}", bill.number)), "{text}");
            assert!(text.contains("Staff: asha"), "{text}");
            assert!(text.contains("Date: 20"), "{text}");
            if id != refund.id {
                assert!(text.contains("  0.750 x 80.00"), "{text}");
                assert!(text.contains("चाय मसाला"), "{text}");
            }
            assert_totals(&text, &bill, currency);
        }
    }
}

#[test]
fn a_split_tender_shows_card_cash_and_change() {
    let f = store();
    let s = &f.store;
    let open = s
        .open_bill(new_bill(None, PriceMode::Inclusive))
        .expect("open");
    let paid = pay_split(s, &open, 100_000, 3_750);
    assert_eq!(paid.change_due, 3_750);
    let text = s.receipt(paid.id, ReceiptWidth::Cols32).expect("receipt");
    let cash_tendered = paid.total - 100_000 + 3_750;
    assert_eq!(amount(&text, "Card AUTH-778812"), Some("1000.00"), "{text}");
    assert_eq!(
        amount(&text, "Cash tendered").map(minor),
        Some(cash_tendered),
        "{text}"
    );
    assert_eq!(amount(&text, "Change due"), Some("37.50"), "{text}");
}

#[test]
fn a_refund_shows_the_sale_it_refunds_and_the_sale_shows_the_refund() {
    let f = store();
    let s = &f.store;
    let sale = s
        .sell(
            new_bill(None, PriceMode::Inclusive),
            &[Tender::cash(300_000)],
        )
        .expect("sell");
    let refund = refund_one(s, &sale);
    let text = s.receipt(refund.id, ReceiptWidth::Cols32).expect("receipt");
    assert!(
        text.contains(&format!("REFUND of {}\n", sale.number)),
        "{text}"
    );
    assert!(
        text.contains(&format!("Bill: {}\n", refund.number)),
        "{text}"
    );
    assert!(text.contains("Paid back:\nCash"), "{text}");
    assert_eq!(amount(&text, "TOTAL INR").map(minor), Some(refund.total));

    // The reprinted sale, now partly refunded, says how much went back.
    let text = s.receipt(sale.id, ReceiptWidth::Cols42).expect("reprint");
    assert_eq!(
        amount(&text, "Refunded:").map(minor),
        Some(refund.total),
        "{text}"
    );
    assert!(!text.contains("REFUND of"), "{text}");
    // Refunding the rest leaves a refunded sale that still prints.
    let rest = s
        .refund(
            sale.id,
            &[],
            &[Tender::cash(s.refund_quote(sale.id, &[]).expect("quote"))],
        )
        .expect("refund the rest");
    let text = s.receipt(sale.id, ReceiptWidth::Cols48).expect("refunded");
    assert_eq!(
        amount(&text, "Refunded:").map(minor),
        Some(sale.total),
        "{text}"
    );
    assert_eq!(refund.total + rest.total, sale.total);
}

#[test]
fn a_customer_bill_shows_the_customer_number_and_a_walk_in_does_not() {
    let f = store();
    let s = &f.store;
    let customer = s
        .create_customer(NewCustomer::named("Ravi").with_phone("98765 43210"))
        .expect("customer");
    let theirs = s
        .sell(
            new_bill(Some(customer.id), PriceMode::Inclusive),
            &[Tender::cash(300_000)],
        )
        .expect("sell");
    let walk_in = s
        .sell(
            new_bill(None, PriceMode::Inclusive),
            &[Tender::cash(300_000)],
        )
        .expect("walk-in");
    let line = format!("Customer: {}\n", customer.number);
    for width in ReceiptWidth::ALL {
        let text = s.receipt(theirs.id, width).expect("receipt");
        assert!(text.contains(&line), "{text}");
        let text = s.receipt(walk_in.id, width).expect("walk-in receipt");
        assert!(!text.contains("Customer"), "{text}");
    }

    // A deleted customer's bill still reprints with their number.
    s.delete_customer(customer.id).expect("delete");
    let text = s.receipt(theirs.id, ReceiptWidth::Cols32).expect("deleted");
    assert!(text.contains(&line), "{text}");
}

#[test]
fn a_merged_customer_prints_the_survivor() {
    let f = store();
    let s = &f.store;
    let loser = s
        .create_customer(NewCustomer::named("Ravi K").with_phone("98765 43210"))
        .expect("loser");
    let survivor = s
        .create_customer(NewCustomer::named("Ravi Kumar").with_phone("99887 76655"))
        .expect("survivor");
    let bill = s
        .sell(
            new_bill(Some(loser.id), PriceMode::Inclusive),
            &[Tender::cash(300_000)],
        )
        .expect("sell");
    // A merge as the server sends it: the loser becomes a tombstone.
    let conn = Connection::open(&f.path).expect("raw connection");
    conn.execute(
        "UPDATE customers SET merged_into = ?1 WHERE id = ?2",
        [survivor.id.to_string(), loser.id.to_string()],
    )
    .expect("merge");
    drop(conn);
    let text = s.receipt(bill.id, ReceiptWidth::Cols32).expect("receipt");
    assert!(
        text.contains(&format!("Customer: {}\n", survivor.number)),
        "{text}"
    );
}

#[test]
fn open_and_voided_bills_have_no_receipt() {
    let f = store();
    let s = &f.store;
    let open = s
        .open_bill(new_bill(None, PriceMode::Inclusive))
        .expect("open");
    let voided_open = s
        .open_bill(new_bill(None, PriceMode::Inclusive))
        .expect("open");
    s.void_bill(voided_open.id).expect("void open");
    let paid = s
        .sell(
            new_bill(None, PriceMode::Inclusive),
            &[Tender::cash(300_000)],
        )
        .expect("sell");
    s.void_bill(paid.id).expect("void paid");
    for (id, state) in [
        (open.id, "open"),
        (voided_open.id, "voided"),
        (paid.id, "voided"),
    ] {
        match s.receipt(id, ReceiptWidth::Cols32) {
            Err(Error::InvalidState {
                state: got, action, ..
            }) => {
                assert_eq!(got, state);
                assert_eq!(action, "print a receipt");
            }
            other => panic!("{state}: {other:?}"),
        }
    }
    assert!(matches!(
        s.receipt(Uuid::now_v7(), ReceiptWidth::Cols32),
        Err(Error::NotFound { .. })
    ));
}
