//! Checks the values of a change that arrives from elsewhere (a pushed
//! change on the server) against the same rules the store applies when a
//! cashier types them: every rule is the one in `customers::normalize`, never
//! a second copy. A value is valid when it is already in the canonical form
//! those rules produce.
//!
//! Fields this build does not know pass untouched: a newer app may send them.

use serde::Deserialize;
use serde_json::Value;

use crate::bills::{BillLine, BillStatus, Payment};
use crate::changes::{Change, Fields};
use crate::customers::normalize;
use crate::customers::Stage;
use crate::error::{Error, Result};

/// Region used to re-read a canonical phone: E.164 carries its own country
/// code, so any region reads it the same.
const ANY_REGION: phonenumber::country::Id = phonenumber::country::Id::IN;

fn string<'a>(field: &str, value: &'a Value) -> Result<&'a str> {
    value
        .as_str()
        .ok_or_else(|| Error::invalid(field, "must be a string"))
}

fn optional_int(field: &str, value: &Value) -> Result<()> {
    if value.is_null() || value.is_i64() {
        Ok(())
    } else {
        Err(Error::invalid(field, "must be an integer or null"))
    }
}

fn bounded(field: &str, text: &str, max: usize) -> Result<()> {
    if text.chars().count() > max {
        return Err(Error::invalid(field, "is too long"));
    }
    Ok(())
}

fn non_empty(field: &str, text: &str) -> Result<()> {
    if text.is_empty() {
        return Err(Error::invalid(field, "is empty"));
    }
    Ok(())
}

fn canonical(field: &str, ok: bool) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(field, "is not in canonical form"))
    }
}

/// Checks the customer fields of `change`.
pub fn customer_fields(change: &Change) -> Result<()> {
    check_customer(&change.fields)
}

fn check_customer(fields: &Fields) -> Result<()> {
    for (key, value) in fields {
        match key.as_str() {
            "name" => {
                let name = string(key, value)?;
                canonical(key, normalize::name(name)? == name)?;
            }
            "number" => {
                let number = string(key, value)?;
                if number.is_empty() || number.len() > 64 {
                    return Err(Error::invalid(key, "must be 1 to 64 bytes"));
                }
            }
            "phone" if !value.is_null() => {
                let phone = crate::customers::Phone::deserialize(value)
                    .map_err(|_| Error::invalid(key, "must be {raw, e164, shared}"))?;
                let again = normalize::phone(&phone.e164, ANY_REGION)?;
                canonical(key, again.e164 == phone.e164)?;
                if phone.raw.chars().count() > normalize::PHONE_MAX {
                    return Err(Error::invalid(key, "raw form is too long"));
                }
            }
            "email" if !value.is_null() => {
                let email = crate::customers::Email::deserialize(value)
                    .map_err(|_| Error::invalid(key, "must be {raw, canonical, shared}"))?;
                let (_, canonical_form) = normalize::email(&email.raw)?;
                canonical(key, canonical_form == email.canonical)?;
            }
            "address" => {
                let address = crate::customers::Address::deserialize(value)
                    .map_err(|_| Error::invalid(key, "must be an address"))?;
                for (part, text) in [
                    ("address.line1", &address.line1),
                    ("address.line2", &address.line2),
                    ("address.city", &address.city),
                    ("address.region", &address.region),
                    ("address.postal_code", &address.postal_code),
                    ("address.country", &address.country),
                ] {
                    let clean = normalize::text(part, text, normalize::ADDRESS_FIELD_MAX)?;
                    canonical(part, &clean == text)?;
                }
            }
            "stage" => {
                string(key, value)?.parse::<Stage>()?;
            }
            "tags" => {
                let tags = Vec::<String>::deserialize(value)
                    .map_err(|_| Error::invalid(key, "must be a list of strings"))?;
                canonical(key, normalize::tags(&tags)? == tags)?;
            }
            "notes" => bounded(key, string(key, value)?, normalize::NOTES_MAX)?,
            "birthday" if !value.is_null() => {
                chrono::NaiveDate::parse_from_str(string(key, value)?, "%Y-%m-%d")
                    .map_err(|_| Error::invalid(key, "must be YYYY-MM-DD"))?;
            }
            "created_at_ms" | "deleted_at_ms" | "erased_at_ms" => optional_int(key, value)?,
            _ => {}
        }
    }
    Ok(())
}

/// Bill fields holding integers (money in minor units, times, positions).
const BILL_INTEGERS: [&str; 14] = [
    "bill_discount",
    "subtotal",
    "discount_total",
    "tax_total",
    "total",
    "paid_total",
    "change_due",
    "refunded_total",
    "opened_at_ms",
    "closed_at_ms",
    "voided_at_ms",
    "chain_pos",
    "version",
    "seq",
];

