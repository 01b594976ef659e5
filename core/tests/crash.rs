//! A till process killed with SIGKILL in the middle of writes leaves a store
//! that opens, passes `verify()`, and holds every write that was committed.
//!
//! The test binary plays both parts: run plainly it is the parent, which
//! starts itself again as a child (`TILL_CRASH_CHILD=<db path>`) that sells
//! as fast as it can from two threads and prints each committed bill; the
//! parent kills it at a random moment and checks the file.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use till_core::{BillStatus, NewBill, NewLine, Store, StoreOptions, Tender};

const CHILD_ENV: &str = "TILL_CRASH_CHILD";
const ROUNDS: usize = 6;

fn options(path: &str) -> StoreOptions {
    StoreOptions::new(path, "acme", "S01", "T01")
}

/// Sells until killed: each thread finds or creates a customer, opens a bill
/// with lines, pays it, and prints `bill <id> <customer id>` after the commit.
fn child(path: &str) {
    let store = Arc::new(Store::open(options(path)).expect("child open"));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut rng = rand::rng();
                loop {
                    let phone = format!("98{:08}", rng.random_range(0..2_000) * 2 + t);
                    let (customer, _) = store
                        .find_or_create_by_phone(&phone, "Crash Test")
                        .expect("customer");
                    let lines = (0..rng.random_range(1..5))
                        .map(|i| {
                            NewLine::item(&format!("SKU{i}"), "Item", rng.random_range(1..4), 1_999)
                                .taxed("GST18", 1_800)
                        })
                        .collect();
                    let bill = store
                        .open_bill(NewBill {
                            customer_id: Some(customer.id),
                            lines,
                            ..NewBill::default()
                        })
                        .expect("open");
                    let paid = store
                        .pay(bill.id, &[Tender::cash(bill.total)])
                        .expect("pay");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "bill {} {}", paid.id, customer.id).expect("report");
                    out.flush().expect("flush");
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn parent() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("till.db");
    let path_str = path.to_str().ok_or("temp path is not UTF-8")?.to_owned();
    let mut committed: HashSet<(String, String)> = HashSet::new();
    let mut rng = rand::rng();
    for round in 1..=ROUNDS {
        let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .env(CHILD_ENV, &path_str)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let kill_after = rng.random_range(20..400);
        let started = Instant::now();
        let mut seen = 0;
        while seen < kill_after && started.elapsed() < Duration::from_secs(60) {
            match lines.next() {
                Some(Ok(line)) => {
                    let mut parts = line.split_whitespace().skip(1);
                    if let (Some(bill), Some(customer)) = (parts.next(), parts.next()) {
                        committed.insert((bill.to_owned(), customer.to_owned()));
                        seen += 1;
                    }
                }
                _ => return Err(format!("round {round}: child stopped before it was killed")),
            }
        }
        child.kill().map_err(|e| e.to_string())?; // SIGKILL
        child.wait().map_err(|e| e.to_string())?;
        // Reports already in the pipe were committed too.
        for line in lines.map_while(Result::ok) {
            let mut parts = line.split_whitespace().skip(1);
            if let (Some(bill), Some(customer)) = (parts.next(), parts.next()) {
                committed.insert((bill.to_owned(), customer.to_owned()));
            }
        }

        let store =
            Store::open(options(&path_str)).map_err(|e| format!("round {round}: reopen: {e}"))?;
        let report = store.verify().map_err(|e| e.to_string())?;
        if !report.is_ok() {
            return Err(format!("round {round}: verify found {:?}", report.problems));
        }
        for (bill, customer) in &committed {
            let b = store
                .bill(bill.parse().map_err(|_| "bad id")?)
                .map_err(|e| format!("round {round}: committed bill lost: {e}"))?;
            if b.status != BillStatus::Paid
                || b.customer_id.map(|c| c.to_string()).as_deref() != Some(customer)
            {
                return Err(format!(
                    "round {round}: bill {} changed: {:?}",
                    b.number, b.status
                ));
            }
        }
        // The store keeps selling after the crash, numbers continuing gaplessly.
        let bill = store
            .open_bill(NewBill::default())
            .map_err(|e| e.to_string())?;
        store.void_bill(bill.id).map_err(|e| e.to_string())?;
        if !store.verify_chain().map_err(|e| e.to_string())?.is_intact() {
            return Err(format!("round {round}: chain broken after reopening"));
        }
        println!(
            "round {round}: killed after {seen} reported bills; {} committed bills intact",
            committed.len()
        );
    }
    Ok(())
}

fn main() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(&path);
        return;
    }
    match parent() {
        Ok(()) => println!("1 passed, 0 failed"),
        Err(e) => {
            eprintln!("killed_mid_write_loses_nothing_committed: {e}");
            println!("0 passed, 1 failed");
            std::process::exit(1);
        }
    }
}
