//! The `Store`: one SQLite file holding one device's view of its store.
//!
//! Concurrency: SQLite in WAL mode with exactly one writer connection behind
//! a mutex and a small pool of read-only connections beside it. Every user
//! action is one `BEGIN IMMEDIATE` transaction through [`Store::write`], so
//! writes are serialised (in this process by the mutex, across processes by
//! SQLite's lock) and readers never block or see half an action. `Store` is
//! `Send + Sync`; share it behind an `Arc`.
//!
//! Durability: `synchronous=NORMAL` in WAL mode survives a killed process
//! with every committed transaction intact; only power loss can drop the
//! last commits, never corrupt the file. WAL checkpoints run on a thread of
//! their own (see `checkpoint`), not inside the commit of a sale.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::checkpoint::{self, Checkpointer};
use crate::clock::Hlc;
use crate::error::{Error, Result};
use crate::money::Currency;

/// How long a connection waits for another process's lock before failing.
const BUSY_TIMEOUT_MS: u64 = 5_000;
/// Idle read connections kept open; more are opened on demand under load.
const MAX_IDLE_READERS: usize = 4;

/// The writer connection's page cache, in KiB (SQLite's default is 2 MiB).
/// Writes land in indexes keyed by ids and numbers all over the file; once
/// the file outgrows the cache, each misses to the OS for its pages. A new
/// till bootstrapping 1,000,000 bills (`cargo bench -p till-sync-server
/// --bench sync`) spent 33.9 us of CPU per record applying them with 2 MiB
/// and 28.1-29.5 us with 64 MiB; the cache fills only as the file grows.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// Who this store belongs to: a device of a store of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The retail company.
    pub tenant: String,
    /// The store's code, e.g. `S01`; prefixes bill numbers.
    pub store: String,
    /// The device's code within its store, e.g. `T03`.
    pub device: String,
}

impl Identity {
    /// The node name that stamps this device's changes: `store/device`.
    pub fn node(&self) -> String {
        format!("{}/{}", self.store, self.device)
    }

    fn validate(&self) -> Result<()> {
        for (field, value, max) in [
            ("tenant", &self.tenant, 64),
            ("store", &self.store, 16),
            ("device", &self.device, 16),
        ] {
            let ok = !value.is_empty()
                && value.len() <= max
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(Error::invalid(
                    field,
                    format!("must be 1 to {max} ASCII letters, digits, '_' or '-'"),
                ));
            }
        }
        Ok(())
    }
}

/// What [`Store::open`] needs.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The SQLite file; created with its folder when missing.
    pub path: PathBuf,
    /// Tenant, store and device this file belongs to.
    pub identity: Identity,
    /// Region (ISO 3166 alpha-2, e.g. `IN`) for phone numbers typed without a country code.
    pub default_region: String,
    /// ISO 4217 code of the store's currency, e.g. `INR`.
    pub currency: String,
    /// Name printed at the top of receipts.
    pub store_name: String,
}

impl StoreOptions {
    /// Options for `path` and identity, in region `IN` with currency `INR`.
    pub fn new(path: impl Into<PathBuf>, tenant: &str, store: &str, device: &str) -> Self {
        StoreOptions {
            path: path.into(),
            identity: Identity {
                tenant: tenant.into(),
                store: store.into(),
                device: device.into(),
            },
            default_region: "IN".into(),
            currency: "INR".into(),
            store_name: store.into(),
        }
    }
}

/// Settings fixed at open, validated.
#[derive(Debug)]
pub(crate) struct Settings {
    pub identity: Identity,
    pub node: String,
    pub region: phonenumber::country::Id,
    pub currency: Currency,
    pub store_name: String,
}

/// The embedded store; see the module docs for its concurrency model.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    pub(crate) settings: Settings,
    writer: Mutex<WriterState>,
    readers: Mutex<Vec<Connection>>,
    staff: RwLock<String>,
    pub(crate) search: crate::search::SearchIndex,
    checkpointer: Option<Checkpointer>,
}

#[derive(Debug)]
struct WriterState {
    conn: Connection,
    last_stamp: Option<Hlc>,
    /// The WAL length, in pages, at which a commit of this connection
    /// checkpoints (see `checkpoint`).
    wal_frames: i64,
}

