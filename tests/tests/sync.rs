//! Tills syncing through a real server: offline sales on two tills meet,
//! concurrent customer edits converge by the conflict rules, rejected
//! changes are quarantined without blocking the rest, and interrupted or
//! repeated syncs neither lose nor duplicate anything.

mod common;

use common::{snapshot, Server, StopOnce, Till};
use rusqlite::Connection;
use serde_json::Value;
use till_core::{
    BillStatus, CustomerUpdate, Error, NewBill, NewCustomer, NewLine, Store, SyncObserver, Tender,
};
use till_sync_server::storage::Storage;
use till_sync_server::Limits;
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

fn history_ids(store: &Store, id: &str) -> Vec<String> {
    store
        .history(id, None, 200)
        .expect("history")
        .items
        .into_iter()
        .map(|c| c.change_id.to_string())
        .collect()
}

#[test]
fn two_tills_selling_offline_see_each_others_bills_and_customers() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S1", "T2");

    let asha = a
        .store
        .create_customer(NewCustomer::named("Asha Rao").with_phone("98765 43210"))
        .expect("asha");
    let bill_a = sell_to(&a.store, Some(asha.id), "TEA", 150);
    let ravi = b
        .store
        .create_customer(NewCustomer::named("Ravi Kumar").with_phone("91234 56789"))
        .expect("ravi");
    let bill_b = sell_to(&b.store, Some(ravi.id), "COFFEE", 220);
    sell_to(&b.store, None, "WATER", 20);

    let first = a.sync();
    assert_eq!(first.pushed, 2);
    let second = b.sync();
    assert_eq!(second.pushed, 3);
    a.sync();

    for till in [&a, &b] {
        let s = &till.store;
        assert_eq!(s.customer(asha.id).expect("asha").name, "Asha Rao");
        assert_eq!(s.customer(ravi.id).expect("ravi").name, "Ravi Kumar");
        assert_eq!(s.bill(bill_a.id).expect("bill a").total, 150);
        assert_eq!(s.bill(bill_b.id).expect("bill b").total, 220);
        let summary = s.customer_summary(ravi.id).expect("metrics");
        assert_eq!((summary.visits, summary.total_spent), (1, 220));
        assert_eq!(s.sync_status().expect("status").pending_changes, 0);
        let report = s.verify_chain().expect("chain");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        // Pulled customers are searchable through the transactional index.
        let hits = s.search_customers("43210", 10).expect("search");
        assert!(hits.iter().any(|h| h.customer.id == asha.id));
    }
    assert_eq!(snapshot(&a.store), snapshot(&b.store));
    // History shows the other till's changes, once each.
    let ids = history_ids(&a.store, &ravi.id.to_string());
    assert_eq!(ids.len(), 1);
    let status = a.store.sync_status().expect("status");
    assert!(status.last_sync_at_ms.is_some() && status.last_error.is_none());
    server.stop();
}

/// Big bills sold offline fill a push batch past the server's body limit.
/// The till sends fewer changes at a time instead of the same refused batch
/// at every sync, and every bill reaches the other till.
#[test]
fn a_backlog_of_bills_larger_than_the_servers_body_limit_still_drains() {
    let dir = tempfile::tempdir().expect("dir");
    let limits = Limits {
        max_body_bytes: 256 * 1024,
        ..Limits::default()
    };
    let server = Server::start_with(&dir.path().join("server"), limits);
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S1", "T2");
    let lines: Vec<NewLine> = (0..40)
        .map(|i| {
            let name = format!("Stone ground whole wheat flour, 5 kg pack {i}");
            NewLine::item(&format!("890123456{i:04}"), &name, 1, 1_000 + i)
        })
        .collect();
    let total: i64 = lines.iter().map(|l| l.unit_price).sum();
    let sold: Vec<Uuid> = (0..60)
        .map(|_| {
            let new = NewBill {
                lines: lines.clone(),
                ..NewBill::default()
            };
            a.store.sell(new, &[Tender::cash(total)]).expect("sell").id
        })
        .collect();

    assert_eq!(a.sync().pushed, 60);
    assert_eq!(a.store.sync_status().expect("status").pending_changes, 0);
    b.sync();
    for id in &sold {
        assert_eq!(
            b.store.bill(*id).expect("bill on the other till").total,
            total
        );
    }
    server.stop();
}

