//! Customers: create, read, update with optimistic locking, soft delete and
//! restore, tags, atomic find-or-create by phone, keyset-paginated lists.
//!
//! Every write goes through [`put`], which writes the row, its tags, its
//! search row and its change record in the caller's transaction, so none of
//! them can exist without the others.

mod list;
mod model;
pub mod normalize;

use chrono::Datelike;
use rusqlite::{named_params, Connection, OptionalExtension};
use uuid::Uuid;

pub use list::{CustomerOrder, CustomerQuery};
pub(crate) use model::COLUMNS;
pub use model::{Address, Customer, CustomerUpdate, Email, NewCustomer, Phone, Stage};

use crate::error::{Entity, Error, Result};
use crate::search::fts;
use crate::store::{Store, Writer};

/// The `entity` of customer changes in the change log.
pub(crate) const ENTITY: &str = "customer";
/// Fields the change log leaves out: the id is the entity id, the rest is bookkeeping.
const DERIVED: &[&str] = &["id", "version", "updated_at_ms"];
/// The per-device sequence behind provisional customer numbers.
pub(crate) const SEQUENCE: &str = "customer_number";

/// Applies `update` to `current`, validating and normalising every field it sets.
pub(crate) fn apply(
    mut c: Customer,
    update: CustomerUpdate,
    region: phonenumber::country::Id,
) -> Result<Customer> {
    fn present(value: Option<String>) -> Option<String> {
        value.filter(|v| !v.trim().is_empty())
    }
    if let Some(name) = update.name {
        c.name = normalize::name(&name)?;
    }
    if let Some(phone) = update.phone {
        let old = c.phone.take();
        c.phone = present(phone)
            .map(|p| normalize::phone(&p, region))
            .transpose()?
            .map(|p| Phone {
                // The same number re-typed keeps its flag.
                shared: old.as_ref().is_some_and(|o| o.shared && o.e164 == p.e164),
                raw: p.raw,
                e164: p.e164,
            });
    }
    if let (Some(shared), Some(phone)) = (update.phone_shared, c.phone.as_mut()) {
        phone.shared = shared;
    }
    if let Some(email) = update.email {
        let old = c.email.take();
        c.email = present(email)
            .map(|e| normalize::email(&e))
            .transpose()?
            .map(|(raw, canonical)| Email {
                shared: old
                    .as_ref()
                    .is_some_and(|o| o.shared && o.canonical == canonical),
                raw,
                canonical,
            });
    }
    if let (Some(shared), Some(email)) = (update.email_shared, c.email.as_mut()) {
        email.shared = shared;
    }
    if let Some(a) = update.address {
        let max = normalize::ADDRESS_FIELD_MAX;
        c.address = Address {
            line1: normalize::text("address.line1", &a.line1, max)?,
            line2: normalize::text("address.line2", &a.line2, max)?,
            city: normalize::text("address.city", &a.city, max)?,
            region: normalize::text("address.region", &a.region, max)?,
            postal_code: normalize::text("address.postal_code", &a.postal_code, 20)?,
            country: normalize::text("address.country", &a.country, 60)?,
        };
    }
    if let Some(stage) = update.stage {
        c.stage = stage;
    }
    if let Some(tags) = update.tags {
        c.tags = normalize::tags(&tags)?;
    }
    if let Some(notes) = update.notes {
        // Notes keep their line breaks: only trim and bound them.
        let notes = notes.trim();
        if notes
            .chars()
            .any(|ch| ch.is_control() && !matches!(ch, '\n' | '\r' | '\t'))
        {
            return Err(Error::invalid("notes", "contains control characters"));
        }
        if notes.chars().count() > normalize::NOTES_MAX {
            return Err(Error::invalid(
                "notes",
                format!("longer than {} characters", normalize::NOTES_MAX),
            ));
        }
        c.notes = notes.to_owned();
    }
    if let Some(birthday) = update.birthday {
        if let Some(day) = birthday {
            if day > chrono::Utc::now().date_naive() {
                return Err(Error::invalid("birthday", "is in the future"));
            }
            if day.year() < 1900 {
                return Err(Error::invalid("birthday", "is before 1900"));
            }
        }
        c.birthday = birthday;
    }
    Ok(c)
}

