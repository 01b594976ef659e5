//! The server's operational surface against a real server on 127.0.0.1:
//! the per-device rate limit, the `/metrics` figures moving with real
//! requests, the long-poll wait (wake-up, scope, timeout, limits, clean-up
//! when clients vanish), the request time limit, the page cap, and graceful
//! shutdown finishing in-flight pushes.

mod common;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use common::{change, customer_with_bill, outbox, scope, till, Figures, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use till_core::{NewBill, NewLine, Tender};
use till_sync_server::ratelimit::RateLimit;
use till_sync_server::storage::Storage;
use till_sync_server::{now_ms, Limits};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("non-zero")
}

fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A customer change made by hand, as `node` would push it.
fn customer(node: &str, name: &str) -> Value {
    let id = Uuid::now_v7().to_string();
    change(node, "customer", &id, json!({ "name": name }), now_ms())
}

#[tokio::test]
async fn a_device_past_its_rate_limit_gets_429_and_other_devices_carry_on() {
    let limits = Limits {
        rate: RateLimit {
            per_second: nz(1),
            burst: nz(3),
        },
        ..Limits::default()
    };
    let server = Server::start_with(limits).await;
    let runaway = server.enroll("t1", "S1", "T1").await;
    let calm = server.enroll("t1", "S1", "T2").await;
    for _ in 0..3 {
        assert_eq!(server.pull(&runaway, "cursor=0").await.0, StatusCode::OK);
    }
    let resp = server
        .request(Method::GET, "/v1/pull?cursor=0", Some(&runaway))
        .send()
        .await
        .expect("pull");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&resp), Some(1));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], json!("rate_limited"));

    // The runaway floods; the calm till's push and pull pass meanwhile.
    let flood = async {
        let mut statuses = Vec::new();
        for _ in 0..20 {
            let (status, _) = server
                .push(&runaway, vec![customer("S1/T1", "Flood")])
                .await;
            statuses.push(status);
        }
        statuses
    };
    let (flooded, pushed, pulled) = tokio::join!(
        flood,
        server.push(&calm, vec![customer("S1/T2", "Calm")]),
        server.pull(&calm, "cursor=0"),
    );
    assert_eq!(pushed.0, StatusCode::OK, "{}", pushed.1);
    assert_eq!(pulled.0, StatusCode::OK);
    let refused = flooded
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    // At most one cell grows back during the flood on a slow machine.
    assert!(refused >= 19, "{refused} of 20 refused");

    let figures = server.figures().await;
    assert_eq!(
        figures.get("till_rate_limited_total", &[]),
        (refused + 1) as f64
    );
    assert_eq!(
        figures.get(
            "till_http_requests_total",
            &[("route", "/v1/push"), ("status", "429")]
        ),
        refused as f64
    );

    // Once its bucket refills, the runaway is served again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(server.pull(&runaway, "cursor=0").await.0, StatusCode::OK);
    server.stop().await;
}

/// The change of each named figure between two scrapes.
fn delta(before: &Figures, after: &Figures, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.get(name, labels) - before.get(name, labels)
}

