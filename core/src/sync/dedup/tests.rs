//! The dedup rules pinned in tables, the engine run over an in-memory
//! ledger, and every arrival order of one scenario ending the same.

use std::collections::BTreeSet;
use std::convert::Infallible;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::portability::erase::{erased_value, ERASE_OP, PERSONAL_FIELDS};
use crate::sync::conflict::{self, TagClock};
use crate::sync::erasure;

fn obj(v: Value) -> Fields {
    v.as_object().cloned().unwrap_or_default()
}

fn stamp(wall: i64, node: &str) -> String {
    format!("{wall:015}-{:010}-{node}", 0)
}

/// A customer id that sorts as `n` does.
fn cid(n: u8) -> String {
    format!("00000000-0000-7000-8000-0000000000{n:02x}")
}

fn change(entity: &str, id: &str, op: &str, wall: i64, node: &str, fields: Value) -> Change {
    Change {
        change_id: Uuid::now_v7(),
        entity: entity.into(),
        entity_id: id.into(),
        op: op.into(),
        fields: obj(fields),
        before: Fields::new(),
        hlc: stamp(wall, node),
        device: node.into(),
        staff: "s".into(),
        at_ms: wall,
    }
}

fn phone(e164: &str, shared: bool) -> Value {
    json!({"raw": e164.trim_start_matches("+91"), "e164": e164, "shared": shared})
}

fn email(canonical: &str) -> Value {
    json!({"raw": canonical, "canonical": canonical, "shared": false})
}

/// The tenant's records in memory: the engine's ledger for tests.
#[derive(Debug, Default, Clone)]
struct Memory {
    customers: BTreeMap<String, RecordState>,
    bills: BTreeMap<String, (String, RecordState)>,
    aliases: BTreeSet<(IdentityKey, String)>,
    log: Vec<Change>,
    merges: Vec<MergeRecord>,
}

impl Ledger for Memory {
    type Error = Infallible;

    fn customer(&mut self, id: &str) -> Result<Option<RecordState>, Infallible> {
        Ok(self.customers.get(id).cloned())
    }

    fn merged_into_of(&mut self, id: &str) -> Result<Option<Option<String>>, Infallible> {
        Ok(self
            .customers
            .get(id)
            .map(|s| merged_into(&s.values).map(str::to_owned)))
    }

