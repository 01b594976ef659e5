//! The transactional search rows of customers: one row per live customer in
//! the FTS5 table `customers_fts` (name, number, phone, email words), and
//! the digit keys of `customers_digits` (a plain B-tree, see [`digit_keys`]),
//! keyed by the customer's rowid and rewritten with every change of the
//! customer, so they commit (or roll back) with the data. A customer is
//! findable by phone digits, number and name prefix the instant its write
//! commits, whatever state the ranked index is in.
//!
//! Queries here are built from [`Query`] terms, which are plain ASCII
//! letters and digits: nothing a user typed reaches the FTS5 query syntax.

use rusqlite::{params, Connection, OptionalExtension};

use super::query::{Query, Term, PHONE_FRAGMENT_MIN};
use crate::customers::{Customer, COLUMNS};
use crate::error::Result;

/// Most candidates one index query hands to the judge.
pub(crate) const CANDIDATES_MAX: usize = 200;
/// Shortest stretch of a customer number found inside it (`042` in `c000042`).
const NUMBER_FRAGMENT_MIN: usize = 3;
/// Longest trailing number value kept as a key; longer runs are not sequences.
const NUMBER_VALUE_MAX: usize = 18;

/// The text of the FTS row of `c`: (name, number, phone digits, email).
pub(crate) fn row_of(c: &Customer) -> (String, String, String, String) {
    let email = c
        .email
        .as_ref()
        .map(|e| e.canonical.clone())
        .unwrap_or_default();
    (c.name.clone(), c.number.clone(), phone_digits(c), email)
}

/// Digits of the canonical and the as-typed phone, space-separated.
fn phone_digits(c: &Customer) -> String {
    c.phone
        .as_ref()
        .map(|p| {
            format!(
                "{} {}",
                super::query::digits(&p.e164),
                super::query::digits(&p.raw)
            )
        })
        .unwrap_or_default()
}

