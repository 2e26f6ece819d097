//! Twilio end to end over real HTTP with a fresh SQLite file: the official vectors, the status
//! and incoming routes, dedup, state rules, the error table, isolation and durability answers.

mod common;

use std::time::Duration;

use common::*;
use hookgate::cli::twilio_request;
use hookgate::providers::twilio::{sign, signature_matches};
use hookgate::providers::Route;
use serde_json::{json, Value};
use sha2::Digest;

const TOKEN: &str = "twilio-auth-token-1";

fn vector_params(v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, val) in v.as_object().unwrap() {
        match val {
            Value::Array(items) => {
                for i in items {
                    out.push((k.clone(), i.as_str().unwrap().to_owned()));
                }
            }
            other => out.push((k.clone(), other.as_str().unwrap().to_owned())),
        }
    }
    out
}

#[test]
fn every_official_form_vector_verifies_as_expected() {
    let v = vector("twilio.json");
    let token = v["auth_token"].as_str().unwrap().to_owned();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for c in cases {
        let ok = signature_matches(
            std::slice::from_ref(&token),
            c["url"].as_str().unwrap(),
            &vector_params(&c["params"]),
            c["signature"].as_str().unwrap(),
        );
        assert_eq!(ok, c["valid"].as_bool().unwrap(), "case {c}");
        // A wrong token never verifies.
        assert!(!signature_matches(
            &["other".to_owned()],
            c["url"].as_str().unwrap(),
            &vector_params(&c["params"]),
            c["signature"].as_str().unwrap()
        ));
    }
}

#[test]
fn every_official_json_vector_verifies_url_and_body_hash() {
    let v = vector("twilio_json.json");
    let token = v["auth_token"].as_str().unwrap().to_owned();
    for c in v["cases"].as_array().unwrap() {
        let url = c["url"].as_str().unwrap();
        assert!(signature_matches(
            std::slice::from_ref(&token),
            url,
            &[],
            c["signature"].as_str().unwrap()
        ));
        let body_hash = hex::encode(sha2::Sha256::digest(c["body"].as_str().unwrap().as_bytes()));
        assert!(url.ends_with(&format!("bodySHA256={body_hash}")), "{url}");
    }
}

async fn status(app: &TestApp, tenant: &str, call: &str, st: &str) -> reqwest::Response {
    app.send(&twilio_request(
        Route::TwilioStatus,
        tenant,
        TOKEN,
        &app.config.public_url,
        st,
        call,
    ))
    .await
}

#[tokio::test]
async fn storage_unavailable_answers_503_and_nothing_is_half_written() {
    let app = spawn_with(|m| {
        m.insert("sqlite_busy_timeout".into(), "200ms".into());
    })
    .await;
    app.twilio_tenant("acme", TOKEN).await;
    // Another process holds the database's write lock.
    let db = app.dir.path().join("hookgate.db");
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&db);
    let mut locker = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&opts)
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .unwrap();
    let req = twilio_request(
        Route::TwilioStatus,
        "acme",
        TOKEN,
        &app.config.public_url,
        "completed",
        "CAlock",
    );
    let r = app.send(&req).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "storage_unavailable"
    );
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    // The provider retries: accepted once, as new (nothing of the failed attempt remained).
    assert_eq!(app.send(&req).await.status(), 204);
    assert_eq!(app.events("acme").await.len(), 1);
    let log = app.inbound("acme").await;
    assert_eq!(log.len(), 1, "the failed attempt left no record: {log:?}");
    assert_eq!(app.admin_get("/readyz").await.status(), 200);
}

