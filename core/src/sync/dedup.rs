//! Authoritative exact-key dedup (DESIGN section 7): the server merges two
//! live customers of a tenant that hold the same identity key, in the
//! transaction of the change that made them collide. The rules are written
//! once here, pure, and the engine that applies them runs over a [`Ledger`]
//! (the tenant's records inside one push transaction), so every storage
//! backend merges alike and tests run the same engine in memory.
//!
//! The rules:
//! - **Identity keys** are a customer's canonical phone (E.164) and
//!   canonical email, unless marked shared (a household number is not a
//!   person). Only live customers (neither deleted nor merged) are merged.
//! - **The cluster** of a changed live customer: every live customer that
//!   holds one of its keys, its aliases included, and onwards through
//!   theirs (A shares a phone with B, B an email with C: all three).
//! - **A merge never drops a key**: a key any of the merged customers held
//!   that the merged survivor no longer holds (the loser's, or the
//!   survivor's own phone replaced by the loser's later one) stays a key of
//!   the survivor, an *alias*. So a chain merges the same whichever link
//!   arrives last, and a customer typed later with the person's other
//!   number joins them.
//! - **The survivor** is the cluster's smallest id: UUIDv7 ids begin with
//!   their creation time, so it is the customer created first, and it
//!   depends on the set of customers only, never on arrival order.
//! - **The survivor takes the union** ([`fold`]): each field takes the value
//!   written last (by stamp) on any of the records, the conflict rule of
//!   DESIGN section 6 applied across records, so a field only one record
//!   ever held is kept; tags merge per tag by stamp (a set union that
//!   respects later removals). Exceptions: the survivor keeps its own
//!   customer number and its own `deleted_at_ms`, `erased_at_ms` and
//!   `merged_into` (all members are live); `created_at_ms` is the earliest.
//!   Folding is commutative and associative, so the survivor ends the same
//!   in any arrival order.
//! - **The loser becomes a tombstone**: its values as they were at the
//!   merge, plus `merged_into` naming the survivor. A tombstone already
//!   pointing at the loser is re-pointed at the survivor, so `merged_into`
//!   is always one hop.
//! - **Every bill of the loser moves to the survivor**, in every store.
//!   This is the one server-made change a final bill allows: the move
//!   renames the customer (the same person) and keeps the field's stamp, so
//!   later conflicts on the field resolve as if the bill had named the
//!   survivor from the start. Money, lines, payments and the hash chain
//!   (which does not cover the customer) are untouched; `customer_phone`,
//!   lookup only, keeps the phone the bill was sold under.
//! - **Changes that arrive for a merged-away customer are redirected**
//!   ([`redirect`]): its fields apply to the survivor by the usual last
//!   writer wins, except `deleted_at_ms`, which is dropped: deleting one of
//!   two duplicates is what the merge did, and it must not delete the person.
//!   An erasure keeps it: erasing either record erases the one person, who
//!   ends erased and deleted as when the survivor itself is erased.
//!   A bill naming a merged-away customer names the survivor instead.
//! - **A merge is logged like any change**: tombstone, re-pointed tombstones
//!   and moved bills, then the survivor's merged fields, each an effective
//!   change at its own server sequence. Its [`MergeRecord`] keeps the
//!   before-images of both customers, the moved bills, the re-pointed
//!   tombstones and the aliases added: enough to undo it.
//!
//! What "whatever order" covers: the same creates and edits, arriving in any
//! order, give the same survivors, the same survivor fields and the same
//! bills on each (`dedup/tests.rs` checks every order). Two kinds of edit
//! decide by what the server holds when they arrive, because an automatic
//! merge is never automatically undone: one that moves an identity key
//! (a customer whose phone changed before its duplicate arrived is not a
//! duplicate), and a delete (of a loser it is dropped; of a customer not yet
//! merged it takes that customer out of the cluster). A tombstone keeps the
//! loser as it was when merged; edits aimed at it later land on the survivor.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::conflict::RecordState;
use super::protocol::field;
use crate::changes::{Change, Fields};

