//! Customers across the boundary: the records an app reads and fills in,
//! and the customer verbs of [`TillStore`] (create, find-or-create by phone,
//! read, update with the version read, tags, delete and restore, pages,
//! history, summary, export, erase, import).

use chrono::NaiveDate;
use till_core as core;

use crate::convert::{mirror_enum, page};
use crate::error::{parse_id, Result, TillError};
use crate::store::TillStore;

mirror_enum!(
    /// Where a customer stands in their relationship with the store.
    Stage = core::Stage {
        /// Known, has not bought yet.
        Lead,
        /// First purchases.
        New,
        /// Buys regularly.
        Active,
        /// A regular worth looking after.
        Loyal,
        /// Visits are thinning out.
        AtRisk,
        /// Has not come back for a long time.
        Lapsed,
    }
);

mirror_enum!(
    /// Sort orders of [`TillStore::list_customers`].
    CustomerOrder = core::CustomerOrder {
        /// By name, A to Z, case-insensitive.
        Name,
        /// Newest first.
        Newest,
        /// Most recently changed first.
        RecentlyUpdated,
    }
);

/// A customer's phone number.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Phone {
    /// As typed.
    pub raw: String,
    /// Canonical E.164, e.g. `+919876543210`.
    pub e164: String,
    /// A shared (household, office) number: not an identity key.
    pub shared: bool,
}

/// A customer's email address.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Email {
    /// As typed.
    pub raw: String,
    /// Trimmed and lower-cased.
    pub canonical: String,
    /// A shared mailbox: not an identity key.
    pub shared: bool,
}

/// A postal address; every part may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct Address {
    /// Street and number.
    #[uniffi(default)]
    pub line1: String,
    /// Flat, floor, landmark.
    #[uniffi(default)]
    pub line2: String,
    /// City or town.
    #[uniffi(default)]
    pub city: String,
    /// State, province or county.
    #[uniffi(default)]
    pub region: String,
    /// Postal or PIN code.
    #[uniffi(default)]
    pub postal_code: String,
    /// Country.
    #[uniffi(default)]
    pub country: String,
}

/// A customer as stored.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Customer {
    /// UUIDv7 made on the device that created the customer.
    pub id: String,
    /// Customer number; provisional and device-scoped until the server assigns one.
    pub number: String,
    /// Display name.
    pub name: String,
    /// Phone, if known.
    pub phone: Option<Phone>,
    /// Email, if known.
    pub email: Option<Email>,
    /// Postal address.
    pub address: Address,
    /// Lifecycle stage.
    pub stage: Stage,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Free-text notes.
    pub notes: String,
    /// Birthday as `YYYY-MM-DD`, if given.
    pub birthday: Option<String>,
    /// When created, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// When last changed, ms since the Unix epoch.
    pub updated_at_ms: i64,
    /// Pass to [`TillStore::update_customer`]; every change increments it.
    pub version: i64,
    /// Set when soft-deleted.
    pub deleted_at_ms: Option<i64>,
    /// Set when deduplication folded this customer into another: that one's id.
    pub merged_into: Option<String>,
    /// Set when personal data was erased on request.
    pub erased_at_ms: Option<i64>,
}

/// What a cashier fills in to create a customer; only the name is required.
#[derive(Debug, Clone, uniffi::Record)]
pub struct NewCustomer {
    /// Name, 1 to 100 characters.
    pub name: String,
    /// Phone in any common format.
    #[uniffi(default)]
    pub phone: Option<String>,
    /// The phone is shared (not an identity key).
    #[uniffi(default)]
    pub phone_shared: bool,
    /// Email address.
    #[uniffi(default)]
    pub email: Option<String>,
    /// The email is shared (not an identity key).
    #[uniffi(default)]
    pub email_shared: bool,
    /// Postal address.
    #[uniffi(default)]
    pub address: Option<Address>,
    /// Lifecycle stage; `New` when absent.
    #[uniffi(default)]
    pub stage: Option<Stage>,
    /// Tags.
    #[uniffi(default)]
    pub tags: Vec<String>,
    /// Notes.
    #[uniffi(default)]
    pub notes: String,
    /// Birthday as `YYYY-MM-DD`.
    #[uniffi(default)]
    pub birthday: Option<String>,
}

