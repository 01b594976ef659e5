//! Customers through the public `Store` API on real SQLite files: creation
//! and normalisation, validation that writes nothing, optimistic locking,
//! soft delete and restore, identity keys, tags, the find-or-create race
//! (threads and two stores on one file), keyset pagination, the history and
//! its append-only log, and reopening.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use chrono::{Days, NaiveDate, Utc};
use rusqlite::Connection;
use serde_json::json;
use till_core::clock::Hlc;
use till_core::customers::normalize;
use till_core::page::PAGE_CAP;
use till_core::{
    Address, Change, Customer, CustomerOrder, CustomerQuery, CustomerUpdate, Entity, Error,
    NewCustomer, Stage, Store,
};
use uuid::Uuid;

use common::{change_count, invalid_field, options, temp_store};

/// The canonical form of every spelling in [`SAME_PHONE`].
const E164: &str = "+919876543210";

/// One Indian mobile number typed sixteen ways.
const SAME_PHONE: [&str; 16] = [
    "98765 43210",
    "+91 98765 43210",
    "(0)98765-43210",
    "9876543210",
    "+919876543210",
    "098765 43210",
    "09876543210",
    "0091 98765 43210",
    "+91-98765-43210",
    "98765-43210",
    "  98765 43210  ",
    "987 654 3210",
    "+91 9876543210",
    "0 98765 43210",
    "+91 (98765) 43210",
    "98765.43210",
];

/// Every customer the list returns, deleted ones included, across all pages.
fn all_customers(store: &Store) -> Vec<Customer> {
    let mut query = CustomerQuery {
        include_deleted: true,
        limit: PAGE_CAP,
        ..CustomerQuery::default()
    };
    let mut out = Vec::new();
    loop {
        let page = store.list_customers(&query).expect("list");
        out.extend(page.items);
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => return out,
        }
    }
}

/// The whole history of one record, across pages.
fn history(store: &Store, id: Uuid) -> Vec<Change> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .history(&id.to_string(), cursor.as_deref(), PAGE_CAP)
            .expect("history");
        out.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

fn hlc(change: &Change) -> Hlc {
    change.hlc.parse().expect("well-formed stamp")
}

fn assert_consistent(store: &Store) {
    let report = store.verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
}

// ---------------------------------------------------------------------------
// Create and read

#[test]
fn create_then_read_by_id_and_by_number() {
    let store = temp_store();
    let new = NewCustomer {
        address: Address {
            line1: "12 MG Road".into(),
            city: "Bengaluru".into(),
            postal_code: "560001".into(),
            ..Address::default()
        },
        stage: Some(Stage::Lead),
        notes: "Prefers\nemail".into(),
        birthday: NaiveDate::from_ymd_opt(1990, 5, 17),
        ..NewCustomer::named("Asha Rao")
            .with_phone("98765 43210")
            .with_email("asha@example.com")
    };
    let created = store.create_customer(new).expect("create");

    assert_eq!(created.id.get_version_num(), 7, "ids are UUIDv7");
    assert_eq!(created.number, "S01-T01-C000001");
    assert_eq!(created.version, 1);
    assert_eq!(created.created_at_ms, created.updated_at_ms);
    assert!(created.is_live());
    assert_eq!(created.stage, Stage::Lead);
    assert_eq!(created.notes, "Prefers\nemail", "notes keep line breaks");
    assert_eq!(created.address.city, "Bengaluru");
    assert_eq!(created.birthday, NaiveDate::from_ymd_opt(1990, 5, 17));

    assert_eq!(store.customer(created.id).expect("by id"), created);
    assert_eq!(
        store
            .customer_by_number(" S01-T01-C000001 ")
            .expect("by number"),
        created
    );

    let second = store
        .create_customer(NewCustomer::named("Ravi"))
        .expect("second");
    assert_eq!(second.number, "S01-T01-C000002");
    assert_eq!(second.stage, Stage::New, "stage defaults to new");
    assert_eq!(second.version, 1);
    assert!(second.phone.is_none() && second.email.is_none());
    assert!(second.id > created.id, "UUIDv7 ids sort by creation");

    assert!(matches!(
        store.customer(Uuid::now_v7()),
        Err(Error::NotFound {
            entity: Entity::Customer,
            ..
        })
    ));
    assert!(matches!(
        store.customer_by_number("S01-T01-C000999"),
        Err(Error::NotFound { .. })
    ));
    assert_consistent(&store);
}

#[test]
fn numbers_are_scoped_to_the_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("till.db");
    let store =
        Store::open(till_core::StoreOptions::new(&path, "acme", "S07", "POS-2")).expect("open");
    let c = store
        .create_customer(NewCustomer::named("Asha"))
        .expect("create");
    assert_eq!(c.number, "S07-POS-2-C000001");
}

// ---------------------------------------------------------------------------
// Normalisation

#[test]
fn phones_typed_in_any_format_are_one_identity() {
    let store = temp_store();
    let first = store
        .create_customer(NewCustomer::named("Asha").with_phone("98765 43210"))
        .expect("create");
    let phone = first.phone.clone().expect("phone");
    assert_eq!(phone.e164, E164, "read in the store's region, IN");
    assert_eq!(phone.raw, "98765 43210", "kept as typed");
    assert!(!phone.shared);

    for typed in ["+91 98765 43210", "(0)98765-43210"] {
        match store.create_customer(NewCustomer::named("Other").with_phone(typed)) {
            Err(Error::Duplicate { field, existing }) => {
                assert_eq!(field, "phone", "{typed}");
                assert_eq!(existing, first.id.to_string(), "{typed}");
            }
            other => panic!("{typed}: expected a duplicate, got {other:?}"),
        }
        let (found, created) = store.find_or_create_by_phone(typed, "Other").expect("find");
        assert!(!created, "{typed}");
        assert_eq!(found.id, first.id, "{typed}");
    }
    assert_eq!(all_customers(&store).len(), 1);
}