#[tokio::test]
async fn metrics_move_with_real_pushes_pulls_and_errors() {
    let server = Server::start().await;
    let t1 = server.enroll("t1", "S1", "T1").await;
    let t2 = server.enroll("t1", "S1", "T2").await;
    let till1 = till(server.dir.path(), "t1", "S1", "T1");
    let (customer_id, bill_id) = customer_with_bill(&till1, "Asha Rao", "98765 43210");
    let batch = outbox(&till1, &[customer_id, bill_id]);
    let before = server.figures().await;

    server.push_ok(&t1, batch.clone()).await;
    server.push_ok(&t1, batch).await;
    let bad_phone = change(
        "S1/T1",
        "customer",
        &Uuid::now_v7().to_string(),
        json!({"name": "B", "phone": {"raw": "12", "e164": "+12", "shared": false}}),
        now_ms(),
    );
    let ahead = change(
        "S1/T1",
        "customer",
        &Uuid::now_v7().to_string(),
        json!({"name": "C"}),
        now_ms() + 86_400_000,
    );
    server.push_ok(&t1, vec![bad_phone, ahead]).await;
    let (pulled, _) = server.pull_all(&t2, 2).await;
    assert_eq!(pulled.len(), 3);
    let missing = server
        .http
        .get(format!("{}/nowhere", server.base))
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let after = server.figures().await;
    let d = |name: &str, labels: &[(&str, &str)]| delta(&before, &after, name, labels);
    assert_eq!(
        d("till_push_changes_total", &[("outcome", "accepted")]),
        3.0
    );
    assert_eq!(
        d("till_push_changes_total", &[("outcome", "duplicate")]),
        2.0
    );
    assert_eq!(
        d("till_push_changes_total", &[("outcome", "rejected")]),
        1.0
    );
    assert_eq!(
        d("till_push_rejected_total", &[("reason", "validation")]),
        1.0
    );
    assert_eq!(d("till_push_rejected_total", &[]), 1.0);
    assert_eq!(d("till_clock_clamps_total", &[]), 1.0);
    assert_eq!(d("till_pull_pages_total", &[]), 2.0);
    assert_eq!(d("till_pull_changes_total", &[]), 3.0);
    let push_ok = [("route", "/v1/push"), ("method", "POST"), ("status", "200")];
    assert_eq!(d("till_http_requests_total", &push_ok), 3.0);
    assert_eq!(
        d(
            "till_http_request_duration_seconds_count",
            &[("route", "/v1/push")]
        ),
        3.0
    );
    assert!(
        d(
            "till_http_request_duration_seconds_sum",
            &[("route", "/v1/push")]
        ) > 0.0
    );
    assert_eq!(
        d(
            "till_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        after.get("till_http_requests_in_flight", &[("route", "/v1/push")]),
        0.0
    );
    assert_eq!(d("till_storage_errors_total", &[]), 0.0);
    assert_eq!(d("till_rate_limited_total", &[]), 0.0);
    // The device's own clamp count agrees.
    let devices = server.storage.list_devices("t1").await.expect("devices");
    assert_eq!(devices[0].clock_clamps, 1);
    server.stop().await;
}

#[tokio::test]
async fn storage_failures_answer_500_without_detail_and_are_counted() {
    let server = Server::start().await;
    let token = server.enroll("t1", "S1", "T1").await;
    server
        .push_ok(&token, vec![customer("S1/T1", "Asha")])
        .await;
    let before = server.figures().await;
    // The log table vanishes under the server, as a damaged database would.
    let conn = rusqlite::Connection::open(
        server
            .dir
            .path()
            .join(till_sync_server::storage::sqlite::FILE_NAME),
    )
    .expect("open");
    conn.execute_batch("DROP TABLE log").expect("drop");
    for query in ["/v1/pull?cursor=0", "/v1/wait?cursor=0&timeout_ms=0"] {
        let resp = server
            .request(Method::GET, query, Some(&token))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR, "{query}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["code"], json!("internal"));
        assert!(!body["message"].as_str().unwrap_or("").contains("log"));
    }
    let after = server.figures().await;
    assert_eq!(
        delta(&before, &after, "till_storage_errors_total", &[]),
        2.0
    );
    assert_eq!(
        delta(
            &before,
            &after,
            "till_http_requests_total",
            &[("status", "500")]
        ),
        2.0
    );
    server.stop().await;
}

/// Spawns a wait of `token` with `query`; resolves to its status, body and duration.
fn spawn_wait(
    server: &Server,
    token: &str,
    query: &str,
) -> tokio::task::JoinHandle<(StatusCode, Value, Duration)> {
    let request = server.request(Method::GET, &format!("/v1/wait?{query}"), Some(token));
    tokio::spawn(async move {
        let started = Instant::now();
        let resp = request.send().await.expect("wait");
        let status = resp.status();
        let body = resp.json().await.expect("json");
        (status, body, started.elapsed())
    })
}

async fn waiters_open(server: &Server, n: usize) {
    server
        .figures_until(|f| f.get("till_waiters", &[]) == n as f64)
        .await;
}

#[tokio::test]
async fn a_wait_wakes_when_a_push_of_its_scope_commits() {
    // Re-checks far apart: only the push's notification can wake the wait in time.
    let limits = Limits {
        wait_recheck: Duration::from_secs(600),
        ..Limits::default()
    };
    let server = Server::start_with(limits).await;
    let seller = server.enroll("t1", "S1", "T1").await;
    let watcher = server.enroll("t1", "S1", "T2").await;
    let waiting = spawn_wait(&server, &watcher, "cursor=0&timeout_ms=20000");
    waiters_open(&server, 1).await;

    let till1 = till(server.dir.path(), "t1", "S1", "T1");
    let (c, b) = customer_with_bill(&till1, "Asha Rao", "98765 43210");
    let pushed_at = Instant::now();
    server.push_ok(&seller, outbox(&till1, &[c, b])).await;
    let (status, body, _) = waiting.await.expect("join");
    let woke_after = pushed_at.elapsed();
    eprintln!(
        "wait woke {} ms after the push began",
        woke_after.as_millis()
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"changes": true}));
    // Far below the 20 s timeout: only a broken wake-up takes this long.
    assert!(woke_after < Duration::from_secs(5), "{woke_after:?}");
    waiters_open(&server, 0).await;

    // A wait behind the head answers at once; at the head it waits.
    let (status, body) = server.wait(&watcher, "cursor=1&timeout_ms=20000").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"changes": true})));
    let (status, body) = server.wait(&watcher, "cursor=2&timeout_ms=0").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"changes": false})));
    server.stop().await;
}

