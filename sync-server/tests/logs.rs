//! The server's logs as an operator gets them: the real `till-server`
//! binary, set up with its admin commands, serving JSON logs at trace level
//! while real tills push and pull customers with names, phones, emails and
//! notes, then stopped with SIGTERM. Every line is JSON, request lines carry
//! the request's id, and no personal value ever appears.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
use till_core::sync::protocol::PROTOCOL_HEADER;
use till_core::{NewBill, NewCustomer, NewLine, Store, StoreOptions, SyncConfig, Tender};

const BIN: &str = env!("CARGO_BIN_EXE_till-server");

/// Runs an admin command; returns its standard output.
fn admin(data: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("run till-server");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

fn till(dir: &Path, device: &str, url: &str, token: &str) -> (Store, SyncConfig) {
    let path = dir.join(format!("{device}.db"));
    let store = Store::open(StoreOptions::new(path, "t1", "S1", device)).expect("till");
    store.set_staff("priya").expect("staff");
    (store, SyncConfig::new(url, token.trim()))
}

#[test]
fn logs_carry_request_ids_and_never_personal_data() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("server");
    admin(&data, &["tenant", "create", "t1"]);
    admin(&data, &["store", "create", "--tenant", "t1", "S1"]);
    let token_a = admin(
        &data,
        &["device", "enroll", "--tenant", "t1", "--store", "S1", "T1"],
    );
    let token_b = admin(
        &data,
        &["device", "enroll", "--tenant", "t1", "--store", "S1", "T2"],
    );

    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--addr", "127.0.0.1:0", "--log-format", "json"])
        .env("TILL_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("log line");
            lines_tx.send(line.clone()).ok();
        }
    });
    let mut stderr = child.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).expect("stderr");
        text
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the server logs that it serves");
        let event: Value = serde_json::from_str(&line).expect("a JSON line");
        log.push(line);
        if event["fields"]["message"] == json!("serving") {
            break event["fields"]["addr"].as_str().expect("addr").to_owned();
        }
    };
    let url = format!("http://{addr}");

    // Real tills with real personal data, through the sync client.
    let secrets = [
        "Asha Rao",
        "98765 43210",
        "9876543210",
        "asha.rao@example.com",
        "likes green tea",
        "Ravi Kumar",
        "91234 56789",
        "9123456789",
        "Ravi.Kumar@Example.IN",
        "ravi.kumar@example.in",
        "Meenakshi",
        "meena@@broken",
    ];
    let (a, config_a) = till(dir.path(), "T1", &url, &token_a);
    let (b, config_b) = till(dir.path(), "T2", &url, &token_b);
    let asha = a
        .create_customer(
            NewCustomer::named("Asha Rao")
                .with_phone("98765 43210")
                .with_email("asha.rao@example.com"),
        )
        .expect("asha");
    let on_a = a.customer(asha.id).expect("read");
    a.update_customer(
        asha.id,
        on_a.version,
        till_core::CustomerUpdate {
            notes: Some("likes green tea".into()),
            ..till_core::CustomerUpdate::default()
        },
    )
    .expect("notes");
    a.sell(
        NewBill {
            customer_id: Some(asha.id),
            lines: vec![NewLine::item("TEA", "Tea", 1, 150)],
            ..NewBill::default()
        },
        &[Tender::cash(150)],
    )
    .expect("sell");
    b.create_customer(
        NewCustomer::named("Ravi Kumar")
            .with_phone("91234 56789")
            .with_email("Ravi.Kumar@Example.IN"),
    )
    .expect("ravi");
    a.sync(&config_a, &till_core::NoopObserver).expect("sync a");
    b.sync(&config_b, &till_core::NoopObserver).expect("sync b");
    a.sync(&config_a, &till_core::NoopObserver).expect("sync a");
    let client = till_core::SyncClient::new(&config_b).expect("client");
    client.wait_for_changes(&b, Duration::ZERO).expect("wait");

    // Requests the server refuses, carrying personal data all the same.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let http = reqwest::Client::new();
    let node = "S1/T1";
    let wall = till_sync_server::now_ms();
    let bad = json!({"changes": [{
        "change_id": uuid::Uuid::now_v7().to_string(),
        "entity": "customer",
        "entity_id": uuid::Uuid::now_v7().to_string(),
        "op": "create",
        "fields": {"name": "Meenakshi", "email": {"raw": "meena@@broken", "canonical": "meena@@broken", "shared": false}},
        "before": {},
        "hlc": format!("{wall:015}-0000000000-{node}"),
        "device": node,
        "staff": "priya",
        "at_ms": wall,
    }]});
    let request_id = runtime.block_on(async {
        let resp = http
            .post(format!("{url}/v1/push"))
            .header(PROTOCOL_HEADER, "1")
            .bearer_auth(token_a.trim())
            .json(&bad)
            .send()
            .await
            .expect("push");
        assert_eq!(resp.status(), reqwest::StatusCode::OK);
        let id = resp.headers()["x-request-id"]
            .to_str()
            .expect("id")
            .to_owned();
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["results"][0]["reason"], json!("validation"));
        let resp = http
            .post(format!("{url}/v1/push"))
            .header(PROTOCOL_HEADER, "1")
            .bearer_auth("till_not-a-real-token")
            .json(&bad)
            .send()
            .await
            .expect("push");
        assert_eq!(resp.status(), reqwest::StatusCode::UNAUTHORIZED);
        let resp = http
            .post(format!("{url}/v1/push"))
            .header(PROTOCOL_HEADER, "1")
            .bearer_auth(token_a.trim())
            .header("content-type", "application/json")
            .body(r#"{"changes": [{"name": "Meenakshi", "#)
            .send()
            .await
            .expect("push");
        assert_eq!(resp.status(), reqwest::StatusCode::BAD_REQUEST);
        // A body of the wrong shape: the parser's message quotes the value.
        let resp = http
            .post(format!("{url}/v1/push"))
            .header(PROTOCOL_HEADER, "1")
            .bearer_auth(token_a.trim())
            .json(&json!({"changes": "Meenakshi"}))
            .send()
            .await
            .expect("push");
        assert_eq!(resp.status(), reqwest::StatusCode::BAD_REQUEST);
        id
    });

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("exit");
    assert!(exit.success(), "a clean exit on SIGTERM: {exit:?}");
    reader.join().expect("reader");
    log.extend(lines.try_iter());
    let stderr = errors.join().expect("stderr");

    let events: Vec<Value> = log
        .iter()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let finished: Vec<&Value> = events
        .iter()
        .filter(|e| e["fields"]["message"] == json!("finished processing request"))
        .collect();
    // Three syncs, a wait and three refused pushes: at least 8 requests.
    assert!(finished.len() >= 8, "{} requests logged", finished.len());
    for event in &finished {
        let id = event["span"]["request_id"].as_str().unwrap_or("");
        assert_eq!(id.len(), 36, "a request id on {event}");
    }
    assert!(
        events
            .iter()
            .any(|e| e["span"]["request_id"] == json!(request_id)),
        "the id a client got back is in the log"
    );
    assert!(events
        .iter()
        .any(|e| e["fields"]["message"] == json!("push") && e["fields"]["rejected"] == json!(1)));
    assert!(log.iter().any(|l| l.contains("shutting down")));
    for secret in secrets {
        for (i, line) in log.iter().enumerate() {
            assert!(
                !line.contains(secret),
                "log line {i} holds {secret:?}: {line}"
            );
        }
        assert!(!stderr.contains(secret), "stderr holds {secret:?}");
    }
}
