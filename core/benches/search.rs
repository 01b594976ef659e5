//! `cargo bench -p till-core --bench search [-- --quick]`: customer search on
//! a store of 1,000,000 customers (50,000 with `--quick`), with the raw FTS5
//! and tantivy figures of the same queries measured in the same run as
//! baselines. Writes `target/bench/search.json`.
//!
//! The data set is built once through `Store::create_customer` (the product's
//! own write path, FTS rows and change log included) and kept in
//! `target/bench/search-data-N/`; later runs reuse it, each measuring a
//! fresh copy so that the steps that write do not make runs drift.
//!
//! Each latency also gets `_p99_us_minus_cpu_wait`: the same samples with
//! the time the thread sat runnable waiting for a CPU taken out (see
//! `till_bench::Samples::time_on`); the targets are judged on the plain
//! figures.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::Connection;
use tantivy::collector::TopDocs;
use tantivy::query::FuzzyTermQuery;
use tantivy::{Index, Term};
use till_bench::{Args, CpuWait, Report, Samples, Target};
use till_core::{NewCustomer, Store, StoreOptions};

const FIRST: &[&str] = &[
    "John",
    "Jonathan",
    "Michael",
    "Catherine",
    "Kathryn",
    "Christopher",
    "Elizabeth",
    "Stephen",
    "Steven",
    "Sean",
    "Siobhan",
    "Geoffrey",
    "José",
    "María",
    "Jesús",
    "Joaquín",
    "Guillermo",
    "Beatriz",
    "Álvaro",
    "Priya",
    "Venkatesh",
    "Lakshmi",
    "Srinivas",
    "Aishwarya",
    "Mohit",
    "Deepika",
    "Sandeep",
    "Wei",
    "Fang",
    "Na",
    "Yang",
    "Jie",
    "Xiaoming",
    "Xun",
    "Mohammed",
    "Fatima",
    "Abdulrahman",
    "Yousef",
    "Aisha",
    "Omar",
    "Khadija",
    "Hussein",
    "Anita",
    "Rahul",
    "Sunita",
    "Arjun",
    "Kavya",
    "Rohan",
    "Meera",
    "Vikram",
];
const LAST: &[&str] = &[
    "Smith",
    "Smithers",
    "Johnson",
    "Zeta",
    "Hughes",
    "Columbus",
    "Taylor",
    "King",
    "Adams",
    "O'Connor",
    "Murphy",
    "Chaucer",
    "Álvarez",
    "Fernández",
    "Gutiérrez",
    "Sánchez",
    "Domínguez",
    "Núñez",
    "Ibáñez",
    "Raman",
    "Subramanian",
    "Narayanan",
    "Reddy",
    "Rai",
    "Chaudhary",
    "Padukone",
    "Bhattacharya",
    "Zhang",
    "Wang",
    "Li",
    "Liu",
    "Chen",
    "Huang",
    "Zhou",
    "Al-Farsi",
    "Al-Zahra",
    "Haddad",
    "Khalil",
    "Abdullah",
    "Nasser",
    "Benali",
    "Mahmoud",
    "Sharma",
    "Patel",
    "Iyer",
    "Menon",
    "Gupta",
    "Nair",
    "Kapoor",
    "Desai",
];

/// A distinct, valid Indian mobile number per customer index.
fn phone(i: usize) -> String {
    format!("7{:09}", (i as u64 * 2_654_435_761) % 1_000_000_000)
}

fn name(rng: &mut StdRng) -> String {
    format!(
        "{} {}",
        FIRST[rng.random_range(0..FIRST.len())],
        LAST[rng.random_range(0..LAST.len())]
    )
}

fn options(path: &Path) -> StoreOptions {
    StoreOptions::new(path, "acme", "S01", "T01")
}

fn open(path: &Path) -> Store {
    Store::open(options(path)).expect("open")
}