#[tokio::test]
async fn a_wait_hears_of_a_push_to_another_instance_by_rechecking() {
    let limits = Limits {
        wait_recheck: Duration::from_millis(200),
        ..Limits::default()
    };
    let here = Server::start_with(limits.clone()).await;
    let there = here.beside(limits).await;
    let seller = here.enroll("t1", "S1", "T1").await;
    let watcher = here.enroll("t1", "S1", "T2").await;
    let waiting = spawn_wait(&here, &watcher, "cursor=0&timeout_ms=20000");
    waiters_open(&here, 1).await;

    // The push lands on the other instance: nothing notifies this one.
    let pushed_at = Instant::now();
    there
        .push_ok(&seller, vec![customer("S1/T1", "Asha")])
        .await;
    let (status, body, _) = waiting.await.expect("join");
    let heard_after = pushed_at.elapsed();
    eprintln!(
        "wait heard of another instance's push after {} ms",
        heard_after.as_millis()
    );
    assert_eq!((status, body), (StatusCode::OK, json!({"changes": true})));
    assert!(heard_after < Duration::from_secs(5), "{heard_after:?}");
    there.stop().await;
    here.stop().await;
}

#[tokio::test]
async fn a_wait_hears_only_of_what_its_device_may_see() {
    let server = Server::start().await;
    let seller = server.enroll("t1", "S1", "T1").await;
    let same_store = server.enroll("t1", "S1", "T2").await;
    let other_store = server.enroll("t1", "S2", "T1").await;
    let other_tenant = server.enroll("t2", "S1", "T1").await;
    let long = "cursor=0&timeout_ms=20000";
    let short = "cursor=0&timeout_ms=1500";
    let s1 = spawn_wait(&server, &same_store, long);
    let s2 = spawn_wait(&server, &other_store, short);
    let t2 = spawn_wait(&server, &other_tenant, short);
    waiters_open(&server, 3).await;

    // A walk-in sale of S1: a bill of S1 only.
    let till1 = till(server.dir.path(), "t1", "S1", "T1");
    let bill = till1
        .sell(
            NewBill {
                lines: vec![NewLine::item("TEA", "Tea", 1, 150)],
                ..NewBill::default()
            },
            &[Tender::cash(150)],
        )
        .expect("sell");
    server
        .push_ok(&seller, outbox(&till1, &[bill.id.to_string()]))
        .await;
    let (_, body, _) = s1.await.expect("join");
    assert_eq!(body, json!({"changes": true}), "S1 sees its store's bill");
    let (_, body, waited) = s2.await.expect("join");
    assert_eq!(body, json!({"changes": false}), "S2 does not see S1's bill");
    assert!(waited >= Duration::from_millis(1_500));
    let (_, body, _) = t2.await.expect("join");
    assert_eq!(body, json!({"changes": false}), "t2 sees nothing of t1");

    // A customer is the whole tenant's: S2 hears of it, t2 still does not.
    let s2 = spawn_wait(&server, &other_store, long);
    let t2 = spawn_wait(&server, &other_tenant, short);
    waiters_open(&server, 2).await;
    server
        .push_ok(&seller, vec![customer("S1/T1", "Ravi")])
        .await;
    assert_eq!(s2.await.expect("join").1, json!({"changes": true}));
    assert_eq!(t2.await.expect("join").1, json!({"changes": false}));
    server.stop().await;
}

