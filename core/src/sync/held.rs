//! Contacts held as shared while pulls catch up.
//!
//! A device applies the server's log on top of its own state, which may
//! already hold changes the server ordered later. So a pulled customer can
//! carry an identity phone or email that a local live customer holds too,
//! though the server never had both live at once: the server merged them in
//! entries still to come (a page can end between a create and its merge),
//! or this device's own customer reached the server after the pulled one
//! was deleted. The local unique index must stay whole meanwhile, so the
//! pulled customer keeps the contact marked shared, and this module
//! remembers it ([`hold`]). After every applied page, [`restore`] puts each
//! held contact back as the server holds it (not shared) once no other live
//! customer holds the key, or the customer is no longer live. Once a device
//! has pulled to the end and pushed everything, its live customers are the
//! server's, which never share a key: every hold is released.
//!
//! A contact the server writes again is the server's again ([`release`]);
//! one the cashier edits here after it was held is theirs, and its hold is
//! dropped untouched.

use rusqlite::named_params;

use super::incoming::not_found_as_none;
use crate::customers::{self, Customer};
use crate::error::{Error, Result};
use crate::store::Writer;

/// The contact fields a hold can cover.
pub(crate) const FIELDS: [&str; 2] = ["phone", "email"];

/// Holds `field` of customer `customer_id` as shared until [`restore`].
pub(crate) fn hold(w: &Writer<'_>, customer_id: &str, field: &str) -> Result<()> {
    w.tx.prepare_cached(
        "INSERT INTO held_contacts (customer_id, field, held_at)
         VALUES (:id, :field, (SELECT coalesce(max(seq), 0) FROM changes))
         ON CONFLICT (customer_id, field) DO UPDATE SET held_at = excluded.held_at",
    )?
    .execute(named_params! { ":id": customer_id, ":field": field })?;
    Ok(())
}

/// Drops the hold of `field` of `customer_id`: the server wrote it anew.
pub(crate) fn release(w: &Writer<'_>, customer_id: &str, field: &str) -> Result<()> {
    w.tx.prepare_cached("DELETE FROM held_contacts WHERE customer_id = ?1 AND field = ?2")?
        .execute([customer_id, field])?;
    Ok(())
}

/// `c` with `field` no longer shared; `None` when it has no such contact.
fn unshared(c: &Customer, field: &str) -> Option<Customer> {
    let mut after = c.clone();
    match field {
        "phone" => after.phone.as_mut()?.shared = false,
        _ => after.email.as_mut()?.shared = false,
    }
    Some(after)
}