/// Two tills refund one sale in full while both are offline. Both drawers
/// paid out, so both refunds stand everywhere: the sale ends refunded twice
/// over on every till and the server, every till's checks pass, and the
/// server lists the sale for head office to look into.
#[test]
fn a_sale_refunded_at_two_offline_tills_keeps_both_refunds_and_is_reported() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S1", "T2");
    let sale = a
        .store
        .sell(
            NewBill {
                lines: vec![NewLine::item("TEA", "Tea", 2, 150)],
                ..NewBill::default()
            },
            &[Tender::cash(300)],
        )
        .expect("sell");
    a.sync();
    b.sync();
    let over = |server: &Server| {
        server
            .block(server.storage.over_refunded_sales("t1"))
            .expect("report")
    };
    let mut refunds = Vec::new();
    for till in [&a, &b] {
        let amount = till.store.refund_quote(sale.id, &[]).expect("quote");
        let refund = till.store.refund(sale.id, &[], &[Tender::cash(amount)]);
        refunds.push(refund.expect("refund offline").id);
    }
    a.sync();
    assert!(over(&server).is_empty(), "one refund is no over-refund");
    b.sync();
    a.sync();

    let reported = over(&server);
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(
        (
            reported[0].id.as_str(),
            reported[0].number.as_str(),
            reported[0].total,
            reported[0].refunded_total
        ),
        (sale.id.to_string().as_str(), sale.number.as_str(), 300, 600)
    );
    for till in [&a, &b] {
        let held = till.store.bill(sale.id).expect("sale");
        assert_eq!(
            (held.status, held.refunded_total),
            (BillStatus::Refunded, 600)
        );
        for refund in &refunds {
            assert_eq!(till.store.bill(*refund).expect("refund").total, 300);
        }
        let report = till.store.verify().expect("verify");
        assert!(report.is_ok(), "{:?}", report.problems);
    }
    assert_eq!(snapshot(&a.store), snapshot(&b.store));
    server.stop();
}

/// A parked bill belongs to the till that opened it: another till of the
/// store sees it but cannot change, pay or void it, since the bill has the
/// first till's number and joins that till's hash chain. Paid where it was
/// opened, it reaches the other till, and both chains stay whole.
#[test]
fn another_tills_open_bill_is_that_tills_to_finish() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S1", "T2");
    let parked = a
        .store
        .open_bill(NewBill {
            lines: vec![NewLine::item("TEA", "Tea", 1, 150)],
            ..NewBill::default()
        })
        .expect("open");
    a.sync();
    b.sync();
    assert_eq!(
        b.store.bill(parked.id).expect("pulled").status,
        BillStatus::Open
    );

    let tries = [
        b.store.pay(parked.id, &[Tender::cash(150)]),
        b.store.void_bill(parked.id),
        b.store
            .add_line(parked.id, NewLine::item("CAKE", "Cake", 1, 90)),
        b.store.set_bill_customer(parked.id, None),
    ];
    for refused in tries {
        match refused {
            Err(Error::InvalidState { state, .. }) => assert_eq!(state, "open at till S1-T1"),
            other => panic!("another till's open bill changed: {other:?}"),
        }
    }
    assert_eq!(b.store.sync_status().expect("status").pending_changes, 0);

    a.store.pay(parked.id, &[Tender::cash(150)]).expect("pay");
    a.sync();
    b.sync();
    assert_eq!(
        b.store.bill(parked.id).expect("paid").status,
        BillStatus::Paid
    );
    for till in [&a, &b] {
        let report = till.store.verify_chain().expect("chain");
        assert!(report.is_intact(), "{:?}", report.problems);
    }
    server.stop();
}