    fn key_holders(&mut self, key: &IdentityKey) -> Result<Vec<String>, Infallible> {
        let live = self
            .customers
            .iter()
            .filter(|(_, s)| is_live(&s.values) && identity_keys(&s.values).contains(key))
            .map(|(id, _)| id.clone());
        let aliased = self
            .aliases
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, id)| id.clone());
        Ok(live.chain(aliased).collect())
    }

    fn add_alias(&mut self, key: &IdentityKey, id: &str) -> Result<(), Infallible> {
        self.aliases.insert((key.clone(), id.to_owned()));
        Ok(())
    }

    fn aliases_of(&mut self, id: &str) -> Result<Vec<IdentityKey>, Infallible> {
        let customers = &self.customers;
        let held_by_id = |customer: &String| {
            customer == id
                || customers
                    .get(customer)
                    .is_some_and(|s| merged_into(&s.values) == Some(id))
        };
        Ok(self
            .aliases
            .iter()
            .filter(|(_, customer)| held_by_id(customer))
            .map(|(key, _)| key.clone())
            .collect())
    }

    fn merged_into(&mut self, id: &str) -> Result<Vec<String>, Infallible> {
        Ok(self
            .customers
            .iter()
            .filter(|(_, s)| merged_into(&s.values) == Some(id))
            .map(|(id, _)| id.clone())
            .collect())
    }

    fn bills_of(&mut self, id: &str) -> Result<Vec<StoredBill>, Infallible> {
        Ok(self
            .bills
            .iter()
            .filter(|(_, (_, s))| s.values.get("customer_id") == Some(&json!(id)))
            .map(|(bill, (store, state))| StoredBill {
                id: bill.clone(),
                store: store.clone(),
                state: state.clone(),
            })
            .collect())
    }

    fn append(&mut self, entry: &Entry) -> Result<i64, Infallible> {
        let id = entry.change.entity_id.clone();
        match entry.store.clone() {
            Some(store) => self.bills.insert(id, (store, entry.state.clone())),
            None => self
                .customers
                .insert(id, entry.state.clone())
                .map(|s| (String::new(), s)),
        };
        self.log.push(entry.change.clone());
        Ok(self.log.len() as i64)
    }

    fn record_merge(&mut self, record: &MergeRecord) -> Result<(), Infallible> {
        self.merges.push(record.clone());
        Ok(())
    }

    fn entries_of(&mut self, id: &str) -> Result<Vec<(i64, Change)>, Infallible> {
        Ok((1..)
            .zip(&self.log)
            .filter(|(_, c)| c.entity_id == id)
            .map(|(seq, c)| (seq, c.clone()))
            .collect())
    }

    fn rewrite_entry(&mut self, seq: i64, change: &Change) -> Result<(), Infallible> {
        self.log[seq as usize - 1] = change.clone();
        Ok(())
    }

    fn restate_bill(&mut self, bill: &StoredBill) -> Result<(), Infallible> {
        self.bills
            .insert(bill.id.clone(), (bill.store.clone(), bill.state.clone()));
        Ok(())
    }

    fn bills_moved_off(&mut self, _id: &str) -> Result<Vec<String>, Infallible> {
        // Bills here are final when pushed: none moves before payment.
        Ok(Vec::new())
    }

    fn merges_of(&mut self, id: &str) -> Result<Vec<MergeRecord>, Infallible> {
        Ok(self
            .merges
            .iter()
            .filter(|r| r.survivor == id || r.loser == id)
            .cloned()
            .collect())
    }

    fn rewrite_merge(&mut self, record: &MergeRecord) -> Result<(), Infallible> {
        for r in &mut self.merges {
            if r.tombstone_seq == record.tombstone_seq {
                *r = record.clone();
            }
        }
        Ok(())
    }

    fn drop_aliases(&mut self, id: &str) -> Result<(), Infallible> {
        self.aliases.retain(|(_, customer)| customer != id);
        Ok(())
    }
}

