//! Search paths that need the crate's insides: merges (made by sync and
//! dedup, which have no public verb on the device yet).

use std::time::Duration;

use uuid::Uuid;

use crate::customers::{load, put};
use crate::{NewCustomer, Store, StoreOptions};

fn merge(store: &Store, loser: Uuid, survivor: Uuid) {
    store
        .write(|w| {
            let (rid, before) = load(w, loser)?;
            let mut after = before.clone();
            after.merged_into = Some(survivor);
            after.version += 1;
            put(w, Some(rid), Some(&before), &after, "merge")?;
            Ok(())
        })
        .expect("merge");
}

fn ids(store: &Store, query: &str) -> Vec<Uuid> {
    store
        .search_customers(query, 10)
        .expect("search")
        .into_iter()
        .map(|h| h.customer.id)
        .collect()
}

#[test]
fn merged_customers_are_never_returned_before_or_after_indexing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(StoreOptions::new(
        dir.path().join("till.db"),
        "acme",
        "S01",
        "T01",
    ))
    .expect("open");
    let survivor = store
        .create_customer(NewCustomer::named("Priya Raman").with_phone("98765 43210"))
        .expect("survivor");
    let loser = store
        .create_customer(NewCustomer::named("Priya Ramen").with_phone("99887 76655"))
        .expect("loser");
    assert!(store.flush_search_index(Duration::from_secs(30)));
    assert_eq!(ids(&store, "ramen"), vec![loser.id, survivor.id]);

    merge(&store, loser.id, survivor.id);
    // Before the ranked index has seen the merge: the row decides.
    assert_eq!(ids(&store, "ramen"), vec![survivor.id]);
    assert!(ids(&store, "76655").is_empty());
    assert!(store.flush_search_index(Duration::from_secs(30)));
    assert_eq!(ids(&store, "priya"), vec![survivor.id]);
    assert!(ids(&store, "99887 76655").is_empty());
}