/// The op of a loser's tombstone entry (and of a re-pointed tombstone).
pub const MERGE_OP: &str = "merge";
/// The op of the survivor's entry: the fields it took from the losers.
pub const ABSORB_OP: &str = "absorb";
/// The op of a bill's entry when a merge moves it to the survivor.
pub const MOVE_OP: &str = "move_customer";
/// The `device` of the changes a merge makes.
pub const SERVER_DEVICE: &str = "server";
/// The `staff` of the changes a merge makes.
pub const SERVER_STAFF: &str = "dedup";

/// Fields the survivor keeps as its own, whatever the losers hold.
const SURVIVOR_KEEPS: [&str; 4] = ["number", "deleted_at_ms", "erased_at_ms", "merged_into"];
/// Fields the merged customer takes from the earliest record.
const EARLIEST: [&str; 1] = ["created_at_ms"];
/// Longest `merged_into` chain followed: merges keep it one hop; the bound
/// only stops a cycle in damaged data.
const MAX_HOPS: usize = 16;

/// A key that says two customers are the same person.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKey {
    /// A canonical E.164 phone not marked shared.
    Phone(String),
    /// A canonical email not marked shared.
    Email(String),
}

/// The identity keys a customer's values hold (whether or not it is live).
pub fn identity_keys(values: &Fields) -> Vec<IdentityKey> {
    let key = |name: &str, canonical: &str| {
        values
            .get(name)
            .filter(|v| !v.get("shared").and_then(Value::as_bool).unwrap_or(false))
            .and_then(|v| v.get(canonical))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut keys = Vec::with_capacity(2);
    keys.extend(key("phone", "e164").map(IdentityKey::Phone));
    keys.extend(key("email", "canonical").map(IdentityKey::Email));
    keys
}

/// Whether a customer is live: neither deleted nor merged away.
pub fn is_live(values: &Fields) -> bool {
    field(values, "deleted_at_ms").is_null() && field(values, "merged_into").is_null()
}

/// The survivor a merged-away customer's values name.
pub fn merged_into(values: &Fields) -> Option<&str> {
    values.get("merged_into").and_then(Value::as_str)
}

/// The order of customer ids: by UUID (so by creation time), then by text.
fn id_order(a: &str, b: &str) -> Ordering {
    let uuid = |s: &str| s.parse::<Uuid>().unwrap_or(Uuid::max());
    uuid(a).cmp(&uuid(b)).then_with(|| a.cmp(b))
}

/// The survivor of a cluster: the smallest id, i.e. the customer created first.
pub fn survivor<'a>(ids: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    ids.into_iter().min_by(|a, b| id_order(a, b))
}

/// How a field's write ranks against another's: by stamp, then (for equal
/// stamps, which only damaged data has) by value, so the choice is total.
fn rank<'a>(state: &'a RecordState, key: &str) -> (Option<&'a str>, String) {
    (
        state.clocks.get(key).map(String::as_str),
        field(&state.values, key).to_string(),
    )
}