/// A change to a customer: an absent field stays as it is; `clear_*` removes
/// an optional field (setting and clearing one field at once is refused).
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct CustomerUpdate {
    /// New name.
    #[uniffi(default)]
    pub name: Option<String>,
    /// New phone.
    #[uniffi(default)]
    pub phone: Option<String>,
    /// Remove the phone.
    #[uniffi(default)]
    pub clear_phone: bool,
    /// Mark the phone shared or not.
    #[uniffi(default)]
    pub phone_shared: Option<bool>,
    /// New email.
    #[uniffi(default)]
    pub email: Option<String>,
    /// Remove the email.
    #[uniffi(default)]
    pub clear_email: bool,
    /// Mark the email shared or not.
    #[uniffi(default)]
    pub email_shared: Option<bool>,
    /// New address (replaces the whole address).
    #[uniffi(default)]
    pub address: Option<Address>,
    /// New lifecycle stage.
    #[uniffi(default)]
    pub stage: Option<Stage>,
    /// New tags (replaces the set).
    #[uniffi(default)]
    pub tags: Option<Vec<String>>,
    /// New notes.
    #[uniffi(default)]
    pub notes: Option<String>,
    /// New birthday as `YYYY-MM-DD`.
    #[uniffi(default)]
    pub birthday: Option<String>,
    /// Remove the birthday.
    #[uniffi(default)]
    pub clear_birthday: bool,
}

/// Filters and paging of [`TillStore::list_customers`].
#[derive(Debug, Clone, uniffi::Record)]
pub struct CustomerQuery {
    /// Only customers with this tag.
    #[uniffi(default)]
    pub tag: Option<String>,
    /// Only customers in this stage.
    #[uniffi(default)]
    pub stage: Option<Stage>,
    /// Only customers changed at or after this time (ms since the Unix epoch).
    #[uniffi(default)]
    pub updated_since_ms: Option<i64>,
    /// Include soft-deleted and merged customers.
    #[uniffi(default)]
    pub include_deleted: bool,
    /// Sort order; by name when absent.
    #[uniffi(default)]
    pub order: Option<CustomerOrder>,
    /// The `next` of the previous page.
    #[uniffi(default)]
    pub cursor: Option<String>,
    /// Page size, 1 to 200.
    #[uniffi(default = 50)]
    pub limit: u32,
}

/// A page of customers.
#[derive(Debug, Clone, uniffi::Record)]
pub struct CustomerPage {
    /// The customers, in the list's order.
    pub items: Vec<Customer>,
    /// Pass back as `cursor` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// What [`TillStore::find_or_create_by_phone`] returns.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FoundCustomer {
    /// The customer holding the phone.
    pub customer: Customer,
    /// True when the call created them.
    pub created: bool,
}

/// A customer's metrics.
#[derive(Debug, Clone, uniffi::Record)]
pub struct CustomerSummary {
    /// The customer (the survivor, if the id asked for was merged away).
    pub customer_id: String,
    /// Paid sales.
    pub visits: i64,
    /// Paid sales minus refunds, in minor units.
    pub total_spent: i64,
    /// `total_spent / visits`, rounded half away from zero; 0 without visits.
    pub average_bill: i64,
    /// First paid sale, ms since the Unix epoch.
    pub first_visit_ms: Option<i64>,
    /// Last paid sale, ms since the Unix epoch.
    pub last_visit_ms: Option<i64>,
    /// ISO 4217 code of the amounts.
    pub currency: String,
}

/// One recorded change of a record: who changed what, when, from where.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Change {
    /// The change's id (UUIDv7).
    pub change_id: String,
    /// `customer` or `bill`.
    pub entity: String,
    /// The record's id.
    pub entity_id: String,
    /// What was done: `create`, `update`, `delete`, `pay`, `refund`, ...
    pub op: String,
    /// New values of the fields that changed, as a JSON object.
    pub fields_json: String,
    /// Their previous values, as a JSON object (empty for a create).
    pub before_json: String,
    /// Hybrid logical clock stamp.
    pub hlc: String,
    /// The device that made it, as `store/device`.
    pub device: String,
    /// The staff member signed in.
    pub staff: String,
    /// Wall-clock time, ms since the Unix epoch.
    pub at_ms: i64,
}

/// A page of a record's history.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ChangePage {
    /// The changes, oldest first.
    pub items: Vec<Change>,
    /// Pass back as `cursor` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// What an import did.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ImportReport {
    /// Customers created.
    pub imported: u64,
    /// Rows refused; none of them was written.
    pub rejected: Vec<RejectedRow>,
}

/// A CSV row that was not imported.
#[derive(Debug, Clone, uniffi::Record)]
pub struct RejectedRow {
    /// 1-based line where the row starts; the header is line 1.
    pub line: u64,
    /// The column at fault, or `csv`.
    pub field: String,
    /// Why; never repeats the value.
    pub reason: String,
}