fn ok<T>(r: Result<T, Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

/// What the server does with one pushed change: redirect, resolve by
/// the conflict rules, log, then dedup a changed customer.
fn push(mem: &mut Memory, pushed: &Change) {
    let change = ok(redirect(mem, pushed)).into_owned();
    let id = change.entity_id.clone();
    let customer = change.entity == crate::customers::ENTITY;
    let (mut state, store) = if customer {
        (mem.customers.get(&id).cloned().unwrap_or_default(), None)
    } else {
        let (store, state) = mem.bills.get(&id).cloned().unwrap_or_default();
        (
            state,
            Some(if store.is_empty() { "S1".into() } else { store }),
        )
    };
    let resolved = if customer {
        conflict::apply_customer(&mut state, &change, &change.hlc)
    } else {
        conflict::apply_bill(&mut state, &change, &change.hlc)
    }
    .expect("change applies");
    let effective = Change {
        fields: resolved.fields,
        before: resolved.before,
        ..change
    };
    let was_erased = customer
        && mem
            .customers
            .get(&id)
            .is_some_and(|s| erasure::is_erased(&s.values));
    let entry = Entry {
        state,
        store,
        change: effective,
    };
    ok(mem.append(&entry));
    // As the server's backend does.
    if customer && !was_erased && erasure::is_erased(&entry.state.values) {
        ok(erasure::scrub(mem, &entry, 0));
    }
    ok(merge_cluster(mem, &entry, 0));
}

fn create(n: u8, wall: i64, fields: Value) -> Change {
    let mut values = obj(json!({
        "name": format!("C{n}"), "number": format!("S1-T{n}-C000001"),
        "created_at_ms": wall, "stage": "new", "tags": [],
    }));
    values.extend(obj(fields));
    change(
        "customer",
        &cid(n),
        "create",
        wall,
        &format!("S1/T{n}"),
        Value::Object(values),
    )
}

fn edit(n: u8, wall: i64, fields: Value, before: Value) -> Change {
    Change {
        before: obj(before),
        ..change(
            "customer",
            &cid(n),
            "update",
            wall,
            &format!("S1/T{n}"),
            fields,
        )
    }
}

fn sale(n: u8, bill: u8, wall: i64, store: &str) -> Change {
    change(
        "bill",
        &format!("b{bill}"),
        "sell",
        wall,
        &format!("{store}/T{n}"),
        json!({"customer_id": cid(n), "status": "paid", "total": 100 * i64::from(bill),
               "store_id": store}),
    )
}

/// The live customer each id ends at, the live customers' states, each
/// bill's customer, and the live customers each key leads to: everything
/// the order must not change.
type Outcome = (
    BTreeMap<String, Option<String>>,
    BTreeMap<String, RecordState>,
    BTreeMap<String, Value>,
    BTreeMap<IdentityKey, BTreeSet<String>>,
);

fn outcome(mem: &mut Memory) -> Outcome {
    let ids: Vec<String> = mem.customers.keys().cloned().collect();
    let ends = ids
        .iter()
        .map(|id| (id.clone(), ok(follow(mem, id))))
        .collect();
    let live = mem
        .customers
        .iter()
        .filter(|(_, s)| is_live(&s.values))
        .map(|(id, s)| (id.clone(), s.clone()))
        .collect();
    let bills = mem
        .bills
        .iter()
        .map(|(id, (_, s))| (id.clone(), field(&s.values, "customer_id").clone()))
        .collect();
    let keys: BTreeSet<IdentityKey> = mem
        .customers
        .values()
        .flat_map(|s| identity_keys(&s.values))
        .chain(mem.aliases.iter().map(|(k, _)| k.clone()))
        .collect();
    let mut leads = BTreeMap::new();
    for key in keys {
        let mut to = BTreeSet::new();
        for holder in ok(mem.key_holders(&key)) {
            to.extend(ok(follow(mem, &holder)));
        }
        leads.insert(key, to);
    }
    (ends, live, bills, leads)
}

/// The invariants after every push: no two live customers share a key,
/// every tombstone points at a live customer in one hop, every bill
/// names a live customer.
fn check_invariants(mem: &Memory) {
    let mut seen = BTreeSet::new();
    for (id, s) in &mem.customers {
        if is_live(&s.values) {
            for key in identity_keys(&s.values) {
                assert!(seen.insert(key.clone()), "{key:?} held twice");
            }
        } else if let Some(survivor) = merged_into(&s.values) {
            let end = &mem.customers[survivor];
            assert!(is_live(&end.values), "{id} points at a dead customer");
        }
    }
    for (bill, (_, s)) in &mem.bills {
        let owner = field(&s.values, "customer_id").as_str().unwrap_or_default();
        assert!(
            is_live(&mem.customers[owner].values),
            "{bill} names a customer that is not live"
        );
    }
}

/// The scenario, as streams of changes each pushed in its own order: A
/// and B share a phone, B and C an email (a chain), with edits of the
/// losers' other fields; D, F and G meet through an email and an alias; E
/// holds D's number as shared and stays apart; sales to most of them.
fn streams() -> Vec<Vec<Change>> {
    vec![
        vec![
            // A has the smallest id but writes last, so after A and B
            // merge A's email wins and C finds them by B's old email.
            create(
                1,
                300,
                json!({"phone": phone("+919876543210", false), "email": email("a@x.in"),
                       "notes": "from A", "tags": ["vip"]}),
            ),
            edit(1, 350, json!({"name": "A2"}), json!({"name": "C1"})),
            sale(1, 1, 360, "S1"),
        ],
        vec![
            create(
                2,
                110,
                json!({"phone": phone("+919876543210", false), "email": email("b@x.in"),
                       "tags": ["wholesale"]}),
            ),
            edit(2, 400, json!({"notes": "from B"}), json!({"notes": null})),
            sale(2, 2, 410, "S2"),
        ],
        vec![
            create(
                3,
                120,
                json!({"email": email("b@x.in"), "address": {"city": "Pune"}}),
            ),
            edit(3, 220, json!({"tags": ["staff"]}), json!({"tags": []})),
            sale(3, 3, 230, "S1"),
        ],
        vec![
            create(
                4,
                130,
                json!({"phone": phone("+919000000001", false), "email": email("d@x.in")}),
            ),
            sale(4, 4, 240, "S1"),
            // E holds D's number as a shared (household) phone.
            create(5, 140, json!({"phone": phone("+919000000001", true)})),
        ],
        // F shares D's email with a later phone: when they merge first, D's
        // own phone is replaced and stays D's only as an alias, by which G
        // (typed later with it) still finds D.
        vec![
            create(
                6,
                500,
                json!({"phone": phone("+919000000002", false), "email": email("d@x.in")}),
            ),
            sale(6, 5, 510, "S2"),
        ],
        vec![create(
            7,
            600,
            json!({"phone": phone("+919000000001", false)}),
        )],
    ]
}

/// Pushes the streams interleaved by `picks` (each pick chooses among
/// the streams with changes left), keeping each stream's own order.
fn run(picks: &[usize]) -> (Memory, Outcome) {
    let mut queues: Vec<std::collections::VecDeque<Change>> =
        streams().into_iter().map(Into::into).collect();
    let mut mem = Memory::default();
    let mut picks = picks.iter().copied().cycle();
    loop {
        let open: Vec<usize> = (0..queues.len())
            .filter(|i| !queues[*i].is_empty())
            .collect();
        if open.is_empty() {
            break;
        }
        let i = open[picks.next().unwrap_or(0) % open.len()];
        if let Some(c) = queues[i].pop_front() {
            push(&mut mem, &c);
            check_invariants(&mem);
        }
    }
    let out = outcome(&mut mem);
    (mem, out)
}

#[test]
fn the_survivor_is_the_first_created() {
    let table = [
        (vec![cid(3), cid(1), cid(2)], Some(cid(1))),
        (vec![cid(9)], Some(cid(9))),
        (vec![], None),
        // UUIDv7 order: the earlier millisecond first, whatever the text case.
        (
            vec![
                "0190A0B2-0000-7000-8000-000000000002".to_string(),
                "0190a0b1-ffff-7000-8000-000000000001".to_string(),
            ],
            Some("0190a0b1-ffff-7000-8000-000000000001".to_string()),
        ),
    ];
    for (ids, expected) in table {
        assert_eq!(
            survivor(ids.iter().map(String::as_str)).map(str::to_owned),
            expected,
            "{ids:?}"
        );
    }
}

#[test]
fn identity_keys_skip_shared_contacts() {
    let table = [
        (
            json!({"phone": phone("+911", false), "email": email("a@b.co")}),
            vec![
                IdentityKey::Phone("+911".into()),
                IdentityKey::Email("a@b.co".into()),
            ],
        ),
        (json!({"phone": phone("+911", true), "email": null}), vec![]),
        (
            json!({"email": {"raw": "a@b.co", "canonical": "a@b.co", "shared": true}}),
            vec![],
        ),
        (json!({"name": "x"}), vec![]),
    ];
    for (values, expected) in table {
        assert_eq!(identity_keys(&obj(values.clone())), expected, "{values}");
    }
    assert!(is_live(&obj(json!({"deleted_at_ms": null}))));
    assert!(!is_live(&obj(json!({"deleted_at_ms": 5}))));
    assert!(!is_live(&obj(json!({"merged_into": cid(1)}))));
}

/// A record state written field by field: (field, value, wall of its stamp).
fn state(fields: &[(&str, Value, i64)], tags: &[(&str, bool, i64)]) -> RecordState {
    let mut s = RecordState::default();
    for (k, v, wall) in fields {
        s.values.insert((*k).into(), v.clone());
        s.clocks.insert((*k).into(), stamp(*wall, "S1/T1"));
    }
    for (t, present, wall) in tags {
        s.tags.insert(
            (*t).into(),
            TagClock {
                present: *present,
                hlc: stamp(*wall, "S1/T1"),
            },
        );
    }
    if !tags.is_empty() {
        let now: Vec<Value> = s
            .tags
            .iter()
            .filter(|(_, c)| c.present)
            .map(|(t, _)| json!(t))
            .collect();
        s.values.insert("tags".into(), Value::Array(now));
    }
    s
}

#[test]
fn the_survivor_takes_the_union_field_by_field() {
    struct Case {
        name: &'static str,
        survivor: RecordState,
        loser: RecordState,
        expected: Value,
    }
    let cases = [
        Case {
            name: "a field only the loser holds is kept",
            survivor: state(&[("name", json!("Asha"), 10)], &[]),
            loser: state(&[("name", json!("A"), 5), ("notes", json!("n"), 5)], &[]),
            expected: json!({"name": "Asha", "notes": "n"}),
        },
        Case {
            name: "the later write wins, whichever record it was on",
            survivor: state(&[("name", json!("Asha"), 10)], &[]),
            loser: state(&[("name", json!("Asha Rao"), 20)], &[]),
            expected: json!({"name": "Asha Rao"}),
        },
        Case {
            name: "a later clear beats an earlier value",
            survivor: state(&[("email", email("a@x.in"), 10)], &[]),
            loser: state(&[("email", json!(null), 20)], &[]),
            expected: json!({"email": null}),
        },
        Case {
            name: "the survivor keeps its number and its liveness",
            survivor: state(
                &[
                    ("number", json!("S1-T1-C1"), 1),
                    ("deleted_at_ms", json!(null), 1),
                ],
                &[],
            ),
            loser: state(
                &[
                    ("number", json!("S1-T2-C9"), 9),
                    ("deleted_at_ms", json!(null), 9),
                    ("erased_at_ms", json!(null), 9),
                ],
                &[],
            ),
            expected: json!({"number": "S1-T1-C1", "deleted_at_ms": null}),
        },
        Case {
            name: "created_at_ms is the earliest",
            survivor: state(&[("created_at_ms", json!(50), 50)], &[]),
            loser: state(&[("created_at_ms", json!(40), 60)], &[]),
            expected: json!({"created_at_ms": 40}),
        },
        Case {
            name: "tags merge per tag by stamp",
            survivor: state(&[], &[("vip", true, 10), ("old", false, 30)]),
            loser: state(
                &[],
                &[("old", true, 20), ("staff", true, 5), ("vip", false, 5)],
            ),
            expected: json!({"tags": ["staff", "vip"]}),
        },
        Case {
            name: "a later removal on the loser removes",
            survivor: state(&[], &[("vip", true, 10)]),
            loser: state(&[], &[("vip", false, 20)]),
            expected: json!({"tags": []}),
        },
        Case {
            name: "unknown fields from newer apps are merged like any other",
            survivor: state(&[], &[]),
            loser: state(&[("x_tier", json!({"level": 2}), 3)], &[]),
            expected: json!({"x_tier": {"level": 2}}),
        },
    ];
    for case in cases {
        let merged = fold(&case.survivor, &case.loser);
        assert_eq!(Value::Object(merged.values), case.expected, "{}", case.name);
    }
}

#[test]
fn folding_losers_in_any_order_gives_the_same_survivor() {
    let s = state(
        &[("name", json!("S"), 10), ("created_at_ms", json!(10), 10)],
        &[("a", true, 10)],
    );
    let l1 = state(
        &[("name", json!("L1"), 30), ("notes", json!("1"), 11)],
        &[("a", false, 20), ("b", true, 5)],
    );
    let l2 = state(
        &[("notes", json!("2"), 12), ("created_at_ms", json!(5), 40)],
        &[("b", false, 6)],
    );
    let one = fold(&fold(&s, &l1), &l2);
    let two = fold(&fold(&s, &l2), &l1);
    let nested = fold(&s, &fold(&fold(&l1, &l2), &l2));
    assert_eq!(one, two);
    assert_eq!(one.values, nested.values);
    assert_eq!(
        Value::Object(one.values),
        json!({"name": "L1", "notes": "2", "created_at_ms": 5, "tags": []})
    );
}

#[test]
fn changes_naming_a_merged_away_customer_reach_the_survivor() {
    let mut mem = Memory::default();
    for c in [
        create(1, 10, json!({"phone": phone("+911", false)})),
        create(2, 20, json!({"phone": phone("+911", false)})),
    ] {
        push(&mut mem, &c);
    }
    let (a, b) = (cid(1), cid(2));
    let table = [
        (
            "an edit lands on the survivor",
            edit(2, 30, json!({"notes": "x"}), json!({})),
            a.as_str(),
            json!({"notes": "x"}),
        ),
        (
            "a delete of the loser is dropped",
            edit(
                2,
                30,
                json!({"deleted_at_ms": 30, "notes": "y"}),
                json!({"deleted_at_ms": null}),
            ),
            a.as_str(),
            json!({"notes": "y"}),
        ),
        (
            "a change of the survivor stays",
            edit(1, 30, json!({"deleted_at_ms": 30}), json!({})),
            a.as_str(),
            json!({"deleted_at_ms": 30}),
        ),
    ];
    for (name, c, target, fields) in table {
        let got = ok(redirect(&mut mem, &c));
        assert_eq!(got.entity_id, target, "{name}");
        assert_eq!(Value::Object(got.fields.clone()), fields, "{name}");
        assert_eq!(got.change_id, c.change_id, "{name}: same change");
    }
    let bill = ok(redirect(&mut mem, &sale(2, 1, 40, "S1"))).into_owned();
    assert_eq!(bill.fields["customer_id"], json!(a));
    let walk_in = change("bill", "b2", "sell", 40, "S1/T1", json!({"status": "paid"}));
    assert_eq!(*ok(redirect(&mut mem, &walk_in)), walk_in);
    let unknown = sale(9, 3, 40, "S1");
    assert_eq!(*ok(redirect(&mut mem, &unknown)), unknown);
    assert_eq!(ok(follow(&mut mem, &b)), Some(a));
}

#[test]
fn a_merge_is_logged_in_order_and_recorded_completely_enough_to_undo() {
    let mut mem = Memory::default();
    let x = create(3, 5, json!({"email": email("old@x.in")}));
    let b = create(
        2,
        20,
        json!({"phone": phone("+911", false), "email": email("old@x.in")}),
    );
    // X merges into B (B < X), then B's bills and tombstones meet A.
    push(&mut mem, &x);
    push(&mut mem, &b);
    for c in [sale(2, 1, 21, "S1"), sale(2, 2, 22, "S2")] {
        push(&mut mem, &c);
    }
    let before = mem.clone();
    let log_before = mem.log.len();
    assert_eq!(mem.merges.len(), 1, "X merged into B");
    let a = create(1, 30, json!({"phone": phone("+911", false), "notes": "n"}));
    push(&mut mem, &a);

    let entries: Vec<(String, String, &str)> = mem.log[log_before..]
        .iter()
        .map(|c| (c.op.clone(), c.entity_id.clone(), c.device.as_str()))
        .collect();
    let server = SERVER_DEVICE;
    assert_eq!(
        entries,
        vec![
            ("create".into(), cid(1), "S1/T1"),
            (MERGE_OP.into(), cid(2), server),
            (MERGE_OP.into(), cid(3), server),
            (MOVE_OP.into(), "b1".into(), server),
            (MOVE_OP.into(), "b2".into(), server),
            (ABSORB_OP.into(), cid(1), server),
        ]
    );
    let records = mem.merges[1..].to_vec();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (r.survivor.as_str(), r.loser.as_str()),
        (cid(1).as_str(), cid(2).as_str())
    );
    assert_eq!(r.bills, vec!["b1".to_string(), "b2".to_string()]);
    assert_eq!(r.repointed, vec![cid(3)]);
    assert_eq!(r.trigger, mem.log[log_before].change_id);
    assert_eq!(r.tombstone_seq, log_before as i64 + 2);
    assert_eq!(r.survivor_seq, log_before as i64 + 6);
    assert_eq!(r.loser_before, before.customers[&cid(2)]);
    // The absorb entry names the fields the survivor took.
    let absorb = &mem.log[log_before + 5];
    assert_eq!(
        absorb.fields.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["created_at_ms", "email"]
    );
    assert_eq!(absorb.before["email"], Value::Null);

    // Undo, from the record alone: every record is as it was before the
    // survivor was created, save the survivor itself.
    let mut undone = mem.clone();
    for r in records.iter().rev() {
        undone
            .customers
            .insert(r.survivor.clone(), r.survivor_before.clone());
        undone
            .customers
            .insert(r.loser.clone(), r.loser_before.clone());
        for bill in &r.bills {
            let (_, s) = undone.bills.get_mut(bill).expect("bill");
            s.values.insert("customer_id".into(), json!(r.loser));
        }
        for id in &r.repointed {
            let s = undone.customers.get_mut(id).expect("tombstone");
            s.values.insert("merged_into".into(), json!(r.loser));
        }
        for key in &r.aliases {
            undone.aliases.remove(&(key.clone(), r.survivor.clone()));
        }
    }
    let mut expected = before.customers.clone();
    expected.insert(cid(1), records[0].survivor_before.clone());
    assert_eq!(undone.customers, expected);
    assert_eq!(undone.bills, before.bills);
    assert_eq!(undone.aliases, before.aliases);
}