#[test]
fn concurrent_edits_of_different_fields_both_survive() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S1", "T2");
    let c = a
        .store
        .create_customer(NewCustomer::named("Meera").with_phone("99887 76655"))
        .expect("create");
    a.sync();
    b.sync();

    let on_a = a.store.customer(c.id).expect("a");
    a.store
        .update_customer(
            c.id,
            on_a.version,
            CustomerUpdate {
                name: Some("Meera Iyer".into()),
                ..CustomerUpdate::default()
            },
        )
        .expect("rename");
    let on_b = b.store.customer(c.id).expect("b");
    b.store
        .update_customer(
            c.id,
            on_b.version,
            CustomerUpdate {
                notes: Some("prefers green tea".into()),
                ..CustomerUpdate::default()
            },
        )
        .expect("notes");
    b.store.tag_customer(c.id, &["vip"], &[]).expect("tag");
    a.store
        .tag_customer(c.id, &["wholesale"], &[])
        .expect("tag");

    a.sync();
    b.sync();
    a.sync();
    for till in [&a, &b] {
        let got = till.store.customer(c.id).expect("customer");
        assert_eq!(got.name, "Meera Iyer");
        assert_eq!(got.notes, "prefers green tea");
        assert_eq!(got.tags, vec!["vip".to_owned(), "wholesale".to_owned()]);
    }
    assert_eq!(snapshot(&a.store), snapshot(&b.store));
    server.stop();
}

#[test]
fn the_same_field_resolves_to_the_later_clock() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S1", "T2");
    let c = a
        .store
        .create_customer(NewCustomer::named("Kiran").with_phone("90000 11111"))
        .expect("create");
    a.sync();
    b.sync();

    let rename = |till: &Till, name: &str| {
        let now = till.store.customer(c.id).expect("read");
        till.store
            .update_customer(
                c.id,
                now.version,
                CustomerUpdate {
                    name: Some(name.into()),
                    ..CustomerUpdate::default()
                },
            )
            .expect("rename");
    };
    rename(&a, "Kiran Older");
    std::thread::sleep(std::time::Duration::from_millis(5));
    rename(&b, "Kiran Newer");
    // The later edit reaches the server first; the earlier one must not win.
    b.sync();
    a.sync();
    b.sync();
    for till in [&a, &b] {
        assert_eq!(till.store.customer(c.id).expect("c").name, "Kiran Newer");
    }
    assert_eq!(snapshot(&a.store), snapshot(&b.store));
    server.stop();
}

#[test]
fn a_delete_and_a_concurrent_edit_both_apply() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S1", "T2");
    let c = a
        .store
        .create_customer(NewCustomer::named("Dev").with_phone("90000 22222"))
        .expect("create");
    a.sync();
    b.sync();

    a.store.delete_customer(c.id).expect("delete");
    let on_b = b.store.customer(c.id).expect("b");
    b.store
        .update_customer(
            c.id,
            on_b.version,
            CustomerUpdate {
                name: Some("Dev Patel".into()),
                ..CustomerUpdate::default()
            },
        )
        .expect("edit");
    b.sync();
    a.sync();
    b.sync();
    for till in [&a, &b] {
        assert!(till.store.customer(c.id).is_err(), "deleted everywhere");
        let stored = till.store.customer_including_deleted(c.id).expect("row");
        assert_eq!(stored.name, "Dev Patel", "the edit survives the delete");
        assert!(stored.deleted_at_ms.is_some());
    }
    assert_eq!(snapshot(&a.store), snapshot(&b.store));
    server.stop();
}

/// Appends to `till`'s outbox an update of customer `id` setting `fields`,
/// stamped like the till's own changes but a second later; returns its
/// change id.
/// Every piece of a change log's text that mentions `needle`, on `till`,
/// for record `id`.
fn log_mentions(till: &Till, id: &str, needle: &str) -> Vec<String> {
    till.store
        .history(id, None, 200)
        .expect("history")
        .items
        .into_iter()
        .map(|c| format!("{} {:?} {:?}", c.op, c.fields, c.before))
        .filter(|text| text.contains(needle))
        .collect()
}

