//! The sync API end to end: a real server on 127.0.0.1 port 0 over a
//! temporary data directory, driven over HTTP the way a till drives it.
//! Changes come from real till-core stores where the case allows, and are
//! written by hand where a test needs a particular stamp or a forged field.

mod common;

use std::io::Write;
use std::sync::Arc;

use common::{change, customer_with_bill, outbox, scope, till, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use till_core::sync::protocol::{PushOutcome, MAX_PUSH_BATCH, PROTOCOL_HEADER};
use till_core::{CustomerUpdate, NewBill, NewLine, Tender};
use till_sync_server::auth;
use till_sync_server::storage::{Horizon, Storage, StorageError};
use till_sync_server::{now_ms, Limits};
use uuid::Uuid;

fn outcome(result: &Value) -> (&str, Option<&str>) {
    (
        result["outcome"].as_str().expect("outcome"),
        result["reason"].as_str(),
    )
}

fn ids_of_records(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect()
}

fn ids_of(changes: &[Value]) -> Vec<&str> {
    changes
        .iter()
        .map(|c| c["entity_id"].as_str().expect("entity_id"))
        .collect()
}

#[tokio::test]
async fn the_same_batch_pushed_twice_is_applied_once() {
    let server = Server::start().await;
    let t1 = server.enroll("t1", "S1", "T1").await;
    let t2 = server.enroll("t1", "S1", "T2").await;
    let till1 = till(server.dir.path(), "t1", "S1", "T1");
    let (customer, bill) = customer_with_bill(&till1, "Asha Rao", "98765 43210");
    let batch = outbox(&till1, &[customer.clone(), bill.clone()]);
    assert_eq!(batch.len(), 2);

    let first = server.push_ok(&t1, batch.clone()).await;
    let seqs: Vec<i64> = first
        .iter()
        .map(|r| {
            assert_eq!(outcome(r), ("accepted", None), "{r}");
            r["server_seq"].as_i64().expect("seq")
        })
        .collect();
    assert_eq!(seqs, vec![1, 2]);

    let again = server.push_ok(&t1, batch.clone()).await;
    for ((r, seq), sent) in again.iter().zip(&seqs).zip(&batch) {
        assert_eq!(outcome(r), ("duplicate", None), "{r}");
        assert_eq!(r["server_seq"].as_i64(), Some(*seq));
        assert_eq!(r["change_id"], sent["change_id"]);
    }

    let (pulled, cursor) = server.pull_all(&t2, 50).await;
    assert_eq!(ids_of(&pulled), vec![customer.as_str(), bill.as_str()]);
    assert_eq!(cursor, 2);
    assert_eq!(pulled[0]["fields"]["name"], json!("Asha Rao"));
    assert_eq!(pulled[0]["server_seq"], json!(1));
    server.stop().await;
}

#[tokio::test]
async fn a_rejected_change_never_blocks_the_ones_behind_it() {
    let server = Server::start().await;
    let t1 = server.enroll("t1", "S1", "T1").await;
    let id = Uuid::now_v7().to_string();
    let create = change("S1/T1", "customer", &id, json!({"name": "Asha"}), 1_000);
    let bad_phone = change(
        "S1/T1",
        "customer",
        &id,
        json!({"phone": {"raw": "12", "e164": "+12", "shared": false}}),
        1_001,
    );
    let rename = change("S1/T1", "customer", &id, json!({"name": "Asha Rao"}), 1_002);
    let batch = vec![
        create,
        bad_phone.clone(),
        json!({"change_id": "not-a-uuid", "entity": "customer"}),
        json!(42),
        rename,
    ];
    let results = server.push_ok(&t1, batch).await;
    let got: Vec<_> = results.iter().map(outcome).collect();
    assert_eq!(
        got,
        vec![
            ("accepted", None),
            ("rejected", Some("validation")),
            ("rejected", Some("malformed")),
            ("rejected", Some("malformed")),
            ("accepted", None),
        ]
    );
    assert_eq!(results[2]["change_id"], json!("not-a-uuid"));
    assert_eq!(results[3]["change_id"], json!(""));
    assert!(results[1]["message"]
        .as_str()
        .is_some_and(|m| m.contains("phone") && !m.contains("+12")));

    // The rejection is permanent: the same change gets the same answer.
    let again = server.push_ok(&t1, vec![bad_phone]).await;
    assert_eq!(outcome(&again[0]), ("rejected", Some("validation")));

    let (pulled, _) = server.pull_all(&t1, 10).await;
    assert_eq!(pulled.len(), 2);
    assert_eq!(pulled[1]["fields"]["name"], json!("Asha Rao"));
    assert!(pulled[1]["fields"].get("phone").is_none());
    server.stop().await;
}

#[tokio::test]
async fn pulls_page_through_exactly_what_the_device_may_see() {
    let server = Server::start().await;
    let s1t1 = server.enroll("t1", "S1", "T1").await;
    let s1t2 = server.enroll("t1", "S1", "T2").await;
    let s2t1 = server.enroll("t1", "S2", "T1").await;
    let other = server.enroll("t2", "S1", "T1").await;

    let till_s1 = till(server.dir.path(), "t1", "S1", "T1");
    let till_s2 = till(server.dir.path(), "t1", "S2", "T1");
    let till_other = till(server.dir.path(), "t2", "S1", "T1");
    let mut s1_ids = Vec::new();
    for (name, phone) in [
        ("A", "98765 43210"),
        ("B", "98765 43211"),
        ("C", "98765 43212"),
    ] {
        let (c, b) = customer_with_bill(&till_s1, name, phone);
        s1_ids.extend([c, b]);
    }
    let (s2_customer, s2_bill) = customer_with_bill(&till_s2, "D", "98765 43213");
    let (t2_customer, t2_bill) = customer_with_bill(&till_other, "E", "98765 43214");
    server.push_ok(&s1t1, outbox(&till_s1, &s1_ids)).await;
    server
        .push_ok(
            &s2t1,
            outbox(&till_s2, &[s2_customer.clone(), s2_bill.clone()]),
        )
        .await;
    server
        .push_ok(
            &other,
            outbox(&till_other, &[t2_customer.clone(), t2_bill.clone()]),
        )
        .await;

    // Store S1: every t1 customer, S1's bills, nothing of S2's bills or of t2.
    let (seen, cursor) = server.pull_all(&s1t2, 2).await;
    let mut expected: Vec<&str> = s1_ids.iter().map(String::as_str).collect();
    expected.push(&s2_customer);
    assert_eq!(ids_of(&seen), expected);
    assert_eq!(cursor, 8, "the cursor passes the invisible bill too");

    // Store S2: the customers, and its own bill only.
    let (seen, _) = server.pull_all(&s2t1, 3).await;
    let ids = ids_of(&seen);
    assert_eq!(ids.len(), 5);
    assert!(ids.contains(&s2_bill.as_str()));
    for (i, id) in s1_ids.iter().enumerate() {
        assert_eq!(ids.contains(&id.as_str()), i % 2 == 0, "customers only");
    }

    // Tenant t2 sees its own log alone, numbered from 1.
    let (seen, cursor) = server.pull_all(&other, 100).await;
    assert_eq!(ids_of(&seen), vec![t2_customer.as_str(), t2_bill.as_str()]);
    assert_eq!(cursor, 2);

    // An empty page at the head keeps the cursor there.
    let (status, page) = server.pull(&s1t2, "cursor=8").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page, json!({"changes": [], "cursor": 8, "has_more": false}));
    server.stop().await;
}

