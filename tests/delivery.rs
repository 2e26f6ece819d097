//! Outbound delivery end to end: a real receiver on loopback, signatures checked with an
//! independent implementation of Standard Webhooks, outcomes, retries, ordering, isolation.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::receiver::{answers, verify_standard, Received, Receiver};
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const TOKEN: &str = "tw-token";

fn verify_hookgate(secret: &str, r: &Received) -> bool {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let header = r.header("x-hookgate-signature");
    let mut parts = header.split(',');
    let t = parts.next().unwrap().strip_prefix("t=").unwrap().to_owned();
    assert_eq!(t, r.header("webhook-timestamp"));
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&r.body);
    let expected = hex::encode(mac.finalize().into_bytes());
    parts.any(|p| p == format!("v1={expected}"))
}

#[test]
fn standard_webhooks_vectors_sign_as_expected() {
    let v = vector("standard_webhooks.json");
    let cases = v["cases"].as_array().unwrap();
    let first = &cases[0];
    let key = hookgate::delivery::sign::secret_key(first["secret"].as_str().unwrap()).unwrap();
    for c in cases {
        let (secret, msg_id, ts, body) = match c.get("secret") {
            Some(s) => (
                s.as_str().unwrap(),
                c["msg_id"].as_str().unwrap(),
                c["timestamp"].as_i64().unwrap(),
                c["body"].as_str().unwrap(),
            ),
            None => (
                first["secret"].as_str().unwrap(),
                first["msg_id"].as_str().unwrap(),
                first["timestamp"].as_i64().unwrap(),
                first["body"].as_str().unwrap(),
            ),
        };
        let key = if c.get("secret").is_some() {
            hookgate::delivery::sign::secret_key(secret).unwrap()
        } else {
            key.clone()
        };
        let ours = hookgate::delivery::sign::standard_signature(&key, msg_id, ts, body.as_bytes());
        let valid = c
            .get("expect_valid")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        assert_eq!(ours == c["signature"].as_str().unwrap(), valid, "case {c}");
    }
}

async fn app_with_sub(types: &[&str], receiver: &Receiver) -> (TestApp, String, String) {
    let app = spawn_app().await;
    app.twilio_tenant("acme", TOKEN).await;
    let (id, secret) = app.subscribe("acme", &receiver.url, types).await;
    (app, id, secret)
}

