//! Search at the till across the boundary: customers by phone fragments,
//! numbers, names with typos, sounds and emails; bills by number and by
//! customer. Every hit says which field matched and how.

use till_core as core;

use crate::bills::BillSummary;
use crate::convert::mirror_enum;
use crate::customers::Customer;
use crate::error::Result;
use crate::store::TillStore;

mirror_enum!(
    /// Which field of a customer a query matched.
    MatchField = core::MatchField {
        /// The name.
        Name,
        /// The phone number.
        Phone,
        /// The customer number.
        Number,
        /// The email address.
        Email,
        /// The notes.
        Notes,
    }
);

mirror_enum!(
    /// How a query term matched, best first.
    MatchKind = core::MatchKind {
        /// The whole word, number or address.
        Exact,
        /// The start of a word or number.
        Prefix,
        /// A stretch inside a phone or customer number.
        Partial,
        /// Within 1 edit (words of 4+ letters) or 2 (8+).
        Fuzzy,
        /// Sounds alike.
        Phonetic,
    }
);

/// One reason a customer was found.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Match {
    /// The field that matched.
    pub field: MatchField,
    /// How it matched.
    pub kind: MatchKind,
}

/// A customer found by a search.
#[derive(Debug, Clone, uniffi::Record)]
pub struct CustomerHit {
    /// The customer, as stored now.
    pub customer: Customer,
    /// How the query matched, best first.
    pub matched: Vec<Match>,
    /// Rank score: higher is better.
    pub score: u32,
}

/// Why a bill was found.
#[derive(Debug, Clone, uniffi::Enum)]
pub enum BillMatch {
    /// By its number: `Exact` for the whole number, `Partial` for trailing digits.
    Number {
        /// How the number matched.
        kind: MatchKind,
    },
    /// It is a bill of a customer the query found.
    Customer {
        /// The customer.
        customer_id: String,
        /// How the query matched the customer.
        matched: Vec<Match>,
    },
}

/// A bill found by a search.
#[derive(Debug, Clone, uniffi::Record)]
pub struct BillHit {
    /// The bill.
    pub bill: BillSummary,
    /// Why it was found.
    pub matched: BillMatch,
}

impl From<core::Match> for Match {
    fn from(m: core::Match) -> Self {
        Match {
            field: m.field.into(),
            kind: m.kind.into(),
        }
    }
}

fn matches(matched: Vec<core::Match>) -> Vec<Match> {
    matched.into_iter().map(Into::into).collect()
}

impl From<core::CustomerHit> for CustomerHit {
    fn from(h: core::CustomerHit) -> Self {
        CustomerHit {
            customer: h.customer.into(),
            matched: matches(h.matched),
            score: h.score,
        }
    }
}

impl From<core::BillHit> for BillHit {
    fn from(h: core::BillHit) -> Self {
        BillHit {
            bill: h.bill.into(),
            matched: match h.matched {
                core::BillMatch::Number(kind) => BillMatch::Number { kind: kind.into() },
                core::BillMatch::Customer {
                    customer_id,
                    matched,
                } => BillMatch::Customer {
                    customer_id: customer_id.to_string(),
                    matched: matches(matched),
                },
            },
        }
    }
}

#[uniffi::export]
impl TillStore {
    /// Customers matching what a cashier typed, best first, at most `limit`
    /// (capped at 50). Any text is a valid query.
    pub fn search_customers(&self, query: String, limit: u32) -> Result<Vec<CustomerHit>> {
        let hits = self.store.search_customers(&query, limit)?;
        Ok(hits.into_iter().map(Into::into).collect())
    }

    /// Bills by number (whole or trailing digits) or by customer.
    pub fn search_bills(&self, query: String, limit: u32) -> Result<Vec<BillHit>> {
        let hits = self.store.search_bills(&query, limit)?;
        Ok(hits.into_iter().map(Into::into).collect())
    }
}
