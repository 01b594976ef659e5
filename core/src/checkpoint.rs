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

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Commits between two checkpoints: about SQLite's default of 1,000 WAL
/// pages at the 15 pages of a sale (`store.wal_pages_sell`).
const COMMITS_PER_CHECKPOINT: u32 = 64;

/// The writer connection's own checkpoint threshold, in WAL pages.
pub(crate) const WRITER_FRAMES: i64 = 10_000;

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

/// The handle the store keeps; stops and joins the thread when dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path`. `None` when no
    /// connection or thread could be had: SQLite's own checkpoint then
    /// does the work on the writer.
    pub(crate) fn start(path: &Path) -> Option<Checkpointer> {
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
        })
    }

    /// Counts a commit; every [`COMMITS_PER_CHECKPOINT`] wakes the thread.
    pub(crate) fn committed(&self) {
        let mut c = lock(&self.shared.control);
        c.commits += 1;
        if c.commits >= COMMITS_PER_CHECKPOINT {
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
