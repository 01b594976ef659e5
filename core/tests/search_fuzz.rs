//! Any Unicode string of any length is a valid query: never an error, never
//! a panic, never slow, whatever state the ranked index is in.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use till_core::{NewCustomer, Store, StoreOptions};

/// The slowest any single query may be in this (debug) build.
const SLOW: Duration = Duration::from_millis(500);

fn store() -> &'static Store {
    static STORE: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(StoreOptions::new(
                dir.path().join("till.db"),
                "acme",
                "S01",
                "T01",
            ))
            .expect("open");
            for (i, name) in [
                "José Álvarez",
                "王伟",
                "Mohammed Al-Farsi",
                "O'Brien \"Quote\"",
                "Ñandú",
            ]
            .iter()
            .enumerate()
            {
                store
                    .create_customer(NewCustomer::named(name).with_phone(&format!("98765 4321{i}")))
                    .expect("customer");
            }
            assert!(store.flush_search_index(Duration::from_secs(60)));
            (dir, store)
        })
        .1
}

fn check(query: &str) -> Result<(), TestCaseError> {
    let store = store();
    let started = Instant::now();
    let hits = store.search_customers(query, 10);
    prop_assert!(hits.is_ok(), "customers: {:?}", hits.err());
    let bills = store.search_bills(query, 10);
    prop_assert!(bills.is_ok(), "bills: {:?}", bills.err());
    prop_assert!(started.elapsed() < SLOW, "slow: {:?}", started.elapsed());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_unicode_string_is_a_valid_query(query in any::<String>()) {
        check(&query)?;
    }

    #[test]
    fn query_syntax_of_every_index_is_inert(
        parts in prop::collection::vec(
            prop::sample::select(vec![
                "\"", "*", "^", "-", "+", "(", ")", ":", "NEAR", "AND", "OR", "NOT", "'", "%",
                "_", "~", "\\", "{", "}", "[", "]", "name:", "phone : ", "0", "98765", "jos",
                "\u{0}", "\u{301}", "🙂", "ß", "İ", " ",
            ]),
            0..40,
        )
    ) {
        check(&parts.concat())?;
    }

    #[test]
    fn long_strings_are_capped(unit in "\\PC{1,8}", times in 1usize..20_000) {
        check(&unit.repeat(times))?;
    }
}
