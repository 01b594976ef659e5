//! `cargo bench -p till-sync-server --bench ops [-- --quick]`: the figures
//! behind the server's operational defaults, taken from the real
//! `till-server` binary (bench profile) over loopback. Writes
//! `target/bench/ops.json`.
//!
//! - `ops.pull_pages_per_s`: one device pulling 200-change pages back to
//!   back, the rate the per-device rate limit is set against;
//! - `ops.wake`: from a push being sent to an open wait of another device
//!   answering (median, p99); target: a second till sees a sale within a
//!   second;
//! - `ops.wait_kib`: server memory per open long-poll wait (its resident
//!   set before and after opening 500 waits, each on its own connection),
//!   what `--max-waiters` is set against.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use till_bench::{Args, Report, Samples, Target};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_till-server");
/// Waits opened for the memory figure.
const WAITS: usize = 500;

fn admin(data: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("run till-server");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn enroll(data: &Path, device: &str) -> String {
    admin(
        data,
        &[
            "device", "enroll", "--tenant", "t1", "--store", "S1", device,
        ],
    )
}

/// Starts the server with limits out of the way; returns it and its address.
fn serve(data: &Path) -> (Child, String) {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--rate-per-sec",
            "1000000",
            "--rate-burst",
            "1000000",
            "--max-waiters",
            "1000",
            "--max-waiters-per-device",
            "1000",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = loop {
        let line = lines.next().expect("a log line").expect("utf-8");
        let event: Value = serde_json::from_str(&line).expect("JSON");
        if event["fields"]["message"] == json!("serving") {
            break event["fields"]["addr"].as_str().expect("addr").to_owned();
        }
    };
    // Keep draining the request log, as a log shipper would.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn customer(i: usize) -> Value {
    let wall = till_sync_server::now_ms();
    json!({
        "change_id": uuid::Uuid::now_v7().to_string(),
        "entity": "customer",
        "entity_id": uuid::Uuid::now_v7().to_string(),
        "op": "create",
        "fields": {"name": format!("Customer {i}")},
        "before": {},
        "hlc": format!("{wall:015}-0000000000-S1/P"),
        "device": "S1/P",
        "staff": "bench",
        "at_ms": wall,
    })
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn get(&self, token: &str, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("till-protocol", "1")
            .bearer_auth(token)
            .send()
            .await
            .expect("get");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.expect("json")
    }

    async fn push(&self, token: &str, changes: Vec<Value>) {
        let resp = self
            .http
            .post(format!("{}/v1/push", self.base))
            .header("till-protocol", "1")
            .bearer_auth(token)
            .json(&json!({ "changes": changes }))
            .send()
            .await
            .expect("push");
        assert!(resp.status().is_success(), "push: {}", resp.status());
    }

    async fn waiters(&self) -> usize {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .find_map(|l| l.strip_prefix("till_waiters "))
            .and_then(|v| v.trim().parse().ok())
            .expect("till_waiters")
    }

    async fn until_waiters(&self, n: usize) {
        for _ in 0..1_000 {
            if self.waiters().await == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("waiters never reached {n}");
    }
}

fn main() {
    let args = Args::from_env();
    let scale = args.scale();
    let changes = scale.pick(20_000, 200_000);
    let wakes = scale.pick(50, 300);
    let mut report = Report::new("ops", scale);
    report.scale_param("changes", changes as f64);
    report.scale_param("wakes", wakes as f64);
    report.scale_param("waits", WAITS as f64);

    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("server");
    admin(&data, &["tenant", "create", "t1"]);
    admin(&data, &["store", "create", "--tenant", "t1", "S1"]);
    let pusher = enroll(&data, "P");
    let reader = enroll(&data, "R");
    let waiter = enroll(&data, "W");
    let (mut child, addr) = serve(&data);
    let client = Client {
        http: reqwest::Client::new(),
        base: format!("http://{addr}"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    runtime.block_on(async {
        let all: Vec<Value> = (0..changes).map(customer).collect();
        for batch in all.chunks(500) {
            client.push(&pusher, batch.to_vec()).await;
        }

        // Pull pages back to back.
        let mut pages = Samples::new();
        let mut cursor = 0;
        let started = Instant::now();
        loop {
            let t = Instant::now();
            let page = client
                .get(&reader, &format!("/v1/pull?cursor={cursor}&limit=200"))
                .await;
            pages.record(t.elapsed());
            cursor = page["cursor"].as_i64().expect("cursor");
            if page["has_more"] == json!(false) {
                break;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        report.figure(
            "ops.pull_pages_per_s",
            pages.len() as f64 / elapsed,
            "pages/s",
            None,
        );
        report.latency("ops.pull_page", &pages, None);

        // Wake-ups: a wait open at the head, another device pushes one change.
        let mut wake = Samples::new();
        for i in 0..wakes {
            let request = client
                .http
                .get(format!(
                    "{}/v1/wait?cursor={cursor}&timeout_ms=20000",
                    client.base
                ))
                .header("till-protocol", "1")
                .bearer_auth(&waiter)
                .send();
            let waiting = tokio::spawn(request);
            client.until_waiters(1).await;
            let sent = Instant::now();
            client.push(&pusher, vec![customer(changes + i)]).await;
            let answer: Value = waiting
                .await
                .expect("join")
                .expect("wait")
                .json()
                .await
                .expect("json");
            wake.record(sent.elapsed());
            assert_eq!(answer, json!({"changes": true}));
            cursor += 1;
        }
        report.latency("ops.wake", &wake, Some(Target::AtMost(1_000_000.0)));

        // Memory per open wait, each on its own connection.
        client.until_waiters(0).await;
        let before = rss_kib(child.id());
        let mut open = Vec::with_capacity(WAITS);
        for _ in 0..WAITS {
            let mut stream = TcpStream::connect(&addr).await.expect("connect");
            let request = format!(
                "GET /v1/wait?cursor={cursor}&timeout_ms=20000 HTTP/1.1\r\nHost: {addr}\r\n\
                 till-protocol: 1\r\nAuthorization: Bearer {waiter}\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await.expect("send");
            open.push(stream);
        }
        client.until_waiters(WAITS).await;
        let after = rss_kib(child.id());
        report.figure("ops.wait_kib", (after - before) / WAITS as f64, "KiB", None);
        drop(open);
        client.until_waiters(0).await;
    });

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    child.wait().expect("exit");
    report.print_table();
    let path = report.write_json().expect("write");
    println!("wrote {}", path.display());
}
