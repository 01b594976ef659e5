//! Data portability on real store files: a customer's export, erasure and
//! CSV import.

use chrono::NaiveDate;
use rusqlite::Connection;
use serde_json::Value;
use till_core::{
    Address, Bill, Customer, CustomerExport, CustomerQuery, CustomerUpdate, Error, NewBill,
    NewCustomer, NewLine, RefundLine, Stage, Store, StoreOptions, Tender, ERASED_NAME,
    EXPORT_FORMAT,
};
use uuid::Uuid;

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreOptions::new(
            dir.path().join("till.db"),
            "acme",
            "S01",
            "T01",
        ))
        .expect("open");
        store.set_staff("cashier-1").expect("staff");
        Fixture { dir, store }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("till.db")
    }

    /// A plain connection to the file, behind the store's back.
    fn raw(&self) -> Connection {
        Connection::open(self.path()).expect("raw connection")
    }

    fn sell(&self, customer: Option<Uuid>, qty: i64) -> Bill {
        let total = qty * 1_250;
        self.store
            .sell(
                NewBill {
                    customer_id: customer,
                    lines: vec![NewLine::item("TEA", "Masala tea", qty, 1_250).taxed("GST5", 500)],
                    ..NewBill::default()
                },
                &[Tender::cash(total)],
            )
            .expect("sell")
    }

    fn count(&self, sql: &str) -> i64 {
        self.raw().query_row(sql, [], |r| r.get(0)).expect(sql)
    }
}

/// The personal values of the customer the erasure tests erase, in every
/// spelling the store may have kept them in.
const NAME: &str = "Zanele Okonkwo";
const PHONE: &str = "98765 43210";
const EMAIL: &str = "Zanele.Okonkwo@Example.com";
const TRACES: [&str; 8] = [
    "Zanele",
    "zanele",
    "Okonkwo",
    "okonkwo",
    "9876543210",
    "98765 43210",
    "Lotus Lane",
    "allergic to cardamom",
];

fn zanele(store: &Store) -> Customer {
    let c = store
        .create_customer(NewCustomer {
            address: Address {
                line1: "7 Lotus Lane".into(),
                city: "Pune".into(),
                ..Address::default()
            },
            tags: vec!["VIP".into()],
            notes: "allergic to cardamom".into(),
            birthday: NaiveDate::from_ymd_opt(1988, 3, 14),
            ..NewCustomer::named("Zanele Okonkw")
                .with_phone(PHONE)
                .with_email(EMAIL)
        })
        .expect("create");
    store
        .update_customer(
            c.id,
            c.version,
            CustomerUpdate {
                name: Some(NAME.into()),
                ..CustomerUpdate::default()
            },
        )
        .expect("fix the name")
}

fn all_history(store: &Store, id: &str) -> Vec<till_core::Change> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.history(id, cursor.as_deref(), 50).expect("history");
        out.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

#[test]
fn export_holds_the_customer_every_bill_and_the_history() {
    let f = Fixture::new();
    let c = zanele(&f.store);
    let other = f
        .store
        .create_customer(NewCustomer::named("Ravi Kumar").with_phone("+91 91234 56789"))
        .expect("other");
    f.sell(Some(other.id), 1);
    // More than a page (PAGE_CAP is 200) of bills.
    let bills: Vec<Bill> = (0..250).map(|i| f.sell(Some(c.id), 1 + i % 3)).collect();
    f.store
        .refund(
            bills[0].id,
            &[RefundLine {
                line_no: 1,
                qty_milli: 1_000,
            }],
            &[Tender::cash(1_250)],
        )
        .expect("refund");

    let json = f.store.export_customer(c.id).expect("export");
    let doc: Value = serde_json::from_str(&json).expect("json");
    let keys: Vec<&str> = doc
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        vec![
            "bills",
            "customer",
            "exported_at_ms",
            "format",
            "history",
            "metrics",
            "other_fields",
            "version"
        ]
    );
    assert_eq!(doc["other_fields"], serde_json::json!({}));
    assert_eq!(doc["format"], EXPORT_FORMAT);
    assert_eq!(doc["version"], 2);
    assert_eq!(doc["customer"]["name"], NAME);
    assert_eq!(doc["customer"]["phone"]["e164"], "+919876543210");

    let export: CustomerExport = serde_json::from_str(&json).expect("typed");
    assert_eq!(export.customer, f.store.customer(c.id).expect("customer"));
    assert_eq!(
        export.metrics,
        f.store.customer_summary(c.id).expect("summary")
    );
    assert_eq!(export.metrics.visits, 250);
    // 250 sales and the refund, oldest first, each whole.
    assert_eq!(export.bills.len(), 251);
    for (exported, sold) in export.bills.iter().zip(&bills) {
        assert_eq!(exported.id, sold.id);
        assert_eq!(exported.lines.len(), 1);
        assert_eq!(exported.payments.len(), 1);
        assert_eq!(exported.total, sold.total);
    }
    assert_eq!(
        export.bills[250].refund_of,
        Some(bills[0].id),
        "refunds are the customer's bills too"
    );
    assert!(export.bills.iter().all(|b| b.customer_id == Some(c.id)));
    let ops: Vec<&str> = export.history.iter().map(|h| h.op.as_str()).collect();
    assert_eq!(ops, vec!["create", "update"]);
    assert_eq!(export.history, all_history(&f.store, &c.id.to_string()));

    // A person may ask after deletion.
    f.store.delete_customer(c.id).expect("delete");
    let after_delete: CustomerExport =
        serde_json::from_str(&f.store.export_customer(c.id).expect("export deleted"))
            .expect("typed");
    assert!(after_delete.customer.deleted_at_ms.is_some());
    assert_eq!(after_delete.bills.len(), 251);
    assert_eq!(after_delete.metrics.visits, 250);
    assert_eq!(after_delete.history.len(), 3);

    assert!(matches!(
        f.store.export_customer(Uuid::now_v7()),
        Err(Error::NotFound { .. })
    ));
}

