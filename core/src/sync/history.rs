//! A customer's full history on demand: their bills from every store of the
//! tenant, read from the server a page at a time.
//!
//! Pulls bring a device its own store's bills only. When a cashier opens a
//! regular who also shops at other stores, the app asks for this instead.
//! The bills are returned, not kept: a bill can only change at its own
//! store (refunds and voids are that store's), and pulls never carry other
//! stores' bills here, so a kept copy would silently go stale while the
//! customer's metrics, the device's hash chain and its scope of sync stay
//! about this store alone. Offline, [`Store::customer_bills`] still lists
//! the bills this store holds.

use uuid::Uuid;

use super::client::{AsyncSyncClient, SyncClient, SyncObserver};
use super::error::SyncError;
use super::protocol::{SnapshotRecord, MAX_HISTORY_PAGE};
use crate::bills::Bill;
use crate::error::{Error, Result};
use crate::page::Page;
use crate::store::Store;

impl AsyncSyncClient {
    /// One page of the bills of `customer_id` from every store of the
    /// tenant, newest first, at most `limit` (capped at
    /// [`MAX_HISTORY_PAGE`]); pass the page's `next` as `cursor` for the
    /// following one. A customer merged away on this device is asked for as
    /// the customer it was merged into. The bills are not stored; their
    /// `version` is 0 to say so.
    pub async fn customer_bills(
        &self,
        store: &Store,
        customer_id: Uuid,
        cursor: Option<&str>,
        limit: u32,
        observer: &dyn SyncObserver,
    ) -> Result<Page<Bill>> {
        if limit == 0 {
            return Err(Error::invalid("limit", "must be at least 1"));
        }
        let customer = match store.read(|conn| crate::customers::resolve_live(conn, customer_id)) {
            Ok(live) => live,
            // Not here, or deleted here: the server still knows their bills.
            Err(Error::NotFound { .. }) => customer_id,
            Err(e) => return Err(e),
        };
        let page = self
            .transport
            .customer_bills(
                &customer.to_string(),
                cursor,
                limit.min(MAX_HISTORY_PAGE),
                observer,
            )
            .await?;
        let items = page
            .bills
            .into_iter()
            .map(bill_of)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page {
            items,
            next: page.next,
        })
    }
}

impl SyncClient {
    /// [`AsyncSyncClient::customer_bills`], blocking until the page is in.
    pub fn customer_bills(
        &self,
        store: &Store,
        customer_id: Uuid,
        cursor: Option<&str>,
        limit: u32,
        observer: &dyn SyncObserver,
    ) -> Result<Page<Bill>> {
        self.block_on(
            self.inner()
                .customer_bills(store, customer_id, cursor, limit, observer),
        )
    }
}

/// A bill as the server sent it.
fn bill_of(record: SnapshotRecord) -> Result<Bill> {
    let unreadable = || SyncError::Protocol("a history record is not a bill".into());
    if record.entity != crate::bills::ENTITY {
        return Err(unreadable().into());
    }
    super::incoming::decode_bill(&record.id, record.fields, 0).ok_or_else(|| unreadable().into())
}
