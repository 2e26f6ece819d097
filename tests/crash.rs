//! Crash safety with real processes: hundreds of callbacks are acknowledged while the receiver
//! fails, the gateway is killed with SIGKILL, restarted on the same database, and every
//! acknowledged event still reaches the receiver (at least once; `webhook-id` deduplicates).
//! And SIGTERM stops it gracefully: an attempt in flight finishes and is recorded.

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

#[tokio::test]
async fn sigterm_lets_the_attempt_in_flight_finish_and_be_recorded() {
    // The receiver takes a second to answer 200.
    let rx = Receiver::start(std::sync::Arc::new(|_, _| {
        (200, vec![], std::time::Duration::from_secs(1))
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("term.db").display());
    let client = reqwest::Client::new();
    let gw = Gateway::spawn(&db, &[]);
    gw.ready(&client).await;
    setup_tenant(&client, &gw, TOKEN, &rx.url).await;
    let req = hookgate::cli::twilio_request(
        hookgate::providers::Route::TwilioStatus,
        "acme",
        TOKEN,
        &gw.base,
        "completed",
        "CAterm",
    );
    assert!(gw.send(&client, &req).await);
    rx.wait_for("the attempt to start", |r| !r.is_empty()).await;
    assert!(
        gw.terminate(std::time::Duration::from_secs(10)).await,
        "exits 0 after SIGTERM"
    );
    // Restarted, it finds the delivery done: the attempt finished and was recorded, so it is
    // not sent again.
    let gw = Gateway::spawn(&db, &[]);
    gw.ready(&client).await;
    let r: serde_json::Value = gw
        .admin(
            &client,
            reqwest::Method::GET,
            "/v1/tenants/acme/deliveries",
            serde_json::Value::Null,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["data"][0]["status"], "succeeded", "{r}");
    assert_eq!(r["data"][0]["attempts"], 1, "{r}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(rx.received().len(), 1, "sent once");
}
