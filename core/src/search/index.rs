//! The ranked, typo-tolerant customer index: tantivy, in a folder beside the
//! database (`<db file>.search/`), holding derived data only.
//!
//! SQLite is the truth. The index stores, in its commit payload, the schema
//! version of its documents and the last change-log `seq` it covers. A
//! background thread owns the one `IndexWriter`:
//!
//! - on open it checks the folder (readable, checksums valid, payload of
//!   this schema) and catches up from the change log; a missing, corrupt or
//!   older index is wiped and rebuilt from the customers table;
//! - after every committed write the store wakes it; it waits
//!   [`BATCH_WINDOW`] for more writes (a tantivy commit costs ~6 ms, too slow
//!   per sale), applies every change after its `seq` as delete-by-rid + add,
//!   commits with the new payload and reloads its reader by hand.
//!
//! Searches never wait for it: they take the last reloaded searcher with the
//! `seq` it covers, and judge the customers changed after that `seq` straight
//! from SQLite (see `search::mod`). A crash between a SQLite commit and the
//! index commit therefore loses nothing: the changes are still after the
//! payload's `seq` and are applied again on the next open.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, DisjunctionMaxQuery, EnableScoring, FuzzyTermQuery, Occur,
    Query as TantivyQuery, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED,
};
use tantivy::{
    DocSet, Index, IndexReader, IndexSettings, IndexSortByField, IndexWriter, Order, ReloadPolicy,
    Score, Searcher, TantivyDocument, Term, TERMINATED,
};

use super::query::{self, Query};
use super::recent::{Hit, MostRecent};
use crate::customers::{Customer, COLUMNS};
use crate::portability::erase::ERASE_OP;

/// Version of the documents this build writes; an index of another version
/// is rebuilt. Bump it whenever [`document`] or the schema changes.
pub(crate) const INDEX_SCHEMA: u32 = 2;

/// How long the indexer lets writes gather before one tantivy commit.
/// The issue measured a commit at ~6 ms (not re-measured here), so under a
/// steady stream of writes commits take at most ~3% of one core, and a new
/// name is typo-searchable within a quarter second; exact, prefix and digit
/// search see it at once, and searches judge the rows written since.
pub(crate) const BATCH_WINDOW: Duration = Duration::from_millis(250);

/// Tries at purging deleted documents while background merges hold segments.
const PURGE_ATTEMPTS: u32 = 100;

/// Change-log rows read per catch-up page.
const CHANGES_PAGE: i64 = 5_000;

/// The writer's memory budget. One indexing thread: the till sells on the
/// other core. A rebuild of 50,000 customers peaked at 80 MB resident for
/// the whole process (`cargo bench -p till-core --bench search -- --quick`,
/// `search.rebuild_peak_mb`); the 1M-customer figure is not measured yet.
const WRITER_MEMORY: usize = 64_000_000;

/// After a failure to open or write the index, wait this long before
/// trying again (searches use the SQLite fallback meanwhile).
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Weights of the ways a term can match, the same ladder as
/// [`query::MatchKind`]: tantivy picks candidates with them, the judge then
/// ranks exactly.
const W_EXACT: Score = 100_000.0;
const W_PREFIX: Score = 10_000.0;
const W_FUZZY: Score = 100.0;
const W_PHONETIC: Score = 10.0;

/// Every weight a word can score, best first: exact and prefix matches of
/// names and emails, exact matches of notes weigh as prefixes, prefixes of
/// notes come next, then typos and sounds-alike.
const LADDER: [Score; 5] = [W_EXACT, W_PREFIX, W_PREFIX * 0.1, W_FUZZY, W_PHONETIC];

/// Most query words searched in passes by total score (up to 5^3 rung
/// combinations); longer queries match few customers, and one pass over
/// all their matches is cheaper.
const PASS_WORDS_MAX: usize = 3;

#[derive(Debug, Clone, Copy)]
struct Fields {
    rid: Field,
    name: Field,
    email: Field,
    notes: Field,
    phonetic: Field,
    /// The first [`STARTS_MAX`] letters (1, 2, 3) of every name and email
    /// word: a short prefix is then one posting list read most recent first,
    /// where a prefix query would gather every document of every word it
    /// starts (a tenth of the store for one letter) before the first hit.
    starts: Field,
    recency: Field,
}