/// A till erases a customer at their request while another till, offline
/// and not yet told, edits them. Erasure is final whatever the clocks say:
/// the offline edit writes no personal data back, on the server or on any
/// till, and the till that made it keeps no trace of it in its change log.
#[test]
fn an_erasure_wins_over_an_offline_edit_made_after_it() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S1", "T2");
    let asha = a
        .store
        .create_customer(NewCustomer::named("Asha Rao").with_phone("98765 43210"))
        .expect("create");
    a.sync();
    b.sync();

    a.store.erase_customer(asha.id).expect("erase");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let on_b = b.store.customer(asha.id).expect("on b");
    let edit = CustomerUpdate {
        phone: Some(Some("98765 00000".into())),
        notes: Some("lives at 12 MG Road".into()),
        tags: Some(vec!["wholesale".into()]),
        ..CustomerUpdate::default()
    };
    b.store
        .update_customer(asha.id, on_b.version, edit)
        .expect("offline edit");
    a.sync();
    b.sync();
    a.sync();
    let c = Till::new(&server, dir.path(), "S2", "T1");
    c.sync();

    for till in [&a, &b, &c] {
        let got = till
            .store
            .customer_including_deleted(asha.id)
            .expect("erased");
        assert!(got.erased_at_ms.is_some());
        assert_eq!(
            (
                got.name.as_str(),
                got.phone,
                got.notes.as_str(),
                got.tags.len()
            ),
            (till_core::ERASED_NAME, None, "", 0),
            "personal data back on {:?}",
            till.store.identity()
        );
    }
    let id = asha.id.to_string();
    for needle in ["43210", "9876500000", "MG Road", "Asha", "wholesale"] {
        assert_eq!(
            log_mentions(&b, &id, needle),
            Vec::<String>::new(),
            "{needle}"
        );
    }
    assert_eq!(snapshot(&a.store), snapshot(&b.store));
    // Till B pulled the erasure: its file and WAL hold none of the values,
    // neither its own offline edit nor what it had pulled before.
    let mut bytes = std::fs::read(b.store.path()).expect("file");
    let mut wal = b.store.path().as_os_str().to_owned();
    wal.push("-wal");
    bytes.extend(std::fs::read(&wal).unwrap_or_default());
    let text = String::from_utf8_lossy(&bytes);
    for needle in [
        "98765 43210",
        "9876500000",
        "MG Road",
        "Asha Rao",
        "wholesale",
    ] {
        assert!(!text.contains(needle), "till B's files hold {needle:?}");
    }
    server.stop();
}

