//! Erasure at the head office. A till erases a customer on request (see
//! `portability::erase`) and ships one `erase` change. Applying it, the
//! server clears that person's data from the rest of what it keeps, by the
//! rule the till's own change log follows ([`redact`]): their earlier log
//! entries, and the phone on their bills and in those bills' entries. So no
//! pull or bootstrap hands the data out again, to any till of any store.

use serde_json::Value;

use super::dedup::Ledger;
use crate::changes::Fields;
use crate::portability::erase::{redact, BILL_PERSONAL_FIELDS, PERSONAL_FIELDS};
use crate::sync::protocol::field;

/// Whether customer `values` are those of an erased customer.
pub fn is_erased(values: &Fields) -> bool {
    !field(values, "erased_at_ms").is_null()
}

/// Clears erased customer `id`'s personal data from the log and their bills.
pub fn scrub<L: Ledger>(ledger: &mut L, id: &str) -> Result<(), L::Error> {
    redact_entries(ledger, id, &PERSONAL_FIELDS)?;
    for mut bill in ledger.bills_of(id)? {
        redact_entries(ledger, &bill.id, &BILL_PERSONAL_FIELDS)?;
        if let Some(phone) = bill.state.values.get_mut("customer_phone") {
            if !phone.is_null() {
                *phone = Value::Null;
                ledger.restate_bill(&bill)?;
            }
        }
    }
    Ok(())
}

/// Redacts `keys` in every log entry of record `id`.
fn redact_entries<L: Ledger>(ledger: &mut L, id: &str, keys: &[&str]) -> Result<(), L::Error> {
    for (seq, mut change) in ledger.entries_of(id)? {
        if redact(&mut change.fields, &mut change.before, keys) {
            ledger.rewrite_entry(seq, &change)?;
        }
    }
    Ok(())
}