impl From<core::customers::Phone> for Phone {
    fn from(p: core::customers::Phone) -> Self {
        Phone {
            raw: p.raw,
            e164: p.e164,
            shared: p.shared,
        }
    }
}

impl From<core::customers::Email> for Email {
    fn from(e: core::customers::Email) -> Self {
        Email {
            raw: e.raw,
            canonical: e.canonical,
            shared: e.shared,
        }
    }
}

impl From<core::Address> for Address {
    fn from(a: core::Address) -> Self {
        Address {
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            region: a.region,
            postal_code: a.postal_code,
            country: a.country,
        }
    }
}

impl From<Address> for core::Address {
    fn from(a: Address) -> Self {
        core::Address {
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            region: a.region,
            postal_code: a.postal_code,
            country: a.country,
        }
    }
}

impl From<core::Customer> for Customer {
    fn from(c: core::Customer) -> Self {
        Customer {
            id: c.id.to_string(),
            number: c.number,
            name: c.name,
            phone: c.phone.map(Phone::from),
            email: c.email.map(Email::from),
            address: c.address.into(),
            stage: c.stage.into(),
            tags: c.tags,
            notes: c.notes,
            birthday: c.birthday.map(|d| d.format("%Y-%m-%d").to_string()),
            created_at_ms: c.created_at_ms,
            updated_at_ms: c.updated_at_ms,
            version: c.version,
            deleted_at_ms: c.deleted_at_ms,
            merged_into: c.merged_into.map(|id| id.to_string()),
            erased_at_ms: c.erased_at_ms,
        }
    }
}

impl From<core::CustomerSummary> for CustomerSummary {
    fn from(s: core::CustomerSummary) -> Self {
        CustomerSummary {
            customer_id: s.customer_id.to_string(),
            visits: s.visits,
            total_spent: s.total_spent,
            average_bill: s.average_bill,
            first_visit_ms: s.first_visit_ms,
            last_visit_ms: s.last_visit_ms,
            currency: s.currency,
        }
    }
}

impl From<core::Change> for Change {
    fn from(c: core::Change) -> Self {
        Change {
            change_id: c.change_id.to_string(),
            entity: c.entity,
            entity_id: c.entity_id,
            op: c.op,
            fields_json: serde_json::Value::Object(c.fields).to_string(),
            before_json: serde_json::Value::Object(c.before).to_string(),
            hlc: c.hlc,
            device: c.device,
            staff: c.staff,
            at_ms: c.at_ms,
        }
    }
}

impl From<core::RejectedRow> for RejectedRow {
    fn from(r: core::RejectedRow) -> Self {
        RejectedRow {
            line: r.line,
            field: r.field,
            reason: r.reason,
        }
    }
}

/// A `YYYY-MM-DD` birthday, or a validation error.
fn birthday(text: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| TillError::Validation {
        field: "birthday".into(),
        reason: "must be a date as YYYY-MM-DD".into(),
    })
}

/// An optional field's edit: keep (`None`), set or clear.
fn edit<T>(field: &str, value: Option<T>, clear: bool) -> Result<Option<Option<T>>> {
    match (value, clear) {
        (Some(_), true) => Err(TillError::Validation {
            field: field.into(),
            reason: "cannot be set and cleared at once".into(),
        }),
        (Some(v), false) => Ok(Some(Some(v))),
        (None, true) => Ok(Some(None)),
        (None, false) => Ok(None),
    }
}

impl TryFrom<NewCustomer> for core::NewCustomer {
    type Error = TillError;

    fn try_from(n: NewCustomer) -> Result<Self> {
        Ok(core::NewCustomer {
            name: n.name,
            phone: n.phone,
            phone_shared: n.phone_shared,
            email: n.email,
            email_shared: n.email_shared,
            address: n.address.map(Into::into).unwrap_or_default(),
            stage: n.stage.map(Into::into),
            tags: n.tags,
            notes: n.notes,
            birthday: n.birthday.as_deref().map(birthday).transpose()?,
        })
    }
}

impl TryFrom<CustomerUpdate> for core::CustomerUpdate {
    type Error = TillError;

    fn try_from(u: CustomerUpdate) -> Result<Self> {
        let born = u.birthday.as_deref().map(birthday).transpose()?;
        Ok(core::CustomerUpdate {
            name: u.name,
            phone: edit("phone", u.phone, u.clear_phone)?,
            phone_shared: u.phone_shared,
            email: edit("email", u.email, u.clear_email)?,
            email_shared: u.email_shared,
            address: u.address.map(Into::into),
            stage: u.stage.map(Into::into),
            tags: u.tags,
            notes: u.notes,
            birthday: edit("birthday", born, u.clear_birthday)?,
        })
    }
}

