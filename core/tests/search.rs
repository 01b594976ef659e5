//! Customer and bill search through the public API: ranking rules, the
//! write-then-search guarantee, lifecycle (delete, restore), and a ranked
//! index that is deleted, truncated or behind after a crash.

use std::path::{Path, PathBuf};
use std::time::Duration;

use till_core::{
    BillMatch, Customer, CustomerUpdate, MatchField, MatchKind, NewBill, NewCustomer, NewLine,
    Store, StoreOptions, Tender,
};

const WAIT: Duration = Duration::from_secs(60);

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir.path().join("till.db"));
        Fixture { dir, store }
    }

    fn index_dir(&self) -> PathBuf {
        self.dir.path().join("till.db.search")
    }

    fn add(&self, name: &str, phone: Option<&str>) -> Customer {
        let mut new = NewCustomer::named(name);
        new.phone = phone.map(str::to_owned);
        self.store.create_customer(new).expect("customer")
    }
}

fn open_ok(path: &Path) -> Store {
    Store::open(StoreOptions::new(path, "acme", "S01", "T01")).expect("open")
}

fn open(path: &Path) -> Store {
    open_ok(path)
}

fn names(store: &Store, query: &str) -> Vec<String> {
    store
        .search_customers(query, 10)
        .expect("search")
        .into_iter()
        .map(|h| h.customer.name)
        .collect()
}

fn first_kind(store: &Store, query: &str) -> (MatchField, MatchKind) {
    let hits = store.search_customers(query, 10).expect("search");
    let m = hits.first().expect("a hit").matched[0];
    (m.field, m.kind)
}

#[test]
fn exact_ranks_above_prefix_above_fuzzy_above_phonetic() {
    let f = Fixture::new();
    f.add("Jean Martin", None); // "john" sounds like "jean": phonetic
    f.add("Jhon Baker", None); // one transposition away: fuzzy
    f.add("Johnny Cash", None); // starts with "john": prefix
    f.add("John Smith", None); // exact
    for flushed in [false, true] {
        assert_eq!(
            names(&f.store, "john"),
            ["John Smith", "Johnny Cash", "Jhon Baker", "Jean Martin"],
            "flushed: {flushed}"
        );
        assert!(f.store.flush_search_index(WAIT));
    }
    assert_eq!(
        first_kind(&f.store, "john"),
        (MatchField::Name, MatchKind::Exact)
    );
    let kinds: Vec<MatchKind> = f
        .store
        .search_customers("john", 10)
        .expect("search")
        .iter()
        .map(|h| h.matched[0].kind)
        .collect();
    assert_eq!(
        kinds,
        [
            MatchKind::Exact,
            MatchKind::Prefix,
            MatchKind::Fuzzy,
            MatchKind::Phonetic
        ]
    );
}

#[test]
fn among_equals_the_most_recently_changed_customer_ranks_first() {
    let f = Fixture::new();
    let older = f.add("Asha Rao", None);
    std::thread::sleep(Duration::from_millis(5));
    let newer = f.add("Asha Rao", None);
    assert!(f.store.flush_search_index(WAIT));
    let ids = |q: &str| -> Vec<_> {
        f.store
            .search_customers(q, 10)
            .expect("search")
            .into_iter()
            .map(|h| h.customer.id)
            .collect()
    };
    assert_eq!(ids("asha rao"), vec![newer.id, older.id]);
    std::thread::sleep(Duration::from_millis(5));
    f.store
        .update_customer(
            older.id,
            older.version,
            CustomerUpdate {
                notes: Some("prefers email".into()),
                ..CustomerUpdate::default()
            },
        )
        .expect("touch");
    assert_eq!(ids("asha rao"), vec![older.id, newer.id]);
}