/// Puts back every held contact whose key is free.
pub(crate) fn restore(w: &Writer<'_>) -> Result<()> {
    let held: Vec<(String, String, i64)> =
        w.tx.prepare_cached("SELECT customer_id, field, held_at FROM held_contacts")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
    for (id, field, held_at) in held {
        // A local edit of the contact since it was held is the cashier's word.
        let edited: bool =
            w.tx.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM changes
                 WHERE entity_id = :id AND seq > :held_at AND origin = 'local'
                   AND json_type(fields, '$.' || :field) IS NOT NULL)",
            )?
            .query_row(
                named_params! { ":id": id, ":held_at": held_at, ":field": field },
                |r| r.get(0),
            )?;
        let current = match id.parse() {
            Ok(uuid) if !edited => not_found_as_none(customers::load(w, uuid))?,
            _ => None,
        };
        let put_back = current.and_then(|(rid, c)| {
            unshared(&c, &field)
                .filter(|after| *after != c)
                .map(|after| (rid, c, after))
        });
        let Some((rid, before, after)) = put_back else {
            release(w, &id, &field)?;
            continue;
        };
        match customers::check_unique(w, &after, Some(rid)) {
            Ok(()) => {
                customers::write_row(w, Some(rid), Some(&before), &after)?;
                release(w, &id, &field)?;
            }
            // Still taken: held until a later page frees it.
            Err(Error::Duplicate { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::OptionalExtension;
    use serde_json::{json, Value};
    use uuid::Uuid;

    use crate::sync::incoming::{apply_page, prepare};
    use crate::sync::protocol::ServerChange;
    use crate::{Change, NewBill, NewCustomer, NewLine, Store, Tender};

    fn is_held(store: &Store, id: Uuid, field: &str) -> bool {
        store
            .read(|conn| {
                Ok(conn
                    .query_row(
                        "SELECT 1 FROM held_contacts WHERE customer_id = ?1 AND field = ?2",
                        [id.to_string(), field.to_owned()],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some())
            })
            .expect("read")
    }

    /// A pulled entry of customer `id` from another till.
    fn entry(seq: i64, id: Uuid, op: &str, fields: Value) -> ServerChange {
        ServerChange {
            server_seq: seq,
            change: Change {
                change_id: Uuid::now_v7(),
                entity: "customer".into(),
                entity_id: id.to_string(),
                op: op.into(),
                fields: fields.as_object().cloned().unwrap_or_default(),
                before: Default::default(),
                hlc: format!("{:015}-{:010}-S1/T9", crate::store::now_ms(), seq),
                device: "S1/T9".into(),
                staff: "s".into(),
                at_ms: 1,
            },
        }
    }

    fn create(seq: i64, id: Uuid, e164: &str) -> ServerChange {
        entry(
            seq,
            id,
            "create",
            json!({"number": format!("S1-T9-C{seq:06}"), "name": "Asha", "stage": "new",
                   "tags": [], "notes": "", "address": crate::Address::default(),
                   "created_at_ms": 1,
                   "phone": {"raw": e164, "e164": e164, "shared": false}}),
        )
    }

    /// Applies `page` as a till reads it off the wire.
    fn pull(store: &Store, page: &[ServerChange]) {
        let sent = serde_json::to_string(page).expect("JSON");
        let pulled = prepare(serde_json::from_str(&sent).expect("raw changes")).expect("decoded");
        store.write(|w| apply_page(w, pulled)).expect("apply");
    }

    fn phone_shared(store: &Store, id: Uuid) -> bool {
        let c = store.customer_including_deleted(id).expect("customer");
        c.phone.is_some_and(|p| p.shared)
    }

    #[test]
    fn a_pulled_contact_held_locally_is_put_back_when_the_merge_arrives() {
        let (_dir, store) = crate::store::scratch();
        let mine = store
            .create_customer(NewCustomer::named("Asha R").with_phone("98765 43210"))
            .expect("local");
        let sale = store
            .sell(
                NewBill {
                    customer_id: Some(mine.id),
                    lines: vec![NewLine::item("TEA", "Tea", 1, 300)],
                    ..NewBill::default()
                },
                &[Tender::cash(300)],
            )
            .expect("unpushed sale");
        let theirs = Uuid::now_v7();
        pull(&store, &[create(1, theirs, "+919876543210")]);
        assert!(phone_shared(&store, theirs), "held: the index stays whole");
        assert!(is_held(&store, theirs, "phone"));
        assert_eq!(store.customer(mine.id).expect("mine").id, mine.id);

        // The next page merges this till's customer into theirs.
        let mut tombstone = crate::customers::change_fields(&mine).expect("fields");
        tombstone["merged_into"] = json!(theirs);
        pull(&store, &[entry(2, mine.id, "merge", tombstone)]);
        assert!(
            !phone_shared(&store, theirs),
            "put back as the server holds it"
        );
        assert!(!is_held(&store, theirs, "phone"));
        assert_eq!(store.customer(mine.id).expect("follows").id, theirs);
        assert_eq!(
            store.bill(sale.id).expect("bill").customer_id,
            Some(theirs),
            "the unpushed sale moved to the survivor"
        );
        let summary = store.customer_summary(theirs).expect("metrics");
        assert_eq!((summary.visits, summary.total_spent), (1, 300));
        let hits: Vec<Uuid> = store
            .search_customers("43210", 10)
            .expect("search")
            .into_iter()
            .map(|h| h.customer.id)
            .collect();
        assert_eq!(hits, vec![theirs]);
        assert!(store.verify().expect("verify").is_ok());
    }

    #[test]
    fn a_held_contact_is_put_back_when_its_customer_is_deleted() {
        let (_dir, store) = crate::store::scratch();
        store
            .create_customer(NewCustomer::named("Ravi").with_phone("91234 56789"))
            .expect("local");
        let theirs = Uuid::now_v7();
        pull(&store, &[create(1, theirs, "+919123456789")]);
        assert!(phone_shared(&store, theirs));
        // The server deleted theirs before this till's customer arrived:
        // no merge follows, only the delete.
        pull(
            &store,
            &[entry(2, theirs, "delete", json!({"deleted_at_ms": 5}))],
        );
        assert!(!phone_shared(&store, theirs));
        assert!(!is_held(&store, theirs, "phone"));
    }

    #[test]
    fn a_contact_edited_here_after_it_was_held_stays_as_the_cashier_left_it() {
        let (_dir, store) = crate::store::scratch();
        let mine = store
            .create_customer(NewCustomer::named("Kiran").with_phone("90000 11111"))
            .expect("local");
        let theirs = Uuid::now_v7();
        pull(&store, &[create(1, theirs, "+919000011111")]);
        // The cashier confirms the number is a household one on theirs.
        let held = store.customer(theirs).expect("theirs");
        store
            .update_customer(
                theirs,
                held.version,
                crate::CustomerUpdate {
                    phone: Some(Some("90000 11111".into())),
                    phone_shared: Some(true),
                    ..Default::default()
                },
            )
            .expect("edit");
        store.delete_customer(mine.id).expect("free the key");
        pull(&store, &[]);
        assert!(phone_shared(&store, theirs), "the cashier's word stands");
        assert!(!is_held(&store, theirs, "phone"));
    }
}