/// One write transaction with what every mutation needs to record itself.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    pub tx: Transaction<'a>,
    pub settings: &'a Settings,
    pub staff: String,
    pub now_ms: i64,
    last_stamp: &'a mut Option<Hlc>,
    bulk: bool,
    /// Customer writes leave phone-search digit keys to the end of a first
    /// bootstrap (see `sync::deferred`).
    pub defer_digits: bool,
    /// Personal data was erased (`portability::erase::scrub`): the commit
    /// truncates the WAL, which still holds the pages as they were.
    pub scrubbed: bool,
}

impl Writer<'_> {
    /// A fresh HLC stamp, strictly after every earlier one of this device.
    pub fn stamp(&mut self) -> Hlc {
        let next = Hlc::tick(self.last_stamp.as_ref(), self.now_ms, &self.settings.node);
        *self.last_stamp = Some(next.clone());
        next
    }

    /// Marks this transaction as one of a stream of large ones (a bootstrap
    /// or pull page): its commit checkpoints only past
    /// [`checkpoint::BULK_FRAMES`] WAL pages. The connection goes back to its
    /// threshold for single writes when the transaction ends.
    pub fn bulk(&mut self) -> Result<()> {
        self.tx
            .pragma_update(None, "wal_autocheckpoint", checkpoint::BULK_FRAMES)?;
        self.bulk = true;
        Ok(())
    }

    /// Moves this device's clock past `seen`, a stamp pulled from the
    /// server, so a local edit made after seeing a remote one is stamped
    /// after it (the receive rule of a hybrid logical clock).
    pub fn observe(&mut self, seen: &Hlc) {
        if self.last_stamp.as_ref() < Some(seen) {
            *self.last_stamp = Some(seen.clone());
        }
    }

    /// Advances the gapless counter `name` and returns its new value.
    pub fn next_in_sequence(&self, name: &str) -> Result<i64> {
        Ok(self
            .tx
            .prepare_cached(
                "INSERT INTO sequences (name, last) VALUES (?1, 1)
                 ON CONFLICT (name) DO UPDATE SET last = last + 1
                 RETURNING last",
            )?
            .query_row([name], |r| r.get(0))?)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock rolled its transaction back; the
    // connection itself is still sound.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Opens (creating or upgrading) the store file described by `options`.
    pub fn open(options: StoreOptions) -> Result<Store> {
        options.identity.validate()?;
        let currency = Currency::parse(&options.currency)?;
        let region = options
            .default_region
            .to_ascii_uppercase()
            .parse()
            .map_err(|_| Error::invalid("default_region", "not an ISO 3166 region code"))?;
        let store_name = options.store_name.trim().to_owned();
        if store_name.is_empty() || store_name.chars().count() > 100 {
            return Err(Error::invalid("store_name", "must be 1 to 100 characters"));
        }
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }

        let mut conn = Connection::open(&options.path)?;
        configure(&conn)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Freed space is zeroed, so an erased customer's old values leave no
        // trace in the file (see `portability::erase`): without it, rows
        // moved by page splits and earlier updates linger in free space. Cost
        // within run-to-run noise: 2,000 customer creates, sales and renames
        // took 1.0-1.9 s per kind with and without it (release build; the
        // same loop of `Store` calls run twice, the pragma line removed once).
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        crate::schema::migrate(&mut conn)?;
        check_identity(&conn, &options.identity)?;
        let search = crate::search::SearchIndex::open(&options.path);
        let checkpointer =
            Checkpointer::start(&options.path, checkpoint::STORE_COMMITS_PER_CHECKPOINT);
        let wal_frames = match checkpointer {
            Some(_) => checkpoint::WRITER_FRAMES,
            None => conn.pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))?,
        };
        conn.pragma_update(None, "wal_autocheckpoint", wal_frames)?;

        Ok(Store {
            path: options.path,
            settings: Settings {
                node: options.identity.node(),
                identity: options.identity,
                region,
                currency,
                store_name,
            },
            writer: Mutex::new(WriterState {
                conn,
                last_stamp: None,
                wal_frames,
            }),
            readers: Mutex::new(Vec::new()),
            staff: RwLock::new("unassigned".into()),
            search,
            checkpointer,
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tenant, store and device of this file.
    pub fn identity(&self) -> &Identity {
        &self.settings.identity
    }

    /// The name printed at the top of receipts.
    pub fn store_name(&self) -> &str {
        &self.settings.store_name
    }

    /// The store's currency.
    pub fn currency(&self) -> Currency {
        self.settings.currency
    }

    /// Sets the staff member signed in at this till; every later change records them.
    pub fn set_staff(&self, staff_id: &str) -> Result<()> {
        let staff = staff_id.trim();
        if staff.is_empty() || staff.len() > 64 {
            return Err(Error::invalid("staff_id", "must be 1 to 64 bytes"));
        }
        *self.staff.write().unwrap_or_else(PoisonError::into_inner) = staff.to_owned();
        Ok(())
    }

    /// Runs `f` in one immediate transaction; commits when it returns `Ok`.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut Writer<'_>) -> Result<T>) -> Result<T> {
        let staff = self
            .staff
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut guard = lock(&self.writer);
        let WriterState {
            conn,
            last_stamp,
            wal_frames,
        } = &mut *guard;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another handle on this file (a second process of this device) may
        // have stamped changes since this one did: continue after the newest
        // stored stamp, read under the write lock this transaction holds.
        let stored = crate::changes::last_local_stamp(&tx)?;
        if stored > *last_stamp {
            *last_stamp = stored;
        }
        let (outcome, bulk, scrubbed) = {
            let mut writer = Writer {
                tx,
                settings: &self.settings,
                staff,
                now_ms: now_ms(),
                last_stamp,
                bulk: false,
                defer_digits: false,
                scrubbed: false,
            };
            let outcome = f(&mut writer);
            let (bulk, scrubbed) = (writer.bulk, writer.scrubbed);
            (
                outcome.and_then(|value| Ok(writer.tx.commit().map(|()| value)?)),
                bulk,
                scrubbed,
            )
        };
        // Back to the threshold of single writes, committed or not.
        if bulk {
            conn.pragma_update(None, "wal_autocheckpoint", *wal_frames)?;
        }
        let value = outcome?;
        if scrubbed {
            // Copies the WAL into the file and truncates it, so the page
            // images the erasure replaced leave the disk. A reader in a long
            // transaction can keep it from finishing; the next one does.
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "checkpoint after an erasure failed; the WAL keeps the old pages until it is rewound");
            }
        }
        self.search.notify();
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.committed();
        }
        Ok(value)
    }

    /// Runs `f` on a read-only connection; sees only committed data.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut conn = match lock(&self.readers).pop() {
            Some(conn) => conn,
            None => self.open_reader()?,
        };
        let result = read_snapshot(&mut conn, f);
        let mut idle = lock(&self.readers);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }

    /// A new read-only connection, outside the pool.
    pub(crate) fn open_reader(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        configure(&conn)?;
        Ok(conn)
    }
}