#[tokio::test]
async fn a_wait_is_capped_and_its_parameters_checked() {
    let limits = Limits {
        max_wait: Duration::from_secs(1),
        ..Limits::default()
    };
    let server = Server::start_with(limits).await;
    let token = server.enroll("t1", "S1", "T1").await;
    let started = Instant::now();
    let (status, body) = server.wait(&token, "cursor=0&timeout_ms=600000").await;
    let waited = started.elapsed();
    assert_eq!((status, body), (StatusCode::OK, json!({"changes": false})));
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(10),
        "capped at 1 s, waited {waited:?}"
    );
    let (status, _) = server.wait(&token, "cursor=0").await;
    assert_eq!(status, StatusCode::OK, "no timeout given: the cap");

    for (query, status, code) in [
        ("cursor=-1", StatusCode::BAD_REQUEST, "bad_request"),
        ("cursor=x", StatusCode::BAD_REQUEST, "bad_request"),
        (
            "cursor=0&timeout_ms=-5",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        ("cursor=7", StatusCode::GONE, "rebootstrap_required"),
    ] {
        let (got, body) = server.wait(&token, query).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{query}"
        );
    }
    let resp = server
        .http
        .get(format!("{}/v1/wait?cursor=0", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::UPGRADE_REQUIRED);
    let resp = server
        .request(Method::GET, "/v1/wait?cursor=0", None)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn open_waits_are_limited_per_device_and_in_all() {
    let limits = Limits {
        max_waiters: 3,
        max_waiters_per_device: 2,
        ..Limits::default()
    };
    let server = Server::start_with(limits).await;
    let a = server.enroll("t1", "S1", "T1").await;
    let b = server.enroll("t1", "S1", "T2").await;
    let c = server.enroll("t1", "S1", "T3").await;
    let long = "cursor=0&timeout_ms=20000";
    let open = vec![spawn_wait(&server, &a, long), spawn_wait(&server, &a, long)];
    waiters_open(&server, 2).await;
    let resp = server
        .request(Method::GET, &format!("/v1/wait?{long}"), Some(&a))
        .send()
        .await
        .expect("send");
    assert_eq!(
        resp.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a third of A's"
    );
    assert_eq!(retry_after(&resp), Some(1));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], json!("rate_limited"));

    let mut open = open;
    open.push(spawn_wait(&server, &b, long));
    waiters_open(&server, 3).await;
    let resp = server
        .request(Method::GET, &format!("/v1/wait?{long}"), Some(&c))
        .send()
        .await
        .expect("send");
    assert_eq!(
        resp.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a fourth in all"
    );
    assert_eq!(retry_after(&resp), Some(1));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], json!("unavailable"));

    // A change wakes every open wait, and their places come back.
    server.push_ok(&c, vec![customer("S1/T3", "Meera")]).await;
    for wait in open {
        assert_eq!(wait.await.expect("join").1, json!({"changes": true}));
    }
    waiters_open(&server, 0).await;
    let (status, _) = server.wait(&c, "cursor=0&timeout_ms=0").await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn waits_end_when_their_clients_go_away() {
    let server = Server::start().await;
    let token = server.enroll("t1", "S1", "T1").await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut connections = Vec::new();
    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let request = format!(
            "GET /v1/wait?cursor=0&timeout_ms=20000 HTTP/1.1\r\nHost: {addr}\r\n\
             till-protocol: 1\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("send");
        connections.push(stream);
    }
    waiters_open(&server, 3).await;
    // The tills vanish without a word: their connections just close.
    drop(connections);
    let figures = server
        .figures_until(|f| f.get("till_waiters", &[]) == 0.0)
        .await;
    assert_eq!(
        figures.get("till_http_requests_in_flight", &[("route", "/v1/wait")]),
        0.0
    );
    server.stop().await;
}

