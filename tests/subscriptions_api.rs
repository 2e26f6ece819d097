//! The subscription API and delivery outcomes as a user sees them (SPEC §2, §5): retries over
//! real loopback HTTP (408, 3xx, connection refused, `Retry-After` as a date), the auto-disable
//! streak, and the subscription routes' answers and effects.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::receiver::{answers, verify_standard, Receiver};
use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "tw-token";

/// A gateway with `retry_schedule` and a Twilio tenant `acme`.
async fn app_with_schedule(schedule: &str) -> TestApp {
    let app = spawn_with(|m| {
        m.insert("retry_schedule".into(), schedule.into());
    })
    .await;
    app.twilio_tenant("acme", TOKEN).await;
    app
}

fn sub_path(id: &str) -> String {
    format!("/v1/tenants/acme/subscriptions/{id}")
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let r = app.admin_get(path).await;
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.unwrap()
}

/// The id of the tenant's newest event.
async fn newest_event_id(app: &TestApp) -> String {
    app.events("acme").await.last().expect("an event")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits (10 s at most) until the event has at least `n` recorded attempts; returns them.
async fn wait_attempts(app: &TestApp, event_id: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get_json(app, &format!("/v1/tenants/acme/events/{event_id}/attempts")).await;
        let rows = r["data"].as_array().unwrap().clone();
        if rows.len() >= n {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} attempts of {event_id}, have {}",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh `whsec_` secret of 32 bytes, made here rather than by hookgate.
fn own_secret() -> String {
    let bytes: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// A plain HTTP server that counts every request, whatever its method (a redirect trap).
async fn counting_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let router = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            "trapped"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/elsewhere", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, hits)
}

crate::dual! {

    async fn a_request_timeout_answer_is_retried_and_then_delivered() {
        let rx = Receiver::start(answers(vec![408])).await;
        let app = app_with_schedule("100ms,100ms").await;
        app.subscribe("acme", &rx.url, &["*"]).await;
        app.twilio_status("acme", TOKEN, "CA408", "completed").await;
        let done = app.wait_deliveries("acme", "succeeded", 1).await;
        assert_eq!(done[0]["attempts"], 2, "delivered on the second attempt");
        assert_eq!(done[0]["last_status_code"], 200);
        let event_id = newest_event_id(&app).await;
        let attempts = wait_attempts(&app, &event_id, 2).await;
        let codes: Vec<&Value> = attempts.iter().map(|a| &a["status_code"]).collect();
        assert_eq!(codes, vec![&json!(408), &json!(200)]);
        assert_eq!(attempts[0]["error"], "HTTP 408");
        assert_eq!(rx.received().len(), 2);
    }

    async fn a_redirect_is_retried_not_followed() {
        let (elsewhere, trapped) = counting_server().await;
        let rx = Receiver::start(Arc::new(move |n, _| {
            if n == 0 {
                (302, vec![("location", elsewhere.clone())], Duration::ZERO)
            } else {
                (200, vec![], Duration::ZERO)
            }
        }))
        .await;
        let app = app_with_schedule("100ms,100ms").await;
        app.subscribe("acme", &rx.url, &["*"]).await;
        app.twilio_status("acme", TOKEN, "CA302", "completed").await;
        let done = app.wait_deliveries("acme", "succeeded", 1).await;
        assert_eq!(done[0]["attempts"], 2);
        let event_id = newest_event_id(&app).await;
        let attempts = wait_attempts(&app, &event_id, 2).await;
        assert_eq!(attempts[0]["status_code"], 302);
        assert_eq!(attempts[1]["status_code"], 200);
        let got = rx.received();
        assert_eq!(got.len(), 2, "the receiver saw exactly the two attempts");
        assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
        assert_eq!(
            trapped.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "the Location was not followed"
        );
    }

    async fn a_refused_connection_leaves_the_delivery_pending_with_no_status() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let app = app_with_schedule("30s").await;
        app.subscribe("acme", &format!("http://127.0.0.1:{port}/hook"), &["*"])
            .await;
        app.twilio_status("acme", TOKEN, "CAdead", "completed")
            .await;
        let event_id = newest_event_id(&app).await;
        let attempts = wait_attempts(&app, &event_id, 1).await;
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0]["status_code"], Value::Null, "{}", attempts[0]);
        assert!(
            attempts[0]["error"]
                .as_str()
                .unwrap()
                .contains("connection"),
            "{}",
            attempts[0]
        );
        let pending = app.wait_deliveries("acme", "pending", 1).await;
        let d = &pending[0];
        assert_eq!(d["event_id"], event_id.as_str());
        assert_eq!(d["attempts"], 1, "{d}");
        assert_eq!(d["last_status_code"], Value::Null, "{d}");
        assert!(
            d["last_error"].as_str().unwrap().contains("connection"),
            "{d}"
        );
        let failed: Value = get_json(&app, "/v1/tenants/acme/deliveries?status=failed").await;
        assert!(
            failed["data"].as_array().unwrap().is_empty(),
            "a refused connection is retried"
        );
    }

    async fn retry_after_as_an_http_date_is_honoured() {
        let rx = Receiver::start(Arc::new(|n, _| {
            if n == 0 {
                let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
                (503, vec![("retry-after", at)], Duration::ZERO)
            } else {
                (200, vec![], Duration::ZERO)
            }
        }))
        .await;
        let app = app_with_schedule("100ms,100ms").await;
        app.subscribe("acme", &rx.url, &["*"]).await;
        app.twilio_status("acme", TOKEN, "CAdate", "completed")
            .await;
        let got = rx.wait_for("the retry", |r| r.len() == 2).await;
        let gap = got[1].at - got[0].at;
        // The date is 3 s ahead at whole-second precision: 2 to 3 s, not the schedule's 100 ms.
        assert!(gap >= Duration::from_millis(1800), "retried after {gap:?}");
        assert!(gap < Duration::from_secs(6), "retried after {gap:?}");
        app.wait_deliveries("acme", "succeeded", 1).await;
    }

    async fn a_success_resets_the_failure_streak_and_the_tenth_failure_in_a_row_disables() {
        let rx = Receiver::answering(400).await;
        let app = app_with_schedule("100ms,100ms").await;
        let (id, _) = app.subscribe("acme", &rx.url, &["*"]).await;
        app.completed_calls("acme", TOKEN, "CAfa", 9).await;
        app.wait_deliveries("acme", "failed", 9).await;
        let sub = get_json(&app, &sub_path(&id)).await;
        assert_eq!(
            sub["enabled"], true,
            "nine failures leave it enabled: {sub}"
        );
        // One success resets the streak.
        rx.set(Receiver::always(200));
        app.twilio_status("acme", TOKEN, "CAok", "completed").await;
        app.wait_deliveries("acme", "succeeded", 1).await;
        rx.set(Receiver::always(400));
        app.completed_calls("acme", TOKEN, "CAfb", 9).await;
        app.wait_deliveries("acme", "failed", 18).await;
        let sub = get_json(&app, &sub_path(&id)).await;
        assert_eq!(
            sub["enabled"], true,
            "18 failures, but only 9 in a row: {sub}"
        );
        assert_eq!(sub["disabled_reason"], Value::Null);
        // The tenth in a row disables it.
        app.twilio_status("acme", TOKEN, "CAfc", "completed").await;
        app.wait_deliveries("acme", "failed", 19).await;
        let sub = get_json(&app, &sub_path(&id)).await;
        assert_eq!(sub["enabled"], false, "{sub}");
        assert!(
            !sub["disabled_reason"].as_str().unwrap_or("").is_empty(),
            "{sub}"
        );
        // And nothing more goes to it.
        let sent = rx.received().len();
        assert_eq!(sent, 20);
        app.twilio_status("acme", TOKEN, "CAfd", "completed").await;
        let ours: Value = get_json(
            &app,
            &format!("/v1/tenants/acme/deliveries?subscription_id={id}&limit=1000"),
        )
        .await;
        assert_eq!(
            ours["data"].as_array().unwrap().len(),
            20,
            "no delivery was made for it"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rx.received().len(), sent);
    }

    async fn a_deleted_subscription_is_gone_and_gets_nothing() {
        let rx = Receiver::ok().await;
        let control = Receiver::ok().await;
        let app = app_with_schedule("100ms,100ms").await;
        let (id, _) = app.subscribe("acme", &rx.url, &["*"]).await;
        app.subscribe("acme", &control.url, &["*"]).await;
        // One delivery first, so that the gateway has the subscription at hand.
        app.twilio_status("acme", TOKEN, "CAdel1", "completed")
            .await;
        rx.wait_for("the first delivery", |r| r.len() == 1).await;
        let r = app
            .client
            .delete(app.url(&sub_path(&id)))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(
            error_code(app.admin_get(&sub_path(&id)).await).await,
            (404, "subscription_not_found".into())
        );
        let again = app
            .client
            .delete(app.url(&sub_path(&id)))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(again).await,
            (404, "subscription_not_found".into())
        );
        let listed = get_json(&app, "/v1/tenants/acme/subscriptions").await;
        assert!(!listed.to_string().contains(&id), "{listed}");
        app.twilio_status("acme", TOKEN, "CAdel2", "completed")
            .await;
        control.wait_for("both deliveries", |r| r.len() == 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rx.received().len(), 1, "nothing was sent after the delete");
    }

    async fn patching_url_types_and_description_changes_what_is_sent_where() {
        let old_rx = Receiver::ok().await;
        let new_rx = Receiver::ok().await;
        let app = app_with_schedule("100ms,100ms").await;
        let r = app
            .admin_json(
                reqwest::Method::POST,
                "/v1/tenants/acme/subscriptions",
                json!({"url": old_rx.url, "event_types": ["call.*"], "description": "old"}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.twilio_status("acme", TOKEN, "CApa", "ringing").await;
        old_rx
            .wait_for("the first delivery", |r| r.len() == 1)
            .await;
        let patched = app
            .patch_subscription(
                "acme",
                &id,
                json!({
                    "url": new_rx.url,
                    "event_types": ["call.completed"],
                    "description": "new"
                }),
            )
            .await;
        let read = get_json(&app, &sub_path(&id)).await;
        for v in [&patched, &read] {
            assert_eq!(v["url"], new_rx.url.as_str(), "{v}");
            assert_eq!(v["event_types"], json!(["call.completed"]), "{v}");
            assert_eq!(v["description"], "new", "{v}");
            assert_eq!(v["enabled"], true, "{v}");
        }
        // call.answered no longer matches; call.completed goes to the new URL.
        app.twilio_status("acme", TOKEN, "CApa", "in-progress")
            .await;
        app.twilio_status("acme", TOKEN, "CApa", "completed").await;
        let got = new_rx
            .wait_for("the completed event", |r| !r.is_empty())
            .await;
        assert_eq!(got[0].header("x-hookgate-event"), "call.completed");
        let ours: Value = get_json(
            &app,
            &format!("/v1/tenants/acme/deliveries?subscription_id={id}"),
        )
        .await;
        assert_eq!(
            ours["data"].as_array().unwrap().len(),
            2,
            "ringing before the patch, completed after; not answered: {ours}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(old_rx.received().len(), 1, "the old URL got nothing more");
        assert_eq!(new_rx.received().len(), 1);
    }

    async fn a_rejected_patch_changes_nothing() {
        let rx = Receiver::ok().await;
        let app = app_with_schedule("100ms,100ms").await;
        let (id, _) = app.subscribe("acme", &rx.url, &["call.*"]).await;
        let before = get_json(&app, &sub_path(&id)).await;
        for (body, code) in [
            (json!({"url": "not a url"}), "invalid_url"),
            (json!({"url": "ftp://example.com/hook"}), "invalid_url"),
            (
                json!({"event_types": ["call.complete"]}),
                "invalid_event_types",
            ),
            (json!({"event_types": []}), "invalid_event_types"),
            // A valid part does not slip through beside an invalid one.
            (
                json!({"description": "changed", "url": "nope"}),
                "invalid_url",
            ),
        ] {
            let r = app
                .admin_json(reqwest::Method::PATCH, &sub_path(&id), body.clone())
                .await;
            assert_eq!(error_code(r).await, (400, code.to_owned()), "{body}");
        }
        assert_eq!(get_json(&app, &sub_path(&id)).await, before);
        let r = app
            .admin_json(
                reqwest::Method::PATCH,
                &sub_path("sub_missing"),
                json!({"description": "x"}),
            )
            .await;
        assert_eq!(error_code(r).await, (404, "subscription_not_found".into()));
    }

    async fn a_secret_given_on_create_signs_and_a_bad_one_is_refused() {
        let rx = Receiver::ok().await;
        let app = app_with_schedule("100ms,100ms").await;
        let secret = own_secret();
        let r = app
            .admin_json(
                reqwest::Method::POST,
                "/v1/tenants/acme/subscriptions",
                json!({"url": rx.url, "secret": secret}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let created: Value = r.json().await.unwrap();
        assert_eq!(created["secret"], secret.as_str());
        assert_eq!(created["event_types"], json!(["*"]), "all types by default");
        let id = created["id"].as_str().unwrap();
        let shown = get_json(&app, &format!("{}/secret", sub_path(id))).await;
        assert_eq!(shown["secret"], secret.as_str());
        app.twilio_status("acme", TOKEN, "CAsec", "completed").await;
        let got = rx.wait_for("the delivery", |r| !r.is_empty()).await;
        assert!(
            verify_standard(&secret, &got[0]),
            "signed with the given secret"
        );
        for bad in [
            "not-a-secret".to_owned(),
            "whsec_".to_owned(),
            "whsec_!!!not base64!!!".to_owned(),
            format!("whsec_{}", STANDARD.encode([7u8; 16])),
            format!("whsec_{}", STANDARD.encode([7u8; 65])),
            secret.trim_start_matches("whsec_").to_owned(),
        ] {
            let r = app
                .admin_json(
                    reqwest::Method::POST,
                    "/v1/tenants/acme/subscriptions",
                    json!({"url": rx.url, "secret": bad}),
                )
                .await;
            assert_eq!(error_code(r).await, (400, "invalid_secret".into()), "{bad}");
        }
        let listed = get_json(&app, "/v1/tenants/acme/subscriptions").await;
        assert_eq!(
            listed["data"].as_array().unwrap().len(),
            1,
            "nothing was created"
        );
    }

    async fn rotation_with_a_bad_grace_is_refused_and_keeps_the_secret() {
        let rx = Receiver::ok().await;
        let app = app_with_schedule("100ms,100ms").await;
        let (id, secret) = app.subscribe("acme", &rx.url, &["*"]).await;
        let path = format!("{}/rotate-secret", sub_path(&id));
        for grace in [json!(-1), json!(30 * 86_400 + 1)] {
            let r = app
                .admin_json(
                    reqwest::Method::POST,
                    &path,
                    json!({"grace_seconds": grace}),
                )
                .await;
            assert_eq!(
                error_code(r).await,
                (400, "invalid_grace_seconds".into()),
                "{grace}"
            );
        }
        let shown = get_json(&app, &format!("{}/secret", sub_path(&id))).await;
        assert_eq!(shown["secret"], secret.as_str());
        let r = app
            .admin_json(
                reqwest::Method::POST,
                &path,
                json!({"grace_seconds": 0, "secret": "whsec_short"}),
            )
            .await;
        assert_eq!(error_code(r).await, (400, "invalid_secret".into()));
        let shown = get_json(&app, &format!("{}/secret", sub_path(&id))).await;
        assert_eq!(shown["secret"], secret.as_str());
    }

    async fn a_test_send_to_a_failing_receiver_reports_the_failure_and_retries() {
        let rx = Receiver::answering(500).await;
        let app = app_with_schedule("100ms,100ms").await;
        let (id, secret) = app.subscribe("acme", &rx.url, &["call.*"]).await;
        let r = app
            .admin_json(
                reqwest::Method::POST,
                &format!("{}/test", sub_path(&id)),
                json!({}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let out: Value = r.json().await.unwrap();
        assert_eq!(out["success"], false, "{out}");
        assert_eq!(out["will_retry"], true, "{out}");
        assert_eq!(out["status_code"], 500, "{out}");
        let got = rx.received();
        assert_eq!(got.len(), 1, "the answer came after the attempt");
        assert_eq!(got[0].header("x-hookgate-event"), "webhook.test");
        assert_eq!(
            got[0].header("webhook-id"),
            out["event_id"].as_str().unwrap()
        );
        assert!(verify_standard(&secret, &got[0]));
        // It is retried as promised, and then fails for good once the schedule is spent.
        rx.wait_for("two retries", |r| r.len() == 3).await;
        let failed = app.wait_deliveries("acme", "failed", 1).await;
        assert_eq!(failed[0]["attempts"], 3);
    }

    async fn bad_filters_and_arguments_get_their_error_codes() {
        let rx = Receiver::ok().await;
        let app = app_with_schedule("100ms,100ms").await;
        let (id, _) = app.subscribe("acme", &rx.url, &["*"]).await;
        for since in ["yesterday", "2026-01-01", ""] {
            let r = app
                .admin_json(
                    reqwest::Method::POST,
                    &format!("{}/recover", sub_path(&id)),
                    json!({"since": since}),
                )
                .await;
            assert_eq!(
                error_code(r).await,
                (400, "invalid_since".into()),
                "{since:?}"
            );
        }
        let r = app
            .admin_get("/v1/tenants/acme/deliveries?status=bogus")
            .await;
        assert_eq!(error_code(r).await, (400, "invalid_status".into()));
        let r = app
            .admin_get("/v1/tenants/acme/deliveries?status=pending")
            .await;
        assert_eq!(r.status(), 200);
    }

    async fn redelivery_of_an_unknown_event_or_to_a_disabled_subscription_is_refused() {
        let rx = Receiver::ok().await;
        let app = app_with_schedule("100ms,100ms").await;
        let (id, _) = app.subscribe("acme", &rx.url, &["*"]).await;
        let r = app
            .admin_json(
                reqwest::Method::POST,
                "/v1/tenants/acme/events/evt_unknown/redeliver",
                json!({}),
            )
            .await;
        assert_eq!(error_code(r).await, (404, "event_not_found".into()));
        app.twilio_status("acme", TOKEN, "CAre", "completed").await;
        app.wait_deliveries("acme", "succeeded", 1).await;
        let event_id = newest_event_id(&app).await;
        app.patch_subscription("acme", &id, json!({"enabled": false}))
            .await;
        let r = app
            .admin_json(
                reqwest::Method::POST,
                &format!("/v1/tenants/acme/events/{event_id}/redeliver"),
                json!({"subscription_id": id}),
            )
            .await;
        assert_eq!(error_code(r).await, (409, "subscription_disabled".into()));
        let r = app
            .admin_json(
                reqwest::Method::POST,
                &format!("/v1/tenants/acme/events/{event_id}/redeliver"),
                json!({"subscription_id": "sub_missing"}),
            )
            .await;
        assert_eq!(error_code(r).await, (404, "subscription_not_found".into()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rx.received().len(), 1, "nothing was sent again");
    }

    async fn the_subscription_list_paginates() {
        let rx = Receiver::ok().await;
        let app = app_with_schedule("100ms,100ms").await;
        let mut ids = Vec::new();
        for t in ["call.*", "payment.*", "*"] {
            ids.push(app.subscribe("acme", &rx.url, &[t]).await.0);
        }
        let first = get_json(&app, "/v1/tenants/acme/subscriptions?limit=2").await;
        let rows = first["data"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{first}");
        let cursor = first["next_cursor"]
            .as_str()
            .expect("a cursor after a full page");
        let second = get_json(
            &app,
            &format!("/v1/tenants/acme/subscriptions?limit=2&after={cursor}"),
        )
        .await;
        let rest = second["data"].as_array().unwrap();
        assert_eq!(rest.len(), 1, "{second}");
        assert_eq!(second["next_cursor"], Value::Null);
        let mut seen: Vec<String> = rows
            .iter()
            .chain(rest)
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(seen, ids, "oldest first, each once");
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 3);
        let r = app
            .admin_get("/v1/tenants/acme/subscriptions?limit=0")
            .await;
        assert_eq!(error_code(r).await, (400, "invalid_limit".into()));
        let r = app
            .admin_get("/v1/tenants/acme/subscriptions?after=abc")
            .await;
        assert_eq!(error_code(r).await, (400, "invalid_cursor".into()));
    }
}

/// `{"description": null}` clears the description; leaving it out keeps it.
#[tokio::test]
async fn patching_the_description_to_null_clears_it() {
    let rx = Receiver::ok().await;
    let app = app_with_schedule("100ms,100ms").await;
    let r = app
        .admin_json(
            reqwest::Method::POST,
            "/v1/tenants/acme/subscriptions",
            json!({"url": rx.url, "description": "to be cleared"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.patch_subscription("acme", &id, json!({"description": null}))
        .await;
    let read = get_json(&app, &sub_path(&id)).await;
    assert_eq!(read["description"], Value::Null, "{read}");
    app.patch_subscription("acme", &id, json!({"description": "kept"}))
        .await;
    app.patch_subscription("acme", &id, json!({"enabled": true}))
        .await;
    assert_eq!(get_json(&app, &sub_path(&id)).await["description"], "kept");
}
