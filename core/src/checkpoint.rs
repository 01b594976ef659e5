//! WAL checkpoints off the write path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold (1,000 pages): that one sale or customer waits while the pages
//! are copied into the database file and both files are synced. This
//! thread does that work instead, with a connection of its own, in PASSIVE
//! mode: it never takes the write lock, so writes go on while it copies.
//!
//! A WAL is rewound to its start by the first write after a checkpoint
//! that copied every frame; with a pause between writes, as at a till, the
//! thread's checkpoint is that one. Under a stream of writes with no pause
//! (a bulk import, a benchmark) a commit lands while it copies, so the
//! writer connection keeps SQLite's own checkpoint at [`WRITER_FRAMES`]:
//! it then copies only what this thread has not, and rewinds the WAL.
//!
//! Durability is SQLite's, unchanged: a checkpoint syncs the WAL before
//! copying and the database file after.
//!
//! The sync server's SQLite backend checkpoints the same way.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// A store's commits between two checkpoints: about SQLite's default of
/// 1,000 WAL pages at the 15 pages of a sale. Every 16 commits measured the
/// same (sale median and p99, see [`WRITER_FRAMES`]) with four times the
/// syncs.
pub(crate) const STORE_COMMITS_PER_CHECKPOINT: u32 = 64;

/// The writer connection's own checkpoint threshold, in WAL pages: how
/// long the WAL grows under writes with no pause before a write waits for
/// the rest of a checkpoint and rewinds it. 5,000 sales in a row, each with
/// a raw bill (`examples/sale_profile.rs`, `sell`), two to four runs each
/// on a 2-core machine at load 16-17, the p99 less the time spent waiting
/// for a CPU:
///
/// | checkpoints                      | sale median | sale p99       |
/// |----------------------------------|-------------|----------------|
/// | SQLite's, in the commit at 1,000 | 68-76 us    | 4.4-6.6 ms     |
/// | this thread, writer at 2,000     | 79-83 us    | 0.45-0.50 ms   |
/// | this thread, writer at 4,000     | 74-78 us    | 0.29-0.32 ms   |
/// | this thread, writer at 10,000    | 78-80 us    | 0.28 ms        |
/// | this thread, writer at 100,000   | 87-90 us    | 0.26-0.31 ms   |
///
/// A longer WAL makes each page written cost more (the file grows, and its
/// pages are cold in the caches); 4,000 pages keeps the median near SQLite's
/// own and moves the waits out of the p99. `find_or_create` (4,000 calls,
/// half of them new customers) went from 88 calls over 2 ms to 11-18, and
/// its p99 from 4.8 ms to 0.5-0.6 ms.
pub(crate) const WRITER_FRAMES: i64 = 4_000;

/// The writer's threshold during a stream of large transactions (bootstrap
/// and pull pages, see `Writer::bulk`): each commit writes thousands of pages
/// spread over the file, so at [`WRITER_FRAMES`] nearly every commit
/// checkpointed and waited for two syncs, copying the same index pages again
/// and again. A new till bootstrapping 100,000 customers and 1,000,000 bills
/// (`cargo bench -p till-sync-server --bench sync`, 2,000 records a page)
/// took 48.0-48.6 s at 4,000 pages, 12 s of it in the writer's syncs
/// (strace), and 37.6 s at 50,000. The WAL may grow to about 200 MB
/// meanwhile; the next checkpoint rewinds it.
pub(crate) const BULK_FRAMES: i64 = 50_000;

/// How long a checkpoint waits for a lock another process holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Control {
    /// Commits since the last checkpoint was asked for.
    commits: u32,
    /// A checkpoint is wanted.
    wanted: bool,
    stop: bool,
}

#[derive(Debug, Default)]
struct Shared {
    control: Mutex<Control>,
    wake: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The handle a database's writer keeps; stops and joins the thread when
/// dropped.
#[derive(Debug)]
pub struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    every: u32,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` every `every` commits.
    /// `None` when no connection or thread could be had: SQLite's own
    /// checkpoint then does the work on the writer.
    pub fn start(path: &Path, every: u32) -> Option<Checkpointer> {
        let conn = open(path)
            .map_err(|e| tracing::warn!(error = %e, "no checkpoint connection"))
            .ok()?;
        let shared = Arc::new(Shared::default());
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("till-checkpoint".into())
            .spawn(move || run(&worker, &conn))
            .map_err(|e| tracing::warn!(error = %e, "checkpoint thread did not start"))
            .ok()?;
        Some(Checkpointer {
            shared,
            thread: Some(thread),
            every: every.max(1),
        })
    }

    /// Counts a commit; every `every`th wakes the thread.
    pub fn committed(&self) {
        let mut c = lock(&self.shared.control);
        c.commits += 1;
        if c.commits >= self.every {
            c.commits = 0;
            c.wanted = true;
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        lock(&self.shared.control).stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

fn run(shared: &Shared, conn: &Connection) {
    loop {
        {
            let mut c = lock(&shared.control);
            while !(c.wanted || c.stop) {
                c = shared.wake.wait(c).unwrap_or_else(PoisonError::into_inner);
            }
            if c.stop {
                return;
            }
            c.wanted = false;
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "checkpoint failed; the next one retries");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn the_thread_copies_committed_pages_into_the_database_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let writer = Connection::open(&path).expect("open");
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        // Only the thread checkpoints: the database file grows by its hand.
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .expect("no automatic checkpoint");
        writer
            .execute_batch("CREATE TABLE t (v BLOB)")
            .expect("table");
        let before = std::fs::metadata(&path).expect("size").len();
        let checkpointer = Checkpointer::start(&path, 2).expect("thread");
        for _ in 0..2 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(100000))", [])
                .expect("insert");
            checkpointer.committed();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).expect("size").len() < before + 200_000 {
            assert!(Instant::now() < deadline, "no checkpoint after two commits");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