/// Erasing a survivor erases the same person's merged-away records too:
/// each by a server change of its own, stamped as the erasure; the log
/// entries of both, the merge's before-images and the aliases keep no
/// personal value; money and the merge's shape stay.
#[test]
fn erasing_a_survivor_erases_what_its_merges_kept() {
    let mut mem = Memory::default();
    let a = create(
        1,
        10,
        json!({"name": "Asha Rao", "phone": phone("+9198765", false),
               "email": email("asha@x.in"), "tags": ["vip"]}),
    );
    // The same email: merged; B's later phone leaves A's as an alias.
    let b = create(
        2,
        20,
        json!({"name": "Asha R", "phone": phone("+9155555", false),
               "email": email("asha@x.in"), "notes": "12 MG Road"}),
    );
    for c in [a, sale(2, 1, 15, "S1"), b] {
        push(&mut mem, &c);
    }
    assert_eq!(mem.merges.len(), 1);
    assert!(!mem.aliases.is_empty(), "{:?}", mem.aliases);
    let log_before = mem.log.len();
    let mut fields: Value = json!({"erased_at_ms": 30, "deleted_at_ms": 30});
    for key in PERSONAL_FIELDS {
        fields[key] = erased_value(key);
    }
    let erase = Change {
        op: ERASE_OP.into(),
        ..change("customer", &cid(1), ERASE_OP, 30, "S1/T1", fields)
    };
    push(&mut mem, &erase);

    let tombstone_erasure = mem.log[log_before..]
        .iter()
        .find(|c| c.entity_id == cid(2))
        .expect("the tombstone's own erasure");
    assert_eq!(
        (
            tombstone_erasure.op.as_str(),
            tombstone_erasure.device.as_str()
        ),
        (ERASE_OP, SERVER_DEVICE)
    );
    assert_eq!(tombstone_erasure.hlc, erase.hlc);
    let dead = &mem.customers[&cid(2)];
    assert_eq!(dead.values["erased_at_ms"], json!(30));
    assert_eq!(dead.values["merged_into"], json!(cid(1)));
    let kept = serde_json::to_string(&(&mem.log, &mem.customers, &mem.merges, &mem.aliases))
        .expect("json");
    for personal in ["Asha", "98765", "55555", "asha@x.in", "MG Road", "vip"] {
        assert!(!kept.contains(personal), "{personal} kept: {kept}");
    }
    assert!(mem.aliases.is_empty());
    assert_eq!(mem.merges[0].bills, vec!["b1".to_string()]);
    assert_eq!(mem.bills["b1"].1.values["total"], json!(100));
    assert_eq!(mem.bills["b1"].1.values["customer_id"], json!(cid(1)));
}

