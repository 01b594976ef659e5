//! Finding a bill at the till: by its number, whole (`S01-T03-000042`) or
//! by the trailing digits a cashier reads off a receipt (`42`, `000042`,
//! `T03-000042`), and by its customer (anything `search_customers` takes).
//! Number lookups are index seeks (`bills_by_seq` indexes the sequence
//! behind the number); customer lookups reuse the customer search and each
//! customer's bill index.

use std::collections::HashSet;

use rusqlite::{named_params, Connection, OptionalExtension};
use uuid::Uuid;

use super::query::{Match, MatchKind, QUERY_MAX_CHARS};
use crate::bills::{Bill, BillSummary, COLUMNS};
use crate::error::Result;
use crate::store::Store;

/// Customers whose bills a bill search lists.
const CUSTOMERS_MAX: u32 = 5;

/// Why a bill was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillMatch {
    /// By its number: `Exact` for the whole number, `Partial` for trailing digits.
    Number(MatchKind),
    /// It is a bill of a customer the query found.
    Customer {
        /// The customer.
        customer_id: Uuid,
        /// How the query matched the customer.
        matched: Vec<Match>,
    },
}

/// A bill found by [`Store::search_bills`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillHit {
    /// The bill.
    pub bill: BillSummary,
    /// Why it was found.
    pub matched: BillMatch,
}

/// The query as a bill number: trimmed, upper case, no spaces.
fn number_text(query: &str) -> String {
    query
        .chars()
        .take(QUERY_MAX_CHARS)
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_uppercase()
}

/// The digits at the end of `text` as a sequence number, if any.
fn trailing_seq(text: &str) -> Option<i64> {
    let start = text
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_digit())
        .last()
        .map(|(i, _)| i)?;
    let digits = &text[start..];
    // Longer than any sequence a device can reach: not a bill number.
    if digits.len() > 12 {
        return None;
    }
    digits.parse().ok().filter(|&n| n > 0)
}

fn by_number(conn: &Connection, text: &str, limit: usize) -> Result<Vec<BillHit>> {
    let mut hits = Vec::new();
    // Every bill number ends in its sequence.
    let Some(seq) = trailing_seq(text) else {
        return Ok(hits);
    };
    let exact = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM bills WHERE seq = ?1 AND number = ?2"
        ))?
        .query_row(rusqlite::params![seq, text], Bill::from_row)
        .optional()?;
    if let Some((_, bill)) = exact {
        hits.push(BillHit {
            bill: bill.summary(),
            matched: BillMatch::Number(MatchKind::Exact),
        });
    }
    let only_digits = text.bytes().all(|b| b.is_ascii_digit());
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM bills WHERE seq = :seq ORDER BY opened_at DESC, rid DESC LIMIT :n"
    ))?;
    let rows = stmt
        .query_map(
            named_params! { ":seq": seq, ":n": (limit + 1) as i64 },
            Bill::from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (_, bill) in rows {
        // "T03-000042" must be the end of the number; bare digits are the sequence.
        if bill.number == text || !(only_digits || bill.number.ends_with(text)) {
            continue;
        }
        hits.push(BillHit {
            bill: bill.summary(),
            matched: BillMatch::Number(MatchKind::Partial),
        });
    }
    Ok(hits)
}

impl Store {
    /// Bills matching what a cashier typed, at most `limit` (capped at
    /// [`super::SEARCH_LIMIT_MAX`]): bills by number first (whole number,
    /// then trailing digits, newest first), then the bills of the customers
    /// the query finds, best customer first, newest bill first.
    pub fn search_bills(&self, query: &str, limit: u32) -> Result<Vec<BillHit>> {
        let limit = limit.clamp(1, super::SEARCH_LIMIT_MAX) as usize;
        let text = number_text(query);
        let mut hits = if text.is_empty() {
            Vec::new()
        } else {
            self.read(|conn| by_number(conn, &text, limit))?
        };
        if hits.len() < limit {
            let customers = self.search_customers(query, CUSTOMERS_MAX)?;
            self.read(|conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM bills WHERE customer_id = :customer
                     ORDER BY opened_at DESC, rid DESC LIMIT :n"
                ))?;
                for hit in customers {
                    let rows = stmt
                        .query_map(
                            named_params! {
                                ":customer": hit.customer.id.to_string(),
                                ":n": limit as i64,
                            },
                            Bill::from_row,
                        )?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    for (_, bill) in rows {
                        hits.push(BillHit {
                            bill: bill.summary(),
                            matched: BillMatch::Customer {
                                customer_id: hit.customer.id,
                                matched: hit.matched.clone(),
                            },
                        });
                    }
                }
                Ok(())
            })?;
        }
        let mut seen = HashSet::new();
        hits.retain(|h| seen.insert(h.bill.id));
        hits.truncate(limit);
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_digits_are_the_sequence() {
        assert_eq!(trailing_seq("S01-T03-000042"), Some(42));
        assert_eq!(trailing_seq("42"), Some(42));
        assert_eq!(trailing_seq("000"), None);
        assert_eq!(trailing_seq("ASHA"), None);
        assert_eq!(trailing_seq(&"9".repeat(40)), None);
        assert_eq!(number_text(" s01-t03 -000042 "), "S01-T03-000042");
    }
}