/// Searches stop early in the ranked index once nothing later can rank
/// higher; with more matches than a page, over several index segments, the
/// order must still be exact first, then the most recent prefix matches.
#[test]
fn many_matches_over_several_segments_rank_exact_then_most_recent() {
    let f = Fixture::new();
    let exact = f.add("John Older", None);
    let mut prefix = Vec::new();
    for segment in 0..3 {
        for i in 0..30 {
            prefix.push(f.add(&format!("Johnny Walker{segment}x{i}"), None));
        }
        assert!(f.store.flush_search_index(WAIT));
    }
    // Touching the oldest prefix match makes it the most recent.
    std::thread::sleep(Duration::from_millis(2));
    let touched = prefix.remove(0);
    f.store
        .update_customer(
            touched.id,
            touched.version,
            CustomerUpdate {
                notes: Some("back again".into()),
                ..CustomerUpdate::default()
            },
        )
        .expect("touch");
    assert!(f.store.flush_search_index(WAIT));
    let ids = |q: &str, limit: u32| -> Vec<_> {
        f.store
            .search_customers(q, limit)
            .expect("search")
            .into_iter()
            .map(|h| h.customer.id)
            .collect()
    };
    let newest_first = |n: usize| -> Vec<_> { prefix.iter().rev().take(n).map(|c| c.id).collect() };

    let mut expected = vec![exact.id, touched.id];
    expected.extend(newest_first(3));
    assert_eq!(ids("john", 5), expected);

    // Every match is a prefix: the most recent ones, in order.
    let mut by_recency = vec![touched.id];
    by_recency.extend(newest_first(9));
    assert_eq!(ids("j", 10), by_recency);
    assert_eq!(ids("jo", 5), by_recency[..5]);

    // Two words: "walker2x29" matches exactly only the newest Johnny.
    assert_eq!(ids("johnny walker2x29", 3)[0], prefix[prefix.len() - 1].id);
}

/// Scores of several words add up: one exact word and one sounds-alike
/// (100,010) beat two prefixes (20,000), however many more recent
/// customers match the weaker way.
#[test]
fn several_words_rank_by_their_summed_match_kinds() {
    let f = Fixture::new();
    let john = f.add("John Smith", None);
    for segment in 0..2 {
        for i in 0..25 {
            f.add(&format!("Jonathan Smithson{segment}x{i}"), None);
        }
        assert!(f.store.flush_search_index(WAIT));
    }
    let hits = f.store.search_customers("jon smith", 5).expect("search");
    assert_eq!(hits[0].customer.id, john.id);
    assert_eq!(hits.len(), 5);
    assert!(hits[1..]
        .iter()
        .all(|h| h.customer.name.starts_with("Jonathan Smithson")));
}

#[test]
fn a_customer_is_findable_the_instant_the_write_commits() {
    let f = Fixture::new();
    assert!(f.store.flush_search_index(WAIT));
    let c = f
        .store
        .create_customer(
            NewCustomer::named("Guillermo Fernández")
                .with_phone("98765 43210")
                .with_email("g.fernandez@example.com"),
        )
        .expect("create");
    // No flush: the ranked index has not committed this customer yet.
    for query in [
        "43210",
        "guill",
        "fernandez",
        "guillermo fernandes",
        "g.fernandez@example.com",
        &c.number,
    ] {
        assert_eq!(names(&f.store, query), ["Guillermo Fernández"], "{query}");
    }
    let renamed = f
        .store
        .update_customer(
            c.id,
            c.version,
            CustomerUpdate {
                name: Some("Guillermina Fernández".into()),
                ..CustomerUpdate::default()
            },
        )
        .expect("rename");
    assert_eq!(names(&f.store, "guillermina"), vec![renamed.name.clone()]);
    // The old name is no longer an exact match; it only sounds alike now.
    assert_eq!(
        first_kind(&f.store, "guillermo"),
        (MatchField::Name, MatchKind::Phonetic)
    );
}