/// `survivor` after taking the union of `loser` (see the module docs).
pub fn fold(survivor: &RecordState, loser: &RecordState) -> RecordState {
    let mut out = survivor.clone();
    for (key, value) in &loser.values {
        let key = key.as_str();
        if key == "tags" || SURVIVOR_KEEPS.contains(&key) {
            continue;
        }
        let take = match out.values.get(key) {
            None => true,
            Some(mine) if EARLIEST.contains(&key) => {
                let earlier = (value.as_i64(), loser.clocks.get(key));
                let ours = (mine.as_i64(), out.clocks.get(key));
                // A missing time never counts as the earliest.
                match (earlier.0, ours.0) {
                    (Some(_), None) => true,
                    (Some(_), Some(_)) => earlier < ours,
                    _ => false,
                }
            }
            Some(_) => rank(loser, key) > rank(&out, key),
        };
        if take {
            out.values.insert(key.to_owned(), value.clone());
            match loser.clocks.get(key) {
                Some(clock) => out.clocks.insert(key.to_owned(), clock.clone()),
                None => out.clocks.remove(key),
            };
        }
    }
    if !loser.tags.is_empty() || loser.values.contains_key("tags") {
        for (tag, theirs) in &loser.tags {
            let later = out
                .tags
                .get(tag)
                .is_none_or(|ours| (&theirs.hlc, theirs.present) > (&ours.hlc, ours.present));
            if later {
                out.tags.insert(tag.clone(), theirs.clone());
            }
        }
        let present: Vec<Value> = out
            .tags
            .iter()
            .filter(|(_, c)| c.present)
            .map(|(t, _)| Value::String(t.clone()))
            .collect();
        out.values.insert("tags".into(), Value::Array(present));
    }
    out
}

/// The loser's tombstone: its values as they are, naming the survivor.
pub fn tombstone(loser: &RecordState, survivor: &str) -> RecordState {
    let mut out = loser.clone();
    out.values
        .insert("merged_into".into(), Value::String(survivor.to_owned()));
    out
}

/// A bill moved to the survivor: the customer renamed, its stamp kept.
pub fn move_bill(bill: &RecordState, survivor: &str) -> RecordState {
    let mut out = bill.clone();
    out.values
        .insert("customer_id".into(), Value::String(survivor.to_owned()));
    out
}

/// A change of a merged-away customer, aimed at its `survivor` instead:
/// every field but `deleted_at_ms`, unless it erases (see the module docs).
pub fn redirect_customer_change(change: &Change, survivor: &str) -> Change {
    let mut out = change.clone();
    out.entity_id = survivor.to_owned();
    if !super::erasure::is_erased(&change.fields) {
        out.fields.remove("deleted_at_ms");
        out.before.remove("deleted_at_ms");
    }
    out
}

/// A bill change naming a merged-away customer, naming its `survivor` instead.
pub fn redirect_bill_change(change: &Change, survivor: &str) -> Change {
    let mut out = change.clone();
    out.fields
        .insert("customer_id".into(), Value::String(survivor.to_owned()));
    out
}

/// A bill as the engine moves it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBill {
    /// The bill's id.
    pub id: String,
    /// Its store: who may see its entries.
    pub store: String,
    /// Its merge state.
    pub state: RecordState,
}

/// One write the engine makes: a record's new state and the effective
/// change to log for it at the next server sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The record's new merge state.
    pub state: RecordState,
    /// For a bill, its store; `None` for a customer (tenant-wide).
    pub store: Option<String>,
    /// The effective change: entity, id, fields touched and their values before.
    pub change: Change,
}

/// One customer folded into another: what undoing it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeRecord {
    /// The customer that lives on.
    pub survivor: String,
    /// The customer folded into it.
    pub loser: String,
    /// The survivor's merge state just before this loser was folded in.
    pub survivor_before: RecordState,
    /// The loser's merge state just before it became a tombstone.
    pub loser_before: RecordState,
    /// Bills moved from the loser to the survivor.
    pub bills: Vec<String>,
    /// Tombstones that pointed at the loser and now point at the survivor.
    pub repointed: Vec<String>,
    /// Keys the merged survivor no longer holds, kept as its aliases.
    pub aliases: Vec<IdentityKey>,
    /// The pushed change that made the customers collide.
    pub trigger: Uuid,
    /// The server sequence of the loser's tombstone entry.
    pub tombstone_seq: i64,
    /// The server sequence of the survivor's entry.
    pub survivor_seq: i64,
    /// When the server merged them, ms since the Unix epoch.
    pub at_ms: i64,
}

