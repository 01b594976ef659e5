//! `openapi.json` against the running server: the document lists exactly
//! the routes the server serves, and real exchanges with every route, its
//! successes and each error it documents, validate against the document's
//! schemas (JSON Schema 2020-12, as OpenAPI 3.1 uses). A route added to the
//! server fails this test until the document describes it, its answers
//! included; an answer the document does not describe fails it too.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;

use common::{change, customer_with_bill, outbox, scope, till, Server};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use till_core::sync::protocol::MAX_PUSH_BATCH;
use till_sync_server::ratelimit::RateLimit;
use till_sync_server::storage::{Horizon, Storage};
use till_sync_server::{endpoints, now_ms, Limits};
use uuid::Uuid;

const DOCUMENT: &str = include_str!("../openapi.json");

/// A request body to send.
enum Body {
    None,
    Json(Value),
    Raw(&'static str),
}

/// One real request and its answer.
struct Exchange {
    method: Method,
    route: String,
    status: StatusCode,
    headers: HeaderMap,
    body: String,
    request: Option<Value>,
}

/// The document, read for checking.
struct Contract {
    doc: Value,
}

impl Contract {
    fn load() -> Contract {
        let doc: Value = serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], json!("3.1.0"));
        Contract { doc }
    }

    /// Every (method, path) the document describes.
    fn routes(&self) -> BTreeSet<(String, String)> {
        let paths = self.doc["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                let methods = item.as_object().expect("path item");
                methods
                    .keys()
                    .map(move |m| (m.to_uppercase(), path.clone()))
            })
            .collect()
    }

    /// Follows a local `$ref`.
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(pointer) => {
                let target = pointer.strip_prefix('#').expect("a local reference");
                self.resolve(self.doc.pointer(target).expect("the reference resolves"))
            }
            None => value,
        }
    }

    fn operation(&self, method: &Method, route: &str) -> &Value {
        let op = &self.doc["paths"][route][method.as_str().to_lowercase()];
        assert!(op.is_object(), "{method} {route} is not documented");
        op
    }

    /// Validates `instance` against `schema` (which may refer into the
    /// document's components).
    fn validate(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let mut root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [schema],
        });
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::validator_for(&root).map_err(|e| e.to_string())?;
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{e} (at {})", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Checks one exchange; returns the response key it matched (a status
    /// or `default`).
    fn check(&self, x: &Exchange) -> String {
        let what = format!("{} {} -> {}", x.method, x.route, x.status);
        let op = self.operation(&x.method, &x.route);
        let code = x.status.as_u16().to_string();
        let key = if op["responses"].get(&code).is_some() {
            code
        } else {
            assert!(
                !x.status.is_success(),
                "{what}: a success must be documented by its status"
            );
            "default".to_owned()
        };
        let response = self.resolve(&op["responses"][&key]);
        assert!(response.is_object(), "{what}: not documented");

        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            let header = self.resolve(header);
            if header["required"] == json!(true) {
                assert!(x.headers.contains_key(name.as_str()), "{what}: no {name}");
            }
        }
        assert!(
            x.headers.contains_key("x-request-id"),
            "{what}: no request id"
        );

        match response["content"].as_object() {
            None => assert!(x.body.is_empty(), "{what}: documented without a body"),
            Some(content) => {
                let got = x
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let (media, spec) = content
                    .iter()
                    .find(|(media, _)| got.starts_with(media.as_str()))
                    .unwrap_or_else(|| panic!("{what}: content type {got} not documented"));
                let body = if media == "application/json" {
                    serde_json::from_str(&x.body)
                        .unwrap_or_else(|e| panic!("{what}: body is not JSON: {e}"))
                } else {
                    Value::String(x.body.clone())
                };
                if let Err(e) = self.validate(&spec["schema"], &body) {
                    panic!("{what}: the body breaks the document: {e}\n{body}");
                }
            }
        }

        if let (Some(request), true) = (&x.request, x.status.is_success()) {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            assert!(schema.is_object(), "{what}: request body not documented");
            if let Err(e) = self.validate(schema, request) {
                panic!("{what}: the request body breaks the document: {e}");
            }
        }
        key
    }
}

/// Sends `method path` (a query may follow) as a till would, with the
/// protocol header unless `protocol` is false.
async fn send(
    server: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    protocol: bool,
    body: Body,
) -> Exchange {
    let mut req = if protocol {
        server.request(method.clone(), path, token)
    } else {
        let req = server
            .http
            .request(method.clone(), format!("{}{path}", server.base));
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    };
    let request = match body {
        Body::None => None,
        Body::Json(value) => {
            req = req.json(&value);
            Some(value)
        }
        Body::Raw(text) => {
            req = req.header("content-type", "application/json").body(text);
            None
        }
    };
    let resp = req.send().await.expect("send");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.text().await.expect("body");
    Exchange {
        method,
        route: route_of(path),
        status,
        headers,
        body,
        request,
    }
}

