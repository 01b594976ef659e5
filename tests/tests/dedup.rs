//! Exact-key dedup through a real server: customers created offline with one
//! phone or email at two tills end as one customer everywhere, with every
//! bill on the survivor, whatever order the tills sync in; edits, deletes
//! and sales made offline against the merged-away customer land on the
//! survivor; a shared (household) phone never merges.

mod common;

use std::time::Duration;

use common::{snapshot, Server, Till};
use rusqlite::{Connection, OpenFlags};
use till_core::sync::conflict::RecordState;
use till_core::{Customer, CustomerUpdate, NewBill, NewCustomer, NewLine, Store, Tender};
use till_sync_server::storage::sqlite::FILE_NAME;
use till_sync_server::storage::Storage;
use uuid::Uuid;

fn sell_to(till: &Store, customer: Uuid, price: i64) -> till_core::Bill {
    till.sell(
        NewBill {
            customer_id: Some(customer),
            lines: vec![NewLine::item("TEA", "Tea", 1, price)],
            ..NewBill::default()
        },
        &[Tender::cash(price)],
    )
    .expect("sell")
}

/// Syncs every till, in order, twice.
fn sync_all_twice(tills: &[&Till]) {
    for _ in 0..2 {
        for till in tills {
            till.sync();
        }
    }
}

