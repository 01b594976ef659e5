//! Search at the till: customers by phone fragments, numbers, names as
//! typed (prefixes, typos, sounds-alike, any word order, accents folded) and
//! emails; bills by number and by customer.
//!
//! Two indexes, one truth:
//! - `fts`: SQLite FTS5 rows written in the same transaction as the customer
//!   (digit trigrams of phones and customer numbers, words of names). Always
//!   consistent: a customer is findable by phone and number the instant the
//!   write commits.
//! - `index`: tantivy beside the database, the ranked and typo-tolerant
//!   index of names, emails and notes, updated in batches after commit by a
//!   background thread (see its module docs).
//!
//! A search asks both, plus, for customers changed after the change-log
//! `seq` tantivy covers, the rows themselves (few: the indexer commits every
//! [`index::BATCH_WINDOW`]); when tantivy is missing, rebuilding or far
//! behind, the FTS5 word index stands in for it. Every candidate is then
//! read from SQLite (deleted and merged customers are dropped there, never
//! trusting an index) and judged by `query::judge`, which decides the match
//! kinds and the rank. So no write is ever unsearchable, and no index can
//! return a customer the data does not.
//!
//! Safety: user text is capped, folded and split by `query` into plain
//! ASCII terms before any index sees it; no input is an error or slow
//! (property-tested in `tests/search_fuzz.rs`).

mod bills;
pub(crate) mod fts;
mod index;
pub(crate) mod query;
mod recent;

use std::collections::HashSet;
use std::time::Duration;

use rusqlite::Connection;

pub use bills::{BillHit, BillMatch};
pub(crate) use index::SearchIndex;
pub use query::{Match, MatchField, MatchKind};

use crate::customers::Customer;
use crate::error::Result;
use crate::store::Store;
use query::{Fields, Query};

/// The most results one search returns, whatever the caller asks for.
pub const SEARCH_LIMIT_MAX: u32 = 50;

/// Candidates taken from the ranked index per search, per result asked
/// for. tantivy ranks with the judge's own ladder (exact > prefix > fuzzy >
/// phonetic, then most recent), so its top `2 * limit` hold the judge's top
/// `limit`; the margin covers the few cases where the two disagree (OSA vs
/// Damerau distance, phonetic codes of email words). At 100 candidates
/// whatever the limit, judging was most of a name search: 648 us median
/// for prefixes, 656 us for typos, against 26 us and 40 us for tantivy
/// alone (`cargo bench -p till-core --bench search -- --quick`, 50,000
/// customers, limit 10).
const RANKED_CANDIDATES_PER_RESULT: usize = 2;

/// Changes after the ranked index's `seq` that a search judges row by row;
/// beyond this (a rebuild, a stalled indexer) the FTS5 word index is used.
const PENDING_MAX: i64 = 2_000;

/// A customer found by a search, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerHit {
    /// The customer, as stored now.
    pub customer: Customer,
    /// How the query matched: one entry per distinct (field, kind), best first.
    pub matched: Vec<Match>,
    /// Rank score: higher is better. Exact beats prefix beats partial beats
    /// fuzzy beats phonetic; equal scores rank the most recently changed first.
    pub score: u32,
}

/// A candidate the judge accepted, with what ranking needs.
struct Judged {
    rid: i64,
    id: uuid::Uuid,
    updated_at_ms: i64,
    matched: Vec<Match>,
    score: u32,
}

/// Judges every distinct live customer among `rids`, reading only the
/// columns the judge and the ranking need; whole rows are read afterwards
/// for the returned `limit` only. A phone search judges up to 200
/// candidates: it took 1,001 us median, of which 416 us was the FTS5 index
/// read, and 31 us with this and `fts::digit_keys` (10 us the index read),
/// so whole-row reads of the candidates were most of the rest
/// (`cargo bench -p till-core --bench search -- --quick`, 50,000 customers,
/// `search.phone_median_us` and `search.phone_raw_*_median_us`).
fn judge_candidates(conn: &Connection, q: &Query, rids: &[i64]) -> Result<Vec<Judged>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, number, name, phone_raw, phone_e164, email_raw, email, notes, updated_at
         FROM customers WHERE rid = ?1 AND deleted_at IS NULL AND merged_into IS NULL",
    )?;
    let mut seen = HashSet::with_capacity(rids.len());
    let mut judged = Vec::new();
    for &rid in rids {
        if !seen.insert(rid) {
            continue;
        }
        let mut rows = stmt.query([rid])?;
        let Some(row) = rows.next()? else {
            continue;
        };
        let text = |i: usize| -> rusqlite::Result<&str> { Ok(row.get_ref(i)?.as_str()?) };
        let maybe =
            |i: usize| -> rusqlite::Result<Option<&str>> { Ok(row.get_ref(i)?.as_str_or_null()?) };
        let (name, number, notes) = (text(2)?, text(1)?, text(7)?);
        // As `Customer::from_row`: a phone or email needs both of its columns.
        let phone = match (maybe(3)?, maybe(4)?) {
            (Some(raw), Some(e164)) => Some((raw, e164)),
            _ => None,
        };
        let email = match (maybe(5)?, maybe(6)?) {
            (Some(_), Some(canonical)) => Some(canonical),
            _ => None,
        };
        let fields = Fields::from_parts(name, email, notes, number, phone);
        if let Some(j) = query::judge(q, &fields) {
            judged.push(Judged {
                rid,
                id: text(0)?.parse().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        0,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?,
                updated_at_ms: row.get(8)?,
                matched: j.matched,
                score: j.score,
            });
        }
    }
    Ok(judged)
}

