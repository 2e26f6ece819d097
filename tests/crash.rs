//! Crash safety with real processes: hundreds of callbacks are acknowledged while the receiver
//! fails, the gateway is killed with SIGKILL, restarted on the same database, and every
//! acknowledged event still reaches the receiver (at least once; `webhook-id` deduplicates).

mod common;

use common::process::{assert_all_delivered, setup_tenant, stream_and_kill, Gateway};
use common::receiver::Receiver;

const TOKEN: &str = "crash-token";

#[tokio::test]
async fn sigkill_loses_no_acknowledged_callback() {
    let rx = Receiver::answering(500).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("crash.db").display());
    let client = reqwest::Client::new();
    let gw = Gateway::spawn(&db, &[]);
    gw.ready(&client).await;
    setup_tenant(&client, &gw, TOKEN, &rx.url).await;

    // Kill the gateway once 200 callbacks are acknowledged, with eight more in flight.
    let gws = [gw];
    let acked = stream_and_kill(&client, &gws, 0, ("acme", TOKEN), "CAcrash", 200).await;
    assert!(acked.len() >= 200);
    assert!(
        rx.received().iter().all(|r| r.status == 500),
        "nothing succeeded before the crash"
    );

    // Restart on the same database with a healthy receiver.
    rx.set(Receiver::always(200));
    let gw = Gateway::spawn(&db, &[]);
    gw.ready(&client).await;
    assert_all_delivered(&client, &gw, &rx, &acked).await;
}