/// The server's database, read-only.
fn server_db(server: &Server) -> Connection {
    Connection::open_with_flags(
        server.data.join(FILE_NAME),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("server db")
}

/// Ids of the server's live customers holding identity phone `e164`.
fn live_on_server_with_phone(server: &Server, e164: &str) -> Vec<String> {
    let db = server_db(server);
    let mut stmt = db
        .prepare("SELECT id FROM customers WHERE phone_e164 = ?1 AND live = 1 ORDER BY id")
        .expect("prepare");
    stmt.query_map([e164], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

/// The server's merge state of a record.
fn server_state(server: &Server, table: &str, id: Uuid) -> RecordState {
    let db = server_db(server);
    let json: String = db
        .query_row(
            &format!("SELECT state FROM {table} WHERE id = ?1"),
            [id.to_string()],
            |r| r.get(0),
        )
        .expect("state");
    serde_json::from_str(&json).expect("state json")
}

/// The customer id each bill names on the server.
fn server_bill_customer(server: &Server, bill: Uuid) -> Option<String> {
    server_db(server)
        .query_row(
            "SELECT customer_id FROM bills WHERE id = ?1",
            [bill.to_string()],
            |r| r.get(0),
        )
        .expect("bill")
}

/// What a till shows of one merge: `loser` leads to `survivor` on every
/// read path, its tombstone names the survivor, and search finds only the
/// survivor.
fn assert_merged(store: &Store, loser: Uuid, survivor: Uuid, search: &str) {
    assert_eq!(store.customer(loser).expect("follows").id, survivor);
    let tombstone = store.customer_including_deleted(loser).expect("tombstone");
    assert_eq!(tombstone.merged_into, Some(survivor));
    assert_eq!(
        store.customer_summary(loser).expect("summary").customer_id,
        survivor
    );
    assert!(store.flush_search_index(Duration::from_secs(30)));
    let hits: Vec<Uuid> = store
        .search_customers(search, 10)
        .expect("search")
        .into_iter()
        .map(|h| h.customer.id)
        .collect();
    assert_eq!(hits, vec![survivor], "search {search}");
    let report = store.verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn the_same_phone_created_at_two_tills_offline_ends_as_one_customer() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let mut b = Till::new(&server, dir.path(), "S1", "T2");
    // One entry a page: the pages split each create from its merge.
    b.config.pull_page = 1;

    let on_a = a
        .store
        .create_customer(NewCustomer::named("Asha Rao").with_phone("98765 43210"))
        .expect("on a");
    // A later millisecond: A's id is the smaller, so A survives.
    std::thread::sleep(Duration::from_millis(2));
    let on_b = b
        .store
        .create_customer(NewCustomer {
            notes: "prefers green tea".into(),
            tags: vec!["vip".into()],
            ..NewCustomer::named("Asha R").with_phone("+91 98765-43210")
        })
        .expect("on b");
    let bill_a = sell_to(&a.store, on_a.id, 150);
    let bill_b = sell_to(&b.store, on_b.id, 220);
    let (survivor, loser) = (on_a.id, on_b.id);
    assert!(survivor < loser);

    b.sync();
    let loser_state = server_state(&server, "customers", loser);
    sync_all_twice(&[&a, &b]);

    for till in [&a, &b] {
        let s = &till.store;
        assert_merged(s, loser, survivor, "43210");
        let merged = s.customer(survivor).expect("survivor");
        // The union: the later name, B's notes and tags; the phone as an
        // identity key again on the till whose pages split the merge.
        assert_eq!(merged.name, "Asha R");
        assert_eq!(merged.notes, "prefers green tea");
        assert_eq!(merged.tags, vec!["vip".to_string()]);
        assert!(merged.phone.as_ref().is_some_and(|p| !p.shared));
        for bill in [bill_a.id, bill_b.id] {
            assert_eq!(s.bill(bill).expect("bill").customer_id, Some(survivor));
        }
        let summary = s.customer_summary(survivor).expect("metrics");
        assert_eq!((summary.visits, summary.total_spent), (2, 370));
        let bills = s.customer_bills(survivor, None, 10).expect("bills");
        assert_eq!(bills.items.len(), 2);
    }
    assert_eq!(snapshot(&a.store), snapshot(&b.store));

    assert_eq!(
        live_on_server_with_phone(&server, "+919876543210"),
        vec![survivor.to_string()]
    );
    for bill in [bill_a.id, bill_b.id] {
        assert_eq!(
            server_bill_customer(&server, bill),
            Some(survivor.to_string())
        );
    }
    let merges = server
        .block(server.storage.merges("t1", &loser.to_string()))
        .expect("merges");
    assert_eq!(merges.len(), 1);
    let record = &merges[0];
    assert_eq!(
        (record.survivor.as_str(), record.loser.as_str()),
        (survivor.to_string().as_str(), loser.to_string().as_str())
    );
    assert_eq!(record.loser_before, loser_state, "the loser's before-image");
    assert_eq!(record.bills, vec![bill_b.id.to_string()]);
    server.stop();
}

#[test]
fn the_same_email_merges_customers_with_different_phones() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S2", "T1");

    let on_a = a
        .store
        .create_customer(
            NewCustomer::named("Ravi Kumar")
                .with_phone("91234 56789")
                .with_email("ravi@example.com"),
        )
        .expect("on a");
    std::thread::sleep(Duration::from_millis(2));
    let on_b = b
        .store
        .create_customer(
            NewCustomer::named("Ravi K")
                .with_phone("90000 12345")
                .with_email(" Ravi@Example.COM "),
        )
        .expect("on b");
    let bill_a = sell_to(&a.store, on_a.id, 500);
    let bill_b = sell_to(&b.store, on_b.id, 70);
    sync_all_twice(&[&a, &b]);

    let (survivor, loser) = (on_a.id, on_b.id);
    for till in [&a, &b] {
        assert_merged(&till.store, loser, survivor, "ravi@example.com");
        // The later phone wins; the survivor holds one phone.
        let merged = till.store.customer(survivor).expect("survivor");
        assert_eq!(merged.phone.expect("phone").e164, "+919000012345");
    }
    // Each store holds its own bill, now on the survivor.
    assert_eq!(
        a.store.bill(bill_a.id).expect("a").customer_id,
        Some(survivor)
    );
    assert_eq!(
        b.store.bill(bill_b.id).expect("b").customer_id,
        Some(survivor)
    );
    assert_eq!(
        b.store.customer_summary(survivor).expect("m").total_spent,
        70
    );
    assert_eq!(
        server_bill_customer(&server, bill_b.id),
        Some(survivor.to_string())
    );

    // The loser's phone stays a key of the survivor: a new customer typed
    // with it at a third till joins the survivor.
    let c = Till::new(&server, dir.path(), "S1", "T2");
    c.sync();
    let again = c
        .store
        .create_customer(NewCustomer::named("R. Kumar").with_phone("91234 56789"))
        .expect("third");
    sync_all_twice(&[&c, &a, &b]);
    for till in [&a, &b, &c] {
        assert_eq!(till.store.customer(again.id).expect("c").id, survivor);
    }
    assert_eq!(snapshot(&a.store), snapshot(&c.store));
    server.stop();
}

/// Two tills create the same person offline (T1 first), then sync in
/// `order`; returns the survivor's id, T1's customer id and the survivor.
fn merge_in_order(order: [usize; 2]) -> (Uuid, Uuid, Customer) {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let tills = [
        Till::new(&server, dir.path(), "S1", "T1"),
        Till::new(&server, dir.path(), "S1", "T2"),
    ];
    let first = tills[0]
        .store
        .create_customer(NewCustomer {
            tags: vec!["vip".into()],
            ..NewCustomer::named("Meera").with_phone("99887 76655")
        })
        .expect("first");
    std::thread::sleep(Duration::from_millis(2));
    tills[1]
        .store
        .create_customer(NewCustomer {
            tags: vec!["wholesale".into()],
            ..NewCustomer::named("Meera Iyer")
                .with_phone("+91 99887 76655")
                .with_email("meera@example.com")
        })
        .expect("second");
    sync_all_twice(&[&tills[order[0]], &tills[order[1]]]);
    assert_eq!(snapshot(&tills[0].store), snapshot(&tills[1].store));
    let merged = tills[0].store.customer(first.id).expect("merged");
    server.stop();
    (merged.id, first.id, merged)
}

#[test]
fn the_survivor_and_its_fields_are_the_same_for_both_push_orders() {
    let (survivor_12, first_12, merged_12) = merge_in_order([0, 1]);
    let (survivor_21, first_21, merged_21) = merge_in_order([1, 0]);
    assert_eq!(survivor_12, first_12, "the first created survives");
    assert_eq!(survivor_21, first_21, "the first created survives");
    let fields = |c: &Customer| {
        (
            c.name.clone(),
            c.phone.clone(),
            c.email.clone(),
            c.tags.clone(),
            c.number.clone(),
        )
    };
    assert_eq!(fields(&merged_12), fields(&merged_21));
    assert_eq!(merged_12.name, "Meera Iyer");
    assert_eq!(
        merged_12.tags,
        vec!["vip".to_string(), "wholesale".to_string()]
    );
    assert!(
        merged_12.number.starts_with("S1-T1-"),
        "the survivor's number"
    );
}

/// T1 creates A, then T2 creates B with the same phone and syncs; B is on
/// the server, unmerged. Returns the tills and both ids.
fn b_synced_before_a(dir: &std::path::Path, server: &Server) -> (Till, Till, Uuid, Uuid) {
    let a = Till::new(server, dir, "S1", "T1");
    let b = Till::new(server, dir, "S1", "T2");
    let first = a
        .store
        .create_customer(NewCustomer::named("Dev Patel").with_phone("90000 22222"))
        .expect("a");
    std::thread::sleep(Duration::from_millis(2));
    let second = b
        .store
        .create_customer(NewCustomer::named("Dev").with_phone("90000 22222"))
        .expect("b");
    b.sync();
    (a, b, first.id, second.id)
}

fn add_notes(till: &Till, id: Uuid, notes: &str) {
    let c = till.store.customer(id).expect("read");
    till.store
        .update_customer(
            id,
            c.version,
            CustomerUpdate {
                notes: Some(notes.into()),
                ..CustomerUpdate::default()
            },
        )
        .expect("edit");
}

#[test]
fn an_offline_edit_of_the_merged_away_customer_lands_on_the_survivor() {
    for edit_first in [false, true] {
        let dir = tempfile::tempdir().expect("dir");
        let server = Server::start(&dir.path().join("server"));
        let (a, b, survivor, loser) = b_synced_before_a(dir.path(), &server);
        // B's till edits B offline; the edit reaches the server after the
        // merge, or before it.
        add_notes(&b, loser, "pays by card");
        b.store.tag_customer(loser, &["regular"], &[]).expect("tag");
        if edit_first {
            b.sync();
        }
        a.sync();
        sync_all_twice(&[&b, &a]);
        for till in [&a, &b] {
            let merged = till.store.customer(loser).expect("follows");
            assert_eq!(merged.id, survivor, "edit first: {edit_first}");
            assert_eq!(merged.notes, "pays by card", "edit first: {edit_first}");
            assert_eq!(merged.tags, vec!["regular".to_string()]);
            let status = till.store.sync_status().expect("status");
            assert!(status.quarantined.is_empty(), "{:?}", status.quarantined);
        }
        assert_eq!(snapshot(&a.store), snapshot(&b.store));
        server.stop();
    }
}

#[test]
fn an_offline_delete_of_the_merged_away_customer_keeps_the_survivor() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let (a, b, survivor, loser) = b_synced_before_a(dir.path(), &server);
    a.sync();
    // B's till, not yet aware of the merge, deletes its copy as a duplicate.
    b.store.delete_customer(loser).expect("delete");
    sync_all_twice(&[&b, &a]);
    for till in [&a, &b] {
        let live = till.store.customer(survivor).expect("survivor lives");
        assert!(live.is_live());
        let tombstone = till.store.customer_including_deleted(loser).expect("row");
        assert_eq!(tombstone.merged_into, Some(survivor));
    }
    assert_eq!(snapshot(&a.store), snapshot(&b.store));
    assert!(server_state(&server, "customers", survivor)
        .values
        .get("deleted_at_ms")
        .is_none_or(serde_json::Value::is_null));
    server.stop();
}

#[test]
fn a_bill_written_offline_against_the_merged_away_id_lands_on_the_survivor() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let (a, b, survivor, loser) = b_synced_before_a(dir.path(), &server);
    a.sync();
    // B's till has not heard of the merge: it sells to the customer it knows.
    let offline = sell_to(&b.store, loser, 400);
    assert_eq!(offline.customer_id, Some(loser));
    b.sync();
    assert_eq!(
        server_bill_customer(&server, offline.id),
        Some(survivor.to_string())
    );
    // Now it has: a sale from a screen still holding the old id.
    let later = sell_to(&b.store, loser, 100);
    assert_eq!(later.customer_id, Some(survivor));
    sync_all_twice(&[&b, &a]);
    for till in [&a, &b] {
        for bill in [offline.id, later.id] {
            assert_eq!(
                till.store.bill(bill).expect("bill").customer_id,
                Some(survivor)
            );
        }
        let summary = till.store.customer_summary(survivor).expect("metrics");
        assert_eq!((summary.visits, summary.total_spent), (2, 500));
        assert!(till.store.verify().expect("verify").is_ok());
    }
    assert_eq!(snapshot(&a.store), snapshot(&b.store));
    server.stop();
}