/// A bill opened at one till for the wrong customer and moved to the right
/// one before payment carries the wrong customer's phone in its first
/// records, on the server and at every till of the store. Erasing the wrong
/// customer clears it there; the right customer's phone stays.
#[test]
fn an_erasure_reaches_a_bill_moved_off_the_customer_before_payment() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S1", "T2");
    // B bootstraps first, so it pulls the bill's changes one by one.
    b.sync();
    let wrong = a
        .store
        .create_customer(NewCustomer::named("Ravi Kumar").with_phone("91234 56789"))
        .expect("wrong");
    let right = a
        .store
        .create_customer(NewCustomer::named("Asha Rao").with_phone("98765 43210"))
        .expect("right");
    let bill = a
        .store
        .open_bill(NewBill {
            customer_id: Some(wrong.id),
            lines: vec![NewLine::item("TEA", "Tea", 1, 150)],
            ..NewBill::default()
        })
        .expect("open");
    a.sync();
    a.store
        .set_bill_customer(bill.id, Some(right.id))
        .expect("move");
    a.store.pay(bill.id, &[Tender::cash(150)]).expect("pay");
    a.sync();
    b.sync();
    let id = bill.id.to_string();
    let served = |server: &Server| -> String {
        let db = Connection::open(
            server
                .data
                .join(till_sync_server::storage::sqlite::FILE_NAME),
        )
        .expect("server db");
        let entries: Vec<String> = db
            .prepare("SELECT change FROM log WHERE entity_id = ?1")
            .expect("prepare")
            .query_map([&id], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        entries.join("\n")
    };
    assert!(served(&server).contains("+919123456789"), "held before");
    assert!(!log_mentions(&b, &id, "+919123456789").is_empty());

    a.store.erase_customer(wrong.id).expect("erase");
    a.sync();
    b.sync();
    let log = served(&server);
    assert!(!log.contains("56789"), "{log}");
    assert!(
        log.contains("+919876543210"),
        "the right customer's phone stays"
    );
    for till in [&a, &b] {
        assert_eq!(log_mentions(till, &id, "56789"), Vec::<String>::new());
        assert!(!log_mentions(till, &id, "+919876543210").is_empty());
        let paid = till.store.bill(bill.id).expect("bill");
        assert_eq!(paid.customer_phone.as_deref(), Some("+919876543210"));
    }
    server.stop();
}

fn forge_update(till: &Till, id: &str, fields: Value) -> String {
    let conn = Connection::open(till.store.path()).expect("open");
    let change_id = Uuid::now_v7().to_string();
    let node = till.store.identity().node();
    let now = chrono_now() + 1_000;
    conn.execute(
        "INSERT INTO changes (change_id, entity, entity_id, op, fields, before, hlc, device_id,
                              staff_id, at)
         VALUES (?1, 'customer', ?2, 'update', ?3, NULL, ?4, ?5, 'priya', ?6)",
        rusqlite::params![
            change_id,
            id,
            fields.to_string(),
            format!("{now:015}-{:010}-{node}", 0),
            node,
            now
        ],
    )
    .expect("forge");
    change_id
}

/// An update the server will refuse: of a customer it has never seen.
fn forge_unknown_update(till: &Till) -> String {
    forge_update(
        till,
        &Uuid::now_v7().to_string(),
        serde_json::json!({"notes": "x"}),
    )
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[test]
fn a_rejected_change_is_quarantined_and_the_rest_goes_through() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S1", "T2");
    let before = a
        .store
        .create_customer(NewCustomer::named("Before").with_phone("90000 33333"))
        .expect("before");
    let bad = forge_unknown_update(&a);
    let after = a
        .store
        .create_customer(NewCustomer::named("After").with_phone("90000 44444"))
        .expect("after");
    sell_to(&a.store, Some(after.id), "TEA", 100);

    let summary = a.sync();
    assert_eq!((summary.pushed, summary.quarantined), (3, 1));
    let status = a.store.sync_status().expect("status");
    assert_eq!(status.pending_changes, 0);
    assert_eq!(status.quarantined.len(), 1);
    assert_eq!(status.quarantined[0].change_id.to_string(), bad);
    assert_eq!(status.quarantined[0].reason, "unknown_record");
    // Never pushed again.
    assert_eq!(a.sync().pushed, 0);

    b.sync();
    assert!(b.store.customer(before.id).is_ok());
    assert!(b.store.customer(after.id).is_ok());
    assert_eq!(
        b.store.customer_summary(after.id).expect("metrics").visits,
        1
    );
    server.stop();
}

/// Stops the server after the first pulled page is applied.
struct StopAfterFirstPage(StopOnce);

impl SyncObserver for StopAfterFirstPage {
    fn pulled(&self, _changes: usize, _cursor: i64) {
        self.0.stop();
    }
}