/// The keys of `customers_digits` for a customer whose FTS row has phone
/// digits `phone` (space-separated) and number `number`, sorted, distinct:
///
/// - `P` + each phone digit string whole, `p` + every shorter suffix of 4+
///   digits: "contains the fragment" is "some suffix starts with it", one
///   B-tree range per letter, and the `P` range alone holds the numbers
///   that start with it (prefix and exact matches), which rank first;
/// - `n` + every suffix of 3+ characters of each folded word of the number
///   (`c000042`, `000042`, ..., `042`): partial and word-prefix matches;
/// - `v` + the number's trailing digits without leading zeros (`42`): a
///   query of any length, `42` or `000042`, finds `S01-T03-C000042`.
///
/// Why not FTS5 trigrams (the first version): a trigram phrase query walks
/// every doclist of its trigrams, and the zero-padded numbers put nearly
/// every customer in the doclists of `000`, `001`...; the FTS5 phone query
/// took 416 us median and 2,823 us p99 at 50,000 customers, a range of
/// keys here 10 us and 45 us. The cost is space: the file grew from 63.7
/// to 69.4 MB (+9%), about 115 bytes per customer (`cargo bench -p
/// till-core --bench search -- --quick`: `search.phone_raw_*`,
/// `search.store_sqlite_mb`).
pub(crate) fn digit_keys(phone: &str, number: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for run in phone.split_ascii_whitespace() {
        for start in 0..run.len() {
            if run.len() - start < PHONE_FRAGMENT_MIN {
                break;
            }
            let kind = if start == 0 { 'P' } else { 'p' };
            keys.push(format!("{kind}{}", &run[start..]));
        }
    }
    for word in super::query::words(number) {
        for start in 0..word.len() {
            if word.len() - start < NUMBER_FRAGMENT_MIN {
                break;
            }
            keys.push(format!("n{}", &word[start..]));
        }
    }
    if let Some(value) = number_value(super::query::number_tail(number)) {
        keys.push(format!("v{value}"));
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Digits as a number value: leading zeros dropped; `None` when nothing is
/// left or it is too long to be a sequence.
fn number_value(digits: &str) -> Option<&str> {
    let value = digits.trim_start_matches('0');
    (!value.is_empty() && value.len() <= NUMBER_VALUE_MAX).then_some(value)
}

/// Replaces the search rows of customer `rid` (`new`: it has none yet); a
/// customer no longer live has none. `digits`: whether its phone-search
/// digit keys are written too (see `sync::deferred`).
pub(crate) fn index_customer(
    conn: &Connection,
    rid: i64,
    c: &Customer,
    new: bool,
    digits: bool,
) -> Result<()> {
    if !new {
        // The old digit keys follow from the old FTS row, read before it goes.
        let old: Option<(String, String)> = conn
            .prepare_cached("SELECT phone, number FROM customers_fts WHERE rowid = ?1")?
            .query_row([rid], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((phone, number)) = old {
            let mut delete =
                conn.prepare_cached("DELETE FROM customers_digits WHERE key = ?1 AND rid = ?2")?;
            for key in digit_keys(&phone, &number) {
                delete.execute(params![key, rid])?;
            }
        }
        conn.prepare_cached("DELETE FROM customers_fts WHERE rowid = ?1")?
            .execute([rid])?;
    }
    if c.is_live() {
        let (name, number, phone, email) = row_of(c);
        conn.prepare_cached(
            "INSERT INTO customers_fts (rowid, name, number, phone, email) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![rid, name, number, phone, email])?;
        if digits {
            insert_digits(conn, rid, &digit_keys(&phone, &number))?;
        }
    }
    Ok(())
}

fn insert_digits(conn: &Connection, rid: i64, keys: &[String]) -> Result<()> {
    let mut insert =
        conn.prepare_cached("INSERT OR IGNORE INTO customers_digits (key, rid) VALUES (?1, ?2)")?;
    for key in keys {
        insert.execute(params![key, rid])?;
    }
    Ok(())
}

/// Fills `customers_digits` from the live customers (the v1 -> v2 upgrade,
/// the end of a first bootstrap).
pub(crate) fn reindex_digits(conn: &Connection) -> Result<()> {
    conn.execute("DELETE FROM customers_digits", [])?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM customers WHERE deleted_at IS NULL AND merged_into IS NULL"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (rid, c) = Customer::from_row(row)?;
        let (_, number, phone, _) = row_of(&c);
        insert_digits(conn, rid, &digit_keys(&phone, &number))?;
    }
    Ok(())
}

/// The newest (highest rowid) customers with a key starting with `prefix`,
/// or, when `whole`, equal to it. The LIMIT is a literal: a bound one makes
/// SQLite with STAT4 re-plan the statement on every call.
fn keys_matching(conn: &Connection, prefix: &str, whole: bool, out: &mut Vec<i64>) -> Result<()> {
    let mut stmt = if whole {
        conn.prepare_cached(
            "SELECT rid FROM customers_digits WHERE key = ?1 AND ?2 IS NOT NULL
             ORDER BY rid DESC LIMIT 200",
        )?
    } else {
        conn.prepare_cached(
            "SELECT rid FROM customers_digits WHERE key >= ?1 AND key < ?2
             ORDER BY rid DESC LIMIT 200",
        )?
    };
    // Keys are ASCII letters and digits: every key starting with `prefix`
    // sorts below `prefix` + DEL.
    let end = format!("{prefix}\u{7f}");
    let rows = stmt.query_map(params![prefix, end], |r| r.get::<_, i64>(0))?;
    for rid in rows {
        out.push(rid?);
    }
    Ok(())
}

/// Customers whose phone digits or number contain a digit term, whose
/// number has the value of one, or whose number has a word starting with a
/// word term with digits (`c000042`): at most `want`, those whose number
/// has the value or whose phone starts with the term first (the judge ranks
/// them above partial matches), each kind newest first.
///
/// Cutting to `want` before judging is what keeps a short fragment fast on
/// a large store: "4 digits" matches about 700 of 1,000,000 customers, and
/// judging the newest 200 of them read 200 rows (about 550 us of a 730 us
/// median search; `cargo bench -p till-core --bench search`,
/// `search.phone_*`).
pub(crate) fn by_digits(conn: &Connection, query: &Query, want: usize) -> Result<Vec<i64>> {
    let (mut first, mut partial) = (Vec::new(), Vec::new());
    for term in &query.terms {
        match term {
            Term::Digits { text, variants } => {
                for d in std::iter::once(text).chain(variants) {
                    if d.len() >= PHONE_FRAGMENT_MIN {
                        keys_matching(conn, &format!("P{d}"), false, &mut first)?;
                        keys_matching(conn, &format!("p{d}"), false, &mut partial)?;
                    }
                    if d.len() >= NUMBER_FRAGMENT_MIN {
                        keys_matching(conn, &format!("n{d}"), false, &mut partial)?;
                    }
                }
                if let Some(value) = number_value(text) {
                    // The whole key: `v4` must not find `v42`.
                    keys_matching(conn, &format!("v{value}"), true, &mut first)?;
                }
            }
            Term::Word { text, .. } => {
                if text.len() >= NUMBER_FRAGMENT_MIN && text.bytes().any(|b| b.is_ascii_digit()) {
                    keys_matching(conn, &format!("n{text}"), false, &mut partial)?;
                }
            }
        }
    }
    let mut rids = Vec::with_capacity(want);
    let mut seen = std::collections::HashSet::new();
    for mut group in [first, partial] {
        group.sort_unstable_by(|a, b| b.cmp(a));
        rids.extend(group.into_iter().filter(|rid| seen.insert(*rid)));
    }
    rids.truncate(want.min(CANDIDATES_MAX));
    Ok(rids)
}

/// Customers with a word starting with every word term: the fallback when
/// the ranked index is not usable (missing, rebuilding, failed).
pub(crate) fn by_word_prefixes(conn: &Connection, query: &Query) -> Result<Vec<i64>> {
    let parts: Vec<String> = query
        .words()
        .map(|(text, _)| format!("\"{text}\"*"))
        .collect();
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT rowid FROM customers_fts WHERE customers_fts MATCH ?1
         ORDER BY rowid DESC LIMIT 200",
    )?;
    let rows = stmt
        .query_map([parts.join(" AND ")], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(rows)
}

/// The live customer with rowid `rid`, if any.
pub(crate) fn live_customer(conn: &Connection, rid: i64) -> Result<Option<Customer>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM customers
             WHERE rid = ?1 AND deleted_at IS NULL AND merged_into IS NULL"
        ))?
        .query_row([rid], Customer::from_row)
        .optional()?
        .map(|(_, c)| c))
}