impl From<NewCustomer> for CustomerUpdate {
    fn from(n: NewCustomer) -> Self {
        CustomerUpdate {
            name: Some(n.name),
            phone: Some(n.phone),
            phone_shared: Some(n.phone_shared),
            email: Some(n.email),
            email_shared: Some(n.email_shared),
            address: Some(n.address),
            stage: n.stage,
            tags: Some(n.tags),
            notes: Some(n.notes),
            birthday: Some(n.birthday),
        }
    }
}

/// The fields of a customer as the change log records them.
pub(crate) fn change_fields(c: &Customer) -> Result<serde_json::Value> {
    crate::changes::fields_of(c, DERIVED)
}

/// Gives every stored name the key [`normalize::name_key`] makes now.
pub(crate) fn rekey_names(conn: &Connection) -> Result<()> {
    let mut names = conn.prepare("SELECT rid, name FROM customers")?;
    let mut rekey = conn.prepare("UPDATE customers SET name_key = ?2 WHERE rid = ?1")?;
    for row in names.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
        let (rid, name) = row?;
        rekey.execute(rusqlite::params![rid, normalize::name_key(&name)])?;
    }
    Ok(())
}

/// Refuses an identity phone or email that a live customer other than `rid` holds.
pub(crate) fn check_unique(w: &Writer<'_>, c: &Customer, rid: Option<i64>) -> Result<()> {
    if !c.is_live() {
        return Ok(());
    }
    let checks = [
        (
            "phone",
            c.phone.as_ref().filter(|p| !p.shared).map(|p| &p.e164),
            "phone_e164 = ?1 AND phone_shared = 0",
        ),
        (
            "email",
            c.email.as_ref().filter(|e| !e.shared).map(|e| &e.canonical),
            "email = ?1 AND email_shared = 0",
        ),
    ];
    for (field, key, condition) in checks {
        let Some(key) = key else { continue };
        let holder: Option<(i64, String)> =
            w.tx.prepare_cached(&format!(
                "SELECT rid, id FROM customers
                 WHERE {condition} AND deleted_at IS NULL AND merged_into IS NULL"
            ))?
            .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((holder_rid, existing)) = holder {
            if Some(holder_rid) != rid {
                return Err(Error::Duplicate { field, existing });
            }
        }
    }
    Ok(())
}

/// Writes `after` (a new customer when `rid` is `None`), its tags, its search
/// row and a change record of what differs from `before`.
pub(crate) fn put(
    w: &mut Writer<'_>,
    rid: Option<i64>,
    before: Option<&Customer>,
    after: &Customer,
    op: &str,
) -> Result<i64> {
    check_unique(w, after, rid)?;
    let rid = write_row(w, rid, before, after)?;
    crate::changes::record_diff(w, ENTITY, &after.id.to_string(), op, before, after, DERIVED)?;
    Ok(rid)
}

