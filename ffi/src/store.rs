//! The store object of the foreign API: one open store file, opened from a
//! [`TillConfig`]; its verbs live beside their records in `customers`,
//! `bills`, `search` and `sync`.
//!
//! Threads: a [`TillStore`] may be shared by and called from any thread.
//! till-core's `Store` is `Send + Sync` with one writer connection behind a
//! mutex and read connections beside it; no call here holds a lock of its
//! own across another call, so a sync waiting on the network holds nothing
//! a sale needs (only its short write transactions queue with the sale's).

use std::sync::Arc;
use std::time::Duration;

use till_core::{Store, StoreOptions, SyncConfig};

use crate::error::{Result, TillError};

/// What opening a store needs. Identity, region and currency are fixed when
/// the file is created: opening it later as another store is refused.
#[derive(Debug, Clone, uniffi::Record)]
pub struct TillConfig {
    /// The SQLite file; created with its folder when missing.
    pub database_path: String,
    /// The retail company, e.g. `acme-retail`.
    pub tenant: String,
    /// The store's code, e.g. `S01`; prefixes bill numbers.
    pub store_id: String,
    /// This device's code within its store, e.g. `T01`.
    pub device_id: String,
    /// ISO 3166 region for phones typed without a country code, e.g. `IN`.
    pub default_region: String,
    /// ISO 4217 code of the store's currency, e.g. `INR`.
    pub currency: String,
    /// Name printed at the top of receipts.
    pub store_name: String,
    /// The sync server's address, e.g. `https://sync.example.com`; needed only to sync.
    #[uniffi(default)]
    pub server_url: Option<String>,
    /// This device's token from enrollment; needed only to sync.
    #[uniffi(default)]
    pub device_token: Option<String>,
    /// Longest one sync request may take, in milliseconds (default 30,000).
    #[uniffi(default)]
    pub sync_request_timeout_ms: Option<u64>,
    /// Attempts per sync request before the sync gives up (default 5).
    #[uniffi(default)]
    pub sync_max_attempts: Option<u32>,
}

/// One open store: customers, bills, search and sync of one device.
#[derive(Debug, uniffi::Object)]
pub struct TillStore {
    pub(crate) store: Arc<Store>,
    sync: Option<SyncConfig>,
}

#[uniffi::export]
impl TillStore {
    /// Opens (creating or upgrading) the store file `config` describes.
    #[uniffi::constructor]
    pub fn open(config: TillConfig) -> Result<Arc<TillStore>> {
        let sync = sync_config(&config);
        let mut options = StoreOptions::new(
            config.database_path,
            &config.tenant,
            &config.store_id,
            &config.device_id,
        );
        options.default_region = config.default_region;
        options.currency = config.currency;
        options.store_name = config.store_name;
        Ok(Arc::new(TillStore {
            store: Arc::new(Store::open(options)?),
            sync,
        }))
    }

    /// Sets the staff member signed in at this till; later changes record them.
    pub fn set_staff(&self, staff_id: String) -> Result<()> {
        Ok(self.store.set_staff(&staff_id)?)
    }

    /// Checks the whole store: SQLite integrity, metrics against bills, the
    /// bill chain and numbers, orphan lines and payments, search rows.
    pub fn verify(&self) -> Result<VerifyReport> {
        let report = self.store.verify()?;
        Ok(VerifyReport {
            ok: report.is_ok(),
            customers_checked: report.customers_checked,
            bills_checked: report.bills_checked,
            problems: report.problems.iter().map(VerifyProblem::from).collect(),
        })
    }
}

impl TillStore {
    /// The sync settings, or a validation error naming what is missing.
    pub(crate) fn sync_config(&self) -> Result<&SyncConfig> {
        self.sync.as_ref().ok_or_else(|| TillError::Validation {
            field: "server_url".into(),
            reason: "no sync server configured".into(),
        })
    }
}

/// The sync settings of `config`: none without a server; an empty token is
/// refused when a sync starts, naming `sync_config`.
fn sync_config(config: &TillConfig) -> Option<SyncConfig> {
    let url = config.server_url.as_deref()?;
    let mut sync = SyncConfig::new(url, config.device_token.clone().unwrap_or_default());
    if let Some(ms) = config.sync_request_timeout_ms {
        sync.request_timeout = Duration::from_millis(ms);
    }
    if let Some(attempts) = config.sync_max_attempts {
        sync.max_attempts = attempts;
    }
    Some(sync)
}

/// What [`TillStore::verify`] found.
#[derive(Debug, Clone, uniffi::Record)]
pub struct VerifyReport {
    /// True when nothing is wrong.
    pub ok: bool,
    /// Customers checked.
    pub customers_checked: u64,
    /// Bills of the hash chain checked.
    pub bills_checked: u64,
    /// Every problem found.
    pub problems: Vec<VerifyProblem>,
}

/// One inconsistency [`TillStore::verify`] found.
#[derive(Debug, Clone, uniffi::Record)]
pub struct VerifyProblem {
    /// What is wrong, e.g. `metrics`, `chain`, `search_row_stale`.
    pub kind: String,
    /// The problem's details as JSON (ids and numbers, never personal data).
    pub detail_json: String,
}

impl From<&till_core::Problem> for VerifyProblem {
    fn from(problem: &till_core::Problem) -> Self {
        // Problems serialise as `{"kind": ..., details}`: the kind is split
        // out, so new kinds of problem need no change here.
        let mut value = serde_json::to_value(problem).unwrap_or_default();
        let kind = value
            .as_object_mut()
            .and_then(|o| o.remove("kind"))
            .and_then(|k| k.as_str().map(str::to_owned))
            .unwrap_or_default();
        VerifyProblem {
            kind,
            detail_json: value.to_string(),
        }
    }
}
