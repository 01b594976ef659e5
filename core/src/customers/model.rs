//! The customer record and the inputs that create and change it.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use rusqlite::Row;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;

/// Where a customer stands in their relationship with the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
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

impl Stage {
    /// Every stage, in lifecycle order.
    pub const ALL: [Stage; 6] = [
        Stage::Lead,
        Stage::New,
        Stage::Active,
        Stage::Loyal,
        Stage::AtRisk,
        Stage::Lapsed,
    ];

    /// The stored and wire name, e.g. `at_risk`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Lead => "lead",
            Stage::New => "new",
            Stage::Active => "active",
            Stage::Loyal => "loyal",
            Stage::AtRisk => "at_risk",
            Stage::Lapsed => "lapsed",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == s)
            .ok_or_else(|| Error::invalid("stage", "unknown lifecycle stage"))
    }
}

/// A postal address; every part optional (empty), each bounded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// Street and number.
    pub line1: String,
    /// Flat, floor, landmark.
    pub line2: String,
    /// City or town.
    pub city: String,
    /// State, province or county.
    pub region: String,
    /// Postal or PIN code.
    pub postal_code: String,
    /// Country (free text or ISO code).
    pub country: String,
}

impl Address {
    /// True when no part is filled in.
    pub fn is_empty(&self) -> bool {
        self == &Address::default()
    }
}

/// A phone number of a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phone {
    /// As typed.
    pub raw: String,
    /// Canonical E.164.
    pub e164: String,
    /// A shared (household, office) number: not an identity key, so it
    /// neither finds nor deduplicates customers.
    pub shared: bool,
}

/// An email address of a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    /// As typed.
    pub raw: String,
    /// Canonical form: trimmed, lower-cased.
    pub canonical: String,
    /// A shared mailbox: not an identity key.
    pub shared: bool,
}

/// A customer as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// UUIDv7 made on the device that created the customer.
    pub id: Uuid,
    /// Customer number: provisional and device-scoped until the server assigns one.
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
    /// Tags, a sorted set.
    pub tags: Vec<String>,
    /// Free-text notes.
    pub notes: String,
    /// Birthday, if given.
    pub birthday: Option<NaiveDate>,
    /// When created, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// When last changed, ms since the Unix epoch.
    pub updated_at_ms: i64,
    /// Optimistic-locking version; every change increments it.
    pub version: i64,
    /// Set when soft-deleted.
    pub deleted_at_ms: Option<i64>,
    /// Set when deduplication folded this customer into another.
    pub merged_into: Option<Uuid>,
    /// Set when personal data was erased on request.
    pub erased_at_ms: Option<i64>,
}

impl Customer {
    /// Neither deleted nor merged away.
    pub fn is_live(&self) -> bool {
        self.deleted_at_ms.is_none() && self.merged_into.is_none()
    }
}

/// The columns [`Customer::from_row`] reads, in order.
pub(crate) const COLUMNS: &str = "rid, id, number, name, phone_raw, phone_e164, phone_shared, \
     email_raw, email, email_shared, address_line1, address_line2, city, region, postal_code, \
     country, stage, tags, notes, birthday, created_at, updated_at, version, deleted_at, \
     merged_into, erased_at";

fn conversion(i: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

impl Customer {
    /// Reads a row selected with [`COLUMNS`]; returns it with its rowid.
    pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<(i64, Customer)> {
        let uuid = |i: usize| -> rusqlite::Result<Uuid> {
            let text: String = row.get(i)?;
            text.parse().map_err(|e| conversion(i, e))
        };
        let phone = match (
            row.get::<_, Option<String>>(4)?,
            row.get::<_, Option<String>>(5)?,
        ) {
            (Some(raw), Some(e164)) => Some(Phone {
                raw,
                e164,
                shared: row.get(6)?,
            }),
            _ => None,
        };
        let email = match (
            row.get::<_, Option<String>>(7)?,
            row.get::<_, Option<String>>(8)?,
        ) {
            (Some(raw), Some(canonical)) => Some(Email {
                raw,
                canonical,
                shared: row.get(9)?,
            }),
            _ => None,
        };
        let stage: String = row.get(16)?;
        let tags: String = row.get(17)?;
        let birthday: Option<String> = row.get(19)?;
        let merged_into: Option<String> = row.get(24)?;
        Ok((
            row.get(0)?,
            Customer {
                id: uuid(1)?,
                number: row.get(2)?,
                name: row.get(3)?,
                phone,
                email,
                address: Address {
                    line1: row.get(10)?,
                    line2: row.get(11)?,
                    city: row.get(12)?,
                    region: row.get(13)?,
                    postal_code: row.get(14)?,
                    country: row.get(15)?,
                },
                stage: stage.parse().map_err(|e| conversion(16, e))?,
                tags: serde_json::from_str(&tags).map_err(|e| conversion(17, e))?,
                notes: row.get(18)?,
                birthday: birthday
                    .map(|b| NaiveDate::parse_from_str(&b, "%Y-%m-%d"))
                    .transpose()
                    .map_err(|e| conversion(19, e))?,
                created_at_ms: row.get(20)?,
                updated_at_ms: row.get(21)?,
                version: row.get(22)?,
                deleted_at_ms: row.get(23)?,
                merged_into: merged_into
                    .map(|m| m.parse())
                    .transpose()
                    .map_err(|e| conversion(24, e))?,
                erased_at_ms: row.get(25)?,
            },
        ))
    }
}

/// What a cashier fills in to create a customer. Only the name is required.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewCustomer {
    /// Name, 1 to 100 characters.
    pub name: String,
    /// Phone in any common format.
    pub phone: Option<String>,
    /// The phone is shared (not an identity key).
    pub phone_shared: bool,
    /// Email address.
    pub email: Option<String>,
    /// The email is shared (not an identity key).
    pub email_shared: bool,
    /// Postal address.
    pub address: Address,
    /// Lifecycle stage; `new` when absent.
    pub stage: Option<Stage>,
    /// Tags.
    pub tags: Vec<String>,
    /// Notes.
    pub notes: String,
    /// Birthday.
    pub birthday: Option<NaiveDate>,
}

impl NewCustomer {
    /// A customer with just a name.
    pub fn named(name: &str) -> Self {
        NewCustomer {
            name: name.into(),
            ..NewCustomer::default()
        }
    }

    /// Adds a phone number.
    pub fn with_phone(mut self, phone: &str) -> Self {
        self.phone = Some(phone.into());
        self
    }

    /// Adds an email address.
    pub fn with_email(mut self, email: &str) -> Self {
        self.email = Some(email.into());
        self
    }
}

/// A change to a customer: `None` leaves a field as it is; for optional
/// fields `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerUpdate {
    /// New name.
    pub name: Option<String>,
    /// New phone, or `Some(None)` to remove it.
    pub phone: Option<Option<String>>,
    /// Mark the phone shared or not.
    pub phone_shared: Option<bool>,
    /// New email, or `Some(None)` to remove it.
    pub email: Option<Option<String>>,
    /// Mark the email shared or not.
    pub email_shared: Option<bool>,
    /// New address (replaces the whole address).
    pub address: Option<Address>,
    /// New lifecycle stage.
    pub stage: Option<Stage>,
    /// New tags (replaces the set).
    pub tags: Option<Vec<String>>,
    /// New notes.
    pub notes: Option<String>,
    /// New birthday, or `Some(None)` to remove it.
    pub birthday: Option<Option<NaiveDate>>,
}