#[test]
fn emails_and_names_are_cleaned() {
    let store = temp_store();
    let c = store
        .create_customer(NewCustomer {
            address: Address {
                line1: "  12   MG Road ".into(),
                ..Address::default()
            },
            ..NewCustomer::named("  Asha \t  Rao \n").with_email("  Asha.Rao@Example.COM ")
        })
        .expect("create");
    assert_eq!(c.name, "Asha Rao");
    let email = c.email.clone().expect("email");
    assert_eq!(email.raw, "Asha.Rao@Example.COM");
    assert_eq!(email.canonical, "asha.rao@example.com");
    assert_eq!(c.address.line1, "12 MG Road");

    match store.create_customer(NewCustomer::named("Other").with_email("ASHA.RAO@example.com")) {
        Err(Error::Duplicate { field, existing }) => {
            assert_eq!(field, "email");
            assert_eq!(existing, c.id.to_string());
        }
        other => panic!("expected a duplicate email, got {other:?}"),
    }

    // An empty or blank optional field means "none", not an error.
    let blank = store
        .create_customer(NewCustomer {
            phone: Some("   ".into()),
            email: Some(String::new()),
            ..NewCustomer::named("Blank")
        })
        .expect("blank contacts");
    assert!(blank.phone.is_none() && blank.email.is_none());
}

// ---------------------------------------------------------------------------
// Validation

#[test]
fn bad_input_names_the_field_and_writes_nothing() {
    let store = temp_store();
    let tomorrow = Utc::now().date_naive() + Days::new(1);
    let long = |n: usize| "x".repeat(n);
    let address = |a: Address| NewCustomer {
        address: a,
        ..NewCustomer::named("Asha")
    };
    let cases: Vec<(&str, NewCustomer)> = vec![
        ("name", NewCustomer::named("")),
        ("name", NewCustomer::named(" \t\n ")),
        ("name", NewCustomer::named(&long(normalize::NAME_MAX + 1))),
        ("name", NewCustomer::named("As\u{7}ha")),
        ("phone", NewCustomer::named("Asha").with_phone("98765")),
        ("phone", NewCustomer::named("Asha").with_phone("hello")),
        (
            "phone",
            NewCustomer::named("Asha").with_phone("+91 12345 678901"),
        ),
        ("email", NewCustomer::named("Asha").with_email("asha@")),
        (
            "email",
            NewCustomer::named("Asha").with_email("asha@localhost"),
        ),
        (
            "email",
            NewCustomer::named("Asha").with_email("a b@example.com"),
        ),
        (
            "notes",
            NewCustomer {
                notes: long(normalize::NOTES_MAX + 1),
                ..NewCustomer::named("Asha")
            },
        ),
        (
            "birthday",
            NewCustomer {
                birthday: Some(tomorrow),
                ..NewCustomer::named("Asha")
            },
        ),
        (
            "birthday",
            NewCustomer {
                birthday: NaiveDate::from_ymd_opt(1899, 12, 31),
                ..NewCustomer::named("Asha")
            },
        ),
        (
            "address.line1",
            address(Address {
                line1: long(normalize::ADDRESS_FIELD_MAX + 1),
                ..Address::default()
            }),
        ),
        (
            "address.city",
            address(Address {
                city: long(normalize::ADDRESS_FIELD_MAX + 1),
                ..Address::default()
            }),
        ),
        (
            "address.postal_code",
            address(Address {
                postal_code: long(21),
                ..Address::default()
            }),
        ),
        (
            "tags",
            NewCustomer {
                tags: vec!["vip".into(), "  ".into()],
                ..NewCustomer::named("Asha")
            },
        ),
        (
            "tags",
            NewCustomer {
                tags: vec![long(normalize::TAG_MAX + 1)],
                ..NewCustomer::named("Asha")
            },
        ),
    ];
    for (field, new) in cases {
        let described = format!("{new:?}");
        assert_eq!(
            invalid_field(store.create_customer(new)),
            field,
            "{described}"
        );
    }
    assert_eq!(invalid_field("vip".parse::<Stage>()), "stage");
    assert_eq!(" At_Risk ".parse::<Stage>().expect("stage"), Stage::AtRisk);
    assert_eq!(
        invalid_field(store.find_or_create_by_phone("12", "Asha")),
        "phone"
    );
    assert_eq!(
        invalid_field(store.find_or_create_by_phone("98765 43210", "")),
        "name"
    );

    // Nothing was written, not even a customer number.
    assert!(all_customers(&store).is_empty());
    assert_eq!(change_count(&store.path), 0);
    let at_the_limit = store
        .create_customer(NewCustomer::named(&long(normalize::NAME_MAX)))
        .expect("a name of exactly the limit");
    assert_eq!(
        at_the_limit.number, "S01-T01-C000001",
        "no number was burned"
    );
    assert_eq!(change_count(&store.path), 1);
}

#[test]
fn a_rejected_update_changes_nothing() {
    let store = temp_store();
    let c = store
        .create_customer(NewCustomer::named("Asha").with_phone("98765 43210"))
        .expect("create");
    let tomorrow = Utc::now().date_naive() + Days::new(1);
    let cases = [
        (
            "name",
            CustomerUpdate {
                name: Some(" ".into()),
                ..CustomerUpdate::default()
            },
        ),
        (
            "phone",
            CustomerUpdate {
                phone: Some(Some("12".into())),
                ..CustomerUpdate::default()
            },
        ),
        (
            "email",
            CustomerUpdate {
                email: Some(Some("nope".into())),
                ..CustomerUpdate::default()
            },
        ),
        (
            "notes",
            CustomerUpdate {
                notes: Some("n".repeat(normalize::NOTES_MAX + 1)),
                ..CustomerUpdate::default()
            },
        ),
        (
            "birthday",
            CustomerUpdate {
                birthday: Some(Some(tomorrow)),
                ..CustomerUpdate::default()
            },
        ),
        (
            "address.region",
            CustomerUpdate {
                address: Some(Address {
                    region: "r".repeat(normalize::ADDRESS_FIELD_MAX + 1),
                    ..Address::default()
                }),
                ..CustomerUpdate::default()
            },
        ),
        // A valid field beside an invalid one is not written either.
        (
            "email",
            CustomerUpdate {
                name: Some("Asha Rao".into()),
                email: Some(Some("asha@".into())),
                ..CustomerUpdate::default()
            },
        ),
    ];
    for (field, update) in cases {
        assert_eq!(invalid_field(store.update_customer(c.id, 1, update)), field);
    }
    assert_eq!(store.customer(c.id).expect("read"), c);
    assert_eq!(history(&store, c.id).len(), 1);
}