/// Runs `f` in a read transaction on `conn`: its statements all see one
/// commit. Outside one each statement sees the latest, and a bill read
/// while a line is added could come back with the new line but the old
/// totals.
pub(crate) fn read_snapshot<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let tx = conn.transaction()?;
    // Dropping `tx` ends the read with a rollback: it wrote nothing.
    f(&tx)
}

/// Settings every connection of a store shares.
fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))?;
    // The bundled SQLite has STAT4, under which a bound LIMIT or range value
    // makes SQLite re-plan the statement on every call; the query planner
    // stability guarantee keeps the cached plan. A history page took 65.8 us
    // with re-planning and 23.4 us without (callgrind: sqlite3Reprepare was
    // 26% of the instructions), measured with `cargo bench -p till-core --bench store`.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    // Statement journals in memory: inside a transaction of many statements
    // (a pulled page, a bootstrap page) every statement journals the pages
    // it changes, and in a file that was a write system call per page.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

/// Records the identity in a new file; refuses a file of someone else.
fn check_identity(conn: &Connection, identity: &Identity) -> Result<()> {
    let expected = format!("{}/{}", identity.tenant, identity.node());
    // Insert-if-absent then read: two processes creating the file at once agree.
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('identity', ?1) ON CONFLICT (key) DO NOTHING",
        [&expected],
    )?;
    let found: String =
        conn.query_row("SELECT value FROM meta WHERE key = 'identity'", [], |r| {
            r.get(0)
        })?;
    if found != expected {
        return Err(Error::IdentityMismatch { found, expected });
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A store of tenant t1, till S1/T1, in a folder of its own that lasts as
/// long as the returned guard.
#[cfg(test)]
pub(crate) fn scratch() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("dir");
    let store =
        Store::open(StoreOptions::new(dir.path().join("t.db"), "t1", "S1", "T1")).expect("open");
    (dir, store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bills::sequence_of;
    use crate::{NewBill, NewCustomer, NewLine, Tender};

    /// Caps the file at the pages it has (`true`), so the next write that
    /// needs one more fails with SQLITE_FULL as on a full disk, or lifts
    /// the cap (`false`).
    fn disk_full(store: &Store, full: bool) {
        // SQLite raises a cap below the file's size to its size.
        let cap: i64 = if full { 1 } else { 4_294_967_294 };
        lock(&store.writer)
            .conn
            .pragma_update(None, "max_page_count", cap)
            .expect("cap the file");
    }

    fn sale(customer: uuid::Uuid, i: usize) -> NewBill {
        NewBill {
            customer_id: Some(customer),
            lines: (0..4)
                .map(|l| NewLine::item(&format!("SKU-{i}-{l}"), "Rice 5kg", 1, 45_000))
                .collect(),
            ..NewBill::default()
        }
    }

    fn count(store: &Store, table: &str) -> i64 {
        store
            .read(|c| Ok(c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?))
            .expect("count")
    }

    #[test]
    fn a_full_disk_refuses_writes_with_a_typed_error_and_loses_nothing() {
        let (_dir, store) = scratch();
        let customer = store
            .create_customer(NewCustomer::named("Asha Rao").with_phone("98450 12345"))
            .expect("customer")
            .id;
        let cash = [Tender::cash(1_000_000)];
        let mut sold = Vec::new();
        for i in 0..3 {
            sold.push(store.sell(sale(customer, i), &cash).expect("sale"));
        }

        disk_full(&store, true);
        let refused = loop {
            let i = sold.len();
            assert!(i < 2_000, "the capped file never filled up");
            match store.sell(sale(customer, i), &cash) {
                Ok(bill) => sold.push(bill),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(refused, Error::StorageFull { .. }),
            "a full disk is told apart: {refused:?}"
        );
        assert!(refused.to_string().starts_with("storage full"), "{refused}");
        let (bills, changes) = (count(&store, "bills"), count(&store, "changes"));
        let csv = (0..300)
            .map(|i| format!("Guest {i},+91 98860 {i:05}\n"))
            .collect::<String>();
        let import = store.import_customers_csv(format!("name,phone\n{csv}").as_bytes());
        assert!(
            matches!(import, Err(Error::StorageFull { .. })),
            "an import that cannot fit is refused whole: {import:?}"
        );
        assert_eq!(count(&store, "customers"), 1, "no imported row landed");
        assert_eq!(
            (count(&store, "bills"), count(&store, "changes")),
            (bills, changes),
            "the refused writes left nothing behind"
        );

        // Everything committed is intact while the disk is full...
        let report = store.verify().expect("verify");
        assert!(report.is_ok(), "{:?}", report.problems);
        let summary = store.customer_summary(customer).expect("summary");
        assert_eq!(summary.visits, sold.len() as i64);
        for bill in &sold {
            assert_eq!(
                store.bill(bill.id).expect("a committed bill").total,
                bill.total
            );
        }

        // ...and once space is freed the till goes on where it stopped: the
        // refused sale's number was never issued.
        disk_full(&store, false);
        let next = store.sell(sale(customer, sold.len()), &cash).expect("sale");
        let last = sold.last().expect("sold");
        assert_eq!(sequence_of(&next.number), sequence_of(&last.number) + 1);
        let imported = store
            .import_customers_csv(format!("name,phone\n{csv}").as_bytes())
            .expect("import");
        assert_eq!(imported.imported, 300);
        let report = store.verify().expect("verify");
        assert!(report.is_ok(), "{:?}", report.problems);
        let chain = store.verify_chain().expect("chain");
        assert!(chain.is_intact(), "{:?}", chain.problems);
        assert_eq!(chain.bills_checked, sold.len() as u64 + 1);
    }

    fn wal_frames(store: &Store) -> i64 {
        store
            .write(|w| {
                Ok(w.tx.pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))?)
            })
            .expect("read the threshold")
    }

    #[test]
    fn a_bulk_transaction_leaves_the_writer_at_its_own_checkpoint_threshold() {
        let (_dir, store) = scratch();
        assert_eq!(wal_frames(&store), checkpoint::WRITER_FRAMES);
        store
            .write(|w| {
                w.bulk()?;
                let during: i64 =
                    w.tx.pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))?;
                assert_eq!(during, checkpoint::BULK_FRAMES);
                Ok(())
            })
            .expect("bulk write");
        assert_eq!(wal_frames(&store), checkpoint::WRITER_FRAMES);
        let failed = store.write(|w| -> Result<()> {
            w.bulk()?;
            Err(Error::invalid("page", "refused"))
        });
        assert!(failed.is_err());
        assert_eq!(wal_frames(&store), checkpoint::WRITER_FRAMES);
    }
}