/// Every text value of every row of `table`, one string per row.
fn table_text(conn: &Connection, table: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM {table}"))
        .expect("select");
    let columns = stmt.column_count();
    let rows = stmt
        .query_map([], |r| {
            let mut text = String::new();
            for i in 0..columns {
                if let Ok(Some(s)) = r.get::<_, Option<String>>(i) {
                    text.push_str(&s);
                    text.push('\u{1f}');
                }
            }
            Ok(text)
        })
        .expect("query")
        .collect::<rusqlite::Result<Vec<_>>>()
        .expect("rows");
    rows
}

fn assert_no_trace(what: &str, text: &str) {
    for trace in TRACES.iter().chain([&EMAIL, &"+919876543210"]) {
        assert!(!text.contains(trace), "{what} still holds {trace:?}");
    }
    assert!(
        !text.to_lowercase().contains(&EMAIL.to_lowercase()),
        "{what} still holds the email"
    );
}

#[test]
fn erase_removes_personal_data_everywhere_and_keeps_the_money() {
    let f = Fixture::new();
    let c = zanele(&f.store);
    let other = f
        .store
        .create_customer(NewCustomer::named("Ravi Kumar").with_phone("+91 91234 56789"))
        .expect("other");
    let mut sold: Vec<Bill> = (1..=4).map(|q| f.sell(Some(c.id), q)).collect();
    sold.push(f.sell(Some(other.id), 2));
    sold.push(f.sell(None, 1));
    let refund = f
        .store
        .refund(
            sold[3].id,
            &[RefundLine {
                line_no: 1,
                qty_milli: 1_000,
            }],
            &[Tender::cash(1_250)],
        )
        .expect("refund");
    // An open bill of theirs too.
    let open = f
        .store
        .open_bill(NewBill {
            customer_id: Some(c.id),
            ..NewBill::default()
        })
        .expect("open");
    let before_summary = f.store.customer_summary(c.id).expect("summary");
    let history_before = all_history(&f.store, &c.id.to_string()).len();
    assert!(f.store.verify_chain().expect("chain").is_intact());
    assert_eq!(
        f.count("SELECT count(*) FROM customers_fts WHERE customers_fts MATCH 'Zanele'"),
        1
    );

    let erased = f.store.erase_customer(c.id).expect("erase");
    assert_eq!(erased.id, c.id);
    assert_eq!(erased.number, c.number);
    assert_eq!(erased.name, ERASED_NAME);
    assert_eq!(
        (
            &erased.phone,
            &erased.email,
            &erased.notes,
            erased.birthday,
            &erased.tags
        ),
        (&None, &None, &String::new(), None, &Vec::<String>::new())
    );
    assert!(erased.address.is_empty());
    assert!(erased.erased_at_ms.is_some() && erased.deleted_at_ms.is_some());
    assert_eq!(erased.version, c.version + 1);
    assert_eq!(
        f.store.customer_including_deleted(c.id).expect("stored"),
        erased
    );
    assert!(matches!(
        f.store.customer(c.id),
        Err(Error::NotFound { .. })
    ));

    let conn = f.raw();
    // The record, its tags and its search row.
    for row in table_text(&conn, "customers") {
        assert_no_trace("customers", &row);
    }
    assert_eq!(
        f.count("SELECT count(*) FROM customer_tags WHERE tag = 'vip'"),
        0
    );
    for query in ["Zanele", "Okonkwo", "9876543210", "919876543210", "zanele*"] {
        assert_eq!(
            f.count(&format!(
                "SELECT count(*) FROM customers_fts WHERE customers_fts MATCH '{query}'"
            )),
            0,
            "{query}"
        );
    }
    // Other customers are still found.
    assert_eq!(
        f.count("SELECT count(*) FROM customers_fts WHERE customers_fts MATCH 'Ravi'"),
        1
    );

    // Bills keep money, numbers and the link; only the phone goes.
    for b in sold.iter().chain([&refund, &open]) {
        let now = f.store.bill(b.id).expect("bill");
        assert_eq!(now.number, b.number);
        assert_eq!(now.total, b.total);
        assert_eq!(now.hash, b.hash);
        assert_eq!(now.customer_id, b.customer_id);
        if b.customer_id == Some(c.id) {
            assert_eq!(now.customer_phone, None, "{}", b.number);
        } else {
            assert_eq!(now.customer_phone, b.customer_phone, "{}", b.number);
        }
    }
    assert_eq!(
        f.count("SELECT count(*) FROM bills WHERE customer_phone = '+919123456789'"),
        1,
        "another customer's bills keep their phone"
    );
    for row in table_text(&conn, "bills") {
        assert_no_trace("bills", &row);
    }
    let chain = f.store.verify_chain().expect("chain");
    assert!(chain.is_intact(), "{chain:?}");
    assert_eq!(chain.bills_checked, 7, "six sales and a refund");
    let report = f.store.verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);

    // The change log: every row kept, no personal value left in any of them.
    for row in table_text(&conn, "changes") {
        assert_no_trace("changes", &row);
    }
    assert!(
        table_text(&conn, "changes")
            .iter()
            .any(|row| row.contains("+919123456789")),
        "another customer's values stay in the log"
    );
    let history = all_history(&f.store, &c.id.to_string());
    assert_eq!(history.len(), history_before + 1);
    let erase = history.last().expect("erase change");
    assert_eq!(erase.op, "erase");
    assert_eq!(erase.staff, "cashier-1");
    assert_eq!(erase.fields["name"], ERASED_NAME);
    assert_eq!(erase.fields["phone"], Value::Null);
    assert!(erase.fields["erased_at_ms"].is_i64());
    assert_eq!(erase.before["name"], Value::Null);
    assert_eq!(erase.before["email"], Value::Null);
    assert_eq!(
        history[0].op, "create",
        "who, what and when stay in the audit trail"
    );

    // Erasing again is a no-op.
    assert_eq!(f.store.erase_customer(c.id).expect("again"), erased);
    assert_eq!(
        all_history(&f.store, &c.id.to_string()).len(),
        history_before + 1
    );

    // The export after erasure holds the bills but none of the old values.
    let export = f.store.export_customer(c.id).expect("export");
    assert_no_trace("export", &export);
    let export: CustomerExport = serde_json::from_str(&export).expect("typed");
    assert_eq!(export.customer, erased);
    assert_eq!(export.bills.len(), 6);
    assert_eq!(export.metrics, before_summary, "the money stays");

    // The freed space was overwritten and the WAL truncated: no byte of the
    // store's files holds the old values.
    drop(conn);
    let mut bytes = std::fs::read(f.path()).expect("file");
    bytes.extend(std::fs::read(f.dir.path().join("till.db-wal")).unwrap_or_default());
    let text = String::from_utf8_lossy(&bytes);
    assert_no_trace("the store file", &text);
    assert!(text.contains("Ravi Kumar"));
}