#[uniffi::export]
impl TillStore {
    /// Creates a customer; a live customer already holding the phone or
    /// email is a `Duplicate` error.
    pub fn create_customer(&self, customer: NewCustomer) -> Result<Customer> {
        Ok(self.store.create_customer(customer.try_into()?)?.into())
    }

    /// The live customer whose identity phone is `phone` (in any format),
    /// created with `name` when there is none. Atomic across threads.
    pub fn find_or_create_by_phone(&self, phone: String, name: String) -> Result<FoundCustomer> {
        let (customer, created) = self.store.find_or_create_by_phone(&phone, &name)?;
        Ok(FoundCustomer {
            customer: customer.into(),
            created,
        })
    }

    /// The live customer with `id`; a merged-away id yields the survivor.
    pub fn customer(&self, id: String) -> Result<Customer> {
        Ok(self.store.customer(parse_id("id", &id)?)?.into())
    }

    /// The live customer with customer number `number`.
    pub fn customer_by_number(&self, number: String) -> Result<Customer> {
        Ok(self.store.customer_by_number(&number)?.into())
    }

    /// Changes a live customer. `expected_version` is the version read; if
    /// it has moved on, nothing is written and a `Conflict` error carries
    /// the current version.
    pub fn update_customer(
        &self,
        id: String,
        expected_version: i64,
        update: CustomerUpdate,
    ) -> Result<Customer> {
        let id = parse_id("id", &id)?;
        Ok(self
            .store
            .update_customer(id, expected_version, update.try_into()?)?
            .into())
    }

    /// Adds and removes tags; no version check (tag edits commute).
    pub fn tag_customer(
        &self,
        id: String,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> Result<Customer> {
        let add: Vec<&str> = add.iter().map(String::as_str).collect();
        let remove: Vec<&str> = remove.iter().map(String::as_str).collect();
        Ok(self
            .store
            .tag_customer(parse_id("id", &id)?, &add, &remove)?
            .into())
    }

    /// Soft-deletes a live customer: hidden from every read, bills kept.
    pub fn delete_customer(&self, id: String) -> Result<Customer> {
        Ok(self.store.delete_customer(parse_id("id", &id)?)?.into())
    }

    /// Brings a soft-deleted customer back; `Duplicate` when another live
    /// customer took their phone or email meanwhile.
    pub fn restore_customer(&self, id: String) -> Result<Customer> {
        Ok(self.store.restore_customer(parse_id("id", &id)?)?.into())
    }

    /// A page of customers matching `query`.
    pub fn list_customers(&self, query: CustomerQuery) -> Result<CustomerPage> {
        let query = core::CustomerQuery {
            tag: query.tag,
            stage: query.stage.map(Into::into),
            updated_since_ms: query.updated_since_ms,
            include_deleted: query.include_deleted,
            order: query.order.map(Into::into).unwrap_or_default(),
            cursor: query.cursor,
            limit: query.limit,
        };
        let (items, next) = page(self.store.list_customers(&query)?);
        Ok(CustomerPage { items, next })
    }

    /// The changes of one record (customer or bill), oldest first.
    pub fn history(
        &self,
        entity_id: String,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<ChangePage> {
        let (items, next) = page(self.store.history(&entity_id, cursor.as_deref(), limit)?);
        Ok(ChangePage { items, next })
    }

    /// A customer's visits and spending.
    pub fn customer_summary(&self, customer_id: String) -> Result<CustomerSummary> {
        let id = parse_id("customer_id", &customer_id)?;
        Ok(self.store.customer_summary(id)?.into())
    }

    /// A customer with all their bills and history, as JSON (an access request).
    pub fn export_customer(&self, id: String) -> Result<String> {
        Ok(self.store.export_customer(parse_id("id", &id)?)?)
    }

    /// Anonymises a customer's personal data everywhere; bills keep their money.
    pub fn erase_customer(&self, id: String) -> Result<Customer> {
        Ok(self.store.erase_customer(parse_id("id", &id)?)?.into())
    }

    /// Imports customers from CSV text; bad rows are reported and write
    /// nothing, the good rows land in one transaction.
    pub fn import_customers_csv(&self, csv: String) -> Result<ImportReport> {
        let report = self.store.import_customers_csv(csv.as_bytes())?;
        Ok(ImportReport {
            imported: report.imported,
            rejected: report.rejected.into_iter().map(Into::into).collect(),
        })
    }
}