#[tokio::test]
async fn conflicting_writes_resolve_by_clock_whatever_the_arrival_order() {
    let server = Server::start().await;
    let t1 = server.enroll("t1", "S1", "T1").await;
    let t2 = server.enroll("t1", "S1", "T2").await;
    let id = Uuid::now_v7().to_string();
    let now = now_ms();
    server
        .push_ok(
            &t1,
            vec![change(
                "S1/T1",
                "customer",
                &id,
                json!({"name": "Asha", "notes": "", "tags": ["vip"]}),
                now - 1_000,
            )],
        )
        .await;
    // T2's later rename arrives first; T1's earlier rename and tag edit after.
    let mut later = change(
        "S1/T2",
        "customer",
        &id,
        json!({"name": "Asha R"}),
        now - 100,
    );
    later["before"] = json!({"name": "Asha"});
    server.push_ok(&t2, vec![later]).await;
    let mut earlier = change(
        "S1/T1",
        "customer",
        &id,
        json!({"name": "Asha Rao", "notes": "likes tea", "tags": ["vip", "wholesale"]}),
        now - 500,
    );
    earlier["before"] = json!({"name": "Asha", "notes": "", "tags": ["vip"]});
    let results = server.push_ok(&t1, vec![earlier]).await;
    assert_eq!(outcome(&results[0]), ("accepted", None));

    let (pulled, _) = server.pull_all(&t2, 10).await;
    let last = &pulled[2];
    assert_eq!(
        last["fields"],
        json!({"name": "Asha R", "notes": "likes tea", "tags": ["vip", "wholesale"]}),
        "the effective change carries the winner of every field it touched"
    );
    assert_eq!(last["before"]["name"], json!("Asha R"));
    server.stop().await;
}

#[tokio::test]
async fn clocks_far_ahead_are_clamped_and_counted() {
    let server = Server::start().await;
    let t1 = server.enroll("t1", "S1", "T1").await;
    let id = Uuid::now_v7().to_string();
    let before = now_ms();
    let ahead = change(
        "S1/T1",
        "customer",
        &id,
        json!({"name": "A"}),
        before + 86_400_000,
    );
    assert_eq!(
        outcome(&server.push_ok(&t1, vec![ahead]).await[0]).0,
        "accepted"
    );
    let (pulled, _) = server.pull_all(&t1, 10).await;
    let wall: i64 = pulled[0]["hlc"].as_str().expect("hlc")[..15]
        .parse()
        .expect("wall");
    assert!(wall >= before && wall <= now_ms(), "clamped to server time");
    let devices = server.storage.list_devices("t1").await.expect("devices");
    assert_eq!(devices[0].clock_clamps, 1);
    assert!(devices[0].last_seen_ms.is_some());
    server.stop().await;
}

/// An open bill is finished at the till that opened it: another till of
/// the same store may not pay it (the bill would join that till's hash
/// chain under the first till's number), but a final bill takes a status
/// move from any till of the store.
#[tokio::test]
async fn only_the_till_that_opened_a_bill_changes_it_while_it_is_open() {
    let server = Server::start().await;
    let t1 = server.enroll("t1", "S1", "T1").await;
    let t2 = server.enroll("t1", "S1", "T2").await;
    let dir = tempfile::tempdir().expect("dir");
    let till1 = till(dir.path(), "t1", "S1", "T1");
    let open = till1
        .open_bill(NewBill {
            lines: vec![NewLine::item("TEA", "Tea", 1, 150)],
            ..NewBill::default()
        })
        .expect("open");
    let id = open.id.to_string();
    server
        .push_ok(&t1, outbox(&till1, std::slice::from_ref(&id)))
        .await;

    let paid_elsewhere = change(
        "S1/T2",
        "bill",
        &id,
        json!({"status": "paid", "paid_total": 150, "closed_at_ms": now_ms()}),
        now_ms(),
    );
    let result = &server.push_ok(&t2, vec![paid_elsewhere]).await[0];
    assert_eq!(outcome(result), ("rejected", Some("forbidden")), "{result}");

    // Paid at its own till, the bill is final: another till may void it.
    till1.pay(open.id, &[Tender::cash(150)]).expect("pay");
    server
        .push_ok(&t1, outbox(&till1, std::slice::from_ref(&id)))
        .await;
    let voided = change(
        "S1/T2",
        "bill",
        &id,
        json!({"status": "voided", "voided_at_ms": now_ms()}),
        now_ms() + 1,
    );
    let result = &server.push_ok(&t2, vec![voided]).await[0];
    assert_eq!(outcome(result).0, "accepted", "{result}");
    server.stop().await;
}

/// Once a customer's erasure reaches the server, nothing it serves holds
/// their data: not the entries logged before it (their creation, edits,
/// their bills with the phone), not the erasure's own before-image, not a
/// bootstrap, to a till of their store or of another.
#[tokio::test]
async fn an_erasure_clears_the_persons_data_from_the_log_and_the_bills() {
    let server = Server::start().await;
    let s1t1 = server.enroll("t1", "S1", "T1").await;
    let s1t2 = server.enroll("t1", "S1", "T2").await;
    let s2t1 = server.enroll("t1", "S2", "T1").await;
    let dir = tempfile::tempdir().expect("dir");
    let till1 = till(dir.path(), "t1", "S1", "T1");
    let (customer, bill) = customer_with_bill(&till1, "Asha Rao", "98765 43210");
    let id: Uuid = customer.parse().expect("id");
    let notes = CustomerUpdate {
        notes: Some("lives at 12 MG Road".into()),
        ..CustomerUpdate::default()
    };
    till1.update_customer(id, 1, notes).expect("edit");
    let ids = [customer.clone(), bill.clone()];
    server.push_ok(&s1t1, outbox(&till1, &ids)).await;
    let (before, _) = server.pull_all(&s1t2, 100).await;
    assert!(
        json!(before).to_string().contains("9876543210"),
        "the phone was there"
    );

    till1.erase_customer(id).expect("erase");
    server.push_ok(&s1t1, outbox(&till1, &ids)).await;
    for token in [&s1t1, &s1t2, &s2t1] {
        let (pulled, _) = server.pull_all(token, 100).await;
        let (records, _, _) = server.bootstrap_all(token, 100, async |_| {}).await;
        for served in [json!(pulled).to_string(), json!(records).to_string()] {
            for personal in ["Asha", "43210", "MG Road"] {
                assert!(!served.contains(personal), "{personal} served: {served}");
            }
        }
        assert!(pulled.iter().any(|c| c["op"] == "erase"));
    }
    server.stop().await;
}