#[test]
fn deleted_restored_customers_disappear_and_come_back() {
    let f = Fixture::new();
    let c = f.add("Mei Chen", Some("+91 99887 76655"));
    for flushed in [false, true] {
        let gone = f.store.delete_customer(c.id).expect("delete");
        if flushed {
            assert!(f.store.flush_search_index(WAIT));
        }
        assert!(names(&f.store, "mei chen").is_empty(), "flushed {flushed}");
        assert!(names(&f.store, "76655").is_empty(), "flushed {flushed}");
        assert!(gone.deleted_at_ms.is_some());
        f.store.restore_customer(c.id).expect("restore");
        if flushed {
            assert!(f.store.flush_search_index(WAIT));
        }
        assert_eq!(
            names(&f.store, "mei chen"),
            ["Mei Chen"],
            "flushed {flushed}"
        );
        assert_eq!(names(&f.store, "76655"), ["Mei Chen"], "flushed {flushed}");
    }
}

#[test]
fn phone_fragments_in_any_format_find_the_customer() {
    let f = Fixture::new();
    f.add("Ravi Kumar", Some("98765 43210"));
    f.add("Other Person", Some("+91 99887 76655"));
    assert!(f.store.flush_search_index(WAIT));
    for query in [
        "98765 432",
        "+91 98765",
        "43210",
        "(0)98765-43210",
        "098765-43210",
        "+919876543210",
        "0091 98765 43210",
        "8765",
    ] {
        assert_eq!(names(&f.store, query), ["Ravi Kumar"], "{query}");
    }
    assert_eq!(
        first_kind(&f.store, "+91 98765 43210"),
        (MatchField::Phone, MatchKind::Exact)
    );
    assert_eq!(
        first_kind(&f.store, "43210"),
        (MatchField::Phone, MatchKind::Partial)
    );
    // Three digits are not a phone fragment.
    assert!(names(&f.store, "876").is_empty());
}

#[test]
fn a_phone_starting_with_the_digits_ranks_above_hundreds_of_newer_ones_containing_them() {
    let f = Fixture::new();
    f.add("Early Bird", Some("98765 00001"));
    // Newer customers whose numbers hold 98765 further in: more than a
    // search judges, so the prefix match must be found by its own key.
    for i in 0..260 {
        f.add(&format!("Later {i}"), Some(&format!("9{i:03}9 87650")));
    }
    let hits = f.store.search_customers("98765", 5).expect("search");
    assert_eq!(hits.len(), 5);
    assert_eq!(hits[0].customer.name, "Early Bird");
    assert_eq!(hits[0].matched[0].kind, MatchKind::Prefix);
    assert_eq!(hits[1].matched[0].kind, MatchKind::Partial);
    // Among the partial matches, the newest first.
    assert_eq!(hits[1].customer.name, "Later 259");
}

#[test]
fn customer_numbers_whole_or_partial() {
    let f = Fixture::new();
    let c = f.add("Numbered One", None);
    f.add("Someone Else", None);
    assert_eq!(c.number, "S01-T01-C000001");
    for query in ["S01-T01-C000001", "c000001", "C000001", "000001", "0001"] {
        let hits = f.store.search_customers(query, 10).expect("search");
        assert_eq!(hits[0].customer.id, c.id, "{query}");
        assert_eq!(hits[0].matched[0].field, MatchField::Number, "{query}");
    }
}

fn sell_to(store: &Store, customer: Option<&Customer>) -> till_core::Bill {
    store
        .sell(
            NewBill {
                customer_id: customer.map(|c| c.id),
                lines: vec![NewLine::item("SKU", "Tea", 1, 1_000).taxed("GST5", 500)],
                ..NewBill::default()
            },
            &[Tender::cash(1_000)],
        )
        .expect("sell")
}