/// Checks the bill fields of `change`: shapes and enumerations. The amounts
/// themselves were computed by till-core on the device and are kept as sent.
pub fn bill_fields(change: &Change) -> Result<()> {
    for (key, value) in &change.fields {
        match key.as_str() {
            "status" => {
                string(key, value)?.parse::<BillStatus>()?;
            }
            "number" | "store_id" | "device_id" | "currency" | "kind" | "price_mode" => {
                non_empty(key, string(key, value)?)?
            }
            "lines" => {
                Vec::<BillLine>::deserialize(value)
                    .map_err(|_| Error::invalid(key, "must be a list of bill lines"))?;
            }
            "payments" => {
                Vec::<Payment>::deserialize(value)
                    .map_err(|_| Error::invalid(key, "must be a list of payments"))?;
            }
            k if BILL_INTEGERS.contains(&k) => optional_int(key, value)?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    fn with(fields: Value) -> Change {
        Change {
            change_id: Uuid::now_v7(),
            entity: "customer".into(),
            entity_id: Uuid::now_v7().to_string(),
            op: "create".into(),
            fields: fields.as_object().cloned().unwrap_or_default(),
            before: Fields::new(),
            hlc: "000000000000001-0000000000-S1/T1".into(),
            device: "S1/T1".into(),
            staff: "s".into(),
            at_ms: 1,
        }
    }

    fn field_of(result: Result<()>) -> Option<String> {
        match result {
            Ok(()) => None,
            Err(Error::Validation { field, .. }) => Some(field),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn customer_values_must_be_what_the_store_itself_would_write() {
        let table = [
            (
                json!({"name": "Asha Rao", "tags": ["vip"], "stage": "new"}),
                None,
            ),
            (
                json!({"phone": {"raw": "98765 43210", "e164": "+919876543210", "shared": false}}),
                None,
            ),
            (
                json!({"email": {"raw": "A@Example.com", "canonical": "a@example.com", "shared": true}}),
                None,
            ),
            (
                json!({"phone": null, "email": null, "birthday": null}),
                None,
            ),
            (json!({"x_future_field": [1, 2, 3]}), None),
            (json!({"name": "  padded "}), Some("name")),
            (json!({"name": ""}), Some("name")),
            (
                json!({"phone": {"raw": "12", "e164": "+12", "shared": false}}),
                Some("phone"),
            ),
            (json!({"phone": "+919876543210"}), Some("phone")),
            (
                json!({"email": {"raw": "a@example.com", "canonical": "b@example.com", "shared": false}}),
                Some("email"),
            ),
            (json!({"tags": ["VIP"]}), Some("tags")),
            (json!({"stage": "royalty"}), Some("stage")),
            (json!({"deleted_at_ms": "yesterday"}), Some("deleted_at_ms")),
            (json!({"birthday": "12/01/1990"}), Some("birthday")),
        ];
        for (fields, expected) in table {
            let got = field_of(customer_fields(&with(fields.clone())));
            assert_eq!(got.as_deref(), expected, "{fields}");
        }
    }

    #[test]
    fn bill_values_have_the_model_shapes() {
        let table = [
            (
                json!({"status": "paid", "total": 100, "closed_at_ms": null}),
                None,
            ),
            (json!({"status": "done"}), Some("status")),
            (json!({"total": 1.5}), Some("total")),
            (json!({"lines": [{"line_no": 1}]}), Some("lines")),
            (json!({"store_id": ""}), Some("store_id")),
        ];
        for (fields, expected) in table {
            let got = field_of(bill_fields(&with(fields.clone())));
            assert_eq!(got.as_deref(), expected, "{fields}");
        }
    }

    #[test]
    fn changes_the_store_records_pass_the_checks_and_merge_cleanly() {
        use crate::{NewBill, NewCustomer, NewLine, Store, StoreOptions, Tender};
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Store::open(StoreOptions::new(dir.path().join("t.db"), "t", "S1", "T1")).expect("open");
        let mut new = NewCustomer::named("Asha Rao")
            .with_phone("98765 43210")
            .with_email("Asha@Example.com");
        new.tags = vec!["VIP".into()];
        let asha = store.create_customer(new).expect("customer");
        store
            .tag_customer(asha.id, &["Wholesale"], &["vip"])
            .expect("tag");
        store.delete_customer(asha.id).expect("delete");
        store.restore_customer(asha.id).expect("restore");
        let bill = store
            .sell(
                NewBill {
                    customer_id: Some(asha.id),
                    lines: vec![NewLine::item("TEA", "Tea", 2, 100).taxed("GST5", 500)],
                    ..NewBill::default()
                },
                &[Tender::cash(500)],
            )
            .expect("sell");
        store
            .refund(bill.id, &[], &[Tender::cash(200)])
            .expect("refund");
        for id in [asha.id.to_string(), bill.id.to_string()] {
            let history = store.history(&id, None, 100).expect("history");
            assert!(!history.items.is_empty());
            let mut state = crate::sync::conflict::RecordState::default();
            for change in history.items {
                let merged = match change.entity.as_str() {
                    "customer" => {
                        crate::sync::conflict::apply_customer(&mut state, &change, &change.hlc)
                    }
                    _ => crate::sync::conflict::apply_bill(&mut state, &change, &change.hlc),
                };
                assert!(
                    merged.is_ok(),
                    "{} {}: {merged:?}",
                    change.entity,
                    change.op
                );
                let checked = match change.entity.as_str() {
                    "customer" => customer_fields(&change),
                    _ => bill_fields(&change),
                };
                assert!(
                    checked.is_ok(),
                    "{} {}: {checked:?}",
                    change.entity,
                    change.op
                );
            }
        }
    }
}