/// A pushed paid sale must add up as till-core makes it: a total of 1.00
/// for a line of 1,000.00, paid with nothing, is refused, not kept "as sent".
#[tokio::test]
async fn a_paid_sale_that_does_not_add_up_is_refused() {
    let server = Server::start().await;
    let t1 = server.enroll("t1", "S1", "T1").await;
    let id = Uuid::now_v7().to_string();
    let line = json!({"line_no": 1, "product_code": "GOLD", "name": "Gold", "qty_milli": 1000,
                      "unit_price": 100_000, "discount": 0, "tax_category": "",
                      "tax_rate_bp": 0, "bill_discount": 0, "net": 100_000, "tax": 0,
                      "gross": 100_000, "refunded_qty_milli": 0, "refunded_gross": 0,
                      "refunded_tax": 0});
    let sale = |total: i64, payments: Value| {
        let mut c = change(
            "S1/T1",
            "bill",
            &id,
            json!({"number": "S1-T1-000001", "store_id": "S1", "device_id": "T1",
                   "staff_id": "s", "kind": "sale", "currency": "INR",
                   "price_mode": "inclusive", "status": "paid", "bill_discount": 0,
                   "subtotal": 100_000, "discount_total": 0, "tax_total": 0,
                   "total": total, "paid_total": total, "change_due": 0, "refunded_total": 0,
                   "opened_at_ms": 1, "closed_at_ms": 2, "lines": [line],
                   "payments": payments}),
            now_ms(),
        );
        c["op"] = json!("sell");
        c
    };
    let result = &server.push_ok(&t1, vec![sale(1, json!([]))]).await[0];
    assert_eq!(
        outcome(result),
        ("rejected", Some("validation")),
        "{result}"
    );
    let message = result["message"].as_str().expect("message");
    assert!(message.contains("do not add up"), "{message}");
    let cash = json!([{"seq": 1, "method": "cash", "amount": 100_000, "tendered": 100_000,
                       "reference": ""}]);
    let result = &server.push_ok(&t1, vec![sale(100_000, cash)]).await[0];
    assert_eq!(outcome(result).0, "accepted", "{result}");
    server.stop().await;
}

/// A till an hour ahead renames a customer twice offline and pushes both
/// edits in one batch. Every stamp is clamped to the same server
/// millisecond; the cashier's correction must still come last and win, not
/// be taken for a replay of the typo.
#[tokio::test]
async fn a_batch_clamped_to_server_time_keeps_the_devices_order() {
    let server = Server::start().await;
    let t1 = server.enroll("t1", "S1", "T1").await;
    let id = Uuid::now_v7().to_string();
    let ahead = now_ms() + 3_600_000;
    let edits = [("Asha", 0), ("Ahsa Rao", 10), ("Asha Rao", 20)]
        .map(|(name, at)| change("S1/T1", "customer", &id, json!({"name": name}), ahead + at));
    let results = server.push_ok(&t1, edits.to_vec()).await;
    assert!(
        results.iter().all(|r| outcome(r).0 == "accepted"),
        "{results:?}"
    );
    let (pulled, _) = server.pull_all(&t1, 10).await;
    let names: Vec<&Value> = pulled.iter().map(|c| &c["fields"]["name"]).collect();
    assert_eq!(
        names,
        [&json!("Asha"), &json!("Ahsa Rao"), &json!("Asha Rao")]
    );
    let stamps: Vec<&str> = pulled
        .iter()
        .map(|c| c["hlc"].as_str().expect("hlc"))
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    server.stop().await;
}

/// The same till's two batches can reach the server within one
/// millisecond (a retry racing its original, or a push right after
/// another). Clamped, both land on that millisecond; the later edit must
/// still win, not be taken for a replay of the earlier one.
#[tokio::test]
async fn two_batches_clamped_into_one_millisecond_keep_the_devices_order() {
    let server = Server::start().await;
    server.enroll("t1", "S1", "T1").await;
    let t2 = server.enroll("t1", "S1", "T2").await;
    let t1 = scope("t1", "S1", "T1");
    let id = Uuid::now_v7().to_string();
    let now = now_ms();
    let ahead = now + 3_600_000;
    for (name, at) in [("Ahsa Rao", 0), ("Asha Rao", 10)] {
        let edit = change("S1/T1", "customer", &id, json!({"name": name}), ahead + at);
        let edit = serde_json::from_value(edit).expect("a change");
        let results = server
            .storage
            .push(&t1, vec![edit], now)
            .await
            .expect("push");
        assert!(
            matches!(results[0], PushOutcome::Accepted { .. }),
            "{results:?}"
        );
    }
    let (pulled, _) = server.pull_all(&t2, 10).await;
    let names: Vec<&Value> = pulled.iter().map(|c| &c["fields"]["name"]).collect();
    assert_eq!(names, [&json!("Ahsa Rao"), &json!("Asha Rao")]);
    let stamps: Vec<&str> = pulled
        .iter()
        .map(|c| c["hlc"].as_str().expect("hlc"))
        .collect();
    assert!(stamps[0] < stamps[1], "{stamps:?}");
    assert!(stamps[1].starts_with(&format!("{now:015}-")), "{stamps:?}");
    server.stop().await;
}

/// A till that still shows the duplicate erases the person through it: the
/// erasure reaches the survivor whole, which ends erased and deleted, as
/// when the survivor itself is erased.
#[tokio::test]
async fn erasing_through_a_merged_away_id_erases_and_deletes_the_survivor() {
    let server = Server::start().await;
    for (tenant, through_loser) in [("t1", false), ("t2", true)] {
        let token = server.enroll(tenant, "S1", "T1").await;
        let wall = now_ms();
        let (a, b) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
        let phone = json!({"raw": "+919876500001", "e164": "+919876500001", "shared": false});
        let create = |id: &str, name: &str, at: i64| {
            let mut c = change(
                "S1/T1",
                "customer",
                id,
                json!({"name": name, "phone": phone}),
                at,
            );
            c["op"] = json!("create");
            c
        };
        server
            .push_ok(
                &token,
                vec![create(&a, "Asha", wall), create(&b, "Asha R", wall + 1)],
            )
            .await;
        let target = if through_loser { &b } else { &a };
        let mut erase = change(
            "S1/T1",
            "customer",
            target,
            json!({"name": "Erased customer", "phone": null, "erased_at_ms": wall + 2,
                   "deleted_at_ms": wall + 2}),
            wall + 2,
        );
        erase["op"] = json!("erase");
        let results = server.push_ok(&token, vec![erase]).await;
        assert_eq!(outcome(&results[0]).0, "accepted", "{results:?}");
        let (records, _, _) = server.bootstrap_all(&token, 100, async |_| {}).await;
        let survivor = records.iter().find(|r| r["id"] == json!(a)).expect("A");
        assert_eq!(survivor["fields"]["name"], json!("Erased customer"));
        assert_eq!(
            survivor["fields"]["deleted_at_ms"],
            json!(wall + 2),
            "erased through the merged-away id: {through_loser}"
        );
    }
    server.stop().await;
}

