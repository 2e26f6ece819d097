//! Several gateway processes on one PostgreSQL database (runs when HOOKGATE_TEST_POSTGRES_URL is
//! set): callbacks spread over two instances, one is SIGKILLed mid-stream, and every acknowledged
//! event is delivered, none as two events; dedup holds across instances; a delivery is sent by
//! one instance, not both.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::backend::{fresh_database_url, postgres_url, Backend, BACKEND};
use common::process::{assert_all_delivered, setup_tenant, stream_and_kill, Gateway};
use common::receiver::Receiver;
use hookgate::cli::twilio_request;
use hookgate::providers::Route;

const TOKEN: &str = "scale-token";

/// Two ready gateways on a fresh PostgreSQL schema with tenant `acme` subscribed to `receiver`,
/// or None when no server is configured.
async fn two_gateways(
    dir: &tempfile::TempDir,
    client: &reqwest::Client,
    receiver: &Receiver,
) -> Option<(String, [Gateway; 2])> {
    postgres_url()?;
    let db = BACKEND
        .scope(Backend::Postgres, fresh_database_url(dir.path()))
        .await;
    // Short attempt timeout so a dead instance's leases expire within the test.
    let extra = [("HOOKGATE_DELIVERY_TIMEOUT", "1s")];
    let gws = [Gateway::spawn(&db, &extra), Gateway::spawn(&db, &extra)];
    for gw in &gws {
        gw.ready(client).await;
    }
    setup_tenant(client, &gws[0], TOKEN, &receiver.url).await;
    Some((db, gws))
}

#[tokio::test]
async fn two_instances_share_the_work_and_survive_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let rx = Receiver::ok().await;
    let Some((_, gws)) = two_gateways(&dir, &client, &rx).await else {
        eprintln!("HOOKGATE_TEST_POSTGRES_URL unset: skipped");
        return;
    };

    // Dedup across instances: one callback sent ten times to each instance at once.
    let sends = (0..20).map(|i| {
        let gw = &gws[i % 2];
        let req = twilio_request(
            Route::TwilioStatus,
            "acme",
            TOKEN,
            &gw.base,
            "completed",
            "CAtwice",
        );
        let client = &client;
        async move { gw.send(client, &req).await }
    });
    let acks = futures_util::future::join_all(sends).await;
    assert!(acks.iter().all(|ok| *ok), "every copy is acknowledged");

    // Healthy receiver, both alive: each event is sent once, by one instance.
    let warm = stream_and_kill(&client, &gws, 1, ("acme", TOKEN), "CAwarm", 80).await;
    // (instance 1 is killed with the last batch in flight.)
    let ids = assert_all_delivered(&client, &gws[0], &rx, &warm).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut sends: HashMap<String, usize> = HashMap::new();
    for r in rx.received() {
        *sends.entry(r.header("webhook-id")).or_default() += 1;
    }
    let twice: Vec<_> = sends.iter().filter(|(_, n)| **n > 1).collect();
    // Only a delivery in flight at the kill may be sent again (at least once); the rest once.
    assert!(twice.len() <= 8, "deliveries sent twice: {twice:?}");
    assert_eq!(
        ids.len(),
        warm.len() + 1,
        "one event per callback, the duplicate included once"
    );
}

#[tokio::test]
async fn a_killed_instance_has_its_deliveries_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    // The receiver fails while the instances accept callbacks, so deliveries pile up, some
    // leased by the instance that is killed.
    let rx = Receiver::answering(503).await;
    let Some((db, gws)) = two_gateways(&dir, &client, &rx).await else {
        eprintln!("HOOKGATE_TEST_POSTGRES_URL unset: skipped");
        return;
    };
    let acked = stream_and_kill(&client, &gws, 1, ("acme", TOKEN), "CAkill", 150).await;
    assert!(acked.len() >= 150);

    // A third instance joins; the receiver recovers. The survivors deliver everything.
    rx.set(Receiver::always(200));
    let third = Gateway::spawn(&db, &[("HOOKGATE_DELIVERY_TIMEOUT", "1s")]);
    third.ready(&client).await;
    assert_all_delivered(&client, &third, &rx, &acked).await;
}