fn next_key(rows: &mut rusqlite::Rows<'_>) -> Result<Option<(i64, String)>> {
    Ok(match rows.next()? {
        Some(row) => Some((row.get(0)?, row.get(1)?)),
        None => None,
    })
}

/// Checks `customers_digits` against the live customers, both read in
/// rowid order (no table of all keys in memory): the numbers of live
/// customers whose keys are missing or wrong, and the rowids with keys but
/// no live customer.
pub(crate) fn check_digits(conn: &Connection) -> Result<(Vec<String>, Vec<i64>)> {
    let (mut stale, mut orphans) = (Vec::new(), Vec::new());
    let mut stored_stmt =
        conn.prepare("SELECT rid, key FROM customers_digits ORDER BY rid, key")?;
    let mut stored = stored_stmt.query([])?;
    let mut pending = next_key(&mut stored)?;
    let mut live_stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM customers WHERE deleted_at IS NULL AND merged_into IS NULL
         ORDER BY rid"
    ))?;
    let mut live = live_stmt.query([])?;
    loop {
        let customer = match live.next()? {
            Some(row) => Some(Customer::from_row(row)?),
            None => None,
        };
        let upto = customer.as_ref().map(|(rid, _)| *rid);
        let mut keys = Vec::new();
        while let Some((rid, key)) = pending.take() {
            if upto.is_some_and(|u| rid > u) {
                pending = Some((rid, key));
                break;
            }
            if Some(rid) == upto {
                keys.push(key);
            } else if orphans.last() != Some(&rid) {
                orphans.push(rid);
            }
            pending = next_key(&mut stored)?;
        }
        let Some((_, c)) = customer else {
            break;
        };
        let (_, number, phone, _) = row_of(&c);
        if keys != digit_keys(&phone, &number) {
            stale.push(c.number);
        }
    }
    Ok((stale, orphans))
}