#[test]
fn bills_by_number_trailing_digits_and_customer() {
    let f = Fixture::new();
    let asha = f.add("Asha Rao", Some("98765 43210"));
    let first = sell_to(&f.store, Some(&asha));
    let walk_in = sell_to(&f.store, None);
    let second = sell_to(&f.store, Some(&asha));
    assert_eq!(walk_in.number, "S01-T01-000002");

    let hits = f.store.search_bills("S01-T01-000002", 10).expect("search");
    assert_eq!(hits[0].bill.id, walk_in.id);
    assert_eq!(hits[0].matched, BillMatch::Number(MatchKind::Exact));
    for query in ["2", "000002", "t01-000002", " 02 "] {
        let hits = f.store.search_bills(query, 10).expect("search");
        assert_eq!(hits[0].bill.id, walk_in.id, "{query}");
    }
    let hits = f.store.search_bills("asha", 10).expect("search");
    let ids: Vec<_> = hits.iter().map(|h| h.bill.id).collect();
    assert_eq!(ids, vec![second.id, first.id], "newest first");
    assert!(
        matches!(&hits[0].matched, BillMatch::Customer { customer_id, .. } if *customer_id == asha.id)
    );
    let by_phone = f.store.search_bills("43210", 10).expect("search");
    assert_eq!(by_phone.len(), 2);
    assert!(f.store.search_bills("", 10).expect("empty").is_empty());
}

/// A store with customers whose ranked index is complete, then closed.
fn closed_store_with_customers() -> Fixture {
    let f = Fixture::new();
    f.add("Siobhan Murphy", Some("98765 43210"));
    f.add("Fatima Al-Sayed", None);
    assert!(f.store.flush_search_index(WAIT));
    f
}

fn assert_fully_searchable(store: &Store) {
    assert!(store.flush_search_index(WAIT));
    assert_eq!(names(store, "shiobhan"), ["Siobhan Murphy"]); // a typo: needs tantivy
    assert_eq!(names(store, "fatma"), ["Fatima Al-Sayed"]);
    assert_eq!(names(store, "43210"), ["Siobhan Murphy"]);
}

fn reopened(f: Fixture, damage: impl FnOnce(&Path)) -> Fixture {
    let Fixture { dir, store } = f;
    drop(store);
    damage(&dir.path().join("till.db.search"));
    let store = open(&dir.path().join("till.db"));
    Fixture { dir, store }
}

#[test]
fn a_deleted_index_folder_is_rebuilt() {
    let f = reopened(closed_store_with_customers(), |dir| {
        std::fs::remove_dir_all(dir).expect("remove");
    });
    // Before the rebuild is done, prefixes and digits still work.
    assert_eq!(names(&f.store, "siob"), ["Siobhan Murphy"]);
    assert_fully_searchable(&f.store);
    assert!(f.index_dir().exists());
}

#[test]
fn a_truncated_index_is_rebuilt() {
    let f = reopened(closed_store_with_customers(), |dir| {
        for entry in std::fs::read_dir(dir).expect("dir") {
            let path = entry.expect("entry").path();
            let len = std::fs::metadata(&path).expect("meta").len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|file| file.set_len(len / 2))
                .expect("truncate");
        }
    });
    assert_fully_searchable(&f.store);
}

#[test]
fn an_index_left_behind_by_a_crash_catches_up() {
    let f = closed_store_with_customers();
    // The index as a crash between the SQLite commit and the index commit
    // leaves it: older than the data.
    let snapshot = f.dir.path().join("snapshot");
    copy_dir(&f.index_dir(), &snapshot);
    let late = f.add("Xu Wei", Some("+91 91111 22222"));
    let fatima = f
        .store
        .search_customers("fatima", 1)
        .expect("search")
        .remove(0)
        .customer;
    f.store.delete_customer(fatima.id).expect("delete");
    let f = reopened(f, |dir| {
        std::fs::remove_dir_all(dir).expect("remove");
        copy_dir(&snapshot, dir);
    });
    assert!(f.store.flush_search_index(WAIT));
    assert_eq!(names(&f.store, "xu wie"), vec![late.name.clone()]);
    assert!(names(&f.store, "fatima").is_empty());
    assert_eq!(names(&f.store, "shiobhan"), ["Siobhan Murphy"]);
}

