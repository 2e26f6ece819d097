//! `/metrics` as an operator's Prometheus sees it: counters move with real traffic, gauges read
//! the store, and no secret ever appears in the exposition.

mod common;

use common::receiver::Receiver;
use common::*;

const TOKEN: &str = "metrics-twilio-token";

/// The value of the sample whose name and labels are exactly `series`, or 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

async fn scrape(app: &TestApp) -> String {
    let r = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    r.text().await.unwrap()
}

crate::dual! {

    async fn metrics_follow_inbound_and_delivery_traffic() {
        let rx = Receiver::ok().await;
        let app = spawn_app().await;
        app.twilio_tenant("acme", TOKEN).await;
        let (_, secret) = app.subscribe("acme", &rx.url, &["call.*"]).await;

        let before = scrape(&app).await;
        assert_eq!(
            sample(
                &before,
                r#"hookgate_inbound_requests_total{provider="twilio",outcome="accepted"}"#
            ),
            0.0
        );

        // One new callback, the same callback again, and a forged one.
        app.twilio_status("acme", TOKEN, "CAmetrics1", "completed")
            .await;
        app.twilio_status("acme", TOKEN, "CAmetrics1", "completed")
            .await;
        let forged = hookgate::cli::twilio_request(
            hookgate::providers::Route::TwilioStatus,
            "acme",
            "not-the-token",
            &app.config.public_url,
            "completed",
            "CAmetrics2",
        );
        assert_eq!(app.send(&forged).await.status(), 401);
        app.wait_deliveries("acme", "succeeded", 1).await;

        let text = scrape(&app).await;
        let s = |series: &str| sample(&text, series);
        assert_eq!(
            s(r#"hookgate_inbound_requests_total{provider="twilio",outcome="accepted"}"#),
            1.0
        );
        assert_eq!(
            s(r#"hookgate_inbound_requests_total{provider="twilio",outcome="duplicate"}"#),
            1.0
        );
        assert_eq!(
            s(r#"hookgate_inbound_requests_total{provider="twilio",outcome="rejected"}"#),
            1.0
        );
        assert_eq!(
            s(r#"hookgate_verification_failures_total{provider="twilio",reason="bad_signature"}"#),
            1.0
        );
        assert_eq!(
            s(r#"hookgate_inbound_duplicates_total{provider="twilio"}"#),
            1.0
        );
        assert_eq!(
            s(r#"hookgate_inbound_responses_total{provider="twilio",status="204"}"#),
            2.0
        );
        assert_eq!(
            s(r#"hookgate_inbound_responses_total{provider="twilio",status="401"}"#),
            1.0
        );
        assert_eq!(
            s(r#"hookgate_ack_latency_seconds_count{provider="twilio"}"#),
            3.0
        );
        assert_eq!(
            s(r#"hookgate_delivery_attempts_total{outcome="succeeded"}"#),
            1.0
        );
        assert_eq!(s("hookgate_delivery_latency_seconds_count"), 1.0);
        assert_eq!(s("hookgate_delivery_attempt_latency_seconds_count"), 1.0);
        assert_eq!(s("hookgate_pending_deliveries"), 0.0);
        assert_eq!(s("hookgate_disabled_subscriptions"), 0.0);
        assert!(!text.contains(TOKEN), "no provider token in the metrics");
        assert!(
            !text.contains(&secret),
            "no subscription secret in the metrics"
        );
    }

    async fn gauges_count_pending_deliveries_and_disabled_subscriptions() {
        // A receiver that always fails, with retries far in the future: deliveries stay pending.
        let rx = Receiver::answering(500).await;
        let app = spawn_with(|m| {
            m.insert("retry_schedule".into(), "1h".into());
        })
        .await;
        app.twilio_tenant("acme", TOKEN).await;
        app.subscribe("acme", &rx.url, &["*"]).await;
        let (other, _) = app.subscribe("acme", &rx.url, &["*"]).await;
        for i in 0..3 {
            app.twilio_status("acme", TOKEN, &format!("CApend{i}"), "completed")
                .await;
        }
        rx.wait_for("both subscriptions tried all three", |r| r.len() >= 6)
            .await;
        // (The receiver logs a request before the gateway has recorded its attempt.)
        let retried = r#"hookgate_delivery_attempts_total{outcome="retry"}"#;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while sample(&scrape(&app).await, retried) < 6.0 {
            assert!(std::time::Instant::now() < deadline, "six retries never recorded");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        app.patch_subscription("acme", &other, serde_json::json!({"enabled": false}))
            .await;

        let text = scrape(&app).await;
        // At least the three deliveries of the enabled subscription wait for their retry.
        let pending = sample(&text, "hookgate_pending_deliveries");
        assert!(pending >= 3.0, "pending = {pending}\n{text}");
        assert_eq!(sample(&text, "hookgate_disabled_subscriptions"), 1.0);
        assert!(
            sample(
                &text,
                r#"hookgate_delivery_attempts_total{outcome="retry"}"#
            ) >= 6.0
        );
    }
}
