//! Where the time of one sale goes: a driver for profilers. It builds a
//! store and a raw baseline file (`benches/raw`), then makes sales the way
//! the store bench measures `store.bill_write_ratio` (`Store::sell` of a
//! 3-line bill for a known customer, paid in cash) beside raw bills.
//!
//! ```sh
//! cargo build --profile bench -p till-core --example sale_profile
//! P=target/release/examples/sale_profile
//! $P populate /tmp/sp 5000 20000     # customers, sales (each with a raw bill)
//! $P sell /tmp/sp 2000               # medians of sales and raw bills, alternating
//! $P frames /tmp/sp 300              # WAL pages each one writes
//! $P pages /tmp/sp                   # the pages of one sale, by table or index
//! $P find_or_create /tmp/sp 4000     # half known numbers, half new
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*sell_once*' $P sell /tmp/sp 500
//! ```
//!
//! Each run changes the files: profile a copy of the populated folder.
//! Instruction counts under callgrind repeat to within a percent from run to
//! run on a busy machine, where timings do not; valgrind hides the CPU's SHA
//! extensions, so the chain's SHA-256 counts in software there.

#[path = "../benches/raw/mod.rs"]
mod raw;

use std::error::Error;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::Connection;
use till_bench::CpuWait;
use till_core::{CustomerQuery, NewBill, NewCustomer, NewLine, Store, StoreOptions, Tender};
use uuid::Uuid;

use raw::RawStore;

type Res<T> = Result<T, Box<dyn Error>>;

const USAGE: &str = "sale_profile populate DIR CUSTOMERS BILLS | sell DIR N | frames DIR N \
                     | pages DIR | find_or_create DIR N";

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize| -> Res<usize> { Ok(args.get(i).ok_or(USAGE)?.parse()?) };
    let dir = Path::new(args.get(1).ok_or(USAGE)?);
    let mut rng = StdRng::seed_from_u64(7);
    match args[0].as_str() {
        "populate" => populate(dir, number(2)?, number(3)?, &mut rng),
        "sell" => sell(dir, number(2)?, &mut rng),
        "frames" => frames(dir, number(2)?, &mut rng),
        "pages" => pages(dir, &mut rng),
        "find_or_create" => find_or_create(dir, number(2)?, &mut rng),
        _ => Err(USAGE.into()),
    }
}

/// Three lines of a 600-product catalog, taxed at 5%.
fn basket(rng: &mut StdRng) -> Vec<NewLine> {
    (0..3)
        .map(|_| {
            let k = rng.random_range(0..600);
            NewLine::item(
                &format!("SKU-{k:05}"),
                "Basmati Rice 1kg",
                1,
                1_000 + k * 37,
            )
            .taxed("GST5", 500)
        })
        .collect()
}

/// One sale, as the bench measures it; a function of its own for callgrind.
#[inline(never)]
fn sell_once(store: &Store, customer: Uuid, lines: Vec<NewLine>) -> Res<()> {
    store.sell(
        NewBill {
            customer_id: Some(customer),
            lines,
            ..NewBill::default()
        },
        &[Tender::cash(10_000_000)],
    )?;
    Ok(())
}

/// One raw bill; a function of its own for callgrind.
#[inline(never)]
fn raw_once(raw: &mut RawStore, customer: Uuid, lines: &[NewLine]) -> Res<()> {
    raw.write(Some(&customer.to_string()), lines)?;
    Ok(())
}

fn open(dir: &Path) -> Res<(Store, RawStore)> {
    let store = Store::open(StoreOptions::new(
        dir.join("store.db"),
        "acme-retail",
        "S01",
        "T01",
    ))?;
    store.set_staff("priya")?;
    Ok((store, RawStore::open(&dir.join("raw.db"))?))
}

/// Every live customer's id.
fn customers(store: &Store) -> Res<Vec<Uuid>> {
    let mut ids = Vec::new();
    let mut query = CustomerQuery {
        limit: 200,
        ..CustomerQuery::default()
    };
    loop {
        let page = store.list_customers(&query)?;
        ids.extend(page.items.iter().map(|c| c.id));
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => return Ok(ids),
        }
    }
}

fn populate(dir: &Path, customers: usize, bills: usize, rng: &mut StdRng) -> Res<()> {
    std::fs::create_dir_all(dir)?;
    let (store, mut raw) = open(dir)?;
    let ids = (0..customers)
        .map(|i| {
            let new = NewCustomer::named("Asha Rao").with_phone(&format!("98{i:08}"));
            Ok(store.create_customer(new)?.id)
        })
        .collect::<Res<Vec<Uuid>>>()?;
    for _ in 0..bills {
        let customer = ids[rng.random_range(0..ids.len())];
        let lines = basket(rng);
        sell_once(&store, customer, lines.clone())?;
        raw_once(&mut raw, customer, &lines)?;
    }
    Ok(())
}