/// Rowids of customers with a change after `seq`, or `None` when there are
/// more than [`PENDING_MAX`] such changes.
fn pending(conn: &Connection, seq: i64) -> Result<Option<Vec<i64>>> {
    let rows = conn
        .prepare_cached(
            "SELECT c.rid FROM changes AS ch JOIN customers AS c ON c.id = ch.entity_id
             WHERE ch.seq > ?1 AND ch.entity = ?2 LIMIT ?3",
        )?
        .query_map(
            rusqlite::params![seq, crate::customers::ENTITY, PENDING_MAX + 1],
            |r| r.get(0),
        )?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok((rows.len() as i64 <= PENDING_MAX).then_some(rows))
}

impl Store {
    /// Customers matching what a cashier typed, best first, at most `limit`
    /// (capped at [`SEARCH_LIMIT_MAX`]). Any string is a valid query; one
    /// with nothing searchable in it finds nobody. Deleted and merged
    /// customers are never returned.
    pub fn search_customers(&self, query: &str, limit: u32) -> Result<Vec<CustomerHit>> {
        let limit = limit.clamp(1, SEARCH_LIMIT_MAX) as usize;
        let q = Query::parse(query);
        if q.is_empty() {
            return Ok(Vec::new());
        }
        let view = self.search.view();
        let words = q.words().next().is_some();
        let ranked = match (&view, words) {
            (Some(v), true) => match v.search(&q, RANKED_CANDIDATES_PER_RESULT * limit) {
                Ok(rids) => Some(rids),
                Err(e) => {
                    tracing::warn!(error = %e, "search index failed; rebuilding");
                    self.search.request_rebuild();
                    None
                }
            },
            _ => None,
        };
        // A read is one snapshot: the candidates, the judged columns and the
        // rows returned all come from the same commit.
        self.read(|conn| {
            // Digits alone: the judge ranks what `by_digits` hands it, so its
            // best `RANKED_CANDIDATES_PER_RESULT * limit` suffice. With words,
            // a customer must match them too, so more digit candidates are
            // judged against the ranked index's.
            let want = if words {
                fts::CANDIDATES_MAX
            } else {
                RANKED_CANDIDATES_PER_RESULT * limit
            };
            let mut rids: Vec<i64> = fts::by_digits(conn, &q, want)?;
            if words {
                // Without a ranked index (still opening, rebuilding), a
                // small store is judged row by row from the start of the log.
                let fresh = match (&view, &ranked) {
                    (Some(v), Some(_)) => pending(conn, v.seq)?,
                    (Some(_), None) => None,
                    (None, _) => pending(conn, 0)?,
                };
                let covered = fresh.is_some();
                rids.extend(ranked.into_iter().flatten());
                rids.extend(fresh.into_iter().flatten());
                if !covered {
                    // The ranked index is missing or far behind: prefixes
                    // from the transactional index keep every row findable.
                    rids.extend(fts::by_word_prefixes(conn, &q)?);
                }
            }
            let mut judged = judge_candidates(conn, &q, &rids)?;
            judged.sort_by(|a, b| {
                b.score
                    .cmp(&a.score)
                    .then(b.updated_at_ms.cmp(&a.updated_at_ms))
                    .then(b.id.cmp(&a.id))
            });
            judged.truncate(limit);
            // Whole rows only for what is returned: reading every column of
            // every candidate was most of a search (see `judge_candidates`).
            let mut hits = Vec::with_capacity(judged.len());
            for j in judged {
                if let Some(customer) = fts::live_customer(conn, j.rid)? {
                    hits.push(CustomerHit {
                        customer,
                        matched: j.matched,
                        score: j.score,
                    });
                }
            }
            Ok(hits)
        })
    }

    /// Waits (up to `timeout`) until the ranked search index covers every
    /// change committed before the call; true when it does. Searches are
    /// correct without it; this is for tests, benchmarks and a clean shutdown.
    pub fn flush_search_index(&self, timeout: Duration) -> bool {
        self.search.flush(timeout)
    }
}

#[cfg(test)]
mod tests;