crate::dual! {

    async fn status_callback_becomes_a_normalized_event() {
        let app = spawn_app().await;
        app.twilio_tenant("acme", TOKEN).await;
        let r = status(&app, "acme", "CAaaa", "completed").await;
        assert_eq!(r.status(), 204);
        let events = app.events("acme").await;
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert!(e["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(e["type"], "call.completed");
        assert_eq!(e["tenant_id"], "acme");
        assert_eq!(e["timestamp"], "2026-05-07T14:23:11Z");
        let d = &e["data"];
        assert_eq!(d["call_id"], "CAaaa");
        assert_eq!(d["provider"], "twilio");
        assert_eq!(d["direction"], "outbound");
        assert_eq!(d["from"], "+447700900123");
        assert_eq!(d["to"], "+14155550100");
        assert_eq!(d["status"], "completed");
        assert_eq!(d["duration_seconds"], 134);
        assert!(d["recording_url"]
            .as_str()
            .unwrap()
            .starts_with("https://api.twilio.com/"));
        assert_eq!(d["failure_reason"], Value::Null);
        assert_eq!(d["sequence"], 6);
        assert_eq!(d["provider_data"]["CallSid"], "CAaaa");
        assert_eq!(d["provider_data"]["CalledCity"], "SAN FRANCISCO");
        assert_eq!(e["source"]["provider"], "twilio");
        assert_eq!(e["source"]["provider_event_id"], "CAaaa:completed:6");
        // The single-event route and the inbound log agree.
        let one = app
            .admin_get(&format!(
                "/v1/tenants/acme/events/{}",
                e["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(one.json::<Value>().await.unwrap(), *e);
        let log = app.inbound("acme").await;
        assert_eq!(log[0]["outcome"], "accepted");
        assert_eq!(log[0]["event_id"], e["id"]);
        assert_eq!(log[0]["remote_addr"], "127.0.0.1");
    }

    async fn failed_statuses_map_to_call_failed_with_the_reason() {
        let app = spawn_app().await;
        app.twilio_tenant("acme", TOKEN).await;
        assert_eq!(status(&app, "acme", "CAbusy", "busy").await.status(), 204);
        assert_eq!(
            status(&app, "acme", "CAnoans", "no-answer").await.status(),
            204
        );
        let events = app.events("acme").await;
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e["type"] == "call.failed"));
        assert_eq!(events[0]["data"]["failure_reason"], "busy");
        assert_eq!(events[1]["data"]["failure_reason"], "no-answer");
    }

    async fn incoming_call_answers_twiml_after_commit() {
        let app = spawn_app().await;
        app.create_tenant("acme").await;
        let twiml = "<Response><Say>Hello</Say></Response>";
        app.put_provider(
            "acme",
            "twilio",
            json!({"auth_tokens": [TOKEN], "voice_twiml": twiml}),
        )
        .await;
        let req = twilio_request(
            Route::TwilioIncoming,
            "acme",
            TOKEN,
            &app.config.public_url,
            "",
            "CAin1",
        );
        let r = app.send(&req).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml"));
        assert_eq!(
            r.headers()["content-length"],
            twiml.len().to_string().as_str()
        );
        assert!(r.headers().get("transfer-encoding").is_none());
        assert_eq!(r.text().await.unwrap(), twiml);
        let events = app.events("acme").await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["type"], "call.started");
        assert_eq!(events[0]["data"]["direction"], "inbound");
        // A duplicate gets the same answer and no second event.
        let again = app.send(&req).await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.text().await.unwrap(), twiml);
        assert_eq!(app.events("acme").await.len(), 1);
    }

    async fn duplicates_answer_the_same_and_emit_nothing() {
        let app = spawn_app().await;
        app.twilio_tenant("acme", TOKEN).await;
        for _ in 0..3 {
            assert_eq!(
                status(&app, "acme", "CAdup", "completed").await.status(),
                204
            );
        }
        assert_eq!(app.events("acme").await.len(), 1);
        let log = app.inbound("acme").await;
        let dups: Vec<_> = log.iter().filter(|e| e["outcome"] == "duplicate").collect();
        assert_eq!(dups.len(), 2);
        let first_event = app.events("acme").await[0]["id"].clone();
        assert!(dups.iter().all(|d| d["event_id"] == first_event));
        let only_dups = app
            .admin_get("/v1/tenants/acme/inbound?outcome=duplicate")
            .await;
        assert_eq!(
            only_dups.json::<Value>().await.unwrap()["data"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    async fn twenty_identical_callbacks_at_once_give_one_event() {
        let app = spawn_app().await;
        app.twilio_tenant("acme", TOKEN).await;
        let req = twilio_request(
            Route::TwilioStatus,
            "acme",
            TOKEN,
            &app.config.public_url,
            "completed",
            "CArace",
        );
        let sends = (0..20).map(|_| app.send(&req));
        let responses = futures_util::future::join_all(sends).await;
        assert!(responses.iter().all(|r| r.status() == 204));
        assert_eq!(app.events("acme").await.len(), 1);
        let log = app.inbound("acme").await;
        assert_eq!(log.iter().filter(|e| e["outcome"] == "accepted").count(), 1);
        assert_eq!(
            log.iter().filter(|e| e["outcome"] == "duplicate").count(),
            19
        );
    }

    async fn one_event_per_type_and_a_terminal_call_never_goes_back() {
        let app = spawn_app().await;
        app.twilio_tenant("acme", TOKEN).await;
        // Out of order: answered, then completed, then a late ringing.
        assert_eq!(
            status(&app, "acme", "CAord", "in-progress").await.status(),
            204
        );
        assert_eq!(
            status(&app, "acme", "CAord", "completed").await.status(),
            204
        );
        assert_eq!(status(&app, "acme", "CAord", "ringing").await.status(), 204);
        // A second failure-ish terminal after completion is not emitted either.
        assert_eq!(status(&app, "acme", "CAord", "busy").await.status(), 204);
        let types: Vec<_> = app
            .events("acme")
            .await
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(types, vec!["call.answered", "call.completed"]);
        let log = app.inbound("acme").await;
        let superseded = log.iter().filter(|e| e["reason"] == "superseded").count();
        assert_eq!(superseded, 2);
        // The same status with another sequence number is a new callback but the same event type.
        let mut req = twilio_request(
            Route::TwilioStatus,
            "acme",
            TOKEN,
            &app.config.public_url,
            "in-progress",
            "CAseq",
        );
        assert_eq!(app.send(&req).await.status(), 204);
        let body = String::from_utf8(req.body.clone())
            .unwrap()
            .replace("SequenceNumber=4", "SequenceNumber=5");
        let path_url = format!("{}{}", app.config.public_url, req.path_and_query);
        let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        req.headers[1].1 = sign(TOKEN, &path_url, &form);
        req.body = body.into_bytes();
        assert_eq!(app.send(&req).await.status(), 204);
        let answered = app
            .events("acme")
            .await
            .iter()
            .filter(|e| e["data"]["call_id"] == "CAseq")
            .count();
        assert_eq!(answered, 1);
    }

    async fn queued_status_is_acknowledged_and_ignored() {
        let app = spawn_app().await;
        app.twilio_tenant("acme", TOKEN).await;
        let r = status(&app, "acme", "CAq", "queued").await;
        assert_eq!(r.status(), 200);
        assert!(app.events("acme").await.is_empty());
        assert_eq!(app.inbound("acme").await[0]["reason"], "ignored_event_type");
    }

    async fn get_callbacks_are_signed_over_the_url_alone() {
        let app = spawn_app().await;
        app.twilio_tenant("acme", TOKEN).await;
        let path = "/api/twilio/status?tenant_id=acme&CallSid=CAget&CallStatus=completed&CallDuration=7&From=%2B1555";
        let sig = sign(TOKEN, &format!("{}{path}", app.config.public_url), &[]);
        let r = app
            .client
            .get(app.url(path))
            .header("x-twilio-signature", &sig)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let e = &app.events("acme").await[0];
        assert_eq!(e["data"]["duration_seconds"], 7);
        assert_eq!(e["data"]["from"], "+1555");
        assert!(
            e["data"]["provider_data"].get("tenant_id").is_none(),
            "hookgate's own routing parameter is not provider data"
        );
        // Changing one query byte breaks the signature.
        let r = app
            .client
            .get(app.url(&path.replace("CallDuration=7", "CallDuration=8")))
            .header("x-twilio-signature", &sig)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }

    async fn json_bodies_are_covered_by_body_sha256() {
        let app = spawn_app().await;
        app.twilio_tenant("acme", TOKEN).await;
        let body = r#"{"CallSid":"CAjson","CallStatus":"completed","CallDuration":"12"}"#;
        let hash = hex::encode(sha2::Sha256::digest(body.as_bytes()));
        let path = format!("/api/twilio/status?tenant_id=acme&bodySHA256={hash}");
        let sig = sign(TOKEN, &format!("{}{path}", app.config.public_url), &[]);
        let send = |b: &'static str| {
            app.client
                .post(app.url(&path))
                .header("content-type", "application/json")
                .header("x-twilio-signature", &sig)
                .body(b)
                .send()
        };
        assert_eq!(send(body).await.unwrap().status(), 204);
        let tampered = r#"{"CallSid":"CAjson","CallStatus":"completed","CallDuration":"99"}"#;
        let r = send(tampered).await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "bad_body_hash"
        );
        let events = app.events("acme").await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["data"]["duration_seconds"], 12);
    }

    async fn forged_or_unsigned_callbacks_are_refused_and_logged() {
        let app = spawn_app().await;
        app.twilio_tenant("acme", TOKEN).await;
        let mut req = twilio_request(
            Route::TwilioStatus,
            "acme",
            "wrong-token",
            &app.config.public_url,
            "completed",
            "CAf",
        );
        let r = app.send(&req).await;
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "bad_signature"
        );
        req.headers.retain(|(k, _)| k != "x-twilio-signature");
        let r = app.send(&req).await;
        assert_eq!(r.status(), 401);
        assert!(app.events("acme").await.is_empty());
        let log = app.inbound("acme").await;
        let reasons: Vec<_> = log
            .iter()
            .map(|e| {
                (
                    e["outcome"].as_str().unwrap(),
                    e["reason"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("rejected", "missing_signature"),
                ("rejected", "bad_signature")
            ]
        );
    }

    async fn any_of_several_auth_tokens_verifies() {
        let app = spawn_app().await;
        app.create_tenant("acme").await;
        let cfg = app
            .put_provider(
                "acme",
                "twilio",
                json!({"auth_tokens": ["old-token-aaaa", "new-token-bbbb"]}),
            )
            .await;
        assert_eq!(
            cfg["config"]["auth_tokens"],
            json!(["****aaaa", "****bbbb"]),
            "secrets are redacted"
        );
        for (i, t) in ["old-token-aaaa", "new-token-bbbb"].iter().enumerate() {
            let req = twilio_request(
                Route::TwilioStatus,
                "acme",
                t,
                &app.config.public_url,
                "completed",
                &format!("CA{i}"),
            );
            assert_eq!(app.send(&req).await.status(), 204);
        }
        let shown = app
            .admin_get("/v1/tenants/acme/providers/twilio")
            .await
            .text()
            .await
            .unwrap();
        assert!(
            !shown.contains("old-token") && !shown.contains("new-token"),
            "{shown}"
        );
    }

    async fn public_url_with_or_without_default_port_verifies() {
        let app = spawn_with(|m| {
            m.insert("public_url".into(), "https://hooks.example.com".into());
        })
        .await;
        app.twilio_tenant("acme", TOKEN).await;
        for (i, base) in ["https://hooks.example.com", "https://hooks.example.com:443"]
            .iter()
            .enumerate()
        {
            let req = twilio_request(
                Route::TwilioStatus,
                "acme",
                TOKEN,
                base,
                "completed",
                &format!("CAport{i}"),
            );
            assert_eq!(app.send(&req).await.status(), 204, "{base}");
        }
        // The gateway's own loopback address is not what Twilio signed.
        let req = twilio_request(
            Route::TwilioStatus,
            "acme",
            TOKEN,
            &app.base,
            "completed",
            "CAport3",
        );
        assert_eq!(app.send(&req).await.status(), 401);
    }

    async fn forwarded_headers_count_only_from_trusted_proxies() {
        for trusted in [false, true] {
            let app = spawn_with(|m| {
                if trusted {
                    m.insert("trusted_proxies".into(), "127.0.0.1/32".into());
                }
            })
            .await;
            app.twilio_tenant("acme", TOKEN).await;
            let mut req = twilio_request(
                Route::TwilioStatus,
                "acme",
                TOKEN,
                "https://edge.example.com",
                "completed",
                "CAfwd",
            );
            req.headers
                .push(("x-forwarded-proto".into(), "https".into()));
            req.headers
                .push(("x-forwarded-host".into(), "edge.example.com".into()));
            req.headers
                .push(("x-forwarded-for".into(), "203.0.113.9".into()));
            let r = app.send(&req).await;
            if trusted {
                assert_eq!(r.status(), 204);
                assert_eq!(app.inbound("acme").await[0]["remote_addr"], "203.0.113.9");
            } else {
                assert_eq!(r.status(), 401);
                assert_eq!(app.inbound("acme").await[0]["remote_addr"], "127.0.0.1");
            }
        }
    }

    async fn error_table_for_inbound_requests() {
        let app = spawn_with(|m| {
            m.insert("max_body".into(), "4KiB".into());
        })
        .await;
        app.twilio_tenant("acme", TOKEN).await;
        app.create_tenant("bare").await;
        let req = twilio_request(
            Route::TwilioStatus,
            "acme",
            TOKEN,
            &app.config.public_url,
            "completed",
            "CAerr",
        );
        let code = |r: reqwest::Response| async move {
            let s = r.status().as_u16();
            (
                s,
                r.json::<Value>().await.unwrap()["error"]["code"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        };
        // Unknown tenant, and a tenant without Twilio configured: 404.
        let mut other = req.clone_with_path(&req.path_and_query.replace("acme", "nobody"));
        assert_eq!(
            code(app.send(&other).await).await,
            (404, "not_found".into())
        );
        other.path_and_query = req.path_and_query.replace("acme", "bare");
        assert_eq!(
            code(app.send(&other).await).await,
            (404, "not_found".into())
        );
        other.path_and_query = "/api/twilio/status".into();
        assert_eq!(
            code(app.send(&other).await).await,
            (400, "missing_tenant_id".into())
        );
        // Wrong content type: 415.
        let r = app
            .post(
                &req.path_and_query,
                &[("content-type", "text/plain"), ("x-twilio-signature", "x")],
                "hello",
            )
            .await;
        assert_eq!(code(r).await, (415, "unsupported_media_type".into()));
        // Malformed form (invalid UTF-8): 400.
        let r = app
            .post(
                &req.path_and_query,
                &[("content-type", "application/x-www-form-urlencoded"), ("x-twilio-signature", "x")],
                vec![b'a', b'=', 0xff, 0xfe],
            )
            .await;
        assert_eq!(code(r).await, (400, "malformed_form".into()));
        // Too large, with a length and chunked: 413.
        let big = vec![b'a'; 8 * 1024];
        let r = app
            .post(
                &req.path_and_query,
                &[("content-type", "application/x-www-form-urlencoded")],
                big.clone(),
            )
            .await;
        assert_eq!(code(r).await, (413, "payload_too_large".into()));
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            big.chunks(1024).map(|c| Ok(c.to_vec())).collect();
        let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
        let r = app
            .post(
                &req.path_and_query,
                &[("content-type", "application/x-www-form-urlencoded")],
                stream,
            )
            .await;
        assert_eq!(code(r).await, (413, "payload_too_large".into()));
        // A verified callback without a CallSid: 400.
        let path = "/api/twilio/status?tenant_id=acme";
        let form = vec![("CallStatus".to_owned(), "completed".to_owned())];
        let sig = sign(TOKEN, &format!("{}{path}", app.config.public_url), &form);
        let r = app
            .post(
                path,
                &[("content-type", "application/x-www-form-urlencoded"), ("x-twilio-signature", sig.as_str())],
                "CallStatus=completed",
            )
            .await;
        assert_eq!(code(r).await, (400, "missing_field".into()));
        // A wrong method: 405, still JSON.
        let r = app
            .client
            .delete(app.url(&req.path_and_query))
            .send()
            .await
            .unwrap();
        assert_eq!(code(r).await, (405, "method_not_allowed".into()));
        assert!(app.events("acme").await.is_empty());
    }

    async fn tenants_are_isolated_and_routes_need_a_token() {
        let app = spawn_app().await;
        let a = app.twilio_tenant("alpha", TOKEN).await;
        let b = app.twilio_tenant("beta", TOKEN).await;
        assert_eq!(status(&app, "beta", "CAb", "completed").await.status(), 204);
        let get = |key: &str, path: &str| app.client.get(app.url(path)).bearer_auth(key).send();
        assert_eq!(get(&a, "/v1/tenants/alpha").await.unwrap().status(), 200);
        for path in [
            "/v1/tenants/beta",
            "/v1/tenants/beta/events",
            "/v1/tenants/beta/inbound",
            "/v1/tenants/beta/providers/twilio",
        ] {
            let r = get(&a, path).await.unwrap();
            assert_eq!(r.status(), 404, "{path}");
        }
        // The same answer as a tenant that does not exist.
        assert_eq!(get(&a, "/v1/tenants/nobody").await.unwrap().status(), 404);
        assert_eq!(
            get(&b, "/v1/tenants/beta/events")
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()["data"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let evs = get(&a, "/v1/tenants/alpha/events")
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        assert!(evs["data"].as_array().unwrap().is_empty());
        // No token, a bad token: 401. A tenant key on an admin route: 403.
        assert_eq!(
            app.client
                .get(app.url("/v1/tenants/alpha"))
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
        assert_eq!(
            get("nope", "/v1/tenants/alpha").await.unwrap().status(),
            401
        );
        let r = app
            .client
            .post(app.url("/v1/tenants"))
            .bearer_auth(&a)
            .json(&json!({"id": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }

    async fn tenant_api_validates_and_shows_the_key_once() {
        let app = spawn_app().await;
        let r = app
            .admin_json(
                reqwest::Method::POST,
                "/v1/tenants",
                json!({"id": "Bad Id"}),
            )
            .await;
        assert_eq!(r.status(), 400);
        let r = app
            .admin_json(
                reqwest::Method::POST,
                "/v1/tenants",
                json!({"name": "Generated"}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        let id = body["id"].as_str().unwrap().to_owned();
        assert!(body["api_key"].as_str().unwrap().starts_with("hk_"));
        assert!(body["inbound_urls"]["twilio_status"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/api/twilio/status?tenant_id={id}")));
        let again = app
            .admin_json(reqwest::Method::POST, "/v1/tenants", json!({"id": id}))
            .await;
        assert_eq!(again.status(), 409);
        let shown: Value = app
            .admin_get(&format!("/v1/tenants/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert!(shown.get("api_key").is_none());
        let r = app
            .client
            .post(app.url("/v1/tenants"))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "malformed_json"
        );
        let r = app
            .admin_json(
                reqwest::Method::PUT,
                &format!("/v1/tenants/{id}/providers/twilio"),
                json!({"auth_tokens": []}),
            )
            .await;
        assert_eq!(r.status(), 400);
        let r = app
            .admin_json(
                reqwest::Method::PUT,
                &format!("/v1/tenants/{id}/providers/paypal"),
                json!({}),
            )
            .await;
        assert_eq!(r.status(), 404);
    }

    async fn the_feed_pages_with_a_cursor_and_filters_by_type() {
        let app = spawn_app().await;
        app.twilio_tenant("acme", TOKEN).await;
        for i in 0..5 {
            status(
                &app,
                "acme",
                &format!("CApage{i}"),
                if i % 2 == 0 { "completed" } else { "busy" },
            )
            .await;
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/tenants/acme/events?limit=2&after={c}"),
                None => "/v1/tenants/acme/events?limit=2".into(),
            };
            let page: Value = app.admin_get(&path).await.json().await.unwrap();
            for e in page["data"].as_array().unwrap() {
                seen.push(e["data"]["call_id"].as_str().unwrap().to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(
            seen,
            (0..5).map(|i| format!("CApage{i}")).collect::<Vec<_>>()
        );
        let failed: Value = app
            .admin_get("/v1/tenants/acme/events?type=call.failed")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(failed["data"].as_array().unwrap().len(), 2);
        assert_eq!(
            app.admin_get("/v1/tenants/acme/events?limit=1001")
                .await
                .status(),
            400
        );
        assert_eq!(
            app.admin_get("/v1/tenants/acme/events?after=zzz")
                .await
                .status(),
            400
        );
        assert_eq!(
            app.admin_get("/v1/tenants/acme/events/evt_nope")
                .await
                .status(),
            404
        );
    }

    async fn acknowledged_callbacks_survive_a_restart() {
        let app = spawn_app().await;
        app.twilio_tenant("acme", TOKEN).await;
        assert_eq!(
            status(&app, "acme", "CApersist", "completed")
                .await
                .status(),
            204
        );
        let config_map = {
            let mut m = std::collections::BTreeMap::new();
            m.insert("database_url".to_owned(), app.config.database_url.clone());
            m.insert("admin_token".to_owned(), ADMIN.to_owned());
            m
        };
        let dir = app.stop().await;
        let app = start(config_map, dir).await;
        assert_eq!(app.events("acme").await.len(), 1);
        // Dedup keys persist too.
        let r = status(&app, "acme", "CApersist", "completed").await;
        assert_eq!(r.status(), 204);
        assert_eq!(app.events("acme").await.len(), 1);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    async fn simulate_signs_over_the_url_it_sends_to() {
        let app = spawn_app().await;
        app.twilio_tenant("acme", TOKEN).await;
        // No HOOKGATE_PUBLIC_URL: only --url says where the gateway is.
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["simulate", "twilio-status", "--tenant", "acme", "--call-id", "CAsim1"])
            .args(["--url", &app.base])
            .env("HOOKGATE_DATABASE_URL", &app.config.database_url)
            .env_remove("HOOKGATE_PUBLIC_URL")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("< 204"), "{stdout}");
        assert!(!stdout.contains(TOKEN));
        let events = app.events("acme").await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["data"]["call_id"], "CAsim1");
    }
}