/// A bill opened for the wrong customer and moved before payment keeps
/// that customer's phone in its first change records. Erasing them clears
/// it there too; the bill keeps its money and its right customer's phone.
#[test]
fn erase_reaches_a_bill_moved_off_the_customer_before_payment() {
    let f = Fixture::new();
    let wrong = f
        .store
        .create_customer(NewCustomer::named("Ravi Kumar").with_phone("91234 56789"))
        .expect("wrong");
    let right = f
        .store
        .create_customer(NewCustomer::named("Asha Rao").with_phone("98765 43210"))
        .expect("right");
    let bill = f
        .store
        .open_bill(NewBill {
            customer_id: Some(wrong.id),
            lines: vec![NewLine::item("TEA", "Masala tea", 2, 1_250)],
            ..NewBill::default()
        })
        .expect("open");
    f.store
        .set_bill_customer(bill.id, Some(right.id))
        .expect("move");
    f.store.pay(bill.id, &[Tender::cash(2_500)]).expect("pay");
    let log = |store: &Store| format!("{:?}", all_history(store, &bill.id.to_string()));
    assert!(
        log(&f.store).contains("+919123456789"),
        "the first record held it"
    );

    f.store.erase_customer(wrong.id).expect("erase");
    assert!(!log(&f.store).contains("56789"), "{}", log(&f.store));
    let paid = f.store.bill(bill.id).expect("bill");
    assert_eq!(
        (paid.total, paid.customer_id, paid.customer_phone.as_deref()),
        (2_500, Some(right.id), Some("+919876543210"))
    );
    assert_eq!(
        f.store.customer_summary(right.id).expect("summary").visits,
        1
    );
    assert!(f.store.verify().expect("verify").is_ok());
}