#[test]
fn reopening_an_intact_index_needs_no_rebuild() {
    let f = reopened(closed_store_with_customers(), |_| {});
    assert_fully_searchable(&f.store);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

#[test]
fn short_number_queries_find_the_number_by_its_trailing_digits() {
    let f = Fixture::new();
    let mut made = Vec::new();
    for i in 1..=42 {
        made.push(f.add(&format!("Person {i:02}"), None));
    }
    assert_eq!(made[41].number, "S01-T01-C000042");
    for (query, want) in [("42", 41), ("4", 3), ("042", 41), ("7", 6)] {
        let hits = f.store.search_customers(query, 10).expect("search");
        assert_eq!(hits[0].customer.id, made[want].id, "{query}");
        assert_eq!(
            hits[0].matched[0],
            till_core::Match {
                field: MatchField::Number,
                kind: MatchKind::Exact
            },
            "{query}"
        );
    }
    // "0" is no sequence: nobody has value zero.
    assert!(names(&f.store, "0").is_empty());
}

#[test]
fn verify_reports_stale_and_orphan_digit_rows() {
    let f = Fixture::new();
    let asha = f.add("Asha Rao", Some("98765 43210"));
    f.add("Ravi Kumar", Some("99887 76655"));
    assert!(f.store.verify().expect("verify").is_ok());
    let conn = rusqlite::Connection::open(f.dir.path().join("till.db")).expect("raw");
    conn.execute("DELETE FROM customers_digits WHERE key = 'p43210'", [])
        .expect("drop a key");
    conn.execute(
        "INSERT INTO customers_digits (key, rid) VALUES ('p55555', 999)",
        [],
    )
    .expect("orphan");
    drop(conn);
    let problems = f.store.verify().expect("verify").problems;
    assert_eq!(
        problems,
        vec![
            till_core::Problem::SearchRowStale {
                number: asha.number.clone()
            },
            till_core::Problem::SearchRowOrphan { rowid: 999 },
        ]
    );
}

/// True when any file of `dir` holds `needle`.
fn folder_holds(dir: &Path, needle: &str) -> bool {
    std::fs::read_dir(dir).expect("read dir").any(|entry| {
        let bytes = std::fs::read(entry.expect("entry").path()).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

/// True when a segment of the ranked index at `dir` has `word` as a term of
/// its names or emails, deleted documents included.
fn index_has_term(dir: &Path, word: &str) -> bool {
    let index = tantivy::Index::open_in_dir(dir).expect("index");
    let searcher = index.reader().expect("reader").searcher();
    ["name", "email"].into_iter().any(|name| {
        let field = index.schema().get_field(name).expect("field");
        searcher.segment_readers().iter().any(|segment| {
            segment
                .inverted_index(field)
                .expect("inverted index")
                .terms()
                .term_ord(word.as_bytes())
                .expect("term")
                .is_some()
        })
    })
}

#[test]
fn erasing_a_customer_leaves_no_trace_in_the_ranked_index() {
    let f = Fixture::new();
    let mut new = NewCustomer::named("Zebulon Quixotefield");
    new.email = Some("zebulon.quixotefield@example.com".into());
    let gone = f.store.create_customer(new).expect("customer");
    for i in 0..20 {
        f.add(&format!("Other Person{i}"), None);
    }
    assert!(f.store.flush_search_index(WAIT));
    // Renamed once too: earlier versions must go as well.
    f.store
        .update_customer(
            gone.id,
            gone.version,
            CustomerUpdate {
                name: Some("Zebulon Quixotefeld".into()),
                ..CustomerUpdate::default()
            },
        )
        .expect("rename");
    assert!(f.store.flush_search_index(WAIT));
    // Both names are in the term dictionaries (the old one in the segment
    // where its document is only marked deleted).
    assert!(index_has_term(&f.index_dir(), "quixotefield"), "old name");
    assert!(index_has_term(&f.index_dir(), "quixotefeld"), "new name");
    f.store.erase_customer(gone.id).expect("erase");
    assert!(f.store.flush_search_index(WAIT));
    for word in ["zebulon", "quixotefield", "quixotefeld"] {
        assert!(
            !folder_holds(&f.index_dir(), word),
            "{word} left in the index"
        );
    }
    assert!(names(&f.store, "zebulon").is_empty());
    assert_eq!(names(&f.store, "other person3")[0], "Other Person3");
}