fn flush(store: &Store) {
    assert!(
        store.flush_search_index(Duration::from_secs(3_600)),
        "index caught up"
    );
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// Peak resident memory since the last [`reset_peak`], in MB (Linux).
fn peak_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn reset_peak() {
    // "5" resets the peak resident set size (Linux 4.0+).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn build(dir: &Path, customers: usize, report: &mut Report) {
    let started = Instant::now();
    let store = open(&dir.join("till.db"));
    let mut rng = StdRng::seed_from_u64(1);
    for i in 0..customers {
        let mut new = NewCustomer::named(&name(&mut rng)).with_phone(&phone(i));
        if i % 3 == 0 {
            new.email = Some(format!("customer{i}@example.com"));
        }
        store.create_customer(new).expect("customer");
    }
    flush(&store);
    report.figure("search.build_s", started.elapsed().as_secs_f64(), "s", None);
}

fn typo(word: &str, rng: &mut StdRng, edits: usize) -> String {
    let mut chars: Vec<char> = word.to_lowercase().chars().collect();
    for _ in 0..edits {
        if chars.len() < 3 {
            break;
        }
        let at = rng.random_range(1..chars.len() - 1);
        chars.swap(at, at + 1); // a transposition: one edit
    }
    chars.into_iter().collect()
}

fn main() {
    let args = Args::from_env();
    let scale = args.scale();
    let customers = scale.pick(50_000, 1_000_000);
    let queries = scale.pick(500, 2_000);
    let mut report = Report::new("search", scale);
    report.machine("start");
    report.scale_param("customers", customers as f64);
    report.scale_param("queries", queries as f64);

    let data = till_bench::cached_data(&format!("search-data-{customers}"), |dir| {
        build(dir, customers, &mut report)
    });
    // A set cached by an older build is upgraded in place once, so no
    // figure below includes a schema upgrade.
    drop(open(&data.join("till.db")));
    // Each run measures its own copy of the data set: the erase and catch-up
    // steps write, and the cached set must stay as built.
    let work = tempfile::tempdir_in(&data).expect("work dir");
    for file in ["till.db", "till.db-wal"] {
        if data.join(file).exists() {
            std::fs::copy(data.join(file), work.path().join(file)).expect("copy the data set");
        }
    }
    let data = work.path().to_path_buf();
    let path = data.join("till.db");
    let index_dir = data.join("till.db.search");

    // Rebuild from scratch: time and peak memory.
    std::fs::remove_dir_all(&index_dir).ok();
    reset_peak();
    let started = Instant::now();
    let store = open(&path);
    flush(&store);
    report.figure(
        "search.rebuild_s",
        started.elapsed().as_secs_f64(),
        "s",
        Some(Target::AtMost(scale.pick(30.0 * 50_000.0 / 1e6, 30.0))),
    );
    report.figure(
        "search.rebuild_peak_mb",
        peak_mb(),
        "MB",
        Some(Target::AtMost(300.0)),
    );
    report.figure(
        "search.index_tantivy_mb",
        mb(dir_size(&index_dir)),
        "MB",
        None,
    );
    report.figure(
        "search.store_sqlite_mb",
        mb(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)),
        "MB",
        None,
    );

    let mut rng = StdRng::seed_from_u64(2);
    let cpu = CpuWait::open();
    let raw_sql = Connection::open(&path).expect("raw sqlite");
    let raw_index = Index::open_in_dir(&index_dir).expect("raw tantivy");
    let raw_reader = raw_index.reader().expect("reader");
    let raw_searcher = raw_reader.searcher();
    let name_field = raw_index.schema().get_field("name").expect("name field");

    // Phone fragments: 4 to 10 consecutive digits of a stored number.
    let (mut phone_s, mut phone_raw) = (Samples::new(), Samples::new());
    for _ in 0..queries {
        let digits = phone(rng.random_range(0..customers));
        let len = rng.random_range(4..=10);
        let at = rng.random_range(0..=digits.len() - len);
        let fragment = &digits[at..at + len];
        let hits = phone_s.time_on(&cpu, || {
            store.search_customers(fragment, 10).expect("search")
        });
        assert!(!hits.is_empty(), "{fragment}");
        phone_raw.time(|| {
            // The index read under a phone search: one range of digit keys.
            raw_sql
                .prepare_cached(
                    "SELECT rid FROM customers_digits WHERE key >= ?1 AND key < ?2
                     ORDER BY rid DESC LIMIT 200",
                )
                .expect("prepare")
                .query_map(
                    [format!("p{fragment}"), format!("p{fragment}\u{7f}")],
                    |r| r.get::<_, i64>(0),
                )
                .expect("query")
                .count()
        });
    }

    // Search as you type: every prefix of a first name, then "first l".
    let (mut prefix_s, mut prefix_raw) = (Samples::new(), Samples::new());
    for _ in 0..queries / 4 {
        let full = name(&mut rng).to_lowercase();
        let typed: Vec<String> = (1..=full.chars().count().min(8))
            .map(|n| full.chars().take(n).collect())
            .collect();
        for q in typed {
            prefix_s.time_on(&cpu, || store.search_customers(&q, 10).expect("search"));
            let word = q.split(' ').next().unwrap_or_default().to_owned();
            let folded = deunicode_lower(&word);
            let _ = prefix_raw.time(|| {
                let query =
                    FuzzyTermQuery::new_prefix(Term::from_field_text(name_field, &folded), 0, true);
                raw_searcher
                    .search(&query, &TopDocs::with_limit(10).order_by_score())
                    .map(|t| t.len())
            });
        }
    }

    // Typos: one or two transpositions in a full name.
    let (mut fuzzy_s, mut fuzzy_raw) = (Samples::new(), Samples::new());
    for i in 0..queries {
        let full = name(&mut rng);
        let mut words = full.split(' ');
        let first = words.next().unwrap_or_default();
        let last = words.next().unwrap_or_default();
        let q = format!(
            "{} {}",
            typo(first, &mut rng, 1),
            typo(last, &mut rng, i % 2)
        );
        fuzzy_s.time_on(&cpu, || store.search_customers(&q, 10).expect("search"));
        let folded = deunicode_lower(&typo(first, &mut rng, 1));
        let _ = fuzzy_raw.time(|| {
            let query = FuzzyTermQuery::new(Term::from_field_text(name_field, &folded), 1, true);
            raw_searcher
                .search(&query, &TopDocs::with_limit(10).order_by_score())
                .map(|t| t.len())
        });
    }

    for (name, samples, target) in [
        ("search.phone", &phone_s, Some(1_000.0)),
        ("search.phone_raw_digits", &phone_raw, None),
        ("search.prefix", &prefix_s, Some(1_000.0)),
        ("search.prefix_raw_tantivy", &prefix_raw, None),
        ("search.fuzzy", &fuzzy_s, Some(5_000.0)),
        ("search.fuzzy_raw_tantivy", &fuzzy_raw, None),
    ] {
        report.latency(name, samples, target.map(Target::AtMost));
    }

    // Erasure: the ranked index purges the erased customer's terms
    // (a merge of every segment with deletes) before a flush returns.
    let erased = store
        .create_customer(NewCustomer::named("Erasable Person"))
        .expect("customer");
    flush(&store);
    let started = Instant::now();
    store.erase_customer(erased.id).expect("erase");
    flush(&store);
    report.figure(
        "search.erase_purge_ms",
        started.elapsed().as_secs_f64() * 1e3,
        "ms",
        None,
    );

    // Catch-up: 10,000 writes the index has not seen, indexed after reopening.
    let snapshot = data.join("snapshot.search");
    std::fs::remove_dir_all(&snapshot).ok();
    flush(&store);
    copy_dir(&index_dir, &snapshot);
    let mut rng = StdRng::seed_from_u64(3);
    for i in 0..10_000 {
        store
            .create_customer(NewCustomer::named(&name(&mut rng)).with_phone(&phone(customers + i)))
            .expect("catch-up customer");
    }
    drop(store);
    std::fs::remove_dir_all(&index_dir).expect("remove");
    copy_dir(&snapshot, &index_dir);
    let started = Instant::now();
    let store = open(&path);
    flush(&store);
    report.figure(
        "search.catch_up_10k_s",
        started.elapsed().as_secs_f64(),
        "s",
        None,
    );
    drop(store);
    std::fs::remove_dir_all(&snapshot).ok();

    report.machine("end");
    report.print_table();
    let written = report.write_json().expect("write json");
    println!("wrote {}", written.display());
}

fn deunicode_lower(word: &str) -> String {
    // The same folding the store applies: strip accents, lower case.
    word.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'á' | 'à' => 'a',
            'é' => 'e',
            'í' => 'i',
            'ó' => 'o',
            'ú' => 'u',
            'ñ' => 'n',
            other => other,
        })
        .filter(char::is_ascii_alphanumeric)
        .collect()
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