// ---------------------------------------------------------------------------
// Optimistic locking

#[test]
fn updates_carry_the_version_they_read() {
    let store = temp_store();
    let v1 = store
        .create_customer(NewCustomer::named("Asha Rao").with_email("asha@example.com"))
        .expect("create");
    thread::sleep(Duration::from_millis(3));

    let v2 = store
        .update_customer(
            v1.id,
            1,
            CustomerUpdate {
                name: Some("Asha  R.".into()),
                stage: Some(Stage::Active),
                ..CustomerUpdate::default()
            },
        )
        .expect("update");
    assert_eq!(v2.version, 2);
    assert_eq!(v2.name, "Asha R.");
    assert_eq!(v2.stage, Stage::Active);
    assert!(v2.updated_at_ms > v1.updated_at_ms);
    assert_eq!(v2.created_at_ms, v1.created_at_ms);
    assert_eq!(v2.number, v1.number);
    assert_eq!(store.customer(v1.id).expect("read"), v2);

    let changes = history(&store, v1.id);
    assert_eq!(changes.len(), 2);
    let update = &changes[1];
    assert_eq!(update.op, "update");
    assert_eq!(update.entity, "customer");
    assert_eq!(
        serde_json::Value::Object(update.fields.clone()),
        json!({"name": "Asha R.", "stage": "active"})
    );
    assert_eq!(
        serde_json::Value::Object(update.before.clone()),
        json!({"name": "Asha Rao", "stage": "new"})
    );

    // Someone who still holds version 1 loses, and learns the current version.
    match store.update_customer(
        v1.id,
        1,
        CustomerUpdate {
            name: Some("Stale".into()),
            ..CustomerUpdate::default()
        },
    ) {
        Err(Error::Conflict {
            entity,
            id,
            expected,
            current,
        }) => {
            assert_eq!(entity, Entity::Customer);
            assert_eq!(id, v1.id.to_string());
            assert_eq!((expected, current), (1, 2));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.customer(v1.id).expect("read"), v2);
    assert_eq!(history(&store, v1.id).len(), 2);

    // A version from the future is as stale as one from the past.
    assert!(matches!(
        store.update_customer(v1.id, 3, CustomerUpdate::default()),
        Err(Error::Conflict { current: 2, .. })
    ));

    // Changing nothing is not a change: no new version, no history record.
    let same = store
        .update_customer(
            v1.id,
            2,
            CustomerUpdate {
                name: Some(" Asha R. ".into()),
                ..CustomerUpdate::default()
            },
        )
        .expect("no-op");
    assert_eq!(same, v2);
    assert_eq!(history(&store, v1.id).len(), 2);

    // Some(None) clears an optional field; the change records the old value.
    let v3 = store
        .update_customer(
            v1.id,
            2,
            CustomerUpdate {
                email: Some(None),
                ..CustomerUpdate::default()
            },
        )
        .expect("clear email");
    assert_eq!(v3.version, 3);
    assert!(v3.email.is_none());
    let clear = history(&store, v1.id).pop().expect("clear change");
    assert_eq!(clear.fields.get("email"), Some(&serde_json::Value::Null));
    assert_eq!(
        clear.before.get("email"),
        Some(&json!({"raw": "asha@example.com", "canonical": "asha@example.com", "shared": false}))
    );
    // The freed email can be taken by someone else.
    store
        .create_customer(NewCustomer::named("Ravi").with_email("asha@example.com"))
        .expect("email is free again");
    assert_consistent(&store);
}

// ---------------------------------------------------------------------------
// Soft delete and restore

#[test]
fn soft_delete_hides_everywhere_and_restore_brings_back() {
    let store = temp_store();
    let asha = store
        .create_customer(NewCustomer {
            tags: vec!["vip".into()],
            ..NewCustomer::named("Asha").with_phone("98765 43210")
        })
        .expect("create");
    let other = store
        .create_customer(NewCustomer::named("Ravi"))
        .expect("other");

    let deleted = store.delete_customer(asha.id).expect("delete");
    assert!(deleted.deleted_at_ms.is_some());
    assert_eq!(deleted.version, 2);
    assert!(matches!(
        store.customer(asha.id),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.customer_by_number(&asha.number),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        store
            .customer_including_deleted(asha.id)
            .expect("as stored"),
        deleted
    );
    let live = store
        .list_customers(&CustomerQuery::default())
        .expect("list");
    assert_eq!(
        live.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![other.id]
    );
    let vip = store
        .list_customers(&CustomerQuery {
            tag: Some("vip".into()),
            ..CustomerQuery::default()
        })
        .expect("by tag");
    assert!(vip.items.is_empty(), "deleted customers leave tag lists");
    assert_eq!(all_customers(&store).len(), 2, "include_deleted shows it");

    // Deleted customers cannot be changed or deleted again.
    assert!(matches!(
        store.update_customer(asha.id, 2, CustomerUpdate::default()),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.tag_customer(asha.id, &["x"], &[]),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.delete_customer(asha.id),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.restore_customer(other.id),
        Err(Error::InvalidState { .. })
    ));

    // find-or-create does not see the deleted customer: a new one is made.
    let (newcomer, created) = store
        .find_or_create_by_phone("+91 98765 43210", "Asha again")
        .expect("find or create");
    assert!(created);
    assert_ne!(newcomer.id, asha.id);

    // Restoring now would make two live holders of one phone.
    match store.restore_customer(asha.id) {
        Err(Error::Duplicate { field, existing }) => {
            assert_eq!(field, "phone");
            assert_eq!(existing, newcomer.id.to_string());
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(
        store.customer_including_deleted(asha.id).expect("still"),
        deleted
    );

    // Once the newcomer is gone, the restore goes through.
    store.delete_customer(newcomer.id).expect("delete newcomer");
    let restored = store.restore_customer(asha.id).expect("restore");
    assert!(restored.deleted_at_ms.is_none());
    assert_eq!(restored.version, 3);
    assert_eq!(store.customer(asha.id).expect("visible"), restored);
    assert_eq!(
        store
            .customer_by_number(&asha.number)
            .expect("by number")
            .id,
        asha.id
    );
    let (found, created) = store
        .find_or_create_by_phone("98765-43210", "X")
        .expect("find");
    assert!(!created);
    assert_eq!(found.id, asha.id);
    let vip = store
        .list_customers(&CustomerQuery {
            tag: Some("vip".into()),
            ..CustomerQuery::default()
        })
        .expect("by tag");
    assert_eq!(vip.items, vec![restored.clone()]);

    let ops: Vec<String> = history(&store, asha.id).into_iter().map(|c| c.op).collect();
    assert_eq!(ops, ["create", "delete", "restore"]);
    assert_consistent(&store);
}

// ---------------------------------------------------------------------------
// Identity keys

#[test]
fn shared_phones_and_emails_are_not_identity_keys() {
    let store = temp_store();
    let shared = |name: &str| NewCustomer {
        phone_shared: true,
        email_shared: true,
        ..NewCustomer::named(name)
            .with_phone("98765 43210")
            .with_email("family@example.com")
    };
    let mum = store.create_customer(shared("Mum")).expect("mum");
    let dad = store.create_customer(shared("Dad")).expect("dad");
    assert!(mum
        .phone
        .as_ref()
        .is_some_and(|p| p.shared && p.e164 == E164));
    assert!(dad.email.as_ref().is_some_and(|e| e.shared));

    // find-or-create does not match a shared phone: it makes the identity holder.
    let (kid, created) = store
        .find_or_create_by_phone("+91 98765 43210", "Kid")
        .expect("find or create");
    assert!(created);
    assert!(![mum.id, dad.id].contains(&kid.id));
    assert!(kid.phone.as_ref().is_some_and(|p| !p.shared));
    let (again, created) = store
        .find_or_create_by_phone("09876543210", "Kid")
        .expect("again");
    assert!(!created);
    assert_eq!(again.id, kid.id);

    // Now the number has an identity holder: another non-shared use is a duplicate,
    match store.create_customer(NewCustomer::named("Cousin").with_phone("9876543210")) {
        Err(Error::Duplicate { field, existing }) => {
            assert_eq!((field, existing), ("phone", kid.id.to_string()));
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    // and so is un-sharing mum's copy of it.
    match store.update_customer(
        mum.id,
        1,
        CustomerUpdate {
            phone_shared: Some(false),
            ..CustomerUpdate::default()
        },
    ) {
        Err(Error::Duplicate { field, existing }) => {
            assert_eq!((field, existing), ("phone", kid.id.to_string()));
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(store.customer(mum.id).expect("mum"), mum);

    // A shared email does not block an identity email either.
    let owner = store
        .create_customer(NewCustomer::named("Owner").with_email("Family@Example.com"))
        .expect("identity email beside shared ones");
    assert!(owner.email.as_ref().is_some_and(|e| !e.shared));

    // Taking an identity phone by update is refused like a create.
    match store.update_customer(
        owner.id,
        1,
        CustomerUpdate {
            phone: Some(Some("+91 98765 43210".into())),
            ..CustomerUpdate::default()
        },
    ) {
        Err(Error::Duplicate { field, .. }) => assert_eq!(field, "phone"),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(all_customers(&store).len(), 4);
    assert_consistent(&store);
}

// ---------------------------------------------------------------------------
// Tags

#[test]
fn tags_are_a_set_edited_by_add_and_remove() {
    let store = temp_store();
    let asha = store
        .create_customer(NewCustomer {
            tags: vec!["VIP".into(), " wholesale ".into(), "vip".into()],
            ..NewCustomer::named("Asha")
        })
        .expect("create");
    assert_eq!(asha.tags, ["vip", "wholesale"]);
    let ravi = store
        .create_customer(NewCustomer {
            tags: vec!["vip".into()],
            ..NewCustomer::named("Ravi")
        })
        .expect("ravi");

    let tagged = store
        .tag_customer(asha.id, &["Festive  Sale", "VIP"], &["WHOLESALE", "absent"])
        .expect("tag");
    assert_eq!(tagged.tags, ["festive sale", "vip"]);
    assert_eq!(tagged.version, 2);
    assert_eq!(store.customer(asha.id).expect("read"), tagged);
    let change = history(&store, asha.id).pop().expect("tag change");
    assert_eq!(change.op, "tag");
    assert_eq!(
        serde_json::Value::Object(change.fields),
        json!({"tags": ["festive sale", "vip"]})
    );
    assert_eq!(
        serde_json::Value::Object(change.before),
        json!({"tags": ["vip", "wholesale"]})
    );

    // A tag edit that changes nothing records nothing.
    let same = store
        .tag_customer(asha.id, &["vip"], &["wholesale"])
        .expect("no-op");
    assert_eq!(same, tagged);
    assert_eq!(history(&store, asha.id).len(), 2);
    assert_eq!(
        invalid_field(store.tag_customer(asha.id, &[""], &[])),
        "tags"
    );

    let by_tag = |tag: &str| -> Vec<Uuid> {
        store
            .list_customers(&CustomerQuery {
                tag: Some(tag.into()),
                ..CustomerQuery::default()
            })
            .expect("list by tag")
            .items
            .into_iter()
            .map(|c| c.id)
            .collect()
    };
    assert_eq!(by_tag(" VIP "), [asha.id, ravi.id]);
    assert_eq!(by_tag("festive sale"), [asha.id]);
    assert!(
        by_tag("wholesale").is_empty(),
        "removed tags leave the index"
    );
    assert!(by_tag("nobody").is_empty());

    // Replacing the set by update re-indexes it as well.
    store
        .update_customer(
            ravi.id,
            1,
            CustomerUpdate {
                tags: Some(vec!["Wholesale".into()]),
                ..CustomerUpdate::default()
            },
        )
        .expect("update tags");
    assert_eq!(by_tag("vip"), [asha.id]);
    assert_eq!(by_tag("wholesale"), [ravi.id]);
}

// ---------------------------------------------------------------------------
// find-or-create under contention

/// Runs one find-or-create per spelling in [`SAME_PHONE`], all released at
/// once, spread round-robin over `stores`.
fn race(stores: &[Arc<Store>]) -> Vec<(Customer, bool)> {
    let barrier = Arc::new(Barrier::new(SAME_PHONE.len()));
    let handles: Vec<_> = SAME_PHONE
        .iter()
        .enumerate()
        .map(|(i, typed)| {
            let store = Arc::clone(&stores[i % stores.len()]);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                store
                    .find_or_create_by_phone(typed, &format!("Caller {i}"))
                    .expect("find or create")
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect()
}

fn assert_one_winner(results: &[(Customer, bool)], store: &Store) {
    let ids: HashSet<Uuid> = results.iter().map(|(c, _)| c.id).collect();
    assert_eq!(ids.len(), 1, "everyone got the same customer");
    assert_eq!(
        results.iter().filter(|(_, created)| *created).count(),
        1,
        "exactly one call created it"
    );
    let all = all_customers(store);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].phone.as_ref().map(|p| p.e164.as_str()), Some(E164));
    assert_eq!(history(store, all[0].id).len(), 1, "one create recorded");
}

#[test]
fn sixteen_spellings_are_one_phone() {
    let spellings: HashSet<&str> = SAME_PHONE.iter().copied().collect();
    assert_eq!(spellings.len(), SAME_PHONE.len(), "all spellings differ");
    for typed in SAME_PHONE {
        let p = normalize::phone(typed, "IN".parse().expect("IN")).expect(typed);
        assert_eq!(p.e164, E164, "{typed}");
    }
}

#[test]
fn find_or_create_race_in_one_process_makes_one_customer() {
    let t = temp_store();
    let store = Arc::new(t.store);
    let results = race(&[Arc::clone(&store)]);
    assert_one_winner(&results, &store);
    assert_consistent(&store);
}

#[test]
fn find_or_create_race_across_two_stores_on_one_file_makes_one_customer() {
    let t = temp_store();
    let second = Arc::new(Store::open(options(&t.path)).expect("second handle"));
    let first = Arc::new(t.store);
    let results = race(&[Arc::clone(&first), Arc::clone(&second)]);
    assert_one_winner(&results, &first);
    assert_one_winner(&results, &second);
}

// ---------------------------------------------------------------------------
// Lists

const FIRST: [&str; 7] = ["Asha", "ravi", "Meera", "arjun", "Zoya", "Élodie", "kiran"];
const LAST: [&str; 5] = ["Rao", "Iyer", "khan", "Das", "Nair"];

/// Creates `n` customers with repeating names in mixed case; returns them in creation order.
fn populate(store: &Store, n: usize) -> Vec<Customer> {
    (0..n)
        .map(|i| {
            let name = format!("{} {}", FIRST[i % FIRST.len()], LAST[i % LAST.len()]);
            let name = if i % 3 == 0 {
                name.to_uppercase()
            } else {
                name
            };
            store
                .create_customer(NewCustomer {
                    stage: Some(Stage::ALL[i % Stage::ALL.len()]),
                    ..NewCustomer::named(&name)
                })
                .expect("populate")
        })
        .collect()
}

/// Every page of `query`, checking each page but the last is full.
fn pages(store: &Store, mut query: CustomerQuery) -> Vec<Vec<Customer>> {
    let limit = query.limit.min(PAGE_CAP) as usize;
    let mut out = Vec::new();
    loop {
        let page = store.list_customers(&query).expect("page");
        let last = page.next.is_none();
        if !last {
            assert_eq!(page.items.len(), limit, "only the last page is short");
        }
        out.push(page.items);
        if last {
            return out;
        }
        query.cursor = page.next;
    }
}

#[test]
fn keyset_pages_visit_every_live_customer_once_in_order() {
    let store = temp_store();
    let created = populate(&store, 250);
    // Some changes, in a known order, and some deletions.
    for (i, c) in created.iter().enumerate() {
        if i % 9 == 4 {
            thread::sleep(Duration::from_millis(1));
            store
                .update_customer(
                    c.id,
                    1,
                    CustomerUpdate {
                        notes: Some(format!("visit {i}")),
                        ..CustomerUpdate::default()
                    },
                )
                .expect("update");
        }
        if i % 25 == 7 {
            store.delete_customer(c.id).expect("delete");
        }
    }
    // Final state, with the creation position standing in for the rowid.
    let live: Vec<(usize, Customer)> = created
        .iter()
        .enumerate()
        .filter_map(|(i, c)| store.customer(c.id).ok().map(|c| (i, c)))
        .collect();
    assert_eq!(live.len(), 240);

    let mut by_name = live.clone();
    by_name.sort_by(|(i, a), (j, b)| {
        (normalize::name_key(&a.name), i).cmp(&(normalize::name_key(&b.name), j))
    });
    let mut newest = live.clone();
    newest.sort_by(|(i, a), (j, b)| (b.created_at_ms, j).cmp(&(a.created_at_ms, i)));
    let mut updated = live.clone();
    updated.sort_by(|(i, a), (j, b)| (b.updated_at_ms, j).cmp(&(a.updated_at_ms, i)));

    for (order, expected) in [
        (CustomerOrder::Name, by_name),
        (CustomerOrder::Newest, newest),
        (CustomerOrder::RecentlyUpdated, updated),
    ] {
        let pages = pages(
            &store,
            CustomerQuery {
                order,
                limit: 40,
                ..CustomerQuery::default()
            },
        );
        assert_eq!(
            pages.len(),
            6,
            "{order:?}: 240 live customers in pages of 40"
        );
        let got: Vec<Customer> = pages.into_iter().flatten().collect();
        let expected: Vec<Customer> = expected.into_iter().map(|(_, c)| c).collect();
        assert_eq!(got, expected, "{order:?}");
    }
}

#[test]
fn pages_stay_stable_while_customers_are_added() {
    let store = temp_store();
    let created = populate(&store, 30);
    let mut query = CustomerQuery {
        order: CustomerOrder::Newest,
        limit: 10,
        ..CustomerQuery::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = store.list_customers(&query).expect("page");
        seen.extend(page.items.into_iter().map(|c| c.id));
        // Newer customers arrive between pages; they sort before the cursor.
        populate(&store, 3);
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<Uuid> = created.iter().rev().map(|c| c.id).collect();
    assert_eq!(seen, expected, "no repeats, no gaps");
}

#[test]
fn limits_and_cursors_are_checked() {
    let store = temp_store();
    populate(&store, 210);
    let capped = store
        .list_customers(&CustomerQuery {
            limit: 10_000,
            ..CustomerQuery::default()
        })
        .expect("capped");
    assert_eq!(capped.items.len(), PAGE_CAP as usize);
    let rest = store
        .list_customers(&CustomerQuery {
            limit: 10_000,
            cursor: capped.next.clone(),
            ..CustomerQuery::default()
        })
        .expect("rest");
    assert_eq!(rest.items.len(), 10);
    assert!(rest.next.is_none());

    assert_eq!(
        invalid_field(store.list_customers(&CustomerQuery {
            limit: 0,
            ..CustomerQuery::default()
        })),
        "limit"
    );
    let name_cursor = capped.next.expect("a next page");
    for cursor in ["garbled!!", "", "bm90IGpzb24", "WzEsMl0"] {
        assert_eq!(
            invalid_field(store.list_customers(&CustomerQuery {
                cursor: Some(cursor.into()),
                ..CustomerQuery::default()
            })),
            "cursor",
            "{cursor:?}"
        );
    }
    for order in [CustomerOrder::Newest, CustomerOrder::RecentlyUpdated] {
        assert_eq!(
            invalid_field(store.list_customers(&CustomerQuery {
                order,
                cursor: Some(name_cursor.clone()),
                ..CustomerQuery::default()
            })),
            "cursor",
            "{order:?}"
        );
    }
    assert_eq!(
        invalid_field(store.history("anything", Some(&name_cursor), 10)),
        "cursor",
        "a list cursor is not a history cursor"
    );
}

#[test]
fn lists_filter_by_stage_tag_and_update_time() {
    let store = temp_store();
    let created = populate(&store, 24);
    let ids = |query: CustomerQuery| -> HashSet<Uuid> {
        pages(&store, query)
            .into_iter()
            .flatten()
            .map(|c| c.id)
            .collect()
    };

    let loyal: HashSet<Uuid> = created
        .iter()
        .filter(|c| c.stage == Stage::Loyal)
        .map(|c| c.id)
        .collect();
    assert_eq!(loyal.len(), 4);
    assert_eq!(
        ids(CustomerQuery {
            stage: Some(Stage::Loyal),
            limit: 3,
            ..CustomerQuery::default()
        }),
        loyal
    );

    thread::sleep(Duration::from_millis(5));
    let mut touched = HashSet::new();
    let mut since = i64::MAX;
    for c in created.iter().step_by(5) {
        let after = store.tag_customer(c.id, &["touched"], &[]).expect("touch");
        since = since.min(after.updated_at_ms);
        touched.insert(c.id);
    }
    assert!(created.iter().all(|c| c.updated_at_ms < since));
    assert_eq!(touched.len(), 5);
    assert_eq!(
        ids(CustomerQuery {
            updated_since_ms: Some(since),
            limit: 2,
            ..CustomerQuery::default()
        }),
        touched
    );
    assert!(ids(CustomerQuery {
        updated_since_ms: Some(Utc::now().timestamp_millis() + 60_000),
        ..CustomerQuery::default()
    })
    .is_empty());

    // Filters combine.
    let touched_loyal: HashSet<Uuid> = touched.intersection(&loyal).copied().collect();
    assert!(!touched_loyal.is_empty());
    assert_eq!(
        ids(CustomerQuery {
            stage: Some(Stage::Loyal),
            tag: Some("touched".into()),
            ..CustomerQuery::default()
        }),
        touched_loyal
    );
}

// ---------------------------------------------------------------------------
// History and the change log

#[test]
fn history_records_every_mutation_with_who_where_and_when() {
    let store = temp_store();
    store.set_staff(" asha-01 ").expect("staff");
    assert_eq!(invalid_field(store.set_staff("  ")), "staff_id");
    assert_eq!(invalid_field(store.set_staff(&"s".repeat(65))), "staff_id");

    let c = store
        .create_customer(NewCustomer::named("Asha").with_phone("98765 43210"))
        .expect("create");
    let bystander = store
        .create_customer(NewCustomer::named("Ravi"))
        .expect("bystander");
    let c = store
        .update_customer(
            c.id,
            1,
            CustomerUpdate {
                name: Some("Asha Rao".into()),
                ..CustomerUpdate::default()
            },
        )
        .expect("update");
    store.set_staff("ravi-02").expect("staff");
    store.tag_customer(c.id, &["vip"], &[]).expect("tag");
    let deleted = store.delete_customer(c.id).expect("delete");
    store.restore_customer(c.id).expect("restore");

    let all = history(&store, c.id);
    let ops: Vec<&str> = all.iter().map(|ch| ch.op.as_str()).collect();
    assert_eq!(ops, ["create", "update", "tag", "delete", "restore"]);
    let staff: Vec<&str> = all.iter().map(|ch| ch.staff.as_str()).collect();
    assert_eq!(
        staff,
        ["asha-01", "asha-01", "ravi-02", "ravi-02", "ravi-02"]
    );
    for ch in &all {
        assert_eq!(ch.entity, "customer");
        assert_eq!(ch.entity_id, c.id.to_string());
        assert_eq!(ch.device, "S01/T01");
        assert_eq!(hlc(ch).node, "S01/T01");
    }
    for pair in all.windows(2) {
        assert!(hlc(&pair[0]) < hlc(&pair[1]), "stamps strictly increase");
        assert!(pair[0].hlc < pair[1].hlc, "and so does their text");
        assert!(pair[0].at_ms <= pair[1].at_ms);
    }
    let ids: HashSet<Uuid> = all.iter().map(|ch| ch.change_id).collect();
    assert_eq!(ids.len(), all.len(), "change ids are unique");

    // The create records the new record's fields and no before-image.
    let create = &all[0];
    assert!(create.before.is_empty());
    assert_eq!(create.fields.get("name"), Some(&json!("Asha")));
    assert_eq!(create.fields.get("number"), Some(&json!("S01-T01-C000001")));
    assert_eq!(create.fields.get("stage"), Some(&json!("new")));
    assert_eq!(
        create.fields.get("phone"),
        Some(&json!({"raw": "98765 43210", "e164": E164, "shared": false}))
    );
    // The delete and the restore are before/after pairs of deleted_at_ms.
    assert_eq!(
        serde_json::Value::Object(all[3].fields.clone()),
        json!({"deleted_at_ms": deleted.deleted_at_ms})
    );
    assert_eq!(
        serde_json::Value::Object(all[3].before.clone()),
        json!({"deleted_at_ms": null})
    );
    assert_eq!(all[4].fields, all[3].before);
    assert_eq!(all[4].before, all[3].fields);

    // Pages of two: the same records, in the same order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    let mut sizes = Vec::new();
    loop {
        let page = store
            .history(&c.id.to_string(), cursor.as_deref(), 2)
            .expect("page");
        sizes.push(page.items.len());
        paged.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(paged, all);
    assert_eq!(
        invalid_field(store.history(&c.id.to_string(), None, 0)),
        "limit"
    );
    assert_eq!(
        invalid_field(store.history(&c.id.to_string(), Some("%%%"), 2)),
        "cursor"
    );

    let other = history(&store, bystander.id);
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].staff, "asha-01");
    assert!(all.iter().all(|ch| ch.change_id != other[0].change_id));
    assert!(store
        .history(&Uuid::now_v7().to_string(), None, 10)
        .expect("unknown id")
        .items
        .is_empty());
}

#[test]
fn the_change_log_is_append_only() {
    let store = temp_store();
    let c = store
        .create_customer(NewCustomer::named("Asha"))
        .expect("create");
    store.delete_customer(c.id).expect("delete");
    let before = history(&store, c.id);

    let conn = Connection::open(&store.path).expect("plain connection");
    for sql in [
        "DELETE FROM changes",
        "DELETE FROM changes WHERE op = 'delete'",
        "UPDATE changes SET op = 'create'",
        "UPDATE changes SET staff_id = 'someone-else'",
        "UPDATE changes SET hlc = '000000000000000-0000000000-X'",
        "UPDATE changes SET entity_id = 'other'",
    ] {
        let err = conn.execute(sql, []).expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    drop(conn);
    assert_eq!(history(&store, c.id), before);
    assert_eq!(change_count(&store.path), 2);
}

// ---------------------------------------------------------------------------
// Reopening

#[test]
fn reopening_keeps_everything_and_the_clock_keeps_moving_forward() {
    let t = temp_store();
    let (dir, path, store) = (t.dir, t.path, t.store);
    let asha = store
        .create_customer(NewCustomer::named("Asha").with_phone("98765 43210"))
        .expect("create");
    let asha = store.tag_customer(asha.id, &["vip"], &[]).expect("tag");
    let listed = all_customers(&store);
    let changes = history(&store, asha.id);
    drop(store);

    // The wall clock stepped back since the last session: the device's last
    // stamp is an hour ahead of now.
    let ahead = Hlc {
        wall_ms: Utc::now().timestamp_millis() + 3_600_000,
        counter: 7,
        node: "S01/T01".into(),
    };
    Connection::open(&path)
        .expect("plain connection")
        .execute(
            "INSERT INTO changes (change_id, entity, entity_id, op, fields, hlc, device_id,
                                  staff_id, at)
             VALUES (?1, 'customer', ?2, 'update', '{}', ?3, 'S01/T01', 'unassigned', 0)",
            rusqlite::params![
                Uuid::now_v7().to_string(),
                Uuid::now_v7().to_string(),
                ahead.to_string()
            ],
        )
        .expect("a stamp from the future");

    let store = Store::open(options(&path)).expect("reopen");
    assert_eq!(store.customer(asha.id).expect("still there"), asha);
    assert_eq!(all_customers(&store), listed);
    assert_eq!(history(&store, asha.id), changes);
    let (found, created) = store
        .find_or_create_by_phone("+91 98765 43210", "X")
        .expect("find");
    assert!(!created && found.id == asha.id, "the phone index survived");

    let ravi = store
        .create_customer(NewCustomer::named("Ravi"))
        .expect("after reopen");
    assert_eq!(ravi.number, "S01-T01-C000002", "numbering continues");
    let stamp = hlc(&history(&store, ravi.id)[0]);
    assert!(stamp > ahead, "{stamp} after {ahead}");
    assert!(stamp > hlc(changes.last().expect("changes")));
    drop(store);

    for (tenant, shop, device) in [
        ("acme", "S01", "T02"),
        ("acme", "S02", "T01"),
        ("other", "S01", "T01"),
    ] {
        match Store::open(till_core::StoreOptions::new(&path, tenant, shop, device)) {
            Err(Error::IdentityMismatch { found, expected }) => {
                assert_eq!(found, "acme/S01/T01");
                assert_eq!(expected, format!("{tenant}/{shop}/{device}"));
            }
            other => panic!("{tenant}/{shop}/{device}: expected a mismatch, got {other:?}"),
        }
    }
    let store = Store::open(options(&path)).expect("the right identity still opens");
    assert_eq!(all_customers(&store).len(), 2);
    drop(store);
    drop(dir);
}

#[test]
fn two_handles_on_one_file_keep_the_device_clock_strictly_increasing() {
    let t = temp_store();
    let other = Store::open(options(&t.path)).expect("second handle");
    let c = t
        .create_customer(NewCustomer::named("Asha"))
        .expect("create");
    // Alternate writers, fast enough to share milliseconds.
    for i in 0..20 {
        let writer: &Store = if i % 2 == 0 { &other } else { &t };
        writer
            .tag_customer(c.id, &[&format!("t{i}")], &[])
            .expect("tag");
    }
    let all = history(&t, c.id);
    assert_eq!(all.len(), 21);
    for pair in all.windows(2) {
        assert!(
            hlc(&pair[0]) < hlc(&pair[1]),
            "{} then {}",
            pair[0].hlc,
            pair[1].hlc
        );
    }
}

/// A letter typed for a digit ("O" for zero) is refused: the parser would
/// read it as a keypad letter and hand the cashier another customer.
#[test]
fn a_letter_typed_in_a_phone_is_refused_not_read_as_a_keypad_digit() {
    for typed in [
        "98765 4321O",
        "98765 4321o",
        "98765 432l0",
        "9876S 43210",
        "98765abc43210",
    ] {
        assert_eq!(
            invalid_field(normalize::phone(typed, phonenumber::country::Id::IN)),
            "phone",
            "{typed:?}"
        );
    }
    let store = temp_store();
    store
        .create_customer(NewCustomer::named("Somebody Else").with_phone("98765 43216"))
        .expect("other");
    assert_eq!(
        invalid_field(store.find_or_create_by_phone("98765 4321O", "Asha Rao")),
        "phone"
    );
}

/// Phones typed with Devanagari or full-width digits are read as digits;
/// the number is kept as typed.
#[test]
fn native_and_full_width_digits_in_a_phone_are_read_as_digits() {
    for typed in ["९८७६५४३२१०", "９８７６５４３２１０", "+९१ ९८७६५ ४३२१०"]
    {
        let phone = normalize::phone(typed, phonenumber::country::Id::IN).expect(typed);
        assert_eq!(
            (phone.e164.as_str(), phone.raw.as_str()),
            ("+919876543210", typed)
        );
    }
}

/// Invisible format characters (zero-width space, BOM, bidi marks, soft
/// hyphen) are not a name, and are dropped from one.
#[test]
fn a_name_of_only_invisible_characters_is_refused() {
    let store = temp_store();
    for invisible in [
        "\u{200B}",
        "\u{FEFF}",
        "\u{2060}",
        "\u{200E}",
        "\u{00AD}",
        " \u{200B} \u{200D} ",
    ] {
        assert_eq!(
            invalid_field(store.create_customer(NewCustomer::named(invisible))),
            "name",
            "{invisible:?}"
        );
    }
    assert_eq!(
        normalize::name("Asha\u{200B} Rao").expect("with a zero-width space"),
        "Asha Rao"
    );
}

/// Erasure is final: an erased customer is not restored, nor given
/// personal data again.
#[test]
fn an_erased_customer_cannot_be_restored() {
    let store = temp_store();
    let c = store
        .create_customer(NewCustomer::named("Asha Rao").with_phone("98765 43210"))
        .expect("create");
    let erased = store.erase_customer(c.id).expect("erase");
    let changes = change_count(store.path());
    match store.restore_customer(c.id) {
        Err(Error::InvalidState { state, .. }) => assert_eq!(state, "erased"),
        other => panic!("restored: {other:?}"),
    }
    let update = store.update_customer(
        c.id,
        erased.version,
        CustomerUpdate {
            phone: Some(Some("98765 43210".into())),
            ..CustomerUpdate::default()
        },
    );
    assert!(update.is_err(), "{update:?}");
    assert_eq!(change_count(store.path()), changes);
    let live = store
        .list_customers(&CustomerQuery::default())
        .expect("list");
    assert!(live.items.is_empty(), "{:?}", live.items);
}

/// A household number re-typed in another format stays shared: it does
/// not become one member's identity key.
#[test]
fn retyping_a_shared_phone_or_email_keeps_it_shared() {
    let store = temp_store();
    let shared = |name: &str| NewCustomer {
        phone_shared: true,
        email_shared: true,
        ..NewCustomer::named(name)
            .with_phone("98765 43210")
            .with_email("home@example.com")
    };
    let mum = store.create_customer(shared("Mum")).expect("mum");
    store.create_customer(shared("Dad")).expect("dad");
    let after = store
        .update_customer(
            mum.id,
            mum.version,
            CustomerUpdate {
                phone: Some(Some("+91 98765 43210".into())),
                email: Some(Some(" Home@Example.com ".into())),
                ..CustomerUpdate::default()
            },
        )
        .expect("update");
    assert!(
        after.phone.as_ref().is_some_and(|p| p.shared),
        "{:?}",
        after.phone
    );
    assert!(
        after.email.as_ref().is_some_and(|e| e.shared),
        "{:?}",
        after.email
    );
    let (kid, created) = store
        .find_or_create_by_phone("98765 43210", "Kid")
        .expect("find or create");
    assert!(created, "the household number found {}", kid.name);
}

/// A tag is bounded as stored, after lower-casing ("İ" becomes two
/// characters).
#[test]
fn a_tag_stays_within_its_bound_after_lower_casing() {
    let tag = "İ".repeat(normalize::TAG_MAX);
    assert_eq!(invalid_field(normalize::tags(&[tag])), "tags");
}

/// Notes keep line breaks and tabs but refuse other control characters.
#[test]
fn notes_refuse_control_characters() {
    let store = temp_store();
    let with = |notes: &str| {
        store.create_customer(NewCustomer {
            notes: notes.into(),
            ..NewCustomer::named("Asha")
        })
    };
    assert_eq!(invalid_field(with("likes tea\u{0}\u{1b}[2J\u{7}")), "notes");
    with("likes tea\r\n\tand cake").expect("line breaks and tabs");
}

/// A–Z lists read names as a person does: accents and case do not move a
/// name to the end of the alphabet.
#[test]
fn accented_names_sort_with_their_letters() {
    let store = temp_store();
    for name in ["Zoya", "émile", "Élodie", "Eve", "ana"] {
        store
            .create_customer(NewCustomer::named(name))
            .expect("create");
    }
    let page = store
        .list_customers(&CustomerQuery {
            order: CustomerOrder::Name,
            ..CustomerQuery::default()
        })
        .expect("list");
    let names: Vec<&str> = page.items.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["ana", "Élodie", "émile", "Eve", "Zoya"]);
}