/// Writes `after` (a new customer when `rid` is `None`), its tags and its
/// search row, recording no change: [`put`] for local edits, sync for pulled
/// ones (which it records as the server's).
pub(crate) fn write_row(
    w: &Writer<'_>,
    rid: Option<i64>,
    before: Option<&Customer>,
    after: &Customer,
) -> Result<i64> {
    let new = rid.is_none();
    // No `RETURNING rid`: it makes SQLite open a statement savepoint, and
    // FTS5 flushes its pending terms to a new segment at every savepoint
    // (a segment per customer of a pulled page, merged again and again).
    w.tx.prepare_cached(
        "INSERT INTO customers (rid, id, number, name, name_key, phone_raw, phone_e164,
             phone_shared, email_raw, email, email_shared, address_line1, address_line2, city,
             region, postal_code, country, stage, tags, notes, birthday, created_at,
             updated_at, version, deleted_at, merged_into, erased_at)
         VALUES (:rid, :id, :number, :name, :name_key, :phone_raw, :phone_e164,
             :phone_shared, :email_raw, :email, :email_shared, :line1, :line2, :city,
             :region, :postal_code, :country, :stage, :tags, :notes, :birthday, :created_at,
             :updated_at, :version, :deleted_at, :merged_into, :erased_at)
         ON CONFLICT (rid) DO UPDATE SET
             number = excluded.number, name = excluded.name, name_key = excluded.name_key,
             phone_raw = excluded.phone_raw, phone_e164 = excluded.phone_e164,
             phone_shared = excluded.phone_shared, email_raw = excluded.email_raw,
             email = excluded.email, email_shared = excluded.email_shared,
             address_line1 = excluded.address_line1, address_line2 = excluded.address_line2,
             city = excluded.city, region = excluded.region,
             postal_code = excluded.postal_code, country = excluded.country,
             stage = excluded.stage, tags = excluded.tags, notes = excluded.notes,
             birthday = excluded.birthday, updated_at = excluded.updated_at,
             version = excluded.version, deleted_at = excluded.deleted_at,
             merged_into = excluded.merged_into, erased_at = excluded.erased_at",
    )?
    .execute(named_params! {
        ":rid": rid,
        ":id": after.id.to_string(),
        ":number": after.number,
        ":name": after.name,
        ":name_key": normalize::name_key(&after.name),
        ":phone_raw": after.phone.as_ref().map(|p| &p.raw),
        ":phone_e164": after.phone.as_ref().map(|p| &p.e164),
        ":phone_shared": after.phone.as_ref().is_some_and(|p| p.shared),
        ":email_raw": after.email.as_ref().map(|e| &e.raw),
        ":email": after.email.as_ref().map(|e| &e.canonical),
        ":email_shared": after.email.as_ref().is_some_and(|e| e.shared),
        ":line1": after.address.line1,
        ":line2": after.address.line2,
        ":city": after.address.city,
        ":region": after.address.region,
        ":postal_code": after.address.postal_code,
        ":country": after.address.country,
        ":stage": after.stage.as_str(),
        ":tags": serde_json::to_string(&after.tags)?,
        ":notes": after.notes,
        ":birthday": after.birthday.map(|b| b.format("%Y-%m-%d").to_string()),
        ":created_at": after.created_at_ms,
        ":updated_at": after.updated_at_ms,
        ":version": after.version,
        ":deleted_at": after.deleted_at_ms,
        ":merged_into": after.merged_into.map(|m| m.to_string()),
        ":erased_at": after.erased_at_ms,
    })?;
    let rid = rid.unwrap_or_else(|| w.tx.last_insert_rowid());
    if before.map(|b| &b.tags) != Some(&after.tags) {
        if !new {
            w.tx.prepare_cached("DELETE FROM customer_tags WHERE customer_rid = ?1")?
                .execute([rid])?;
        }
        let mut insert =
            w.tx.prepare_cached("INSERT INTO customer_tags (tag, customer_rid) VALUES (?1, ?2)")?;
        for tag in &after.tags {
            insert.execute(rusqlite::params![tag, rid])?;
        }
    }
    fts::index_customer(&w.tx, rid, after, new, !w.defer_digits)?;
    Ok(rid)
}

/// Loads a customer by id inside a write transaction, whatever its state.
pub(crate) fn load(w: &Writer<'_>, id: Uuid) -> Result<(i64, Customer)> {
    w.tx.prepare_cached(&format!("SELECT {COLUMNS} FROM customers WHERE id = ?1"))?
        .query_row([id.to_string()], Customer::from_row)
        .optional()?
        .ok_or_else(|| Error::not_found(Entity::Customer, id))
}