/// A customer holding a survivor's old phone (kept as its alias) while the
/// survivor is deleted joins it when the survivor is restored, as it does
/// when it arrives after the restore.
#[test]
fn a_restored_survivor_takes_in_the_holder_of_its_alias_in_either_order() {
    for restore_first in [true, false] {
        let mut mem = Memory::default();
        push(
            &mut mem,
            &create(
                1,
                10,
                json!({"phone": phone("+919000000001", false), "email": email("a@x.in")}),
            ),
        );
        // Same email, a later phone: merged into 1, whose old phone stays its alias.
        push(
            &mut mem,
            &create(
                2,
                20,
                json!({"phone": phone("+919000000002", false), "email": email("a@x.in")}),
            ),
        );
        push(
            &mut mem,
            &edit(
                1,
                30,
                json!({"deleted_at_ms": 30}),
                json!({"deleted_at_ms": null}),
            ),
        );
        let holder = create(3, 40, json!({"phone": phone("+919000000001", false)}));
        let restore = edit(
            1,
            50,
            json!({"deleted_at_ms": null}),
            json!({"deleted_at_ms": 30}),
        );
        let order = if restore_first {
            [&restore, &holder]
        } else {
            [&holder, &restore]
        };
        for c in order {
            push(&mut mem, c);
        }
        check_invariants(&mem);
        assert_eq!(
            ok(follow(&mut mem, &cid(3))),
            Some(cid(1)),
            "restore first: {restore_first}"
        );
    }
}