/// The served route `path` (a query may follow) is an instance of:
/// `/v1/customers/{id}/bills` for `/v1/customers/0190.../bills`.
fn route_of(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    endpoints()
        .into_iter()
        .map(|(_, route)| route)
        .find(|route| {
            let pattern: Vec<&str> = route.split('/').collect();
            pattern.len() == segments.len()
                && pattern
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| p == s || p.starts_with('{'))
        })
        .unwrap_or(path)
        .to_owned()
}

#[test]
fn the_document_lists_exactly_the_served_routes() {
    let contract = Contract::load();
    let served: BTreeSet<(String, String)> = endpoints()
        .into_iter()
        .map(|(method, path)| (method.as_str().to_owned(), path.to_owned()))
        .collect();
    let documented = contract.routes();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served, not documented: {undocumented:?}"
    );
    assert!(unserved.is_empty(), "documented, not served: {unserved:?}");
}

#[test]
fn the_validator_rejects_what_the_document_does_not_allow() {
    let contract = Contract::load();
    let push = json!({"$ref": "#/components/schemas/PushResponse"});
    let good = json!({"results": [{"change_id": "a", "outcome": "accepted", "server_seq": 1}]});
    assert_eq!(contract.validate(&push, &good), Ok(()));
    for bad in [
        json!({"results": [{"change_id": "a", "outcome": "accepted"}]}),
        json!({"results": [{"change_id": "a", "outcome": "maybe", "server_seq": 1}]}),
        json!({"results": [], "extra": 1}),
        json!({"results": [{"change_id": "a", "outcome": "rejected", "reason": "nope", "message": ""}]}),
    ] {
        assert!(contract.validate(&push, &bad).is_err(), "{bad}");
    }
    let error = json!({"$ref": "#/components/schemas/Error"});
    assert!(contract
        .validate(&error, &json!({"code": "teapot", "message": "x"}))
        .is_err());
}