#[test]
fn an_interrupted_sync_resumes_without_loss_or_duplication() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("server");
    let server = Server::start(&data);
    let mut a = Till::new(&server, dir.path(), "S1", "T1");
    let mut b = Till::new(&server, dir.path(), "S1", "T2");
    // b bootstraps while the tenant is empty, so what follows is pulled.
    b.sync();
    let mut ids = Vec::new();
    for i in 0..12 {
        let c = a
            .store
            .create_customer(
                NewCustomer::named(&format!("Customer {i}"))
                    .with_phone(&format!("9{:09}", 100_000 + i)),
            )
            .expect("create");
        sell_to(&a.store, Some(c.id), "TEA", 100 + i);
        ids.push(c.id);
    }
    a.sync();

    b.config.pull_page = 5;
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
    // The first page, and the one fetched ahead of it if it got in before
    // the server stopped, stayed applied.
    assert!(
        [5, 10].contains(&status.cursor),
        "the applied pages stayed applied: cursor {}",
        status.cursor
    );
    assert!(status.last_error.is_some());

    let server = Server::open(&data);
    b.config.server_url = server.url.clone();
    a.config.server_url = server.url.clone();
    let resumed = b.sync();
    assert_eq!(resumed.pulled as i64, 24 - status.cursor);
    for (i, id) in ids.iter().enumerate() {
        let summary = b.store.customer_summary(*id).expect("metrics");
        assert_eq!((summary.visits, summary.total_spent), (1, 100 + i as i64));
    }
    a.sync();
    assert_eq!(snapshot(&a.store), snapshot(&b.store));
    let status = b.store.sync_status().expect("status");
    assert!(status.last_error.is_none());
    server.stop();
}

#[test]
fn a_sync_cut_short_after_its_push_never_shows_a_till_its_own_older_state() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("server");
    let server = Server::start(&data);
    let mut a = Till::new(&server, dir.path(), "S1", "T1");
    // Bootstrapped while the tenant is empty, so what follows is pulled.
    a.sync();
    // Two changes of each record, interleaved, none pushed yet: the server
    // will log each record's older change first.
    let c = a
        .store
        .create_customer(NewCustomer::named("First Name").with_phone("90000 66666"))
        .expect("create");
    let bill = a.store.open_bill(NewBill::default()).expect("open");
    a.store
        .update_customer(
            c.id,
            c.version,
            CustomerUpdate {
                name: Some("Second Name".into()),
                ..CustomerUpdate::default()
            },
        )
        .expect("rename");
    a.store.void_bill(bill.id).expect("void");

    // All are pushed and acknowledged; the pull stops after the first page
    // (the customer's creation) and, fetched ahead of it, maybe the second
    // (the bill's opening).
    a.config.pull_page = 1;
    let observer = StopAfterFirstPage(StopOnce::new(server));
    a.store
        .sync(&a.config, &observer)
        .expect_err("the server went away");
    let status = a.store.sync_status().expect("status");
    assert_eq!(status.pending_changes, 0);
    assert!([1, 2].contains(&status.cursor), "{}", status.cursor);
    assert_eq!(a.store.customer(c.id).expect("c").name, "Second Name");
    let voided = a.store.bill(bill.id).expect("bill");
    assert_eq!(voided.status, till_core::BillStatus::Voided);

    let server = Server::open(&data);
    a.config.server_url = server.url.clone();
    a.config.pull_page = 200;
    a.sync();
    assert_eq!(a.store.customer(c.id).expect("c").name, "Second Name");
    assert_eq!(a.store.bill(bill.id).expect("bill"), voided);
    server.stop();
}