/// The id of the live customer behind `id`, following merges to the
/// survivor; a deleted customer (or a broken merge chain) is not found.
pub(crate) fn resolve_live(conn: &rusqlite::Connection, id: Uuid) -> Result<Uuid> {
    let mut stmt =
        conn.prepare_cached("SELECT merged_into, deleted_at FROM customers WHERE id = ?1")?;
    let mut current = id;
    // Merges can chain (A into B, B into C); the bound guards against a cycle in bad data.
    for _ in 0..16 {
        let row: Option<(Option<String>, Option<i64>)> = stmt
            .query_row([current.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match row {
            Some((Some(survivor), _)) => {
                current = survivor
                    .parse()
                    .map_err(|_| Error::invalid("merged_into", "is not a customer id"))?;
            }
            Some((None, None)) => return Ok(current),
            _ => break,
        }
    }
    Err(Error::not_found(Entity::Customer, id))
}

/// Loads a live customer (following merges to the survivor) for writing.
pub(crate) fn load_live(w: &Writer<'_>, id: Uuid) -> Result<(i64, Customer)> {
    load(w, resolve_live(&w.tx, id)?)
}

impl Store {
    /// Creates a customer; a live customer already holding the phone or email
    /// is a [`Error::Duplicate`].
    pub fn create_customer(&self, new: NewCustomer) -> Result<Customer> {
        let region = self.settings.region;
        self.write(|w| {
            let customer = apply(blank(w)?, new.into(), region)?;
            put(w, None, None, &customer, "create")?;
            Ok(customer)
        })
    }

    /// Returns the live customer whose identity phone is `phone`, creating one
    /// named `name` when there is none. Atomic: concurrent calls with the same
    /// number in any format get the same customer. The flag tells whether it
    /// was created.
    pub fn find_or_create_by_phone(&self, phone: &str, name: &str) -> Result<(Customer, bool)> {
        let region = self.settings.region;
        let e164 = normalize::phone(phone, region)?.e164;
        self.write(|w| {
            let found =
                w.tx.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM customers
                     WHERE phone_e164 = ?1 AND phone_shared = 0
                       AND deleted_at IS NULL AND merged_into IS NULL"
                ))?
                .query_row([&e164], Customer::from_row)
                .optional()?;
            if let Some((_, customer)) = found {
                return Ok((customer, false));
            }
            let customer = apply(
                blank(w)?,
                NewCustomer::named(name).with_phone(phone).into(),
                region,
            )?;
            put(w, None, None, &customer, "create")?;
            Ok((customer, true))
        })
    }

    /// The live customer with `id`; a merged-away id yields its survivor.
    ///
    /// A merge is followed rather than reported: whoever holds an old id (a
    /// screen opened before the merge was pulled, a stored loyalty link)
    /// means the person, and the survivor is the person now. The caller
    /// tells a merge by the returned id differing from `id`;
    /// [`Store::customer_including_deleted`] shows the tombstone itself,
    /// with `merged_into`. A deleted customer is not found.
    pub fn customer(&self, id: Uuid) -> Result<Customer> {
        self.read(|conn| {
            let live = resolve_live(conn, id)?;
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM customers WHERE id = ?1"))?
                .query_row([live.to_string()], Customer::from_row)
                .map(|(_, c)| c)
                .map_err(Error::from)
        })
    }

    /// The customer with `id` as stored, deleted and merged ones included.
    pub fn customer_including_deleted(&self, id: Uuid) -> Result<Customer> {
        self.read(|conn| {
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM customers WHERE id = ?1"))?
                .query_row([id.to_string()], Customer::from_row)
                .optional()?
                .map(|(_, c)| c)
                .ok_or_else(|| Error::not_found(Entity::Customer, id))
        })
    }

    /// The live customer with customer number `number`.
    pub fn customer_by_number(&self, number: &str) -> Result<Customer> {
        let number = number.trim();
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM customers
                 WHERE number = ?1 AND deleted_at IS NULL AND merged_into IS NULL"
            ))?
            .query_row([number], Customer::from_row)
            .optional()?
            .map(|(_, c)| c)
            .ok_or_else(|| Error::not_found(Entity::Customer, number))
        })
    }

    /// Changes a live customer. `expected_version` is the version the caller
    /// read; if it has moved on, nothing is written and [`Error::Conflict`]
    /// carries the current version. A merged-away id is not found: the
    /// version the caller read was the merged-away record's, so it re-reads
    /// with [`Store::customer`], which leads to the survivor.
    pub fn update_customer(
        &self,
        id: Uuid,
        expected_version: i64,
        update: CustomerUpdate,
    ) -> Result<Customer> {
        let region = self.settings.region;
        self.write(|w| {
            let (rid, before) = load(w, id)?;
            if !before.is_live() {
                return Err(Error::not_found(Entity::Customer, id));
            }
            if before.version != expected_version {
                return Err(Error::Conflict {
                    entity: Entity::Customer,
                    id: id.to_string(),
                    expected: expected_version,
                    current: before.version,
                });
            }
            let mut after = apply(before.clone(), update, region)?;
            if after == before {
                return Ok(before);
            }
            after.version += 1;
            after.updated_at_ms = w.now_ms;
            put(w, Some(rid), Some(&before), &after, "update")?;
            Ok(after)
        })
    }

    /// Adds and removes tags without a version check: tags are a set, so
    /// concurrent tag edits commute.
    pub fn tag_customer(&self, id: Uuid, add: &[&str], remove: &[&str]) -> Result<Customer> {
        let add = normalize::tags(add)?;
        let remove = normalize::tags(remove)?;
        self.write(|w| {
            let (rid, before) = load_live(w, id)?;
            let mut tags: Vec<String> = before
                .tags
                .iter()
                .filter(|t| !remove.contains(t))
                .cloned()
                .chain(add.iter().cloned())
                .collect();
            tags = normalize::tags(&tags)?;
            if tags == before.tags {
                return Ok(before);
            }
            let mut after = before.clone();
            after.tags = tags;
            after.version += 1;
            after.updated_at_ms = w.now_ms;
            put(w, Some(rid), Some(&before), &after, "tag")?;
            Ok(after)
        })
    }

    /// Soft-deletes a live customer: hidden from every read path, bills kept.
    pub fn delete_customer(&self, id: Uuid) -> Result<Customer> {
        self.write(|w| {
            let (rid, before) = load(w, id)?;
            if !before.is_live() {
                return Err(Error::not_found(Entity::Customer, id));
            }
            let mut after = before.clone();
            after.deleted_at_ms = Some(w.now_ms);
            after.version += 1;
            after.updated_at_ms = w.now_ms;
            put(w, Some(rid), Some(&before), &after, "delete")?;
            Ok(after)
        })
    }

    /// Brings a soft-deleted customer back. Fails with [`Error::Duplicate`]
    /// when another live customer took their phone or email meanwhile.
    pub fn restore_customer(&self, id: Uuid) -> Result<Customer> {
        self.write(|w| {
            let (rid, before) = load(w, id)?;
            if before.erased_at_ms.is_some() {
                return Err(Error::InvalidState {
                    entity: Entity::Customer,
                    id: id.to_string(),
                    state: "erased".into(),
                    action: "restore",
                });
            }
            if before.deleted_at_ms.is_none() || before.merged_into.is_some() {
                return Err(Error::InvalidState {
                    entity: Entity::Customer,
                    id: id.to_string(),
                    state: if before.merged_into.is_some() {
                        "merged"
                    } else {
                        "live"
                    }
                    .into(),
                    action: "restore",
                });
            }
            let mut after = before.clone();
            after.deleted_at_ms = None;
            after.version += 1;
            after.updated_at_ms = w.now_ms;
            put(w, Some(rid), Some(&before), &after, "restore")?;
            Ok(after)
        })
    }
}

/// A new, empty customer with a fresh id and a provisional number.
pub(crate) fn blank(w: &Writer<'_>) -> Result<Customer> {
    let n = w.next_in_sequence(SEQUENCE)?;
    let identity = &w.settings.identity;
    Ok(Customer {
        id: Uuid::now_v7(),
        number: format!("{}-{}-C{n:06}", identity.store, identity.device),
        name: String::new(),
        phone: None,
        email: None,
        address: Address::default(),
        stage: Stage::New,
        tags: Vec::new(),
        notes: String::new(),
        birthday: None,
        created_at_ms: w.now_ms,
        updated_at_ms: w.now_ms,
        version: 1,
        deleted_at_ms: None,
        merged_into: None,
        erased_at_ms: None,
    })
}