#[test]
fn the_scenario_merges_to_the_expected_customers() {
    let (mem, (ends, live, bills, leads)) = run(&[0]);
    let (a, d, e) = (cid(1), cid(4), cid(5));
    assert_eq!(
        live.keys().cloned().collect::<Vec<_>>(),
        vec![a.clone(), d.clone(), e.clone()]
    );
    for n in 1..=3 {
        assert_eq!(ends[&cid(n)], Some(a.clone()));
    }
    for n in [6, 7] {
        assert_eq!(ends[&cid(n)], Some(d.clone()));
    }
    assert_eq!(
        Value::Object(live[&d].values.clone()),
        json!({
            "name": "C7", "number": "S1-T4-C000001", "created_at_ms": 130, "stage": "new",
            "phone": phone("+919000000001", false), "email": email("d@x.in"), "tags": [],
        })
    );
    // D's phone was replaced by F's while G was still to come: an alias.
    assert!(mem
        .aliases
        .contains(&(IdentityKey::Phone("+919000000001".into()), d.clone())));
    let p3 = IdentityKey::Phone("+919000000002".into());
    assert_eq!(leads[&p3], BTreeSet::from([d.clone()]));
    let merged = Value::Object(live[&a].values.clone());
    assert_eq!(
        merged,
        json!({
            "name": "A2", "number": "S1-T1-C000001", "created_at_ms": 110, "stage": "new",
            "phone": phone("+919876543210", false), "email": email("a@x.in"),
            "notes": "from B", "tags": ["staff", "vip", "wholesale"],
            "address": {"city": "Pune"},
        })
    );
    assert_eq!(
        bills,
        BTreeMap::from([
            ("b1".to_string(), json!(a)),
            ("b2".to_string(), json!(a)),
            ("b3".to_string(), json!(a)),
            ("b4".to_string(), json!(d)),
            ("b5".to_string(), json!(d)),
        ])
    );
}