/// Sends `method path` with `authorization` (raw header value, if any).
async fn send_auth(
    server: &Server,
    method: Method,
    path: &str,
    authorization: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = server.request(method.clone(), path, None);
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    if method == Method::POST {
        req = req.json(&json!({"changes": []}));
    }
    let resp = req.send().await.expect("send");
    (resp.status(), resp.json().await.expect("json"))
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused_on_every_endpoint() {
    let server = Server::start().await;
    let token = server.enroll("t1", "S1", "T1").await;
    let unknown = auth::new_token();
    let history = format!("/v1/customers/{}/bills", Uuid::now_v7());
    let endpoints = [
        (Method::POST, "/v1/push"),
        (Method::GET, "/v1/pull?cursor=0"),
        (Method::GET, "/v1/wait?cursor=0&timeout_ms=0"),
        (Method::GET, "/v1/bootstrap"),
        (Method::GET, history.as_str()),
    ];
    for (method, path) in &endpoints {
        let (status, _) = send_auth(
            &server,
            method.clone(),
            path,
            Some(&format!("Bearer {token}")),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path} with a good token");
        for bad in [
            None,
            Some("Basic dXNlcjpwYXNz".to_string()),
            Some("Bearer".to_string()),
            Some("Bearer nonsense".to_string()),
            Some(format!("Bearer {unknown}")),
            Some(format!("bearer {token}")),
            Some(format!("Bearer {}x", token)),
        ] {
            let (status, body) = send_auth(&server, method.clone(), path, bad.as_deref()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {bad:?}");
            assert_eq!(body["code"], json!("unauthorized"), "{path} {bad:?}");
        }
    }
    server
        .storage
        .revoke_device(&scope("t1", "S1", "T1"), now_ms())
        .await
        .expect("revoke");
    for (method, path) in &endpoints {
        let (status, body) = send_auth(
            &server,
            method.clone(),
            path,
            Some(&format!("Bearer {token}")),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} revoked");
        assert_eq!(body["code"], json!("device_revoked"));
    }
    // Enrolling again issues a new token; the old one stays dead.
    let fresh = server.enroll("t1", "S1", "T1").await;
    let (status, _) = send_auth(
        &server,
        Method::GET,
        "/v1/pull",
        Some(&format!("Bearer {fresh}")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send_auth(
        &server,
        Method::GET,
        "/v1/pull",
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn no_device_reads_or_writes_another_tenants_or_stores_data() {
    let server = Server::start().await;
    let s1 = server.enroll("t1", "S1", "T1").await;
    let s2 = server.enroll("t1", "S2", "T1").await;
    let other = server.enroll("t2", "S1", "T1").await;
    let till_s1 = till(server.dir.path(), "t1", "S1", "T1");
    let till_s2 = till(server.dir.path(), "t1", "S2", "T1");
    let (customer, bill) = customer_with_bill(&till_s1, "Asha Rao", "98765 43210");
    let (s2_customer, s2_bill) = customer_with_bill(&till_s2, "Ravi", "98765 43219");
    server
        .push_ok(&s1, outbox(&till_s1, &[customer.clone(), bill.clone()]))
        .await;
    let s2_changes = outbox(&till_s2, &[s2_customer.clone(), s2_bill.clone()]);
    server.push_ok(&s2, s2_changes.clone()).await;
    let (baseline, head) = server.pull_all(&s1, 100).await;
    let wall = now_ms();

    // Writes through every field that names a tenant, store or device.
    let new_bill = Uuid::now_v7().to_string();
    let attempts = [
        (
            "update another store's bill",
            &s1,
            change("S1/T1", "bill", &s2_bill, json!({"status": "voided"}), wall),
            "forbidden",
        ),
        (
            "create a bill for another store",
            &s1,
            change(
                "S1/T1",
                "bill",
                &new_bill,
                json!({"store_id": "S2", "device_id": "T1", "status": "open"}),
                wall,
            ),
            "forbidden",
        ),
        (
            "create a bill as another device",
            &s1,
            change(
                "S1/T1",
                "bill",
                &new_bill,
                json!({"store_id": "S1", "device_id": "T2", "status": "open"}),
                wall,
            ),
            "forbidden",
        ),
        (
            "stamp a change as another device",
            &s1,
            change("S2/T1", "customer", &customer, json!({"name": "X"}), wall),
            "forbidden",
        ),
        (
            "replay another store's change",
            &s1,
            s2_changes[0].clone(),
            "forbidden",
        ),
        (
            "update another tenant's customer",
            &other,
            change("S1/T1", "customer", &customer, json!({"notes": "x"}), wall),
            "unknown_record",
        ),
        (
            "update another tenant's bill",
            &other,
            change("S1/T1", "bill", &bill, json!({"status": "voided"}), wall),
            "unknown_record",
        ),
        (
            "set a server-owned field",
            &s1,
            change(
                "S1/T1",
                "customer",
                &customer,
                json!({"merged_into": Uuid::now_v7().to_string()}),
                wall,
            ),
            "forbidden",
        ),
    ];
    for (name, token, c, reason) in attempts {
        let results = server.push_ok(token, vec![c]).await;
        assert_eq!(outcome(&results[0]), ("rejected", Some(reason)), "{name}");
    }
    // Another tenant may reuse an id; it lands in its own space only.
    let squat = change(
        "S1/T1",
        "customer",
        &customer,
        json!({"name": "Mallory"}),
        wall,
    );
    assert_eq!(
        outcome(&server.push_ok(&other, vec![squat]).await[0]).0,
        "accepted"
    );

    let (after, cursor) = server.pull_all(&s1, 100).await;
    assert_eq!(after, baseline, "t1/S1 sees nothing new");
    assert_eq!(cursor, head);
    let (theirs, _) = server.pull_all(&other, 100).await;
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0]["fields"]["name"], json!("Mallory"));

    // Read parameters: the scope comes from the token, whatever the query says.
    let (_, plain) = server.pull(&s1, "cursor=0&limit=100").await;
    let (_, forged) = server
        .pull(&s1, "cursor=0&limit=100&tenant=t2&store=S2&device=T1")
        .await;
    assert_eq!(plain, forged);
    for (query, status, code) in [
        ("cursor=-1", StatusCode::BAD_REQUEST, "bad_request"),
        ("cursor=abc", StatusCode::BAD_REQUEST, "bad_request"),
        ("limit=0", StatusCode::BAD_REQUEST, "bad_request"),
        ("cursor=1000000", StatusCode::GONE, "rebootstrap_required"),
    ] {
        let (got, body) = server.pull(&other, query).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{query}"
        );
    }

    // A snapshot holds the tenant's customers and the store's bills only,
    // whatever the query or a forged position says.
    let (records, _, _) = server.bootstrap_all(&s1, 100, async |_| {}).await;
    let mut ids = ids_of_records(&records);
    ids.sort_unstable();
    let mut expected = vec![customer.as_str(), bill.as_str(), s2_customer.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected, "t1 customers and S1 bills");
    let (_, forged) = server
        .get(&s1, "/v1/bootstrap?limit=100&tenant=t2&store=S2")
        .await;
    assert_eq!(
        ids_of_records(forged["records"].as_array().expect("records")).len(),
        3
    );
    let (_, theirs) = server.get(&other, "/v1/bootstrap").await;
    assert_eq!(
        ids_of_records(theirs["records"].as_array().expect("records")),
        vec![customer.as_str()],
        "t2 sees its own record under the same id, never t1's"
    );
    assert_eq!(theirs["records"][0]["fields"]["name"], json!("Mallory"));
    let (_, forged) = server
        .get(&other, &format!("/v1/bootstrap?after=0.c.{}", Uuid::nil()))
        .await;
    assert_eq!(
        ids_of_records(forged["records"].as_array().expect("records")),
        vec![customer.as_str()],
        "a forged position reads the token's scope"
    );
    assert_eq!(forged["records"][0]["fields"]["name"], json!("Mallory"));

    // A customer's history covers every store of the token's tenant only.
    let path = format!("/v1/customers/{customer}/bills");
    let (status, mine) = server.get(&s2, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ids_of_records(mine["bills"].as_array().expect("bills")),
        vec![bill.as_str()]
    );
    let (status, none) = server.get(&other, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(none["bills"], json!([]), "another tenant sees no bills");
    for (path, status, code) in [
        (
            "/v1/bootstrap?after=garbage",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/v1/bootstrap?limit=0",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/v1/bootstrap?after=999999.c.00000000-0000-0000-0000-000000000000",
            StatusCode::GONE,
            "rebootstrap_required",
        ),
        (
            "/v1/customers/42/bills",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            &format!("{path}?after=x"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            &format!("{path}?limit=0"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ] {
        let (got, body) = server.get(&s1, path).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn an_unsupported_protocol_version_gets_a_clear_answer() {
    let server = Server::start().await;
    let token = server.enroll("t1", "S1", "T1").await;
    for (method, path) in [(Method::POST, "/v1/push"), (Method::GET, "/v1/pull")] {
        for version in [None, Some("0"), Some("2"), Some("one")] {
            let mut req = server
                .http
                .request(method.clone(), format!("{}{path}", server.base))
                .bearer_auth(&token)
                .json(&json!({"changes": []}));
            if let Some(v) = version {
                req = req.header(PROTOCOL_HEADER, v);
            }
            let resp = req.send().await.expect("send");
            assert_eq!(
                resp.status(),
                StatusCode::UPGRADE_REQUIRED,
                "{path} {version:?}"
            );
            let body: Value = resp.json().await.expect("json");
            assert_eq!(body["code"], json!("unsupported_protocol_version"));
            assert_eq!(body["supported_versions"], json!([1, 1]));
        }
    }
    server.stop().await;
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

#[tokio::test]
async fn bodies_and_batches_are_capped_and_gzip_works_both_ways() {
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        ..Limits::default()
    };
    let server = Server::start_with(limits).await;
    let token = server.enroll("t1", "S1", "T1").await;
    let id = Uuid::now_v7().to_string();
    let wall = now_ms();

    let huge = change(
        "S1/T1",
        "customer",
        &id,
        json!({"name": "A", "x": "n".repeat(100_000)}),
        wall,
    );
    let (status, body) = server.push(&token, vec![huge.clone()]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );

    // Small on the wire, too large once inflated.
    let bomb = gzip(&serde_json::to_vec(&json!({"changes": [huge]})).expect("json"));
    assert!(bomb.len() < 64 * 1024);
    let resp = server
        .request(Method::POST, "/v1/push", Some(&token))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let tiny: Vec<Value> = (0..=MAX_PUSH_BATCH).map(|_| json!(0)).collect();
    let (status, body) = server.push(&token, tiny).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("batch_too_large"))
    );

    // A gzip request body is accepted.
    let ok = change(
        "S1/T1",
        "customer",
        &id,
        json!({"name": "Asha", "notes": "tea ".repeat(500).trim()}),
        wall,
    );
    let resp = server
        .request(Method::POST, "/v1/push", Some(&token))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(
            &serde_json::to_vec(&json!({"changes": [ok]})).expect("json"),
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["results"][0]["outcome"], json!("accepted"));

    // A response is gzipped for a client that accepts it.
    let raw = reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client");
    let resp = raw
        .get(format!("{}/v1/pull?cursor=0", server.base))
        .header(PROTOCOL_HEADER, "1")
        .header("accept-encoding", "gzip")
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    server.stop().await;
}

#[tokio::test]
async fn health_readiness_request_ids_and_unknown_routes() {
    let server = Server::start().await;
    let get = |path: &str| server.http.get(format!("{}{path}", server.base)).send();
    let health = get("/healthz").await.expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    assert!(health.headers().contains_key("x-request-id"));
    assert_eq!(
        get("/readyz").await.expect("readyz").status(),
        StatusCode::OK
    );
    let missing = get("/v2/anything").await.expect("404");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: Value = missing.json().await.expect("json");
    assert_eq!(body["code"], json!("not_found"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_never_make_a_concurrent_pull_skip_a_change() {
    let server = Arc::new(Server::start().await);
    let mut writers = Vec::new();
    for device in ["T1", "T2", "T3"] {
        let token = server.enroll("t1", "S1", device).await;
        let server = Arc::clone(&server);
        writers.push(tokio::spawn(async move {
            for round in 0..15 {
                let batch = (0..4)
                    .map(|i| {
                        let node = format!("S1/{device}");
                        let id = Uuid::now_v7().to_string();
                        change(
                            &node,
                            "customer",
                            &id,
                            json!({"name": format!("N{round}-{i}")}),
                            1_000 + round,
                        )
                    })
                    .collect();
                server.push_ok(&token, batch).await;
            }
        }));
    }
    // A reader pulling all along, never re-reading: it must end with every change.
    let reader = server.enroll("t1", "S2", "T1").await;
    let mut seen = Vec::new();
    let mut cursor = 0;
    let total = 3 * 15 * 4;
    for _ in 0..10_000 {
        let (status, page) = server
            .pull(&reader, &format!("cursor={cursor}&limit=7"))
            .await;
        assert_eq!(status, StatusCode::OK);
        for c in page["changes"].as_array().expect("changes") {
            seen.push(c["server_seq"].as_i64().expect("seq"));
        }
        cursor = page["cursor"].as_i64().expect("cursor");
        if seen.len() == total {
            break;
        }
    }
    for w in writers {
        w.await.expect("writer");
    }
    let expected: Vec<i64> = (1..=total as i64).collect();
    assert_eq!(
        seen, expected,
        "every sequence once, in order, none skipped"
    );
    match Arc::try_unwrap(server) {
        Ok(server) => server.stop().await,
        Err(_) => panic!("server still shared"),
    }
}

/// A customer change of `node` at `wall` creating `id` named `name`.
fn named(node: &str, id: &str, name: &str, wall: i64) -> Value {
    let mut c = change(node, "customer", id, json!({ "name": name }), wall);
    c["op"] = json!("create");
    c
}

#[tokio::test]
async fn a_bootstrap_sends_each_record_once_and_a_pull_from_its_seq_catches_up() {
    let server = Server::start().await;
    let s1 = server.enroll("t1", "S1", "T1").await;
    let s2 = server.enroll("t1", "S2", "T1").await;
    let till_s1 = till(server.dir.path(), "t1", "S1", "T1");
    let till_s2 = till(server.dir.path(), "t1", "S2", "T1");
    let mut customers = Vec::new();
    let mut bills = Vec::new();
    for i in 0..4 {
        let (c, b) = customer_with_bill(&till_s1, &format!("Asha {i}"), &format!("98765 4321{i}"));
        server
            .push_ok(&s1, outbox(&till_s1, &[c.clone(), b.clone()]))
            .await;
        customers.push(c);
        bills.push(b);
    }
    let (c, b) = customer_with_bill(&till_s2, "Ravi", "98765 43299");
    server.push_ok(&s2, outbox(&till_s2, &[c.clone(), b])).await;
    customers.push(c);

    // Pages of 3 cross from customers into bills mid-page. Between pages
    // another device renames a customer already sent and one not sent yet,
    // and creates one more.
    let late = Uuid::now_v7().to_string();
    let wall = now_ms();
    let (first, last) = (customers[0].clone(), customers[4].clone());
    let (records, snapshot_seq, pages) = server
        .bootstrap_all(&s1, 3, async |page| {
            if page == 1 {
                let edits = vec![
                    change(
                        "S2/T1",
                        "customer",
                        &first,
                        json!({"name": "First Renamed"}),
                        wall,
                    ),
                    change(
                        "S2/T1",
                        "customer",
                        &last,
                        json!({"name": "Last Renamed"}),
                        wall,
                    ),
                    named("S2/T1", &late, "Late", wall),
                ];
                let results = server.push_ok(&s2, edits).await;
                assert!(
                    results.iter().all(|r| outcome(r).0 == "accepted"),
                    "{results:?}"
                );
            }
        })
        .await;
    assert_eq!(snapshot_seq, 10, "the head when the snapshot started");
    // The late customer's id sorts after the first page: it is in too, and
    // its creation comes again in the pull, where it changes nothing.
    assert_eq!((records.len(), pages), (10, 4));
    assert!(records.iter().any(|r| r["id"] == json!(late)));
    let mut ids = ids_of_records(&records);
    let before_late: Vec<&str> = ids.iter().copied().filter(|id| *id != late).collect();
    let mut expected: Vec<&str> = customers.iter().chain(&bills).map(String::as_str).collect();
    expected.sort_unstable();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), records.len(), "no record twice");
    let mut before_late_sorted = before_late.clone();
    before_late_sorted.sort_unstable();
    assert_eq!(
        before_late_sorted, expected,
        "every record of the scope, no S2 bill"
    );
    // Customers come first, then bills, each by id.
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["entity"].as_str().expect("entity"))
        .collect();
    let first_bill = kinds.iter().position(|k| *k == "bill").expect("bills");
    assert!(kinds[first_bill..].iter().all(|k| *k == "bill"));
    for kind in ["customer", "bill"] {
        let of_kind: Vec<&str> = records
            .iter()
            .filter(|r| r["entity"] == json!(kind))
            .map(|r| r["id"].as_str().expect("id"))
            .collect();
        assert!(of_kind.windows(2).all(|w| w[0] < w[1]), "{kind}s by id");
    }
    for r in &records {
        assert!(r["hlc"].as_str().is_some_and(|h| h.len() > 20), "{r}");
        assert!(r["fields"].is_object());
    }
    let by_id = |id: &str| records.iter().find(|r| r["id"] == json!(id)).cloned();
    assert_eq!(
        by_id(&first).expect("first")["fields"]["name"],
        json!("Asha 0")
    );
    assert_eq!(
        by_id(&last).expect("last")["fields"]["name"],
        json!("Last Renamed"),
        "a page read after the edit carries the current state"
    );

    // The pull from the snapshot's sequence carries every change since.
    let (status, page) = server
        .pull(&s1, &format!("cursor={snapshot_seq}&limit=100"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let changes = page["changes"].as_array().expect("changes");
    assert_eq!(
        ids_of(changes),
        vec![first.as_str(), last.as_str(), late.as_str()]
    );
    assert_eq!(changes[0]["fields"]["name"], json!("First Renamed"));
    server.stop().await;
}

#[tokio::test]
async fn compaction_cuts_the_log_and_refuses_pulls_behind_it() {
    let server = Server::start().await;
    let t1 = server.enroll("t1", "S1", "T1").await;
    let wall = now_ms();
    let ids: Vec<String> = (0..6).map(|_| Uuid::now_v7().to_string()).collect();
    let batch = |range: std::ops::Range<usize>| {
        range
            .map(|i| named("S1/T1", &ids[i], &format!("N{i}"), wall))
            .collect::<Vec<_>>()
    };
    server.push_ok(&t1, batch(0..3)).await;
    // A bootstrap at sequence 3 stops after its first page.
    let (status, first) = server.get(&t1, "/v1/bootstrap?limit=2").await;
    assert_eq!(
        (status, first["snapshot_seq"].as_i64()),
        (StatusCode::OK, Some(3))
    );
    let old_position = first["next"].as_str().expect("next").to_owned();
    server.push_ok(&t1, batch(3..6)).await;

    let done = server
        .storage
        .compact("t1", Horizon::Seq(4))
        .await
        .expect("compact");
    assert_eq!((done.horizon, done.head, done.removed), (4, 6, 4));
    for (cursor, status) in [
        (0, StatusCode::GONE),
        (3, StatusCode::GONE),
        (4, StatusCode::OK),
        (6, StatusCode::OK),
    ] {
        let (got, body) = server.pull(&t1, &format!("cursor={cursor}")).await;
        assert_eq!(got, status, "cursor {cursor}: {body}");
        // A long-poll wait from behind the horizon is told the same at once.
        let query = format!("cursor={cursor}&timeout_ms=0");
        let (waited, wait_body) = server.wait(&t1, &query).await;
        assert_eq!(waited, status, "wait from {cursor}: {wait_body}");
        if status == StatusCode::GONE {
            assert_eq!(body["code"], json!("rebootstrap_required"));
            assert_eq!(wait_body["code"], json!("rebootstrap_required"));
        }
    }
    let (_, page) = server.pull(&t1, "cursor=4").await;
    assert_eq!(
        ids_of(page["changes"].as_array().expect("changes")),
        vec![ids[4].as_str(), ids[5].as_str()]
    );
    // The records keep their state: a new snapshot has all six.
    let (records, seq, _) = server.bootstrap_all(&t1, 100, async |_| {}).await;
    assert_eq!((records.len(), seq), (6, 6));
    assert_eq!(records[0]["fields"]["name"], json!("N0"));
    // A snapshot the log can no longer continue from is refused.
    let (status, body) = server
        .get(&t1, &format!("/v1/bootstrap?after={old_position}"))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::GONE, Some("rebootstrap_required"))
    );
    server
        .storage
        .compact("t1", Horizon::Seq(100))
        .await
        .expect("to head");
    // The horizon stops at the head and never moves back.
    let back = server
        .storage
        .compact("t1", Horizon::Seq(2))
        .await
        .expect("back");
    assert_eq!((back.horizon, back.removed), (6, 0));
    let by_age = server
        .storage
        .compact("t1", Horizon::ReceivedBefore(0))
        .await
        .expect("by age");
    assert_eq!(by_age.horizon, 6);
    assert!(matches!(
        server.storage.compact("nobody", Horizon::Seq(1)).await,
        Err(StorageError::NotFound(_))
    ));
    // Pushing goes on after the horizon.
    server
        .push_ok(
            &t1,
            vec![named("S1/T1", &Uuid::now_v7().to_string(), "N6", wall)],
        )
        .await;
    let (status, page) = server.pull(&t1, "cursor=6").await;
    assert_eq!(
        (status, page["changes"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    server.stop().await;
}

#[tokio::test]
async fn compaction_by_age_keeps_what_arrived_since() {
    let server = Server::start().await;
    let t1 = server.enroll("t1", "S1", "T1").await;
    let wall = now_ms();
    server
        .push_ok(
            &t1,
            vec![named("S1/T1", &Uuid::now_v7().to_string(), "Old", wall)],
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let cut = now_ms();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    server
        .push_ok(
            &t1,
            vec![named("S1/T1", &Uuid::now_v7().to_string(), "New", wall)],
        )
        .await;
    let done = server
        .storage
        .compact("t1", Horizon::ReceivedBefore(cut))
        .await
        .expect("compact");
    assert_eq!((done.horizon, done.removed), (1, 1));
    let (status, page) = server.pull(&t1, "cursor=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["changes"][0]["fields"]["name"], json!("New"));
    server.stop().await;
}

/// Tills retrying pushes that time out behind a slow writer must not take
/// every thread the reads need: their batches still run to their commit,
/// but no more of them at once than the push limit, and a pull, which
/// needs no writer, is answered meanwhile.
#[tokio::test]
async fn pushes_timing_out_behind_a_slow_writer_leave_room_for_pulls() {
    use std::num::NonZeroU32;
    use std::time::Duration;
    let limits = Limits {
        request_timeout: Duration::from_millis(300),
        max_wait: Duration::from_millis(200),
        max_concurrent_requests: 64,
        rate: till_sync_server::ratelimit::RateLimit {
            per_second: NonZeroU32::new(100_000).expect("nonzero"),
            burst: NonZeroU32::new(100_000).expect("nonzero"),
        },
        ..Limits::default()
    };
    let server = Server::start_with(limits).await;
    let pusher = server.enroll("t1", "S1", "T1").await;
    let reader = server.enroll("t1", "S1", "T2").await;
    let lock = server.hold_write_lock();
    let wall = now_ms();
    // 800 pushes, each left running by its timed-out request, were more
    // than the 512 threads of the blocking pool.
    let mut answered = std::collections::BTreeMap::new();
    for _wave in 0..8 {
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let body =
                    json!({"changes": [named("S1/T1", &Uuid::now_v7().to_string(), "N", wall)]});
                let req = server
                    .request(Method::POST, "/v1/push", Some(&pusher))
                    .json(&body);
                tokio::spawn(async move { req.send().await.map(|r| r.status()) })
            })
            .collect();
        for task in tasks {
            let status = task.await.expect("task").expect("answered");
            *answered.entry(status.as_u16()).or_insert(0) += 1;
        }
    }
    assert_eq!(answered.get(&503), Some(&800), "{answered:?}");
    let (status, body) = server.pull(&reader, "cursor=0").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Once the writer is free, the batches that were running commit.
    drop(lock);
    server.stop().await;
}

/// A mistyped tenant or data directory is an error, not an empty answer:
/// "no devices" or "no over-refunds" must mean what it says.
#[tokio::test]
async fn the_admin_cli_refuses_an_unknown_tenant_or_data_dir() {
    let server = Server::start().await;
    server.enroll("t1", "S1", "T1").await;
    let typo = server.dir.path().join("till-dta");
    let run = |dir: &std::path::Path, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_till-server"))
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .output()
            .expect("run till-server")
    };
    for args in [
        &["device", "list", "--tenant", "t1"][..],
        &["bills", "over-refunded", "--tenant", "t1"],
    ] {
        let out = run(server.dir.path(), args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        let mut unknown = args.to_vec();
        unknown[3] = "no-such";
        let out = run(server.dir.path(), &unknown);
        assert!(!out.status.success(), "{unknown:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("tenant no-such"));
        let out = run(&typo, args);
        assert!(!out.status.success(), "{args:?} at a typo: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("no Till database"));
    }
    assert!(
        !typo.exists(),
        "nothing is created at a mistyped --data-dir"
    );
    server.stop().await;
}

/// `serve` refuses limits under which it would refuse every request.
#[test]
fn serve_refuses_limits_that_would_refuse_every_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    for flags in [
        &["--max-body-bytes", "0"][..],
        &["--max-body-bytes", "1000"],
        &["--max-waiters", "0"],
        &["--max-waiters-per-device", "0"],
        &["--max-waiters", "2", "--max-waiters-per-device", "3"],
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_till-server"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(flags)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run till-server");
        // A server that took the limits keeps serving: give it ten seconds.
        let exited = (0..100).find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            child.try_wait().expect("try_wait")
        });
        let Some(status) = exited else {
            child.kill().expect("kill the server this test started");
            child.wait().expect("reap");
            panic!("serve started with {flags:?}");
        };
        assert!(!status.success(), "{flags:?}");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
            .expect("read stderr");
        assert!(stderr.contains(flags[0]), "{flags:?}: {stderr}");
    }
}

#[tokio::test]
async fn the_admin_cli_compacts_a_tenants_log() {
    let server = Server::start().await;
    let t1 = server.enroll("t1", "S1", "T1").await;
    let wall = now_ms();
    let batch = (0..3)
        .map(|i| named("S1/T1", &Uuid::now_v7().to_string(), &format!("N{i}"), wall))
        .collect();
    server.push_ok(&t1, batch).await;
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_till-server"))
            .arg("--data-dir")
            .arg(server.dir.path())
            .args(args)
            .output()
            .expect("run till-server")
    };
    let out = run(&["log", "compact", "--tenant", "t1", "--through-seq", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "compacted t1: horizon 2 of 3, 2 log entries removed\n"
    );
    let (status, _) = server.pull(&t1, "cursor=1").await;
    assert_eq!(status, StatusCode::GONE);
    let out = run(&["log", "compact", "--tenant", "t1", "--older-than-days", "1"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("horizon 2 of 3, 0 log entries"));
    for bad in [
        &["log", "compact", "--tenant", "t1"][..],
        &[
            "log",
            "compact",
            "--tenant",
            "t1",
            "--through-seq",
            "1",
            "--older-than-days",
            "1",
        ],
        &["log", "compact", "--tenant", "t1", "--through-seq", "-1"],
        &["log", "compact", "--tenant", "zz", "--through-seq", "1"],
    ] {
        let out = run(bad);
        assert!(!out.status.success(), "{bad:?}");
    }
    server.stop().await;
}

/// Two tills of a store each refunded one sale in full while offline: both
/// paid out, so both refunds stand, and the admin CLI lists the sale for
/// head office with what its refunds add up to.
#[tokio::test]
async fn the_admin_cli_lists_sales_refunded_beyond_their_total() {
    let server = Server::start().await;
    let t1 = server.enroll("t1", "S1", "T1").await;
    let t2 = server.enroll("t1", "S1", "T2").await;
    let dir = tempfile::tempdir().expect("dir");
    let till1 = till(dir.path(), "t1", "S1", "T1");
    let (customer, sale) = customer_with_bill(&till1, "Asha Rao", "98765 43210");
    let sale_id: Uuid = sale.parse().expect("id");
    let amount = till1.refund_quote(sale_id, &[]).expect("quote");
    let refund = till1
        .refund(sale_id, &[], &[Tender::cash(amount)])
        .expect("refund");
    let pushed = outbox(&till1, &[customer, sale.clone(), refund.id.to_string()]);
    server.push_ok(&t1, pushed.clone()).await;
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_till-server"))
            .arg("--data-dir")
            .arg(server.dir.path())
            .args(["bills", "over-refunded", "--tenant", "t1"])
            .output()
            .expect("run till-server");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let header = "store\tnumber\ttotal\trefunded\tsale\n";
    assert_eq!(run(), header, "one refund is no over-refund");

    // T2 had made the same refund of the sale, offline.
    let mut again = pushed
        .iter()
        .rfind(|c| c["entity_id"] == sale.as_str())
        .expect("the sale's refund change")
        .clone();
    let hlc = again["hlc"]
        .as_str()
        .expect("hlc")
        .replace("S1/T1", "S1/T2");
    again["change_id"] = json!(Uuid::now_v7().to_string());
    again["device"] = json!("S1/T2");
    again["hlc"] = json!(hlc);
    let result = &server.push_ok(&t2, vec![again]).await[0];
    assert_eq!(outcome(result).0, "accepted", "{result}");
    let sold = till1.bill(sale_id).expect("sale");
    assert_eq!(
        run(),
        format!(
            "{header}S1\t{}\t{}\t{}\t{sale}\n",
            sold.number,
            sold.total,
            2 * sold.total
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn a_customers_bills_come_from_every_store_newest_first_in_pages() {
    let server = Server::start().await;
    let s1 = server.enroll("t1", "S1", "T1").await;
    let s2 = server.enroll("t1", "S2", "T1").await;
    let till_s1 = till(server.dir.path(), "t1", "S1", "T1");
    let (customer, first) = customer_with_bill(&till_s1, "Asha Rao", "98765 43210");
    server
        .push_ok(&s1, outbox(&till_s1, &[customer.clone(), first.clone()]))
        .await;
    // The customer buys twice at S2 (bills made by hand, as S2's till would).
    let mut bills_s2 = Vec::new();
    for n in 1..=2 {
        let id = Uuid::now_v7().to_string();
        let mut c = change(
            "S2/T1",
            "bill",
            &id,
            json!({
                "number": format!("S2-T1-00000{n}"), "store_id": "S2", "device_id": "T1",
                "staff_id": "s", "customer_id": customer, "currency": "INR",
                "price_mode": "exclusive", "kind": "sale", "status": "open",
                "opened_at_ms": now_ms(), "lines": [], "payments": [],
            }),
            now_ms(),
        );
        c["op"] = json!("create");
        let results = server.push_ok(&s2, vec![c]).await;
        assert_eq!(outcome(&results[0]).0, "accepted", "{results:?}");
        bills_s2.push(id);
    }
    let path = format!("/v1/customers/{customer}/bills");
    let (status, all) = server.get(&s1, &path).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(
        ids_of_records(all["bills"].as_array().expect("bills")),
        vec![bills_s2[1].as_str(), bills_s2[0].as_str(), first.as_str()]
    );
    assert_eq!(all["next"], Value::Null);
    assert_eq!(all["bills"][0]["fields"]["store_id"], json!("S2"));
    // Pages of one walk the same list.
    let mut walked = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = after
            .as_ref()
            .map_or(String::new(), |a| format!("&after={a}"));
        let (status, page) = server.get(&s1, &format!("{path}?limit=1{q}")).await;
        assert_eq!(status, StatusCode::OK);
        walked.extend(
            ids_of_records(page["bills"].as_array().expect("bills"))
                .into_iter()
                .map(str::to_owned),
        );
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        walked,
        vec![bills_s2[1].clone(), bills_s2[0].clone(), first.clone()]
    );
    let (_, nobody) = server
        .get(&s1, &format!("/v1/customers/{}/bills", Uuid::now_v7()))
        .await;
    assert_eq!(nobody["bills"], json!([]));
    server.stop().await;
}

/// Each customer of a bootstrap by id, with whom it was merged into
/// (`null` when it was not).
fn merged_into_by_id(records: &[Value]) -> std::collections::BTreeMap<String, Value> {
    records
        .iter()
        .filter(|r| r["entity"] == json!("customer"))
        .map(|r| {
            let id = r["id"].as_str().expect("id").to_owned();
            (id, r["fields"]["merged_into"].clone())
        })
        .collect()
}

/// A survivor keeps a merged-away phone as an alias. While the survivor is
/// deleted, a customer typed with that phone is not merged (only live
/// customers are); restoring the survivor then merges them, as it does when
/// the restore arrives first: the same survivor in either order.
#[tokio::test]
async fn restoring_a_survivor_merges_a_customer_holding_its_old_phone() {
    let server = Server::start().await;
    for (tenant, restore_first) in [("t1", true), ("t2", false)] {
        let token = server.enroll(tenant, "S1", "T1").await;
        let node = "S1/T1";
        let wall = now_ms();
        let (a, b, c) = (
            Uuid::now_v7().to_string(),
            Uuid::now_v7().to_string(),
            Uuid::now_v7().to_string(),
        );
        let phone = |e164: &str| json!({"raw": e164, "e164": e164, "shared": false});
        let email = json!({"raw": "asha@example.com", "canonical": "asha@example.com",
                           "shared": false});
        let create = |id: &str, fields: Value, wall: i64| {
            let mut create = change(node, "customer", id, fields, wall);
            create["op"] = json!("create");
            create
        };
        let create_a = create(
            &a,
            json!({"name": "Asha", "phone": phone("+919876500001"), "email": email}),
            wall,
        );
        // B: the same email and a later phone, so merged into A, whose old
        // phone stays A's as an alias.
        let create_b = create(
            &b,
            json!({"name": "Asha R", "phone": phone("+919876500002"), "email": email}),
            wall + 1,
        );
        let delete_a = change(
            node,
            "customer",
            &a,
            json!({"deleted_at_ms": wall + 2}),
            wall + 2,
        );
        // C: typed later with A's old phone.
        let create_c = create(
            &c,
            json!({"name": "Asha Rao", "phone": phone("+919876500001")}),
            wall + 3,
        );
        let restore_a = change(
            node,
            "customer",
            &a,
            json!({"deleted_at_ms": null}),
            wall + 4,
        );

        server.push_ok(&token, vec![create_a, create_b]).await;
        server.push_ok(&token, vec![delete_a]).await;
        let order = if restore_first {
            [restore_a, create_c]
        } else {
            [create_c, restore_a]
        };
        for one in order {
            let results = server.push_ok(&token, vec![one]).await;
            assert_eq!(outcome(&results[0]).0, "accepted", "{results:?}");
        }
        let (records, _, _) = server.bootstrap_all(&token, 100, async |_| {}).await;
        let merged = merged_into_by_id(&records);
        assert_eq!(merged[&b], json!(a), "B merged into A");
        assert_eq!(merged[&a], Value::Null, "A lives on");
        assert_eq!(
            merged[&c],
            json!(a),
            "C merged into A (restore first: {restore_first})"
        );
    }
    server.stop().await;
}