/// The tenant's records as the engine reads and writes them, inside the one
/// transaction of the push being applied. A backend implements it over its
/// tables; lookups see the engine's own earlier writes.
pub trait Ledger {
    /// What the backend fails with.
    type Error;
    /// The merge state of customer `id`, if the server has it.
    fn customer(&mut self, id: &str) -> Result<Option<RecordState>, Self::Error>;
    /// Whom customer `id` was merged into: `None` when the server does not
    /// have it, `Some(None)` when it was not merged. (Every change pushed
    /// asks, so a backend answers it without reading the whole state.)
    fn merged_into_of(&mut self, id: &str) -> Result<Option<Option<String>>, Self::Error>;
    /// Ids of the live customers whose values hold `key`, and of the
    /// customers `key` is an alias of.
    fn key_holders(&mut self, key: &IdentityKey) -> Result<Vec<String>, Self::Error>;
    /// Keeps `key` as an alias of customer `id`.
    fn add_alias(&mut self, key: &IdentityKey, id: &str) -> Result<(), Self::Error>;
    /// The keys kept as aliases of customer `id` and of the tombstones
    /// merged into it (an alias names the survivor it was added to, which
    /// may since have been merged into `id`).
    fn aliases_of(&mut self, id: &str) -> Result<Vec<IdentityKey>, Self::Error>;
    /// Ids of the tombstones whose `merged_into` is `id`.
    fn merged_into(&mut self, id: &str) -> Result<Vec<String>, Self::Error>;
    /// The bills of customer `id`, in every store.
    fn bills_of(&mut self, id: &str) -> Result<Vec<StoredBill>, Self::Error>;
    /// Ids of the bills moved off customer `id` before payment (to another
    /// customer or none), in every store: for erasure.
    fn bills_moved_off(&mut self, id: &str) -> Result<Vec<String>, Self::Error>;
    /// Stores `entry`'s record and logs its change at the next server
    /// sequence, which it returns.
    fn append(&mut self, entry: &Entry) -> Result<i64, Self::Error>;
    /// Keeps the record of one merge.
    fn record_merge(&mut self, record: &MergeRecord) -> Result<(), Self::Error>;
    /// The log entries of record `id`, with their sequences, oldest first.
    fn entries_of(&mut self, id: &str) -> Result<Vec<(i64, Change)>, Self::Error>;
    /// Replaces the entry at `seq`: the log's one rewrite, for erasure
    /// (see `erasure`). Its sequence, record and who made it stay.
    fn rewrite_entry(&mut self, seq: i64, change: &Change) -> Result<(), Self::Error>;
    /// Stores `bill`'s state as it is, logging nothing: for erasure, whose
    /// own change tells every till to clear the same values.
    fn restate_bill(&mut self, bill: &StoredBill) -> Result<(), Self::Error>;
    /// The records of the merges customer `id` took part in, as survivor
    /// or loser.
    fn merges_of(&mut self, id: &str) -> Result<Vec<MergeRecord>, Self::Error>;
    /// Replaces the record of the merge `record.tombstone_seq` names: for
    /// erasure.
    fn rewrite_merge(&mut self, record: &MergeRecord) -> Result<(), Self::Error>;
    /// Drops every alias of customer `id`: for erasure.
    fn drop_aliases(&mut self, id: &str) -> Result<(), Self::Error>;
}

/// The end of customer `id`'s `merged_into` chain (`id` itself when it was
/// not merged); `None` when the server does not have it.
pub fn follow<L: Ledger>(ledger: &mut L, id: &str) -> Result<Option<String>, L::Error> {
    let mut current = id.to_owned();
    for _ in 0..MAX_HOPS {
        match ledger.merged_into_of(&current)? {
            None => return Ok(None),
            Some(None) => return Ok(Some(current)),
            Some(Some(next)) => current = next,
        }
    }
    Ok(None)
}