/// Every order of whole streams (6! = 720) ends the same.
#[test]
fn every_arrival_order_of_the_customers_ends_the_same() {
    let (_, reference) = run(&[0]);
    let lens: Vec<usize> = streams().iter().map(Vec::len).collect();
    let n = lens.len();
    let mut orders = 0;
    let mut check = |perm: &[usize]| {
        // Stream perm[0] to its end, then perm[1], ...: the pick of stream
        // s is its rank among the streams with changes left.
        let mut picks = Vec::new();
        let mut open: Vec<usize> = (0..n).collect();
        for &s in perm {
            let rank = open.iter().position(|o| *o == s).unwrap_or(0);
            picks.extend(std::iter::repeat_n(rank, lens[s]));
            open.retain(|o| *o != s);
        }
        let (_, got) = run(&picks);
        assert_eq!(got, reference, "order {perm:?}");
        orders += 1;
    };
    // Heap's algorithm, iteratively.
    let mut perm: Vec<usize> = (0..n).collect();
    let mut c = vec![0usize; n];
    check(&perm);
    let mut i = 0;
    while i < n {
        if c[i] < i {
            if i % 2 == 0 {
                perm.swap(0, i);
            } else {
                perm.swap(c[i], i);
            }
            check(&perm);
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
    assert_eq!(orders, (1..=n).product::<usize>());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any interleaving of the streams (creates, edits and sales mixed,
    /// each stream in its own order) ends the same.
    #[test]
    fn every_interleaving_ends_the_same(picks in prop::collection::vec(0usize..6, 15)) {
        let (_, reference) = run(&[0]);
        let (_, got) = run(&picks);
        prop_assert_eq!(got, reference);
    }
}
