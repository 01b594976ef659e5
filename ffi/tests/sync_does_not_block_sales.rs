//! A long sync never holds up a sale. A server on 127.0.0.1 accepts the
//! sync's connection and never answers; while the sync waits on it, a
//! customer is found and a sale rung up on another thread, both complete,
//! and the sync is still waiting. Released, the sync ends with a typed
//! network error, and the sale waits in the outbox. Both the blocking and
//! the async sync are held to this.

use std::net::{TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use till_ffi::{
    BillStatus, NewBill, NewLine, SyncPhase, SyncProgress, Tender, TenderMethod, TillConfig,
    TillError, TillStore,
};

/// A server that accepts connections and never answers; each accepted
/// connection is handed to the test, which closes it to end the stall.
fn stalled_server() -> (String, mpsc::Receiver<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            if tx.send(conn).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

fn open(dir: &tempfile::TempDir, url: &str) -> Arc<TillStore> {
    let till = TillStore::open(TillConfig {
        database_path: dir.path().join("till.db").display().to_string(),
        tenant: "acme".into(),
        store_id: "S01".into(),
        device_id: "T01".into(),
        default_region: "IN".into(),
        currency: "INR".into(),
        store_name: "Acme Tea House".into(),
        server_url: Some(url.into()),
        device_token: Some("a-device-token".into()),
        // Long enough that only the test ends the stall; one attempt, so
        // closing the connection ends the sync at once.
        sync_request_timeout_ms: Some(120_000),
        sync_max_attempts: Some(1),
    })
    .expect("open");
    till.set_staff("priya".into()).expect("staff");
    till
}

/// Records the phases a sync reports.
#[derive(Default)]
struct Phases(Mutex<Vec<SyncPhase>>);

impl SyncProgress for Phases {
    fn phase(&self, phase: SyncPhase) {
        self.0.lock().expect("phases").push(phase);
    }
    fn pushed(&self, _acknowledged: u64, _quarantined: u64) {}
    fn pulled(&self, _changes: u64, _cursor: i64) {}
    fn retrying(&self, _attempt: u32, _delay_ms: u64, _cause: String) {}
}

type Sync =
    Box<dyn FnOnce(Arc<TillStore>, Arc<Phases>) -> Result<till_ffi::SyncSummary, TillError> + Send>;

fn a_sale_completes_while_a_sync_is_stalled(sync: Sync) {
    let dir = tempfile::tempdir().expect("dir");
    let (url, accepted) = stalled_server();
    let till = open(&dir, &url);
    let phases = Arc::new(Phases::default());

    let syncing = {
        let (till, phases) = (till.clone(), phases.clone());
        thread::spawn(move || sync(till, phases))
    };
    let conn = accepted
        .recv_timeout(Duration::from_secs(60))
        .expect("the sync reached the server");

    let found = till
        .find_or_create_by_phone("98765 43210".into(), "Asha Rao".into())
        .expect("customer while syncing");
    let bill = till
        .sell(
            NewBill {
                customer_id: Some(found.customer.id.clone()),
                price_mode: None,
                lines: vec![NewLine {
                    product_code: "TEA-250".into(),
                    name: "Assam Tea 250g".into(),
                    qty_milli: 2_000,
                    unit_price: 18_000,
                    discount: 0,
                    tax_category: String::new(),
                    tax_rate_bp: 0,
                }],
                bill_discount: 0,
            },
            vec![Tender {
                method: TenderMethod::Cash,
                amount: 40_000,
                reference: String::new(),
            }],
        )
        .expect("sale while syncing");
    assert_eq!(bill.status, BillStatus::Paid);
    assert_eq!(bill.change_due, 4_000);
    assert!(
        !syncing.is_finished(),
        "the sync must still be waiting on the server when the sale completes"
    );

    drop(conn);
    let err = syncing
        .join()
        .expect("sync thread")
        .expect_err("the server never answered");
    assert!(matches!(err, TillError::Network { .. }), "{err:?}");
    let seen = phases.0.lock().expect("phases").clone();
    assert_eq!(seen.first(), Some(&SyncPhase::Push), "{seen:?}");
    assert_eq!(seen.last(), Some(&SyncPhase::Finish), "{seen:?}");

    let status = till.sync_status().expect("status");
    assert_eq!(
        status.pending_changes, 2,
        "the customer and the sale wait to be pushed"
    );
    assert!(status.last_error.is_some());
    assert!(till.verify().expect("verify").ok);
}

#[test]
fn a_sale_completes_while_a_blocking_sync_is_stalled() {
    a_sale_completes_while_a_sync_is_stalled(Box::new(|till, phases| till.sync(phases)));
}

#[test]
fn a_sale_completes_while_an_async_sync_is_stalled() {
    a_sale_completes_while_a_sync_is_stalled(Box::new(|till, phases| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(till.sync_async(phases))
    }));
}