/// Longest prefix kept in [`Fields::starts`]; longer prefixes are selective
/// enough for tantivy's prefix queries.
const STARTS_MAX: usize = 3;

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    // Doc ids only: ranking is ours, so no frequencies or positions are kept.
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("default")
            .set_index_option(IndexRecordOption::Basic),
    );
    let fields = Fields {
        rid: builder.add_u64_field("rid", INDEXED | FAST),
        name: builder.add_text_field("name", words.clone()),
        email: builder.add_text_field("email", words.clone()),
        notes: builder.add_text_field("notes", words.clone()),
        phonetic: builder.add_text_field("phonetic", words.clone()),
        starts: builder.add_text_field("starts", words),
        recency: builder.add_i64_field("recency", FAST),
    };
    (builder.build(), fields)
}

/// The commit payload: what the index covers.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    schema: u32,
    seq: i64,
}

/// The tantivy document of a live customer. Text is folded by our code, so
/// the stock tokenizer only splits on the spaces we put in.
fn document(fields: &Fields, rid: i64, c: &Customer) -> TantivyDocument {
    let name: Vec<String> = query::words(&c.name).collect();
    let phonetic: Vec<String> = name.iter().flat_map(|w| query::phonetic(w)).collect();
    let mut doc = TantivyDocument::default();
    doc.add_u64(fields.rid, rid.unsigned_abs());
    doc.add_text(fields.name, name.join(" "));
    doc.add_text(fields.phonetic, phonetic.join(" "));
    let email: Vec<String> = c
        .email
        .as_ref()
        .map(|e| query::words(&e.canonical).collect())
        .unwrap_or_default();
    doc.add_text(fields.email, email.join(" "));
    let mut starts: Vec<&str> = name
        .iter()
        .chain(&email)
        .flat_map(|w| (1..=STARTS_MAX.min(w.len())).filter_map(|n| w.get(..n)))
        .collect();
    starts.sort_unstable();
    starts.dedup();
    doc.add_text(fields.starts, starts.join(" "));
    if !c.notes.is_empty() {
        let notes: Vec<String> = query::words(&c.notes).take(200).collect();
        doc.add_text(fields.notes, notes.join(" "));
    }
    doc.add_i64(fields.recency, c.updated_at_ms);
    doc
}

/// A searcher and the change-log `seq` it covers.
#[derive(Clone)]
pub(crate) struct View {
    searcher: Searcher,
    fields: Fields,
    pub seq: i64,
}

impl View {
    /// Rowids of up to `k` customers matching every word term of `query`,
    /// best first (exact > prefix > fuzzy > phonetic, then most recent),
    /// visiting only as many matches as that order needs (see `recent`).
    pub(crate) fn search(&self, q: &Query, k: usize) -> tantivy::Result<Vec<i64>> {
        let mut words = Vec::new();
        for (word, codes) in q.words() {
            let rungs = self.rungs(self.alternatives(word, codes))?;
            if rungs.is_empty() {
                // Every word must match; this one matches nobody.
                return Ok(Vec::new());
            }
            words.push(rungs);
        }
        let mut hits = Vec::new();
        if words.len() <= PASS_WORDS_MAX {
            // A pass per total score, best first: the conjunctions of the
            // words' rungs that add up to it. Every document a pass finds
            // scores the same, so a segment yields its most recent `k`
            // first; and once `k` customers are found, no later pass can
            // rank among them (ties share a pass).
            for (band, combos) in bands(&words) {
                let pass = DisjunctionMaxQuery::new(combos);
                hits.extend(self.searcher.search(&pass, &MostRecent { k, band })?);
                if distinct(&mut hits) >= k {
                    break;
                }
            }
        } else {
            // Many words match few customers: one pass takes every rung.
            let band = W_EXACT * words.len() as Score;
            let all = BooleanQuery::new(
                words
                    .into_iter()
                    .map(|rungs| {
                        let word =
                            DisjunctionMaxQuery::new(rungs.into_iter().map(|(_, q)| q).collect());
                        (Occur::Must, Box::new(word) as Box<dyn TantivyQuery>)
                    })
                    .collect(),
            );
            hits = self.searcher.search(&all, &MostRecent { k, band })?;
            distinct(&mut hits);
        }
        hits.truncate(k);
        Ok(hits
            .into_iter()
            .filter_map(|hit| i64::try_from(hit.rid).ok())
            .filter(|&rid| rid > 0)
            .collect())
    }