#[test]
fn pushing_the_same_outbox_twice_applies_it_once() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S1", "T2");
    // b bootstraps while the tenant is empty, so it pulls every change.
    b.sync();
    let c = a
        .store
        .create_customer(NewCustomer::named("Once").with_phone("90000 55555"))
        .expect("create");
    let bill = sell_to(&a.store, Some(c.id), "TEA", 300);

    // The server commits the push but its answer is lost: the outbox is
    // sent by hand and nothing is marked.
    let outbox = a.store.pending_changes(100).expect("outbox");
    assert_eq!(outbox.len(), 2);
    let body = serde_json::json!({ "changes": outbox });
    let first = push_raw(&server, &a, &body);
    assert!(
        first.iter().all(|r| r["outcome"] == "accepted"),
        "{first:?}"
    );

    // The next sync pushes the same changes again: the server says duplicate.
    let summary = a.sync();
    assert_eq!((summary.pushed, summary.quarantined), (2, 0));
    b.sync();
    assert_eq!(b.store.customer_summary(c.id).expect("m").visits, 1);
    assert_eq!(b.store.bill(bill.id).expect("bill").payments.len(), 1);
    // The server log holds each change once.
    for id in [c.id.to_string(), bill.id.to_string()] {
        assert_eq!(history_ids(&b.store, &id), history_ids(&a.store, &id));
    }
    assert_eq!(snapshot(&a.store), snapshot(&b.store));
    server.stop();
}

/// A till running an app from before voids were sealed voids a paid sale
/// of another till. The void reaches the till that issued the sale through
/// the server, so that till seals it as its own: its chain stays intact.
#[test]
fn a_void_from_an_older_till_is_sealed_by_the_till_that_issued_the_sale() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let older = Till::new(&server, dir.path(), "S1", "T2");
    let sale = sell_to(&a.store, None, "TEA", 300);
    a.sync();
    older.sync();

    older.store.void_bill(sale.id).expect("void");
    let mut outbox = older.store.pending_changes(10).expect("outbox");
    assert_eq!(outbox.len(), 1);
    // As the older app wrote it: no seal.
    let void = &mut outbox[0];
    assert!(void.fields.remove("void_seal").is_some());
    void.before.remove("void_seal");
    let body = serde_json::json!({ "changes": outbox });
    let results = push_raw(&server, &older, &body);
    assert_eq!(results[0]["outcome"], "accepted", "{results:?}");

    a.sync();
    let voided = a.store.bill(sale.id).expect("bill");
    assert_eq!(voided.status, till_core::BillStatus::Voided);
    assert!(voided.void_seal.is_some());
    let report = a.store.verify().expect("verify");
    assert!(report.is_ok(), "{report:?}");
    server.stop();
}

/// Pushes `body` to the server as `till` without going through the client.
fn push_raw(server: &Server, till: &Till, body: &Value) -> Vec<Value> {
    use std::io::{Read, Write};
    let text = serde_json::to_string(body).expect("json");
    let addr = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "POST /v1/push HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         till-protocol: 1\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{text}",
        till.config.token,
        text.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (_, json) = response.split_once("\r\n\r\n").expect("http response");
    let value: Value = serde_json::from_str(json).expect("body");
    value["results"].as_array().cloned().expect("results")
}

fn extra_of(till: &Till, customer: Uuid) -> Value {
    let conn = Connection::open(till.store.path()).expect("open");
    let extra: String = conn
        .query_row(
            "SELECT extra FROM customers WHERE id = ?1",
            [customer.to_string()],
            |r| r.get(0),
        )
        .expect("extra");
    serde_json::from_str(&extra).expect("json")
}

#[test]
fn a_field_from_a_newer_app_survives_older_tills_edits_and_reaches_new_tills() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let newer = Till::new(&server, dir.path(), "S1", "T1");
    let older = Till::new(&server, dir.path(), "S1", "T2");
    let c = newer
        .store
        .create_customer(NewCustomer::named("Lena Park").with_phone("90000 55555"))
        .expect("customer");
    // As a newer app version would write it.
    forge_update(
        &newer,
        &c.id.to_string(),
        serde_json::json!({"loyalty_tier": "gold"}),
    );
    assert_eq!(newer.sync().pushed, 2);

    older.sync();
    assert_eq!(extra_of(&older, c.id)["loyalty_tier"], "gold");
    let read = older.store.customer(c.id).expect("read");
    older
        .store
        .update_customer(
            c.id,
            read.version,
            CustomerUpdate {
                name: Some("Lena Park-Kim".into()),
                ..CustomerUpdate::default()
            },
        )
        .expect("edit");
    assert_eq!(
        extra_of(&older, c.id)["loyalty_tier"],
        "gold",
        "kept by the edit"
    );
    older.sync();

    let held = &common::inspect::ServerView::read(&dir.path().join("server"), "t1").customers
        [&c.id.to_string()];
    assert_eq!(held.values["loyalty_tier"], "gold");
    assert_eq!(held.values["name"], "Lena Park-Kim");

    let fresh = Till::new(&server, dir.path(), "S2", "T1");
    fresh.sync();
    assert_eq!(extra_of(&fresh, c.id)["loyalty_tier"], "gold");
    assert_eq!(
        fresh.store.customer(c.id).expect("pulled").name,
        "Lena Park-Kim"
    );
    server.stop();
}