#[tokio::test]
async fn a_push_past_the_time_limit_answers_503_and_still_lands_once() {
    let limits = Limits {
        request_timeout: Duration::from_secs(2),
        max_wait: Duration::from_millis(1_900),
        wait_recheck: Duration::from_secs(600),
        ..Limits::default()
    };
    let server = Server::start_with(limits).await;
    let token = server.enroll("t1", "S1", "T1").await;
    let watcher = server.enroll("t1", "S1", "T2").await;
    let batch = vec![customer("S1/T1", "Asha"), customer("S1/T1", "Ravi")];

    let lock = server.hold_write_lock();
    let resp = server
        .request(Method::POST, "/v1/push", Some(&token))
        .json(&json!({ "changes": batch }))
        .send()
        .await
        .expect("push");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after(&resp), Some(1));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], json!("timeout"));
    // A wait opened now hears of that batch when it commits, though its
    // request was answered long before: the push's task announces it.
    let (_, body) = server.wait(&watcher, "cursor=0&timeout_ms=0").await;
    assert_eq!(body, json!({"changes": false}), "not committed yet");
    let waiting = spawn_wait(&server, &watcher, "cursor=0");
    waiters_open(&server, 1).await;
    drop(lock);
    let (_, body, waited) = waiting.await.expect("join");
    assert_eq!(body, json!({"changes": true}), "the late commit is seen");
    assert!(
        waited < Duration::from_millis(1_900),
        "woken before its timeout"
    );

    // The batch the answer was lost for committed once the lock went; the
    // retry learns its sequences.
    let again = server.push_ok(&token, batch).await;
    let outcomes: Vec<_> = again.iter().map(|r| r["outcome"].clone()).collect();
    assert_eq!(outcomes, vec![json!("duplicate"), json!("duplicate")]);
    let (pulled, cursor) = server.pull_all(&token, 100).await;
    assert_eq!((pulled.len(), cursor), (2, 2));
    server.stop().await;
}

#[tokio::test]
async fn pull_pages_are_capped_whatever_the_client_asks() {
    let server = Server::start().await;
    let token = server.enroll("t1", "S1", "T1").await;
    let max = till_core::sync::protocol::MAX_PULL_PAGE as usize;
    let batch = till_core::sync::protocol::MAX_PUSH_BATCH;
    let all: Vec<Value> = (0..=max)
        .map(|i| customer("S1/T1", &format!("C{i}")))
        .collect();
    for chunk in all.chunks(batch) {
        server.push_ok(&token, chunk.to_vec()).await;
    }
    let (status, page) = server.pull(&token, "cursor=0&limit=5000").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["changes"].as_array().map(Vec::len), Some(max));
    assert_eq!(page["has_more"], json!(true));
    let (_, rest) = server
        .pull(&token, &format!("cursor={}&limit=5000", page["cursor"]))
        .await;
    assert_eq!(rest["changes"].as_array().map(Vec::len), Some(1));
    assert_eq!(rest["has_more"], json!(false));
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_waits_and_finishes_in_flight_pushes() {
    let mut server = Server::start().await;
    let pusher = server.enroll("t1", "S1", "T1").await;
    let watcher = server.enroll("t1", "S1", "T2").await;
    let waiting = spawn_wait(&server, &watcher, "cursor=0&timeout_ms=20000");
    waiters_open(&server, 1).await;

    // A push held mid-flight: the database is locked by another writer.
    let lock = server.hold_write_lock();
    let batch = vec![customer("S1/T1", "Asha"), customer("S1/T1", "Ravi")];
    let push = server
        .request(Method::POST, "/v1/push", Some(&pusher))
        .json(&json!({ "changes": batch }))
        .send();
    let push = tokio::spawn(push);
    server
        .figures_until(|f| f.get("till_http_requests_in_flight", &[("route", "/v1/push")]) == 1.0)
        .await;

    server.begin_shutdown();
    let (status, body, waited) = waiting.await.expect("join");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], json!("unavailable"));
    assert!(
        waited < Duration::from_secs(15),
        "the wait ended at shutdown"
    );
    // No new connections once shutdown began.
    let mut refused = false;
    for _ in 0..100 {
        let fresh = reqwest::Client::new();
        if fresh
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "still accepting connections");
    assert!(!push.is_finished(), "the push is still held");

    drop(lock);
    let resp = push.await.expect("join").expect("push answered");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("json");
    let outcomes: Vec<_> = body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["outcome"].clone())
        .collect();
    assert_eq!(outcomes, vec![json!("accepted"), json!("accepted")]);
    // The batch is in the database for the next start.
    let page = server
        .storage
        .pull(&scope("t1", "S1", "T2"), 0, 10)
        .await
        .expect("pull");
    assert_eq!(page.changes.len(), 2);
    server.stop().await;
}