    /// The rungs at which a word matches some document, best first, each
    /// with the query of its alternatives at that rung.
    fn rungs(&self, alternatives: Vec<(Box<dyn TantivyQuery>, Score)>) -> tantivy::Result<Rungs> {
        let mut rungs = Vec::new();
        for rung in LADDER {
            let at_rung: Vec<Box<dyn TantivyQuery>> = alternatives
                .iter()
                .filter(|(_, w)| *w == rung)
                .map(|(q, _)| q.box_clone())
                .collect();
            if at_rung.is_empty() {
                continue;
            }
            let query = DisjunctionMaxQuery::new(at_rung);
            let weight = query.weight(EnableScoring::disabled_from_searcher(&self.searcher))?;
            let mut matches = false;
            for segment in self.searcher.segment_readers() {
                if weight.scorer(segment, 1.0)?.doc() != TERMINATED {
                    matches = true;
                    break;
                }
            }
            if matches {
                rungs.push((rung, Box::new(query) as Box<dyn TantivyQuery>));
            }
        }
        Ok(rungs)
    }

    /// The ways one word of a query can match, each scored by its rung.
    fn alternatives(&self, word: &str, codes: &[String]) -> Vec<(Box<dyn TantivyQuery>, Score)> {
        let f = &self.fields;
        let mut alternatives: Vec<(Box<dyn TantivyQuery>, Score)> = Vec::new();
        let mut add = |q: Box<dyn TantivyQuery>, w: Score| {
            alternatives.push((Box::new(ConstScoreQuery::new(q, w)), w));
        };
        let short = word.len() <= STARTS_MAX;
        if short {
            add(
                Box::new(TermQuery::new(
                    Term::from_field_text(f.starts, word),
                    IndexRecordOption::Basic,
                )),
                W_PREFIX,
            );
        }
        for (field, weight) in [(f.name, 1.0), (f.email, 1.0), (f.notes, 0.1)] {
            let term = Term::from_field_text(field, word);
            add(
                Box::new(TermQuery::new(term.clone(), IndexRecordOption::Basic)),
                W_EXACT * weight,
            );
            if !short || field == f.notes {
                add(
                    Box::new(FuzzyTermQuery::new_prefix(term.clone(), 0, true)),
                    W_PREFIX * weight,
                );
            }
            let edits = query::max_edits(word.len());
            if edits > 0 && field != f.notes {
                add(Box::new(FuzzyTermQuery::new(term, edits, true)), W_FUZZY);
            }
        }
        for code in codes {
            add(
                Box::new(TermQuery::new(
                    Term::from_field_text(f.phonetic, code),
                    IndexRecordOption::Basic,
                )),
                W_PHONETIC,
            );
        }
        alternatives
    }
}

/// The rungs at which one query word matches, with their queries.
type Rungs = Vec<(Score, Box<dyn TantivyQuery>)>;

/// Every total score the words can reach, best first, each with the
/// conjunctions (one rung per word) that add up to it: at most
/// [`LADDER`]`.len()` to the power of [`PASS_WORDS_MAX`].
fn bands(words: &[Rungs]) -> Vec<(Score, Vec<Box<dyn TantivyQuery>>)> {
    let mut combos: Vec<(Score, Vec<&Box<dyn TantivyQuery>>)> = vec![(0.0, Vec::new())];
    for rungs in words {
        combos = combos
            .into_iter()
            .flat_map(|(total, parts)| {
                rungs.iter().map(move |(rung, query)| {
                    let mut parts = parts.clone();
                    parts.push(query);
                    (total + rung, parts)
                })
            })
            .collect();
    }
    let mut bands: Vec<(Score, Vec<Box<dyn TantivyQuery>>)> = Vec::new();
    for (total, parts) in combos {
        let query: Box<dyn TantivyQuery> = Box::new(BooleanQuery::new(
            parts
                .into_iter()
                .map(|q| (Occur::Must, q.box_clone()))
                .collect(),
        ));
        match bands.iter_mut().find(|(t, _)| *t == total) {
            Some((_, list)) => list.push(query),
            None => bands.push((total, vec![query])),
        }
    }
    bands.sort_by(|a, b| b.0.total_cmp(&a.0));
    bands
}

/// Sorts `hits` best first and keeps each customer's best hit; returns how
/// many customers that leaves.
fn distinct(hits: &mut Vec<Hit>) -> usize {
    hits.sort_by(Hit::rank);
    let mut seen = std::collections::HashSet::with_capacity(hits.len());
    hits.retain(|hit| seen.insert(hit.rid));
    hits.len()
}