/// `change` as the server applies it: aimed at the survivor when it changes
/// a merged-away customer, naming the survivor when it is a bill naming one.
/// Borrowed when nothing changes (nearly every push): copying each change,
/// a bill's lines included, was 6% of the server's writer thread (perf,
/// `cargo bench -p till-sync-server --bench sync -- --quick`, push phase).
pub fn redirect<'c, L: Ledger>(
    ledger: &mut L,
    change: &'c Change,
) -> Result<Cow<'c, Change>, L::Error> {
    let redirected = match change.entity.as_str() {
        crate::customers::ENTITY => match follow(ledger, &change.entity_id)? {
            Some(survivor) if survivor != change.entity_id => {
                Some(redirect_customer_change(change, &survivor))
            }
            _ => None,
        },
        crate::bills::ENTITY => match change.fields.get("customer_id").and_then(Value::as_str) {
            Some(named) => match follow(ledger, named)? {
                Some(survivor) if survivor != named => {
                    Some(redirect_bill_change(change, &survivor))
                }
                _ => None,
            },
            None => None,
        },
        _ => None,
    };
    Ok(redirected.map_or(Cow::Borrowed(change), Cow::Owned))
}

/// The live customers `start` must be merged with, `start` included, by id.
fn cluster<L: Ledger>(
    ledger: &mut L,
    start: &str,
    state: RecordState,
) -> Result<BTreeMap<String, RecordState>, L::Error> {
    let mut members = BTreeMap::from([(start.to_owned(), state)]);
    let mut queue = vec![start.to_owned()];
    while let Some(id) = queue.pop() {
        let mut keys = members
            .get(&id)
            .map(|s| identity_keys(&s.values))
            .unwrap_or_default();
        // Walked from the member's side too: a customer that took an alias
        // while its holder was not live (deleted, say) joins it when the
        // holder comes back, as it would have had it arrived afterwards.
        keys.extend(ledger.aliases_of(&id)?);
        for key in keys {
            for holder in ledger.key_holders(&key)? {
                if members.contains_key(&holder) {
                    continue;
                }
                let Some(live) = follow(ledger, &holder)? else {
                    continue;
                };
                if members.contains_key(&live) {
                    continue;
                }
                match ledger.customer(&live)? {
                    Some(state) if is_live(&state.values) => {
                        members.insert(live.clone(), state);
                        queue.push(live);
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(members)
}

/// A change the server makes as part of a merge (or an erasure) caused by
/// `trigger`.
pub(crate) fn server_change(
    trigger: &Change,
    entity: &str,
    id: &str,
    op: &str,
    fields: Fields,
    before: Fields,
    now_ms: i64,
) -> Change {
    Change {
        change_id: Uuid::now_v7(),
        entity: entity.to_owned(),
        entity_id: id.to_owned(),
        op: op.to_owned(),
        fields,
        before,
        // The merge happens at the stamp of the change that caused it, so a
        // device pulling it moves its clock past that change.
        hlc: trigger.hlc.clone(),
        device: SERVER_DEVICE.to_owned(),
        staff: SERVER_STAFF.to_owned(),
        at_ms: now_ms,
    }
}

/// The fields whose values differ from `before` to `after`, valued as in
/// `after` (`null` for a field `after` no longer has).
fn changed_fields(before: &Fields, after: &Fields) -> Fields {
    let mut changed: Fields = after
        .iter()
        .filter(|(k, v)| field(before, k) != *v)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for key in before.keys().filter(|k| !after.contains_key(*k)) {
        changed.insert(key.clone(), Value::Null);
    }
    changed
}

/// `before`'s values of the keys of `fields`.
fn before_of(fields: &Fields, before: &Fields) -> Fields {
    fields
        .keys()
        .map(|k| (k.clone(), field(before, k).clone()))
        .collect()
}

/// Merges the cluster of the customer `start` has just written (`start`'s
/// entry, already appended), if it has one: writes every entry through
/// `ledger` and returns the merges made (none when it shares no key).
pub fn merge_cluster<L: Ledger>(
    ledger: &mut L,
    start: &Entry,
    now_ms: i64,
) -> Result<Vec<MergeRecord>, L::Error> {
    let (trigger, state) = (&start.change, &start.state);
    // No early return for a customer without keys of its own: it may hold
    // aliases, and `cluster` asks for those.
    if trigger.entity != crate::customers::ENTITY || !is_live(&state.values) {
        return Ok(Vec::new());
    }
    let members = cluster(ledger, &trigger.entity_id, state.clone())?;
    let Some(survivor) = survivor(members.keys().map(String::as_str)).map(str::to_owned) else {
        return Ok(Vec::new());
    };
    let mut losers: Vec<(&String, &RecordState)> =
        members.iter().filter(|(id, _)| **id != survivor).collect();
    if losers.is_empty() {
        return Ok(Vec::new());
    }
    losers.sort_by(|a, b| id_order(a.0, b.0));
    let customer = crate::customers::ENTITY;
    let original = members[&survivor].clone();
    let mut merged = original.clone();
    let mut records = Vec::with_capacity(losers.len());
    for (loser, before) in losers {
        let dead = tombstone(before, &survivor);
        // Every entry setting `merged_into` carries the whole record: a
        // device whose copy differs (an edit the server redirected to the
        // survivor) takes the server's, so every tombstone ends the same.
        let fields = dead.values.clone();
        let previous = before_of(&fields, &before.values);
        let tombstone_seq = ledger.append(&Entry {
            change: server_change(trigger, customer, loser, MERGE_OP, fields, previous, now_ms),
            state: dead,
            store: None,
        })?;

        let mut repointed = Vec::new();
        for id in ledger.merged_into(loser)? {
            let Some(old) = ledger.customer(&id)? else {
                continue;
            };
            let state = tombstone(&old, &survivor);
            let fields = state.values.clone();
            let before = before_of(&fields, &old.values);
            ledger.append(&Entry {
                state,
                store: None,
                change: server_change(trigger, customer, &id, MERGE_OP, fields, before, now_ms),
            })?;
            repointed.push(id);
        }

        let mut bills = Vec::new();
        for bill in ledger.bills_of(loser)? {
            let fields = Fields::from_iter([("customer_id".into(), Value::from(survivor.clone()))]);
            let before = before_of(&fields, &bill.state.values);
            ledger.append(&Entry {
                state: move_bill(&bill.state, &survivor),
                store: Some(bill.store),
                change: server_change(
                    trigger,
                    crate::bills::ENTITY,
                    &bill.id,
                    MOVE_OP,
                    fields,
                    before,
                    now_ms,
                ),
            })?;
            bills.push(bill.id);
        }

        let folded = fold(&merged, before);
        let kept = identity_keys(&folded.values);
        let mut aliases: Vec<IdentityKey> = identity_keys(&merged.values)
            .into_iter()
            .chain(identity_keys(&before.values))
            .filter(|key| !kept.contains(key))
            .collect();
        aliases.sort();
        aliases.dedup();
        for key in &aliases {
            ledger.add_alias(key, &survivor)?;
        }
        records.push(MergeRecord {
            survivor: survivor.clone(),
            loser: loser.clone(),
            survivor_before: std::mem::replace(&mut merged, folded),
            loser_before: before.clone(),
            bills,
            repointed,
            aliases,
            trigger: trigger.change_id,
            tombstone_seq,
            survivor_seq: 0,
            at_ms: now_ms,
        });
    }

    // The survivor's entry: the fields it took from the losers.
    let fields = changed_fields(&original.values, &merged.values);
    let before = before_of(&fields, &original.values);
    let survivor_seq = ledger.append(&Entry {
        change: server_change(
            trigger, customer, &survivor, ABSORB_OP, fields, before, now_ms,
        ),
        state: merged,
        store: None,
    })?;
    for record in &mut records {
        record.survivor_seq = survivor_seq;
        ledger.record_merge(record)?;
    }
    Ok(records)
}

#[cfg(test)]
mod tests;
