//! A store day: a head-office server and two tills of one store.
//!
//! The head office runs in this process on 127.0.0.1: the same server as
//! `till-server serve`, on its embedded SQLite database in a temporary
//! folder. Store S01 has two tills, the counter (T01) and a tablet on the
//! floor (T02). The network is down all morning: both keep selling, and
//! both sign up the same customer. At noon they sync: each sees the other's
//! bills, and the head office merges the two records of one customer, her
//! bills following; in the afternoon the tablet refunds a bill rung up at
//! the counter; at closing both tills hold the same day.
//!
//! Run: `cargo run --example store_day`

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use till_core::{
    Bill, NewBill, NewLine, NoopObserver, RefundLine, Store, StoreOptions, SyncConfig, Tender,
};
use till_sync_server::auth::{self, DeviceScope};
use till_sync_server::storage::sqlite::SqliteStorage;
use till_sync_server::storage::Storage;
use till_sync_server::{now_ms, serve, AppState, Limits};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const TENANT: &str = "acme-retail";
const STORE: &str = "S01";

/// The head-office server, running on its own threads until closed.
struct HeadOffice {
    url: String,
    storage: SqliteStorage,
    runtime: tokio::runtime::Runtime,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl HeadOffice {
    /// Creates the tenant and its store in `data` and starts serving.
    fn open(data: &Path) -> Result<HeadOffice> {
        let runtime = tokio::runtime::Runtime::new()?;
        let storage = SqliteStorage::open(data)?;
        let listener = runtime.block_on(async {
            storage
                .create_tenant(TENANT, "Acme Retail", now_ms())
                .await?;
            storage
                .create_store(TENANT, STORE, "Acme Kirana, MG Road", now_ms())
                .await?;
            Ok::<_, Box<dyn Error>>(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        })?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = AppState::new(Arc::new(storage.clone()), Limits::default());
        let task = runtime.spawn(serve(listener, state, async {
            stopped.await.ok();
        }));
        Ok(HeadOffice {
            url,
            storage,
            runtime,
            stop,
            task,
        })
    }

    /// Enrolls a till of the store and returns its token (shown only once).
    fn enroll(&self, device: &str) -> Result<String> {
        let token = auth::new_token();
        let scope = DeviceScope {
            tenant: TENANT.into(),
            store: STORE.into(),
            device: device.into(),
        };
        self.runtime.block_on(self.storage.enroll_device(
            &scope,
            &auth::token_hash(&token),
            now_ms(),
        ))?;
        Ok(token)
    }

    /// Stops taking requests and waits for the ones in flight.
    fn close(self) -> Result<()> {
        self.stop.send(()).ok();
        self.runtime.block_on(self.task)??;
        Ok(())
    }
}

/// One till: its store file and how it reaches the head office.
struct Till {
    name: &'static str,
    store: Store,
    sync: SyncConfig,
}

impl Till {
    fn open(dir: &Path, office: &HeadOffice, device: &str, name: &'static str) -> Result<Till> {
        let mut options =
            StoreOptions::new(dir.join(format!("{device}.db")), TENANT, STORE, device);
        options.store_name = "Acme Kirana, MG Road".into();
        let store = Store::open(options)?;
        let sync = SyncConfig::new(office.url.clone(), office.enroll(device)?);
        Ok(Till { name, store, sync })
    }

    /// Sells `lines` to `customer` for cash and says so.
    fn sell(&self, customer: Option<uuid::Uuid>, lines: Vec<NewLine>, who: &str) -> Result<Bill> {
        let bill = self.store.open_bill(NewBill {
            customer_id: customer,
            lines,
            ..NewBill::default()
        })?;
        let bill = self.store.pay(bill.id, &[Tender::cash(bill.total)])?;
        println!(
            "  {:<7} sells {} to {who}: {}",
            self.name,
            bill.number,
            self.money(bill.total)
        );
        Ok(bill)
    }

    fn money(&self, amount: i64) -> String {
        format!(
            "{} {}",
            self.store.currency().format(amount),
            self.store.currency().code()
        )
    }

    /// Syncs with the head office and says what moved.
    fn sync(&self) -> Result<()> {
        let done = self.store.sync(&self.sync, &NoopObserver)?;
        // A first sync takes the store as a snapshot, later ones the changes since.
        println!(
            "  {:<7} syncs: sent {} change(s); pulled {} from the head office, {} new here",
            self.name,
            done.pushed,
            done.pulled + done.bootstrapped,
            done.applied
        );
        Ok(())
    }

    fn waiting(&self) -> Result<i64> {
        Ok(self.store.sync_status()?.pending_changes)
    }
}

fn main() -> Result<()> {
    let temp = tempfile::tempdir()?;
    let office = HeadOffice::open(&temp.path().join("head-office"))?;
    println!("Head office listening on {}", office.url);
    println!(
        "  tenant {TENANT}, store {STORE}; database in {}",
        temp.path().display()
    );
    let counter = Till::open(temp.path(), &office, "T01", "counter")?;
    let tablet = Till::open(temp.path(), &office, "T02", "tablet")?;
    counter.store.set_staff("priya")?;
    tablet.store.set_staff("arjun")?;
    println!("  enrolled the counter (T01) and the tablet (T02); each has its own token");

    let tea = NewLine::item("TEA-250", "Assam Tea 250g", 2, 18_000).taxed("GST5", 500);
    let soap = NewLine::item("SOAP-3", "Sandal Soap x3", 1, 9_900).taxed("GST18", 1_800);
    let water = NewLine::item("WATER-1L", "Water 1L", 1, 2_000);

    println!("\n09:30  The network is down. Both tills keep selling.");
    let (asha, _) = counter
        .store
        .find_or_create_by_phone("98765 43210", "Asha Rao")?;
    println!("  counter signs up Asha Rao as {}", asha.number);
    let teas = counter.sell(Some(asha.id), vec![tea], "Asha")?;
    let mut day = vec![teas.id];
    day.push(counter.sell(None, vec![water.clone()], "a walk-in")?.id);
    // Asha comes back for soap at the tablet, which has never heard of her.
    let (asha_at_tablet, created) = tablet
        .store
        .find_or_create_by_phone("+91 98765-43210", "Asha R.")?;
    println!(
        "  tablet looks up +91 98765-43210: not known here, signs her up as {} (created: {created})",
        asha_at_tablet.number
    );
    day.push(tablet.sell(Some(asha_at_tablet.id), vec![soap], "Asha")?.id);
    day.push(tablet.sell(None, vec![water], "a walk-in")?.id);
    println!(
        "  waiting to sync: counter {} change(s), tablet {}",
        counter.waiting()?,
        tablet.waiting()?
    );

    println!("\n12:30  The network is back.");
    counter.sync()?;
    tablet.sync()?;
    counter.sync()?;
    // The head office saw one phone number on two live customers: the same
    // person. It merged them into the one signed up first, and the merge
    // came back to both tills with their pulls.
    let merged = tablet.store.customer_including_deleted(asha_at_tablet.id)?;
    let survivor = tablet.store.customer(asha_at_tablet.id)?;
    println!(
        "  the head office merged {} into {}: one phone, one person",
        merged.number, survivor.number
    );
    for till in [&counter, &tablet] {
        let found = till.store.search_customers("43210", 10)?;
        println!(
            "  {:<7} finds {} customer(s) by the digits 43210: {}",
            till.name,
            found.len(),
            found
                .iter()
                .map(|h| format!("{} {}", h.customer.number, h.customer.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let bills = tablet.store.customer_bills(survivor.id, None, 10)?;
    println!(
        "  her bills from both tills are on {} now: {}",
        survivor.number,
        bills
            .items
            .iter()
            .map(|b| b.number.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    println!(
        "\n15:00  Asha returns one tea at the tablet (bill {}).",
        teas.number
    );
    let one_tea = [RefundLine {
        line_no: teas.lines[0].line_no,
        qty_milli: 1_000,
    }];
    let amount = tablet.store.refund_quote(teas.id, &one_tea)?;
    let refund = tablet
        .store
        .refund(teas.id, &one_tea, &[Tender::cash(amount)])?;
    println!(
        "  tablet refunds {} as {}",
        tablet.money(refund.total),
        refund.number
    );
    day.push(refund.id);
    tablet.sync()?;
    counter.sync()?;
    let at_counter = counter.store.bill(teas.id)?;
    println!(
        "  counter now shows {} as {}, {} refunded",
        at_counter.number,
        at_counter.status,
        counter.money(at_counter.refunded_total)
    );

    println!("\n21:00  Closing.");
    for till in [&counter, &tablet] {
        let summary = till.store.customer_summary(asha.id)?;
        let report = till.store.verify()?;
        println!(
            "  {:<7} Asha: {} visit(s), spent {}; {} change(s) waiting; verify: {} problem(s)",
            till.name,
            summary.visits,
            till.money(summary.total_spent),
            till.waiting()?,
            report.problems.len()
        );
    }
    println!("  the day's bills, as each till holds them:");
    let mut same = true;
    for id in &day {
        let (c, t) = (counter.store.bill(*id)?, tablet.store.bill(*id)?);
        same &= (&c.number, c.status, c.total, c.refunded_total)
            == (&t.number, t.status, t.total, t.refunded_total);
        println!(
            "    {}  counter: {:<15} tablet: {:<15} {:>12}",
            c.number,
            c.status.to_string(),
            t.status.to_string(),
            counter.money(c.total)
        );
    }
    println!(
        "  counter and tablet agree on every bill: {}",
        if same { "yes" } else { "NO" }
    );
    office.close()?;
    Ok(())
}