/// Sorted microseconds: "median M p99 P max X".
fn percentiles(mut us: Vec<f64>) -> String {
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() - 1) as f64 * q) as usize];
    format!(
        "median {:.1} p99 {:.1} max {:.1}",
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

/// Times `f`, also without the time the thread waited for a CPU.
fn timed(cpu: &CpuWait, f: impl FnOnce() -> Res<()>) -> Res<(Duration, Duration)> {
    let waited = cpu.total();
    let started = Instant::now();
    f()?;
    let took = started.elapsed();
    let waited = waited
        .zip(cpu.total())
        .map_or(Duration::ZERO, |(b, a)| a.saturating_sub(b));
    Ok((took, took.saturating_sub(waited)))
}

fn sell(dir: &Path, n: usize, rng: &mut StdRng) -> Res<()> {
    let (store, mut raw) = open(dir)?;
    let ids = customers(&store)?;
    let cpu = CpuWait::open();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (mut sales, mut sales_quiet, mut raws) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let customer = ids[rng.random_range(0..ids.len())];
        let lines = basket(rng);
        let (took, quiet) = timed(&cpu, || sell_once(&store, customer, lines.clone()))?;
        sales.push(us(took));
        sales_quiet.push(us(quiet));
        let (took, _) = timed(&cpu, || raw_once(&mut raw, customer, &lines))?;
        raws.push(us(took));
    }
    println!("sale us: {}", percentiles(sales));
    println!("sale us, less CPU wait: {}", percentiles(sales_quiet));
    println!("raw bill us: {}", percentiles(raws));
    Ok(())
}

/// Frames in the WAL (copied into the file by a passive checkpoint); then
/// empties it so the next write starts at frame 1.
fn drain(conn: &Connection) -> rusqlite::Result<i64> {
    let frames = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(frames)
}

fn frames(dir: &Path, n: usize, rng: &mut StdRng) -> Res<()> {
    let (store, mut raw) = open(dir)?;
    let ids = customers(&store)?;
    let probe = Connection::open(dir.join("store.db"))?;
    let (mut sales, mut raws) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let customer = ids[rng.random_range(0..ids.len())];
        let lines = basket(rng);
        drain(&probe)?;
        sell_once(&store, customer, lines.clone())?;
        sales.push(drain(&probe)?);
        drain(&raw.conn)?;
        raw_once(&mut raw, customer, &lines)?;
        raws.push(drain(&raw.conn)?);
    }
    let summary = |mut v: Vec<i64>| {
        v.sort_unstable();
        let mean = v.iter().sum::<i64>() as f64 / v.len() as f64;
        format!("median {} mean {mean:.2}", v[v.len() / 2])
    };
    println!("WAL pages per sale: {}", summary(sales));
    println!("WAL pages per raw bill: {}", summary(raws));
    Ok(())
}

/// The pages one sale writes, named by the table or index they belong to.
fn pages(dir: &Path, rng: &mut StdRng) -> Res<()> {
    let (store, _) = open(dir)?;
    let ids = customers(&store)?;
    let probe = Connection::open(dir.join("store.db"))?;
    drain(&probe)?;
    sell_once(&store, ids[0], basket(rng))?;
    let wal = std::fs::read(dir.join("store.db-wal"))?;
    let word = |at: usize| -> Res<usize> {
        let bytes: [u8; 4] = wal.get(at..at + 4).ok_or("short WAL")?.try_into()?;
        Ok(u32::from_be_bytes(bytes) as usize)
    };
    let page_size = word(8)?;
    let mut names = std::collections::HashMap::new();
    let mut stmt = probe.prepare("SELECT pageno, name, pagetype FROM dbstat")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (page, name, kind): (i64, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
        names.insert(page as usize, format!("{name} ({kind})"));
    }
    let mut at = 32;
    let mut count = 0;
    while at + 24 + page_size <= wal.len() {
        let page = word(at)?;
        let name = names.get(&page).map_or("free or new", String::as_str);
        println!("page {page:>7}  {name}");
        at += 24 + page_size;
        count += 1;
    }
    println!("{count} pages");
    Ok(())
}

fn find_or_create(dir: &Path, n: usize, rng: &mut StdRng) -> Res<()> {
    let (store, _) = open(dir)?;
    let known = customers(&store)?.len();
    let cpu = CpuWait::open();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (mut all, mut quiet) = (Vec::new(), Vec::new());
    for k in 0..n {
        // Known numbers were created as `98` + 8 digits; new ones are `97...`.
        let phone = if k % 2 == 0 {
            format!("98{:08}", rng.random_range(0..known))
        } else {
            format!("97{:08}", rng.random_range(0..100_000_000))
        };
        let (took, less_wait) = timed(&cpu, || {
            store.find_or_create_by_phone(&phone, "Ravi Kumar")?;
            Ok(())
        })?;
        all.push(us(took));
        quiet.push(us(less_wait));
    }
    let slow = quiet.iter().filter(|&&u| u > 2_000.0).count();
    println!("find_or_create us: {}", percentiles(all));
    println!(
        "find_or_create us, less CPU wait: {}; {slow} over 2 ms",
        percentiles(quiet)
    );
    Ok(())
}
