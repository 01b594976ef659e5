//! Listing customers: filters, stable sort orders, keyset pagination.

use rusqlite::named_params;
use rusqlite::types::Value as SqlValue;

use super::{Customer, Stage, COLUMNS};
use crate::error::{Error, Result};
use crate::page::{self, Page};
use crate::store::Store;

/// Sort orders of [`Store::list_customers`]; each ends on the row id, so ties are stable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CustomerOrder {
    /// By name, A to Z, case-insensitive.
    #[default]
    Name,
    /// Newest first.
    Newest,
    /// Most recently changed first.
    RecentlyUpdated,
}

/// Filters and paging of [`Store::list_customers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerQuery {
    /// Only customers with this tag.
    pub tag: Option<String>,
    /// Only customers in this stage.
    pub stage: Option<Stage>,
    /// Only customers changed at or after this time (ms since the Unix epoch).
    pub updated_since_ms: Option<i64>,
    /// Include soft-deleted and merged customers.
    pub include_deleted: bool,
    /// Sort order.
    pub order: CustomerOrder,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// Page size, capped at [`page::PAGE_CAP`].
    pub limit: u32,
}

impl Default for CustomerQuery {
    fn default() -> Self {
        CustomerQuery {
            tag: None,
            stage: None,
            updated_since_ms: None,
            include_deleted: false,
            order: CustomerOrder::Name,
            cursor: None,
            limit: 50,
        }
    }
}

/// A cursor: the order it belongs to, the sort key of the last row, its rowid.
type Cursor = (String, String, i64, i64);

impl CustomerOrder {
    fn tag(self) -> &'static str {
        match self {
            CustomerOrder::Name => "name",
            CustomerOrder::Newest => "newest",
            CustomerOrder::RecentlyUpdated => "updated",
        }
    }

    /// The keyset condition and ORDER BY of this order.
    fn sql(self) -> (&'static str, &'static str) {
        match self {
            CustomerOrder::Name => ("(name_key, rid) > (:k, :k_rid)", "name_key, rid"),
            CustomerOrder::Newest => (
                "(created_at, rid) < (:k, :k_rid)",
                "created_at DESC, rid DESC",
            ),
            CustomerOrder::RecentlyUpdated => (
                "(updated_at, rid) < (:k, :k_rid)",
                "updated_at DESC, rid DESC",
            ),
        }
    }
}

impl Store {
    /// A page of customers matching `query`, in its order.
    pub fn list_customers(&self, query: &CustomerQuery) -> Result<Page<Customer>> {
        let limit = page::limit(query.limit)?;
        let order = query.order;
        let start: Option<Cursor> = query
            .cursor
            .as_deref()
            .map(page::decode_cursor)
            .transpose()?;
        if let Some((tag, ..)) = &start {
            if tag != order.tag() {
                return Err(Error::invalid("cursor", "belongs to another sort order"));
            }
        }
        let tag = query
            .tag
            .as_deref()
            .map(|t| super::normalize::tags(&[t]))
            .transpose()?
            .and_then(|t| t.into_iter().next());
        let (keyset, order_by) = order.sql();
        let sql = format!(
            "SELECT {COLUMNS} FROM customers
             WHERE (:live_only = 0 OR (deleted_at IS NULL AND merged_into IS NULL))
               AND (:tag IS NULL OR rid IN (SELECT customer_rid FROM customer_tags WHERE tag = :tag))
               AND (:stage IS NULL OR stage = :stage)
               AND (:since IS NULL OR updated_at >= :since)
               AND (:k_rid IS NULL OR {keyset})
             ORDER BY {order_by} LIMIT :n"
        );
        // The sort key of the last row: text for names, a time otherwise.
        let (k, k_rid) = match &start {
            Some((_, text, num, rid)) => (
                Some(match order {
                    CustomerOrder::Name => SqlValue::Text(text.clone()),
                    _ => SqlValue::Integer(*num),
                }),
                Some(*rid),
            ),
            None => (None, None),
        };
        let rows = self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(
                    named_params! {
                        ":live_only": !query.include_deleted,
                        ":tag": tag,
                        ":stage": query.stage.map(Stage::as_str),
                        ":since": query.updated_since_ms,
                        ":k": k,
                        ":k_rid": k_rid,
                        ":n": limit + 1,
                    },
                    Customer::from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        let page = page::assemble(rows, limit, |(rid, c)| -> Cursor {
            match order {
                CustomerOrder::Name => (
                    order.tag().into(),
                    super::normalize::name_key(&c.name),
                    0,
                    *rid,
                ),
                CustomerOrder::Newest => (order.tag().into(), String::new(), c.created_at_ms, *rid),
                CustomerOrder::RecentlyUpdated => {
                    (order.tag().into(), String::new(), c.updated_at_ms, *rid)
                }
            }
        });
        Ok(Page {
            items: page.items.into_iter().map(|(_, c)| c).collect(),
            next: page.next,
        })
    }
}