#[test]
fn a_shared_household_phone_never_merges() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S1", "T2");
    let household = |name: &str| NewCustomer {
        phone_shared: true,
        ..NewCustomer::named(name).with_phone("98450 11111")
    };
    let mum = a.store.create_customer(household("Mum")).expect("mum");
    let dad = b.store.create_customer(household("Dad")).expect("dad");
    // The number's own holder (not shared) does not merge with them either.
    let kid = b
        .store
        .create_customer(NewCustomer::named("Kid").with_phone("98450 11111"))
        .expect("kid");
    sync_all_twice(&[&a, &b]);
    for till in [&a, &b] {
        for (id, name) in [(mum.id, "Mum"), (dad.id, "Dad"), (kid.id, "Kid")] {
            let c = till.store.customer(id).expect("live");
            assert_eq!((c.id, c.name.as_str()), (id, name));
        }
    }
    assert_eq!(snapshot(&a.store), snapshot(&b.store));
    for id in [mum.id, dad.id, kid.id] {
        let merges = server
            .block(server.storage.merges("t1", &id.to_string()))
            .expect("merges");
        assert!(merges.is_empty());
    }
    server.stop();
}

/// Erasing a customer erases the same person's merged-away record too,
/// wherever the merge left it: the tombstone on every till and on the
/// server, their change records, the merge's before-images (kept for undo)
/// and the aliases. The bills keep their money and stay on the survivor.
#[test]
fn erasing_a_merged_customer_erases_the_merged_away_record_everywhere() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("server"));
    let a = Till::new(&server, dir.path(), "S1", "T1");
    let b = Till::new(&server, dir.path(), "S1", "T2");
    let on_a = a
        .store
        .create_customer(
            NewCustomer::named("Ravi Kumar")
                .with_phone("91234 56789")
                .with_email("ravi@example.com"),
        )
        .expect("on a");
    std::thread::sleep(Duration::from_millis(2));
    let on_b = b
        .store
        .create_customer(NewCustomer {
            notes: "flat 4, 12 MG Road".into(),
            tags: vec!["wholesale".into()],
            ..NewCustomer::named("Ravi K")
                .with_phone("99887 76655")
                .with_email("Ravi@Example.com")
        })
        .expect("on b");
    let bill = sell_to(&b.store, on_b.id, 250);
    sync_all_twice(&[&a, &b]);
    let (survivor, loser) = (on_a.id, on_b.id);
    assert_merged(&a.store, loser, survivor, "ravi@example.com");
    let merges = |server: &Server| {
        server
            .block(server.storage.merges("t1", &loser.to_string()))
            .expect("merges")
    };
    assert!(
        serde_json::to_string(&merges(&server))
            .expect("json")
            .contains("56789"),
        "the before-images held the first phone"
    );

    a.store.erase_customer(survivor).expect("erase");
    sync_all_twice(&[&a, &b]);

    let personal = [
        "Ravi",
        "56789",
        "76655",
        "ravi@example",
        "MG Road",
        "wholesale",
    ];
    for till in [&a, &b] {
        for id in [survivor, loser] {
            let c = till.store.customer_including_deleted(id).expect("kept");
            assert!(c.erased_at_ms.is_some(), "{id} not erased");
            assert_eq!(
                (c.name.as_str(), &c.phone, &c.email, c.notes.as_str()),
                (till_core::ERASED_NAME, &None, &None, ""),
                "{id}"
            );
            assert!(c.tags.is_empty());
            let history = till.store.history(&id.to_string(), None, 200).expect("log");
            let text = format!("{:?}", history.items);
            for needle in personal {
                assert!(!text.contains(needle), "{id}'s log holds {needle:?}");
            }
        }
        let sold = till.store.bill(bill.id).expect("bill");
        assert_eq!((sold.total, sold.customer_id), (250, Some(survivor)));
        assert_eq!(sold.customer_phone, None);
        let report = till.store.verify().expect("verify");
        assert!(report.is_ok(), "{:?}", report.problems);
    }
    assert_eq!(snapshot(&a.store), snapshot(&b.store));

    let db = server_db(&server);
    for (table, column) in [
        ("log", "change"),
        ("customers", "state"),
        ("bills", "state"),
        ("merges", "record"),
        ("aliases", "key"),
    ] {
        let texts: Vec<String> = db
            .prepare(&format!("SELECT {column} FROM {table}"))
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        for needle in personal {
            assert!(
                !texts.iter().any(|t| t.contains(needle)),
                "the server's {table} holds {needle:?}"
            );
        }
    }
    let kept = merges(&server);
    assert_eq!(kept.len(), 1, "the merge itself is still on record");
    assert_eq!(
        (kept[0].survivor.as_str(), kept[0].loser.as_str()),
        (survivor.to_string().as_str(), loser.to_string().as_str())
    );
    server.stop();
}