#[test]
fn erase_works_on_a_deleted_customer_and_refuses_unknown_ids() {
    let f = Fixture::new();
    let c = zanele(&f.store);
    let deleted = f.store.delete_customer(c.id).expect("delete");
    let erased = f.store.erase_customer(c.id).expect("erase");
    assert_eq!(
        erased.deleted_at_ms, deleted.deleted_at_ms,
        "keeps when it was deleted"
    );
    assert!(erased.erased_at_ms.is_some());
    for row in table_text(&f.raw(), "changes") {
        assert_no_trace("changes", &row);
    }
    assert!(matches!(
        f.store.erase_customer(Uuid::now_v7()),
        Err(Error::NotFound { .. })
    ));
    // The phone is free for a new customer.
    f.store
        .create_customer(NewCustomer::named("New holder").with_phone(PHONE))
        .expect("phone reusable");
}

fn rejected(report: &till_core::ImportReport) -> Vec<(u64, &str)> {
    report
        .rejected
        .iter()
        .map(|r| (r.line, r.field.as_str()))
        .collect()
}

#[test]
fn csv_import_takes_the_good_rows_and_reports_each_bad_one() {
    let f = Fixture::new();
    let existing = f
        .store
        .create_customer(NewCustomer::named("Already Here").with_phone("+91 99887 76655"))
        .expect("existing");
    let changes_before = f.count("SELECT count(*) FROM changes");

    let csv = "\u{feff}name,phone,email,address_line1,city,stage,tags,birthday,notes\n\
        Asha Rao,98765 43210,Asha@Example.com,12 MG Road,Bengaluru,active,VIP; wholesale;,1990-04-01,likes tea\n\
        Bad Phone,12345,,,,,,,\n\
        Bad Email,98111 22334,not-an-email,,,,,,\n\
        ,98111 22335,,,,,,,\n\
        Asha Again,+91 98765 43210,,,,,,,\n\
        Existing Dup,(0)99887-76655,,,,,,,\n\
        Bad Stage,98111 22336,,,,champion,,,\n\
        Bad Birthday,98111 22337,,,,,,1990-13-45,\n\
        \"Meera \"\"M\"\" Iyer\",98111 22338,MEERA@example.com,\"Flat 4, Sea View\",Mumbai,,,,\"two\nlines\"\n\
        Same Email,98111 22341,meera@EXAMPLE.com,,,,,,\n\
        Future Birthday,98111 22342,,,,,,2999-01-01,\n\
        Too Few,98111 22343\n\
        ,,,,,,,,\n\
        Broken,\"98111 22340,,,,,,,\n\
        Kiran,98111 22344,,,,lead,,,\n";
    let report = f
        .store
        .import_customers_csv(csv.as_bytes())
        .expect("import");

    assert_eq!(
        rejected(&report),
        vec![
            (3, "phone"),
            (4, "email"),
            (5, "name"),
            (6, "phone"),
            (7, "phone"),
            (8, "stage"),
            (9, "birthday"),
            (12, "email"),
            (13, "birthday"),
            (14, "csv"),
            (16, "csv"),
        ]
    );
    assert_eq!(report.imported, 3, "{report:?}");
    let reason = |line: u64| {
        report
            .rejected
            .iter()
            .find(|r| r.line == line)
            .map(|r| r.reason.clone())
            .unwrap_or_default()
    };
    assert!(reason(6).contains("line 2"), "{}", reason(6));
    assert!(
        reason(7).contains(&existing.id.to_string()),
        "{}",
        reason(7)
    );
    assert!(reason(12).contains("line 10"), "{}", reason(12));
    for r in &report.rejected {
        let reason = r.reason.replace(&existing.id.to_string(), "");
        for personal in [
            "12345",
            "not-an-email",
            "99887",
            "98111",
            "champion",
            "1990-13-45",
        ] {
            assert!(!reason.contains(personal), "{r:?}");
        }
    }

    let page = f
        .store
        .list_customers(&CustomerQuery {
            limit: 200,
            ..CustomerQuery::default()
        })
        .expect("list");
    let names: Vec<&str> = page.items.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["Already Here", "Asha Rao", "Kiran", "Meera \"M\" Iyer"]
    );
    let asha = &page.items[1];
    assert_eq!(
        asha.phone.as_ref().map(|p| p.e164.as_str()),
        Some("+919876543210")
    );
    assert_eq!(
        asha.email.as_ref().map(|e| e.canonical.as_str()),
        Some("asha@example.com")
    );
    assert_eq!(asha.stage, Stage::Active);
    assert_eq!(asha.tags, vec!["vip", "wholesale"]);
    assert_eq!(asha.birthday, NaiveDate::from_ymd_opt(1990, 4, 1));
    assert_eq!(asha.address.line1, "12 MG Road");
    assert_eq!(asha.address.city, "Bengaluru");
    assert_eq!(asha.notes, "likes tea");
    let meera = &page.items[3];
    assert_eq!(meera.address.line1, "Flat 4, Sea View");
    assert_eq!(meera.notes, "two\nlines");
    assert_eq!(meera.stage, Stage::New);
    assert_eq!(page.items[2].stage, Stage::Lead);

    // Rejected rows wrote nothing: customer numbers stay gapless and each
    // imported customer has exactly one change, an import.
    let numbers: Vec<&str> = {
        let mut n: Vec<&str> = page.items.iter().map(|c| c.number.as_str()).collect();
        n.sort();
        n
    };
    assert_eq!(
        numbers,
        vec![
            "S01-T01-C000001",
            "S01-T01-C000002",
            "S01-T01-C000003",
            "S01-T01-C000004"
        ]
    );
    assert_eq!(f.count("SELECT count(*) FROM changes"), changes_before + 3);
    let history = all_history(&f.store, &asha.id.to_string());
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].op, "import");
    // Imported customers are searchable like any other.
    assert_eq!(
        f.count("SELECT count(*) FROM customers_fts WHERE customers_fts MATCH 'Kiran'"),
        1
    );
    let report = f.store.verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn csv_import_refuses_a_bad_header_or_file_with_nothing_written() {
    let f = Fixture::new();
    f.store
        .create_customer(NewCustomer::named("Already Here"))
        .expect("existing");
    let snapshot = |f: &Fixture| {
        (
            f.count("SELECT count(*) FROM customers"),
            f.count("SELECT count(*) FROM changes"),
        )
    };
    let before = snapshot(&f);

    let refused = |csv: &str| match f.store.import_customers_csv(csv.as_bytes()) {
        Err(Error::Validation { field, reason }) => (field, reason),
        other => panic!("accepted {csv:?}: {other:?}"),
    };
    let (field, reason) = refused("name,phone,loyalty_points\nAsha,98765 43210,10\n");
    assert_eq!(field, "header");
    assert!(reason.contains("loyalty_points"), "{reason}");
    assert_eq!(refused("phone\n98765 43210\n").0, "header");
    assert_eq!(refused("name,Name\nA,B\n").0, "header");
    assert_eq!(refused("").0, "header");
    // A file without a header row: its first row is a customer, and the
    // error names none of their data.
    for csv in [
        "Asha Rao,98765 43210,asha@example.com\n",
        "98765 43210,Asha Rao\n",
        "asha@example.com,Asha Rao\n",
    ] {
        let (field, reason) = refused(csv);
        assert_eq!(field, "header");
        assert!(reason.contains("is missing"), "{reason}");
        for personal in ["asha", "98765"] {
            assert!(!reason.to_lowercase().contains(personal), "{reason}");
        }
    }

    // More rows than the cap: refused before any row is written.
    let mut big = String::from("name\n");
    for i in 0..=till_core::IMPORT_MAX_ROWS {
        big.push_str(&format!("Customer {i}\n"));
    }
    assert_eq!(refused(&big).0, "rows");
    assert_eq!(snapshot(&f), before);

    // A header alone imports nothing and is fine.
    let report = f
        .store
        .import_customers_csv("name,phone\n".as_bytes())
        .expect("empty");
    assert_eq!((report.imported, report.rejected.len()), (0, 0));
    assert_eq!(snapshot(&f), before);
}