crate::dual! {

    async fn accepted_callbacks_are_delivered_signed() {
        let rx = Receiver::ok().await;
        let (app, _, secret) = app_with_sub(&["call.*"], &rx).await;
        let started = Instant::now();
        app.twilio_status("acme", TOKEN, "CAd1", "completed").await;
        let got = rx.wait_for("one delivery", |r| !r.is_empty()).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the first attempt leaves at once"
        );
        let r = &got[0];
        let event = &app.events("acme").await[0];
        assert_eq!(r.json(), *event, "the body is the event as in the feed");
        assert_eq!(r.header("webhook-id"), event["id"].as_str().unwrap());
        assert_eq!(r.header("content-type"), "application/json");
        assert!(r.header("user-agent").starts_with("hookgate/"));
        assert_eq!(r.header("x-hookgate-event"), "call.completed");
        let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 5);
        assert!(
            verify_standard(&secret, r),
            "Standard Webhooks signature verifies"
        );
        assert!(verify_hookgate(&secret, r), "x-hookgate-signature verifies");
        assert!(!verify_standard(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            r
        ));
        let done = app.wait_deliveries("acme", "succeeded", 1).await;
        assert_eq!(done[0]["attempts"], 1);
        let attempts: Value = app
            .admin_get(&format!(
                "/v1/tenants/acme/events/{}/attempts",
                event["id"].as_str().unwrap()
            ))
            .await
            .json()
            .await
            .unwrap();
        let a = &attempts["data"][0];
        assert_eq!(a["attempt"], 1);
        assert_eq!(a["status_code"], 200);
        assert_eq!(a["error"], Value::Null);
        assert!(a["latency_ms"].as_i64().unwrap() >= 0);
    }

    async fn event_type_filters_choose_subscriptions() {
        let calls = Receiver::ok().await;
        let completed_only = Receiver::ok().await;
        let payments = Receiver::ok().await;
        let (app, _, _) = app_with_sub(&["call.*"], &calls).await;
        app.subscribe("acme", &completed_only.url, &["call.completed"])
            .await;
        app.subscribe("acme", &payments.url, &["payment.*"]).await;
        app.twilio_status("acme", TOKEN, "CAf1", "ringing").await;
        app.twilio_status("acme", TOKEN, "CAf1", "completed").await;
        calls.wait_for("two call events", |r| r.len() == 2).await;
        completed_only
            .wait_for("the completed event", |r| r.len() == 1)
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            completed_only.received()[0].header("x-hookgate-event"),
            "call.completed"
        );
        assert_eq!(completed_only.received().len(), 1);
        assert!(payments.received().is_empty());
        // Bad filters are refused.
        let r = app
            .admin_json(
                reqwest::Method::POST,
                "/v1/tenants/acme/subscriptions",
                json!({"url": calls.url, "event_types": ["call.complete"]}),
            )
            .await;
        assert_eq!(r.status(), 400);
    }

    async fn server_errors_are_retried_on_the_schedule() {
        let rx = Receiver::start(answers(vec![500, 503])).await;
        let (app, _, _) = app_with_sub(&["*"], &rx).await;
        app.twilio_status("acme", TOKEN, "CAr1", "completed").await;
        let got = rx.wait_for("three attempts", |r| r.len() == 3).await;
        // Schedule 100ms, 200ms.
        assert!(got[1].at - got[0].at >= Duration::from_millis(90));
        assert!(got[2].at - got[1].at >= Duration::from_millis(190));
        assert!(got
            .iter()
            .all(|r| r.header("webhook-id") == got[0].header("webhook-id")));
        let d = app.wait_deliveries("acme", "succeeded", 1).await;
        assert_eq!(d[0]["attempts"], 3);
        let event_id = got[0].header("webhook-id");
        let attempts: Value = app
            .admin_get(&format!("/v1/tenants/acme/events/{event_id}/attempts"))
            .await
            .json()
            .await
            .unwrap();
        let codes: Vec<i64> = attempts["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["status_code"].as_i64().unwrap())
            .collect();
        assert_eq!(codes, vec![500, 503, 200]);
        assert_eq!(attempts["data"][0]["error"], "HTTP 500");
    }

    async fn the_schedule_runs_out_and_client_errors_fail_at_once() {
        let rx = Receiver::start(answers(vec![500, 500, 500, 400])).await;
        let (app, _, _) = app_with_sub(&["*"], &rx).await;
        app.twilio_status("acme", TOKEN, "CAx1", "completed").await;
        app.wait_deliveries("acme", "failed", 1).await;
        assert_eq!(
            rx.received().len(),
            3,
            "first attempt + two scheduled retries"
        );
        app.twilio_status("acme", TOKEN, "CAx2", "completed").await;
        let failed = app.wait_deliveries("acme", "failed", 2).await;
        assert_eq!(failed[0]["attempts"], 1, "a 400 is not retried");
        assert_eq!(failed[0]["last_status_code"], 400);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(rx.received().len(), 4);
    }

    async fn retry_after_is_honoured_when_longer() {
        let rx = Receiver::start(Arc::new(|n, _| {
            if n == 0 {
                (429, vec![("retry-after", "1".to_owned())], Duration::ZERO)
            } else {
                (200, vec![], Duration::ZERO)
            }
        }))
        .await;
        let (app, _, _) = app_with_sub(&["*"], &rx).await;
        app.twilio_status("acme", TOKEN, "CAra", "completed").await;
        let got = rx.wait_for("the retry", |r| r.len() == 2).await;
        assert!(
            got[1].at - got[0].at >= Duration::from_millis(950),
            "{:?}",
            got[1].at - got[0].at
        );
        app.wait_deliveries("acme", "succeeded", 1).await;
    }

    async fn gone_disables_the_subscription_and_tells_the_others() {
        let gone = Receiver::start(answers(vec![410])).await;
        let watcher = Receiver::ok().await;
        let (app, gone_id, _) = app_with_sub(&["call.*"], &gone).await;
        app.subscribe("acme", &watcher.url, &["subscription.disabled"])
            .await;
        app.twilio_status("acme", TOKEN, "CAg", "completed").await;
        let got = watcher
            .wait_for("subscription.disabled", |r| !r.is_empty())
            .await;
        let ev = got[0].json();
        assert_eq!(ev["type"], "subscription.disabled");
        assert_eq!(ev["data"]["subscription_id"], gone_id.as_str());
        let sub: Value = app
            .admin_get(&format!("/v1/tenants/acme/subscriptions/{gone_id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(sub["enabled"], false);
        assert!(sub["disabled_reason"].as_str().unwrap().contains("410"));
        // A disabled subscription gets nothing more.
        app.twilio_status("acme", TOKEN, "CAg2", "completed").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(gone.received().len(), 1);
    }

    async fn ten_failed_deliveries_in_a_row_disable_the_subscription() {
        let bad = Receiver::start(answers(vec![400; 100])).await;
        let watcher = Receiver::ok().await;
        let (app, bad_id, _) = app_with_sub(&["call.*"], &bad).await;
        app.subscribe("acme", &watcher.url, &["subscription.*"])
            .await;
        app.completed_calls("acme", TOKEN, "CAbad", 10).await;
        watcher
            .wait_for("subscription.disabled", |r| !r.is_empty())
            .await;
        let sub: Value = app
            .admin_get(&format!("/v1/tenants/acme/subscriptions/{bad_id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(sub["enabled"], false);
        // Re-enabling through the API starts a new streak.
        let sub = app
            .patch_subscription("acme", &bad_id, json!({"enabled": true}))
            .await;
        assert_eq!(sub["enabled"], true);
    }

    async fn events_of_one_call_arrive_in_order_without_holding_up_other_calls() {
        // The first delivery (call A ringing) fails once; everything else succeeds.
        let rx = Receiver::start(Arc::new(|_, body: &Value| {
            static FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if body["data"]["call_id"] == "CAorderA"
                && !FAILED.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                (503, vec![], Duration::ZERO)
            } else {
                (200, vec![], Duration::ZERO)
            }
        }))
        .await;
        let app = spawn_with(|m| {
            m.insert("retry_schedule".into(), "700ms".into());
        })
        .await;
        app.twilio_tenant("acme", TOKEN).await;
        app.subscribe("acme", &rx.url, &["*"]).await;
        for st in ["ringing", "in-progress", "completed"] {
            app.twilio_status("acme", TOKEN, "CAorderA", st).await;
        }
        app.twilio_status("acme", TOKEN, "CAorderB", "completed")
            .await;
        let got = rx.wait_for("all deliveries", |r| r.len() == 5).await;
        let seq: Vec<(String, String, u16)> = got
            .iter()
            .map(|r| {
                (
                    r.json()["data"]["call_id"].as_str().unwrap().to_owned(),
                    r.header("x-hookgate-event"),
                    r.status,
                )
            })
            .collect();
        let a: Vec<_> = seq
            .iter()
            .filter(|s| s.0 == "CAorderA")
            .map(|s| (s.1.as_str(), s.2))
            .collect();
        assert_eq!(
            a,
            vec![
                ("call.ringing", 503),
                ("call.ringing", 200),
                ("call.answered", 200),
                ("call.completed", 200)
            ]
        );
        // Call B was not held up behind call A's retry.
        let b_pos = seq.iter().position(|s| s.0 == "CAorderB").unwrap();
        let retry_pos = seq
            .iter()
            .position(|s| s.0 == "CAorderA" && s.2 == 200)
            .unwrap();
        assert!(b_pos < retry_pos, "{seq:?}");
    }

    async fn a_dead_receiver_does_not_slow_a_healthy_one() {
        let dead = Receiver::start(Arc::new(|_, _| (200, vec![], Duration::from_secs(3)))).await;
        let healthy = Receiver::ok().await;
        let app = spawn_with(|m| {
            m.insert("delivery_timeout".into(), "1s".into());
        })
        .await;
        app.twilio_tenant("acme", TOKEN).await;
        app.subscribe("acme", &dead.url, &["*"]).await;
        app.subscribe("acme", &healthy.url, &["*"]).await;
        let start = Instant::now();
        app.completed_calls("acme", TOKEN, "CAiso", 100).await;
        healthy.wait_for("100 deliveries", |r| r.len() == 100).await;
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "healthy receiver waited {:?}",
            start.elapsed()
        );
        let timeouts = app.wait_deliveries("acme", "pending", 1).await;
        assert!(!timeouts.is_empty());
    }

    async fn rotation_signs_with_both_secrets_during_the_grace_period() {
        let rx = Receiver::ok().await;
        let (app, id, old) = app_with_sub(&["*"], &rx).await;
        let r: Value = app
            .admin_json(
                reqwest::Method::POST,
                &format!("/v1/tenants/acme/subscriptions/{id}/rotate-secret"),
                json!({"grace_seconds": 3600}),
            )
            .await
            .json()
            .await
            .unwrap();
        let new = r["secret"].as_str().unwrap().to_owned();
        assert_ne!(new, old);
        let shown: Value = app
            .admin_get(&format!("/v1/tenants/acme/subscriptions/{id}/secret"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(shown["secret"], new.as_str());
        app.twilio_status("acme", TOKEN, "CArot", "completed").await;
        let got = rx.wait_for("delivery", |r| !r.is_empty()).await;
        assert!(verify_standard(&old, &got[0]) && verify_standard(&new, &got[0]));
        assert!(verify_hookgate(&old, &got[0]) && verify_hookgate(&new, &got[0]));
        // Without grace, only the new secret signs.
        let r: Value = app
            .admin_json(
                reqwest::Method::POST,
                &format!("/v1/tenants/acme/subscriptions/{id}/rotate-secret"),
                json!({"grace_seconds": 0}),
            )
            .await
            .json()
            .await
            .unwrap();
        let newest = r["secret"].as_str().unwrap().to_owned();
        app.twilio_status("acme", TOKEN, "CArot2", "completed")
            .await;
        let got = rx.wait_for("second delivery", |r| r.len() == 2).await;
        assert!(verify_standard(&newest, &got[1]) && !verify_standard(&new, &got[1]));
        // The list and read views never show a secret.
        let listed = app
            .admin_get("/v1/tenants/acme/subscriptions")
            .await
            .text()
            .await
            .unwrap();
        assert!(!listed.contains("whsec_"), "{listed}");
    }

    async fn test_recover_and_redeliver() {
        let rx = Receiver::start(answers(vec![200, 400])).await;
        let (app, id, secret) = app_with_sub(&["call.*"], &rx).await;
        let r: Value = app
            .admin_json(
                reqwest::Method::POST,
                &format!("/v1/tenants/acme/subscriptions/{id}/test"),
                json!({}),
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(r["success"], true);
        assert_eq!(r["status_code"], 200);
        let got = rx.received();
        assert_eq!(got[0].header("x-hookgate-event"), "webhook.test");
        assert!(verify_standard(&secret, &got[0]));
        // A 400 fails the delivery; recover re-queues it; it then succeeds.
        let since = chrono::Utc::now().to_rfc3339();
        app.twilio_status("acme", TOKEN, "CArec", "completed").await;
        app.wait_deliveries("acme", "failed", 1).await;
        let r: Value = app
            .admin_json(
                reqwest::Method::POST,
                &format!("/v1/tenants/acme/subscriptions/{id}/recover"),
                json!({"since": since}),
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(r["requeued"], 1);
        app.wait_deliveries("acme", "succeeded", 2).await;
        // Redeliver sends the same event again with the same webhook-id.
        let event_id = rx.received()[1].header("webhook-id");
        let r = app
            .admin_json(
                reqwest::Method::POST,
                &format!("/v1/tenants/acme/events/{event_id}/redeliver"),
                json!({}),
            )
            .await;
        assert_eq!(r.status(), 202);
        let got = rx.wait_for("redelivery", |r| r.len() == 4).await;
        assert_eq!(got[3].header("webhook-id"), event_id);
        let r = app
            .admin_json(
                reqwest::Method::POST,
                "/v1/tenants/acme/events/evt_nope/redeliver",
                json!({}),
            )
            .await;
        assert_eq!(r.status(), 404);
        // (The receiver has the redelivery before its attempt is recorded.)
        app.wait_deliveries("acme", "succeeded", 3).await;
        let filtered: Value = app
            .admin_get(&format!(
                "/v1/tenants/acme/deliveries?subscription_id={id}&status=succeeded"
            ))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(filtered["data"].as_array().unwrap().len(), 3);
    }

    async fn outbound_safety_rules_hold() {
        let strict = spawn_with(|m| {
            m.insert("allow_http_targets".into(), "false".into());
            m.insert("allow_private_targets".into(), "".into());
        })
        .await;
        strict.twilio_tenant("acme", TOKEN).await;
        for url in [
            "http://example.com/hook",
            "https://127.0.0.1/hook",
            "https://[::1]/x",
            "https://169.254.169.254/latest",
            "ftp://x.com",
        ] {
            let r = strict
                .admin_json(
                    reqwest::Method::POST,
                    "/v1/tenants/acme/subscriptions",
                    json!({"url": url}),
                )
                .await;
            assert_eq!(r.status(), 400, "{url}");
            assert_eq!(
                r.json::<Value>().await.unwrap()["error"]["code"],
                "invalid_url"
            );
        }
        // A name that resolves to loopback is refused when connecting.
        let app = spawn_with(|m| {
            m.insert("allow_private_targets".into(), "".into());
            m.insert("retry_schedule".into(), "".into());
        })
        .await;
        app.twilio_tenant("acme", TOKEN).await;
        let rx = Receiver::ok().await;
        let port = rx
            .url
            .split(':')
            .nth(2)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        app.subscribe("acme", &format!("http://localhost:{port}/hook"), &["*"])
            .await;
        app.twilio_status("acme", TOKEN, "CAssrf", "completed")
            .await;
        let failed = app.wait_deliveries("acme", "failed", 1).await;
        assert!(
            failed[0]["last_error"]
                .as_str()
                .unwrap()
                .contains("may not reach"),
            "{}",
            failed[0]
        );
        assert!(rx.received().is_empty());
        // Redirects are not followed.
        let target = Receiver::ok().await;
        let redirect = Receiver::start(Arc::new({
            let to = target.url.clone();
            move |_, _| (302, vec![("location", to.clone())], Duration::ZERO)
        }))
        .await;
        let app2 = spawn_with(|m| {
            m.insert("retry_schedule".into(), "".into());
        })
        .await;
        app2.twilio_tenant("acme", TOKEN).await;
        app2.subscribe("acme", &redirect.url, &["*"]).await;
        app2.twilio_status("acme", TOKEN, "CAredir", "completed")
            .await;
        let failed = app2.wait_deliveries("acme", "failed", 1).await;
        assert_eq!(failed[0]["last_status_code"], 302);
        assert!(target.received().is_empty());
    }

    async fn graceful_shutdown_lets_in_flight_attempts_finish() {
        let rx = Receiver::start(Arc::new(|_, _| (200, vec![], Duration::from_millis(700)))).await;
        let (app, _, _) = app_with_sub(&["*"], &rx).await;
        app.twilio_status("acme", TOKEN, "CAgrace", "completed")
            .await;
        rx.wait_for("the attempt to start", |r| !r.is_empty()).await;
        let map = {
            let mut m = std::collections::BTreeMap::new();
            m.insert("database_url".to_owned(), app.config.database_url.clone());
            m.insert("admin_token".to_owned(), ADMIN.to_owned());
            m.insert("allow_http_targets".to_owned(), "true".to_owned());
            m.insert("allow_private_targets".to_owned(), "127.0.0.0/8".to_owned());
            m
        };
        let dir = app.stop().await;
        let app = start(map, dir).await;
        let done = app.wait_deliveries("acme", "succeeded", 1).await;
        assert_eq!(done[0]["attempts"], 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            rx.received().len(),
            1,
            "the finished attempt was recorded, not sent again"
        );
    }

    async fn a_dead_receivers_backlog_does_not_starve_the_retries_of_others() {
        // The dead receiver holds every attempt 5 s and then fails it: its slots and its queue
        // fill, and the rest of its backlog waits, due, in the database.
        let dead = Receiver::start(Arc::new(|_, _| (503, vec![], Duration::from_secs(5)))).await;
        let healthy = Receiver::ok().await;
        let app = spawn_with(|m| {
            m.insert("delivery_timeout".into(), "10s".into());
            m.insert("retry_schedule".into(), "100ms,100ms,100ms".into());
        })
        .await;
        app.twilio_tenant("acme", TOKEN).await;
        app.subscribe("acme", &dead.url, &["*"]).await;
        app.subscribe("acme", &healthy.url, &["*"]).await;
        app.completed_calls("acme", TOKEN, "CAst", 900).await;
        healthy.wait_for("900 deliveries", |r| r.len() == 900).await;
        // More due deliveries of the dead subscription than one claim takes: the healthy
        // receiver now fails once, and that retry must still be claimed at once.
        healthy.set(Arc::new(|n, _| (if n == 900 { 503 } else { 200 }, vec![], Duration::ZERO)));
        let start = Instant::now();
        app.twilio_status("acme", TOKEN, "CAstlast", "completed").await;
        healthy.wait_for("the failed attempt and its retry", |r| r.len() == 902).await;
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the healthy retry waited {:?} behind a dead receiver's backlog",
            start.elapsed()
        );
    }

    async fn an_attempt_longer_than_the_timeout_is_cut_and_retried() {
        let rx = Receiver::start(Arc::new(|n, _| {
            (200, vec![], if n == 0 { Duration::from_secs(5) } else { Duration::ZERO })
        }))
        .await;
        let app = spawn_with(|m| {
            m.insert("delivery_timeout".into(), "500ms".into());
        })
        .await;
        app.twilio_tenant("acme", TOKEN).await;
        app.subscribe("acme", &rx.url, &["*"]).await;
        app.twilio_status("acme", TOKEN, "CAslow", "completed").await;
        app.wait_deliveries("acme", "succeeded", 1).await;
        let event_id = rx.received()[0].header("webhook-id");
        let r: Value = app
            .admin_get(&format!("/v1/tenants/acme/events/{event_id}/attempts"))
            .await
            .json()
            .await
            .unwrap();
        let attempts = r["data"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{attempts:?}");
        let first = &attempts[0];
        assert_eq!(first["status_code"], Value::Null);
        assert!(first["error"].as_str().unwrap().starts_with("timeout"), "{first}");
        let ms = first["latency_ms"].as_i64().unwrap();
        assert!((400..2000).contains(&ms), "the attempt was cut at the timeout: {ms} ms");
        assert_eq!(attempts[1]["status_code"], 200);
    }

    async fn stored_response_bodies_are_capped() {
        // A receiver that answers 400 with a 100 kB body.
        let big = "x".repeat(100_000);
        let app = spawn_app().await;
        let body = big.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let body = body.clone();
                async move { (axum::http::StatusCode::BAD_REQUEST, body) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        app.twilio_tenant("acme", TOKEN).await;
        app.subscribe("acme", &url, &["*"]).await;
        app.twilio_status("acme", TOKEN, "CAbig", "completed").await;
        app.wait_deliveries("acme", "failed", 1).await;
        let event_id = app.events("acme").await[0]["id"].as_str().unwrap().to_owned();
        let r: Value = app
            .admin_get(&format!("/v1/tenants/acme/events/{event_id}/attempts"))
            .await
            .json()
            .await
            .unwrap();
        let stored = r["data"][0]["response_body"].as_str().unwrap();
        assert_eq!(stored.len(), 4096, "a 100 kB answer is stored as its first 4 KiB");
        assert!(big.starts_with(stored));
    }

    async fn the_first_attempt_is_handed_over_in_process_not_polled() {
        let rx = Receiver::ok().await;
        let app = spawn_with(|m| {
            m.insert("poll_interval".into(), "30s".into());
        })
        .await;
        app.twilio_tenant("acme", TOKEN).await;
        app.subscribe("acme", &rx.url, &["*"]).await;
        let mut waits = Vec::new();
        for i in 0..20 {
            let start = Instant::now();
            app.twilio_status("acme", TOKEN, &format!("CAwake{i}"), "completed").await;
            rx.wait_for("the delivery", |r| r.len() == i + 1).await;
            waits.push(start.elapsed());
        }
        waits.sort();
        // With a 30 s poll, only the in-process hand-off can deliver in well under a second.
        assert!(waits[19] < Duration::from_secs(1), "slowest callback → receiver: {:?}", waits[19]);
    }

    async fn recovering_a_disabled_subscription_is_refused() {
        let rx = Receiver::ok().await;
        let (app, id, _) = app_with_sub(&["*"], &rx).await;
        app.patch_subscription("acme", &id, json!({"enabled": false}))
            .await;
        let r = app
            .admin_json(
                reqwest::Method::POST,
                &format!("/v1/tenants/acme/subscriptions/{id}/recover"),
                json!({"since": "2026-01-01T00:00:00Z"}),
            )
            .await;
        assert_eq!(error_code(r).await, (409, "subscription_disabled".into()));
    }

    async fn plain_http_is_refused_at_send_time_once_no_longer_allowed() {
        let rx = Receiver::ok().await;
        let (app, _, _) = app_with_sub(&["*"], &rx).await;
        let map = {
            let mut m = std::collections::BTreeMap::new();
            m.insert("database_url".to_owned(), app.config.database_url.clone());
            m.insert("admin_token".to_owned(), ADMIN.to_owned());
            m.insert("allow_http_targets".to_owned(), "false".to_owned());
            m.insert("allow_private_targets".to_owned(), "127.0.0.0/8".to_owned());
            m.insert("retry_schedule".to_owned(), "none".to_owned());
            m
        };
        let dir = app.stop().await;
        let app = start(map, dir).await;
        app.twilio_status("acme", TOKEN, "CAplain", "completed").await;
        let failed = app.wait_deliveries("acme", "failed", 1).await;
        assert!(
            failed[0]["last_error"].as_str().unwrap().contains("scheme"),
            "{}",
            failed[0]
        );
        assert!(rx.received().is_empty(), "nothing went out over plain HTTP");
    }

    async fn a_backlog_larger_than_memory_holds_goes_through_the_database_once_each() {
        // 600 callbacks at a receiver that takes 100 ms per request: more than the 64 in flight
        // and 256 queued per subscription, so most of the backlog is handed back to the database
        // and claimed later. Every event arrives exactly once.
        let rx = Receiver::start(Arc::new(|_, _| (200, vec![], Duration::from_millis(100)))).await;
        let (app, _, _) = app_with_sub(&["*"], &rx).await;
        app.completed_calls("acme", TOKEN, "CAspill", 600).await;
        app.wait_deliveries("acme", "succeeded", 600).await;
        let got = rx.received();
        let ids: std::collections::HashSet<String> =
            got.iter().map(|r| r.header("webhook-id")).collect();
        assert_eq!(ids.len(), 600, "every event delivered");
        assert_eq!(got.len(), 600, "none delivered twice");
    }
}
