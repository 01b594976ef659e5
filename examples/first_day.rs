//! A first day at a Till store, on one tablet, offline.
//!
//! Opens a store file, signs a cashier in, adds customers (one found again by
//! a phone number typed differently), sells a few bills with tax, discounts
//! and split tenders, voids one, refunds part of another, prints a receipt
//! and a customer's summary, and checks the store.
//!
//! Run: `cargo run --example first_day [path/to/store.db]`
//! (without a path the store lives in a temporary folder).

use till_core::{
    CustomerOrder, CustomerQuery, NewBill, NewCustomer, NewLine, ReceiptWidth, RefundLine, Store,
    StoreOptions, Tender,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let path = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().join("store.db"));

    let mut options = StoreOptions::new(&path, "acme-retail", "S01", "T01");
    options.store_name = "Acme Kirana, MG Road".into();
    let store = Store::open(options)?;
    store.set_staff("priya")?;
    let me = store.identity();
    println!(
        "Opened {} as till {} of store {} (tenant {})",
        path.display(),
        me.device,
        me.store,
        me.tenant
    );

    // Customers: created with whatever the cashier typed.
    let asha = store.create_customer(NewCustomer {
        tags: vec!["VIP".into()],
        ..NewCustomer::named("  Asha   Rao ")
            .with_phone("98765 43210")
            .with_email("Asha.Rao@Example.com")
    })?;
    println!(
        "\nNew customer {} {:?}: phone {} stored as {}",
        asha.number,
        asha.name,
        asha.phone.as_ref().map_or("", |p| p.raw.as_str()),
        asha.phone.as_ref().map_or("", |p| p.e164.as_str()),
    );
    let (again, created) = store.find_or_create_by_phone("+91 (987) 654-3210", "Asha")?;
    println!(
        "Same number typed another way finds {} (created: {created})",
        again.number
    );
    let (ravi, _) = store.find_or_create_by_phone("091234 56789", "Ravi Kumar")?;
    match store.create_customer(NewCustomer::named("Typo").with_phone("98765")) {
        Err(e) => println!("A malformed phone is refused: {e}"),
        Ok(_) => println!("unexpected: a malformed phone was accepted"),
    }

    // Sales. Prices include 5% or 18% GST; 0.750 kg of rice is 750 milli-units.
    let tea = NewLine::item("TEA-250", "Assam Tea 250g", 2, 18_000).taxed("GST5", 500);
    let rice = NewLine {
        qty_milli: 750,
        ..NewLine::item("RICE-KG", "Basmati Rice (kg)", 1, 12_000).taxed("GST5", 500)
    };
    let soap = NewLine::item("SOAP-3", "Sandal Soap x3", 1, 9_900)
        .taxed("GST18", 1_800)
        .discounted(900);

    let bill = store.open_bill(NewBill {
        customer_id: Some(asha.id),
        lines: vec![tea.clone(), rice],
        ..NewBill::default()
    })?;
    let bill = store.add_line(bill.id, soap)?;
    let bill = store.set_bill_discount(bill.id, 1_000)?;
    let first = store.pay(
        bill.id,
        &[Tender::card(30_000, "AUTH-4411"), Tender::cash(50_000)],
    )?;
    println!(
        "\nBill {}: total {} {}, change {}",
        first.number,
        store.currency().format(first.total),
        first.currency,
        store.currency().format(first.change_due)
    );

    let second = store.open_bill(NewBill {
        customer_id: Some(ravi.id),
        lines: vec![tea.clone()],
        ..NewBill::default()
    })?;
    let second = store.pay(second.id, &[Tender::cash(second.total)])?;
    let walk_in = store.open_bill(NewBill {
        lines: vec![tea],
        ..NewBill::default()
    })?;
    let voided = store.void_bill(walk_in.id)?;
    println!(
        "Bill {} paid; bill {} voided (it keeps its number)",
        second.number, voided.number
    );

    // Asha brings one tea back.
    let one_tea = [RefundLine {
        line_no: first.lines[0].line_no,
        qty_milli: 1_000,
    }];
    let refund_amount = store.refund_quote(first.id, &one_tea)?;
    let refund = store.refund(first.id, &one_tea, &[Tender::cash(refund_amount)])?;
    println!(
        "Refund {} of {} against {}",
        refund.number,
        store.currency().format(refund.total),
        first.number
    );

    println!("\n{}", store.receipt(first.id, ReceiptWidth::Cols42)?);

    let summary = store.customer_summary(asha.id)?;
    println!(
        "{} ({}): {} visit(s), spent {} {}, average bill {}",
        asha.name,
        asha.number,
        summary.visits,
        store.currency().format(summary.total_spent),
        summary.currency,
        store.currency().format(summary.average_bill)
    );
    let history = store.customer_bills(asha.id, None, 10)?;
    for b in &history.items {
        println!(
            "  {} {:<15} {:>10}",
            b.number,
            b.status.to_string(),
            store.currency().format(b.total)
        );
    }

    let page = store.list_customers(&CustomerQuery {
        order: CustomerOrder::Name,
        ..CustomerQuery::default()
    })?;
    println!(
        "\nCustomers: {}",
        page.items
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let changes = store.history(&first.id.to_string(), None, 50)?;
    println!(
        "Audit trail of {}: {}",
        first.number,
        changes
            .items
            .iter()
            .map(|c| format!("{} by {}", c.op, c.staff))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let report = store.verify()?;
    println!(
        "\nverify(): {} customers, {} chained bills, {} problem(s)",
        report.customers_checked,
        report.bills_checked,
        report.problems.len()
    );
    Ok(())
}