#[derive(Debug, Default)]
struct Control {
    /// A write committed since the indexer last looked.
    dirty: bool,
    /// The store is closing.
    stop: bool,
    /// A search found the index broken.
    rebuild: bool,
    /// Flushes asked for; the indexer answers each by catching up at once.
    flushes_wanted: u64,
}

#[derive(Debug, Default)]
struct Progress {
    flushes_done: u64,
    /// The indexer could not open or write the index at the last attempt.
    failed: bool,
    stopped: bool,
}

struct Shared {
    db_path: PathBuf,
    dir: PathBuf,
    control: Mutex<Control>,
    wake: Condvar,
    progress: Mutex<Progress>,
    progressed: Condvar,
    view: RwLock<Option<View>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The handle the store keeps: wakes the indexer, hands out views.
pub(crate) struct SearchIndex {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

/// The index folder of the database at `db_path`: `<db file>.search`.
pub(crate) fn folder_of(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".search");
    PathBuf::from(name)
}

impl SearchIndex {
    /// Starts the indexer of the database at `db_path` (already migrated).
    /// Never fails: an index that cannot be opened is rebuilt in the
    /// background, and searches fall back to SQLite until it is ready.
    pub(crate) fn open(db_path: &Path) -> SearchIndex {
        let shared = Arc::new(Shared {
            db_path: db_path.to_owned(),
            dir: folder_of(db_path),
            control: Mutex::new(Control {
                dirty: true,
                ..Control::default()
            }),
            wake: Condvar::new(),
            progress: Mutex::new(Progress::default()),
            progressed: Condvar::new(),
            view: RwLock::new(None),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("till-search-indexer".into())
            .spawn(move || run(&worker))
            .map_err(|e| tracing::error!(error = %e, "search indexer thread did not start"))
            .ok();
        SearchIndex { shared, thread }
    }

    /// Tells the indexer a write committed. Only the first write of a batch
    /// wakes it: the rest land while it waits out [`BATCH_WINDOW`] or works,
    /// and it reads `dirty` before waiting again. Waking it on every sale
    /// cost a futex call and a context switch each (2% of a sale's time).
    pub(crate) fn notify(&self) {
        let mut control = lock(&self.shared.control);
        if !control.dirty {
            control.dirty = true;
            self.shared.wake.notify_one();
        }
    }

    /// The current searcher and the `seq` it covers; `None` while the index
    /// is opening, rebuilding or broken.
    pub(crate) fn view(&self) -> Option<View> {
        self.shared
            .view
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Asks the indexer to throw the index away and rebuild it.
    pub(crate) fn request_rebuild(&self) {
        *self
            .shared
            .view
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
        lock(&self.shared.control).rebuild = true;
        self.shared.wake.notify_one();
    }

    /// Waits until the index covers every change committed before the call
    /// (or `timeout` passes); true when it does.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let target = {
            let mut control = lock(&self.shared.control);
            control.flushes_wanted += 1;
            control.flushes_wanted
        };
        self.shared.wake.notify_one();
        let deadline = Instant::now() + timeout;
        let mut progress = lock(&self.shared.progress);
        while progress.flushes_done < target && !progress.stopped {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            progress = self
                .shared
                .progressed
                .wait_timeout(progress, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        progress.flushes_done >= target && !progress.failed
    }
}

impl Drop for SearchIndex {
    fn drop(&mut self) {
        lock(&self.shared.control).stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // The indexer commits what it has before stopping, so the next
            // open has little to catch up; a panic there is already logged.
            let _ = thread.join();
        }
    }
}

/// The indexer's own state: the one writer and its reader.
struct Live {
    writer: IndexWriter,
    reader: IndexReader,
    fields: Fields,
    conn: Connection,
    seq: i64,
}

/// What catching up found.
enum CatchUp {
    /// The index covers every change.
    Done,
    /// A bootstrap replaced the customers: the index must be rebuilt.
    Rebuild,
}

/// What the indexer was woken for.
struct Wakeup {
    stop: bool,
    rebuild: bool,
    flush_target: u64,
}

fn wait_for_work(shared: &Shared, flushes_done: u64) -> Wakeup {
    let mut c = lock(&shared.control);
    let urgent = |c: &Control| c.stop || c.rebuild || c.flushes_wanted > flushes_done;
    while !(c.dirty || urgent(&c)) {
        c = shared.wake.wait(c).unwrap_or_else(PoisonError::into_inner);
    }
    if !urgent(&c) {
        // Let more writes gather into the same commit.
        let deadline = Instant::now() + BATCH_WINDOW;
        while !urgent(&c) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            c = shared
                .wake
                .wait_timeout(c, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
    c.dirty = false;
    Wakeup {
        stop: c.stop,
        rebuild: std::mem::take(&mut c.rebuild),
        flush_target: c.flushes_wanted,
    }
}

fn run(shared: &Shared) {
    let mut live: Option<Live> = None;
    let mut retry_at: Option<Instant> = None;
    let mut flushes_done = 0;
    loop {
        let wakeup = wait_for_work(shared, flushes_done);
        if wakeup.rebuild {
            live = None;
            retry_at = None;
        }
        if live.is_none() && retry_at.is_none_or(|at| Instant::now() >= at) {
            match Live::open(shared, wakeup.rebuild) {
                Ok(opened) => live = Some(opened),
                Err(e) => {
                    tracing::warn!(error = %e, "search index unavailable; using SQLite search");
                    retry_at = Some(Instant::now() + RETRY_AFTER);
                }
            }
        }
        let mut failed = live.is_none();
        if let Some(l) = live.as_mut() {
            match l.catch_up() {
                Ok(CatchUp::Rebuild) => {
                    *shared.view.write().unwrap_or_else(PoisonError::into_inner) = None;
                    live = None;
                    lock(&shared.control).rebuild = true;
                    // Flushes wait for the rebuild: it is what they wait for.
                    continue;
                }
                Ok(CatchUp::Done) => {
                    *shared.view.write().unwrap_or_else(PoisonError::into_inner) = Some(View {
                        searcher: l.reader.searcher(),
                        fields: l.fields,
                        seq: l.seq,
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "search index update failed; rebuilding");
                    *shared.view.write().unwrap_or_else(PoisonError::into_inner) = None;
                    live = None;
                    lock(&shared.control).rebuild = true;
                    failed = true;
                }
            }
        }
        flushes_done = wakeup.flush_target;
        {
            let mut progress = lock(&shared.progress);
            progress.flushes_done = flushes_done;
            progress.failed = failed;
            progress.stopped = wakeup.stop;
        }
        shared.progressed.notify_all();
        if wakeup.stop {
            if let Some(Live { writer, .. }) = live.take() {
                // Merges (the merge policy's, an erasure's purge) run on
                // tantivy's threads: finish them, so nothing writes to the
                // folder once the store is dropped.
                if let Err(e) = writer.wait_merging_threads() {
                    tracing::warn!(error = %e, "search index merge failed at close");
                }
            }
            return;
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn read_only(path: &Path) -> Result<Connection, BoxError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

impl Live {
    /// Opens the index folder, or rebuilds it when `rebuild` is asked for or
    /// the folder is missing, corrupt or of another schema.
    fn open(shared: &Shared, rebuild: bool) -> Result<Live, BoxError> {
        let conn = read_only(&shared.db_path)?;
        let (schema, fields) = schema();
        if !rebuild {
            match Live::open_existing(&shared.dir, &schema) {
                Ok((index, seq)) => return Live::start(index, fields, conn, seq),
                Err(e) => tracing::info!(reason = %e, "rebuilding the search index"),
            }
        }
        Live::rebuild(&shared.dir, schema, fields, conn)
    }

    fn open_existing(dir: &Path, schema: &Schema) -> Result<(Index, i64), BoxError> {
        let index = Index::open_in_dir(dir)?;
        if index.schema() != *schema {
            return Err("index schema differs".into());
        }
        let payload: Payload =
            serde_json::from_str(index.load_metas()?.payload.as_deref().ok_or("no payload")?)?;
        if payload.schema != INDEX_SCHEMA {
            return Err(format!("index schema {} is not {INDEX_SCHEMA}", payload.schema).into());
        }
        let corrupt = index.validate_checksum()?;
        if !corrupt.is_empty() {
            return Err(format!("{} corrupt index files", corrupt.len()).into());
        }
        Ok((index, payload.seq))
    }

    fn start(index: Index, fields: Fields, conn: Connection, seq: i64) -> Result<Live, BoxError> {
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Live {
            writer,
            reader,
            fields,
            conn,
            seq,
        })
    }

    /// Wipes the folder and indexes every live customer, in one read
    /// transaction so the payload's `seq` matches the rows read.
    fn rebuild(
        dir: &Path,
        schema: Schema,
        fields: Fields,
        conn: Connection,
    ) -> Result<Live, BoxError> {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        std::fs::create_dir_all(dir)?;
        // Most recent first in every segment, so a search can stop early.
        let index = Index::builder()
            .schema(schema)
            .settings(IndexSettings {
                sort_by_field: Some(IndexSortByField {
                    field: "recency".to_owned(),
                    order: Order::Desc,
                }),
                ..IndexSettings::default()
            })
            .create_in_dir(dir)?;
        let mut live = Live::start(index, fields, conn, 0)?;
        live.conn.execute_batch("BEGIN")?;
        let result = live.index_all();
        live.conn.execute_batch("COMMIT")?;
        live.seq = result?;
        live.commit()?;
        Ok(live)
    }

    fn index_all(&mut self) -> Result<i64, BoxError> {
        let seq: i64 =
            self.conn
                .query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |r| {
                    r.get(0)
                })?;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM customers WHERE deleted_at IS NULL AND merged_into IS NULL"
        ))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (rid, c) = Customer::from_row(row)?;
            self.writer.add_document(document(&self.fields, rid, &c))?;
        }
        Ok(seq)
    }

    fn commit(&mut self) -> Result<(), BoxError> {
        let payload = serde_json::to_string(&Payload {
            schema: INDEX_SCHEMA,
            seq: self.seq,
        })?;
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&payload);
        prepared.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Applies every change after `seq`, then commits once if any customer
    /// changed; after an erasure, also purges the erased documents. Returns
    /// [`CatchUp::Rebuild`], having applied nothing, when the changes hold a
    /// bootstrap: it wrote customers without a change each.
    fn catch_up(&mut self) -> Result<CatchUp, BoxError> {
        let bootstrapped: bool = self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM changes WHERE seq > ?1 AND op = ?2)")?
            .query_row(
                rusqlite::params![self.seq, crate::sync::bootstrap::BOOTSTRAP_OP],
                |r| r.get(0),
            )?;
        if bootstrapped {
            return Ok(CatchUp::Rebuild);
        }
        let mut touched = false;
        let mut erased = false;
        loop {
            let page: Vec<(i64, String, String, String)> = self
                .conn
                .prepare_cached(
                    "SELECT seq, entity, entity_id, op FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?
                .query_map([self.seq, CHANGES_PAGE], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let Some(last) = page.last().map(|(seq, ..)| *seq) else {
                break;
            };
            let customers = || {
                page.iter()
                    .filter(|(_, e, ..)| e == crate::customers::ENTITY)
            };
            erased |= customers().any(|(.., op)| op == ERASE_OP);
            let mut ids: Vec<&str> = customers().map(|(_, _, id, _)| id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            for id in ids {
                self.apply(id)?;
                touched = true;
            }
            self.seq = last;
        }
        if touched {
            self.commit()?;
        }
        if erased {
            self.purge_deleted()?;
        }
        Ok(CatchUp::Done)
    }

    /// Rewrites every segment holding deleted documents without them and
    /// removes the old files: a delete only marks a document, and its terms
    /// (an erased customer's name and email) stay in the segment's files
    /// until it is merged. Erasures are rare; the whole-index merge this
    /// usually is costs what `search.erase_purge_ms` says
    /// (`cargo bench -p till-core --bench search -- --quick`).
    fn purge_deleted(&mut self) -> Result<(), BoxError> {
        for attempt in 0.. {
            let ids: Vec<_> = self
                .writer
                .index()
                .searchable_segment_metas()?
                .into_iter()
                .filter(|m| m.has_deletes())
                .map(|m| m.id())
                .collect();
            if ids.is_empty() {
                break;
            }
            match self.writer.merge(&ids).wait() {
                Ok(_) => break,
                // A background merge holds one of the segments: it drops
                // the deleted documents too; wait for it and look again.
                Err(e) if attempt < PURGE_ATTEMPTS => {
                    tracing::debug!(error = %e, "purge waits for a merge");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.writer.garbage_collect_files().wait()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Replaces the document of customer `id` with its current state.
    fn apply(&mut self, id: &str) -> Result<(), BoxError> {
        let found = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM customers WHERE id = ?1"))?
            .query_row([id], Customer::from_row)
            .optional()?;
        let Some((rid, c)) = found else {
            return Ok(());
        };
        self.writer
            .delete_term(Term::from_field_u64(self.fields.rid, rid.unsigned_abs()));
        if c.is_live() {
            self.writer.add_document(document(&self.fields, rid, &c))?;
        }
        Ok(())
    }
}