#[tokio::test]
async fn every_route_answers_as_the_document_says() {
    let contract = Contract::load();
    let mut seen: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut record = |x: Exchange| {
        let key = contract.check(&x);
        seen.entry((x.method.as_str().to_owned(), x.route.clone()))
            .or_default()
            .insert(key);
    };

    let server = Server::start().await;
    let token = server.enroll("t1", "S1", "T1").await;
    let t = Some(token.as_str());
    let revoked = server.enroll("t1", "S1", "T9").await;
    server
        .storage
        .revoke_device(&scope("t1", "S1", "T9"), now_ms())
        .await
        .expect("revoke");
    let store = till(server.dir.path(), "t1", "S1", "T1");
    let (customer, bill) = customer_with_bill(&store, "Asha Rao", "98765 43210");
    let batch = json!({ "changes": outbox(&store, &[customer.clone(), bill]) });
    let bad_phone = change(
        "S1/T1",
        "customer",
        &Uuid::now_v7().to_string(),
        json!({"name": "B", "phone": {"raw": "12", "e164": "+12", "shared": false}}),
        now_ms(),
    );
    let too_many: Vec<Value> = (0..=MAX_PUSH_BATCH).map(|_| json!(0)).collect();

    use Method as M;
    let p = "/v1/push";
    for x in [
        send(&server, M::POST, p, t, true, Body::Json(batch.clone())).await,
        send(&server, M::POST, p, t, true, Body::Json(batch)).await,
        send(
            &server,
            M::POST,
            p,
            t,
            true,
            Body::Json(json!({"changes": [bad_phone]})),
        )
        .await,
        send(&server, M::POST, p, t, true, Body::Raw("not json")).await,
        send(
            &server,
            M::POST,
            p,
            None,
            true,
            Body::Json(json!({"changes": []})),
        )
        .await,
        send(
            &server,
            M::POST,
            p,
            Some(&revoked),
            true,
            Body::Json(json!({"changes": []})),
        )
        .await,
        send(
            &server,
            M::POST,
            p,
            t,
            true,
            Body::Json(json!({"changes": too_many})),
        )
        .await,
        send(
            &server,
            M::POST,
            p,
            t,
            false,
            Body::Json(json!({"changes": []})),
        )
        .await,
    ] {
        record(x);
    }
    for path in [
        "/v1/pull?cursor=0",
        "/v1/pull?cursor=0&limit=1",
        "/v1/pull?cursor=abc",
        "/v1/pull?cursor=999",
        "/v1/wait?cursor=0",
        "/v1/wait?cursor=2&timeout_ms=0",
        "/v1/wait?cursor=-1",
        "/v1/wait?cursor=999",
    ] {
        record(send(&server, M::GET, path, t, true, Body::None).await);
        if path.ends_with("cursor=0") {
            record(send(&server, M::GET, path, None, true, Body::None).await);
            record(send(&server, M::GET, path, t, false, Body::None).await);
        }
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        record(send(&server, M::GET, path, None, false, Body::None).await);
    }
    let bills = format!("/v1/customers/{customer}/bills");
    for path in [
        "/v1/bootstrap",
        "/v1/bootstrap?after=garbage",
        bills.as_str(),
        &format!("{bills}?limit=1&after={}", Uuid::now_v7()),
        "/v1/customers/not-an-id/bills",
        &format!("{bills}?after=garbage"),
    ] {
        record(send(&server, M::GET, path, t, true, Body::None).await);
    }
    for path in ["/v1/bootstrap", bills.as_str()] {
        record(send(&server, M::GET, path, None, true, Body::None).await);
        record(send(&server, M::GET, path, t, false, Body::None).await);
    }
    // A snapshot paged through while the log is compacted past it: 410.
    let first = send(
        &server,
        M::GET,
        "/v1/bootstrap?limit=1",
        t,
        true,
        Body::None,
    )
    .await;
    let next: Value = serde_json::from_str(&first.body).expect("page");
    let next = next["next"].as_str().expect("a second page").to_owned();
    record(first);
    let (later, _) = customer_with_bill(&store, "Ravi Kumar", "98765 43211");
    server.push_ok(&token, outbox(&store, &[later])).await;
    server
        .storage
        .compact("t1", Horizon::Seq(i64::MAX))
        .await
        .expect("compact");
    let stale = format!("/v1/bootstrap?after={next}");
    record(send(&server, M::GET, &stale, t, true, Body::None).await);
    // Failures: the log table gone (500), then shutdown begun (readiness 503).
    rusqlite::Connection::open(
        server
            .dir
            .path()
            .join(till_sync_server::storage::sqlite::FILE_NAME),
    )
    .expect("open")
    .execute_batch("DROP TABLE log")
    .expect("drop");
    record(send(&server, M::GET, "/v1/pull?cursor=0", t, true, Body::None).await);
    server.state.shutdown.cancel();
    record(send(&server, M::GET, "/readyz", None, false, Body::None).await);
    server.stop().await;

    // A tight server: small bodies, one request a second, no open waits.
    let tight = Server::start_with(Limits {
        max_body_bytes: 1024,
        rate: RateLimit {
            per_second: NonZeroU32::MIN,
            burst: NonZeroU32::MIN,
        },
        max_waiters: 0,
        ..Limits::default()
    })
    .await;
    let big = tight.enroll("t1", "S1", "T1").await;
    let busy = tight.enroll("t1", "S1", "T2").await;
    let waiter = tight.enroll("t1", "S1", "T3").await;
    let name = "n".repeat(2_000);
    let large = json!({"changes": [change("S1/T1", "customer", &Uuid::now_v7().to_string(),
        json!({"name": name}), now_ms())]});
    record(send(&tight, M::POST, p, Some(&big), true, Body::Json(large)).await);
    record(
        send(
            &tight,
            M::GET,
            "/v1/wait?cursor=0",
            Some(&waiter),
            true,
            Body::None,
        )
        .await,
    );
    record(
        send(
            &tight,
            M::GET,
            "/v1/pull?cursor=0",
            Some(&busy),
            true,
            Body::None,
        )
        .await,
    );
    let tight_bills = format!("/v1/customers/{}/bills", Uuid::now_v7());
    for (method, path) in [
        (M::POST, p),
        (M::GET, "/v1/pull?cursor=0"),
        (M::GET, "/v1/wait?cursor=0"),
        (M::GET, "/v1/bootstrap"),
        (M::GET, tight_bills.as_str()),
    ] {
        let body = if method == M::POST {
            Body::Json(json!({"changes": []}))
        } else {
            Body::None
        };
        record(send(&tight, method, path, Some(&busy), true, body).await);
    }
    tight.stop().await;

    // Every route was seen succeeding, and answering every status it documents.
    for (method, route) in contract.routes() {
        let got = seen
            .get(&(method.clone(), route.clone()))
            .cloned()
            .unwrap_or_default();
        assert!(
            got.iter().any(|k| k.starts_with('2')),
            "{method} {route}: no success seen"
        );
        let op = &contract.doc["paths"][&route][method.to_lowercase()];
        for key in op["responses"].as_object().expect("responses").keys() {
            if key != "default" {
                assert!(
                    got.contains(key),
                    "{method} {route}: {key} never seen ({got:?})"
                );
            }
        }
    }
}