/// A field a newer app wrote may hold personal data this build cannot
/// recognise as such: erasing the customer at an older till erases it too,
/// at the head office and at every till, their logs included.
#[test]
fn an_erasure_erases_the_fields_a_newer_app_wrote() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let newer = Till::new(&server, dir.path(), "S1", "T1");
    let older = Till::new(&server, dir.path(), "S1", "T2");
    let c = newer
        .store
        .create_customer(NewCustomer::named("Lena Park").with_phone("90000 55555"))
        .expect("customer");
    let needle = "lena.park.handle";
    forge_update(
        &newer,
        &c.id.to_string(),
        serde_json::json!({"social_handle": format!("@{needle}"), "loyalty_tier": "gold"}),
    );
    newer.sync();
    older.sync();
    assert_eq!(
        extra_of(&older, c.id)["social_handle"],
        format!("@{needle}")
    );
    // A request for the person's data gets it too.
    let export: till_core::CustomerExport =
        serde_json::from_str(&older.store.export_customer(c.id).expect("export")).expect("json");
    assert_eq!(export.other_fields["social_handle"], format!("@{needle}"));

    older.store.erase_customer(c.id).expect("erase");
    assert_eq!(extra_of(&older, c.id), serde_json::json!({}));
    older.sync();
    newer.sync();

    let held = &common::inspect::ServerView::read(&dir.path().join("server"), "t1").customers
        [&c.id.to_string()];
    for key in ["social_handle", "loyalty_tier"] {
        assert_eq!(held.values[key], Value::Null, "{key}");
    }
    let conn = Connection::open(
        dir.path()
            .join("server")
            .join(till_sync_server::storage::sqlite::FILE_NAME),
    )
    .expect("server db");
    for (table, column) in [("log", "change"), ("customers", "state")] {
        let found: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM {table} WHERE {column} LIKE '%' || ?1 || '%'"),
                [needle],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(found, 0, "the server's {table} holds it");
    }
    for till in [&older, &newer] {
        let mut bytes = std::fs::read(till.store.path()).expect("file");
        let mut wal = till.store.path().as_os_str().to_owned();
        wal.push("-wal");
        bytes.extend(std::fs::read(&wal).unwrap_or_default());
        assert!(
            !String::from_utf8_lossy(&bytes).contains(needle),
            "{}'s files hold it",
            till.store.identity().device
        );
    }
    server.stop();
}

#[test]
fn a_failed_sync_says_what_failed_it_even_when_the_file_is_locked_at_its_end() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    sell_to(&a.store, None, "TEA", 100);
    server.stop();
    // Another process of this device holds the write lock past the store's
    // busy timeout, so recording the failed sync fails too.
    let other = Connection::open(a.store.path()).expect("open");
    other.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let err = a
        .store
        .sync(&a.config, &till_core::NoopObserver)
        .expect_err("no server");
    other.execute_batch("ROLLBACK").expect("unlock");
    assert!(
        matches!(&err, till_core::Error::Sync(s) if s.is_retryable()),
        "the app is told the server is away, not that the file was busy: {err}"
    );
    assert_eq!(a.store.sync_status().expect("status").pending_changes, 1);
}
