//! Exotel end to end over real HTTP with a fresh SQLite file: the Passthru GET and status
//! callbacks as form, multipart and JSON; the URL token and IP allow-list; generated tokens and
//! the URLs a user pastes; dedup; the error table; logs without the token; `hookgate simulate`.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use hookgate::cli::{exotel_request, SignedRequest};
use hookgate::providers::Route;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

const TOKEN: &str = "exotel-url-token-0123456789";

async fn exotel_app() -> TestApp {
    spawn_tenant("exotel", json!({"tokens": [TOKEN]}), |_| {}).await
}

fn status_cb(call: &str, status: &str) -> SignedRequest {
    exotel_request(Route::ExotelStatus, "acme", TOKEN, status, call)
}

fn passthru(call: &str) -> SignedRequest {
    exotel_request(Route::ExotelIncoming, "acme", TOKEN, "", call)
}

/// A status callback with a fixture body of another kind (multipart, JSON).
fn status_body(call: &str, content_type: &str, fixture: &str) -> SignedRequest {
    SignedRequest {
        method: reqwest::Method::POST,
        path_and_query: format!("/api/exotel/status?tenant_id=acme&token={TOKEN}"),
        headers: vec![("content-type".into(), content_type.into())],
        body: fixture
            .replace(hookgate::cli::samples::EXOTEL_FIXTURE_CALL_SID, call)
            .into_bytes(),
    }
}

const MULTIPART_CT: &str =
    "multipart/form-data; boundary=------------------------exotel7MA4YWxkTrZu0gW";

/// Reads whatever a child wrote to a pipe so far, without waiting for it to close.
async fn drain(pipe: &mut (impl AsyncReadExt + Unpin), into: &mut Vec<u8>) {
    let mut buf = [0u8; 8192];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(200), pipe.read(&mut buf)).await
    {
        if n == 0 {
            break;
        }
        into.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn the_token_never_reaches_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .arg("serve")
        .env("HOOKGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "HOOKGATE_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("h.db").display()),
        )
        .env("HOOKGATE_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "gateway did not start");
    let admin = |m: reqwest::Method, path: &str, body: Value| {
        client
            .request(m, format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    admin(reqwest::Method::POST, "/v1/tenants", json!({"id": "acme"}))
        .await
        .unwrap();
    admin(
        reqwest::Method::PUT,
        "/v1/tenants/acme/providers/exotel",
        json!({"tokens": [TOKEN]}),
    )
    .await
    .unwrap();
    let mut sent = 0;
    for req in [
        passthru("exolog1"),
        status_cb("exolog1", "completed"),
        status_cb("exolog1", "completed")
            .clone_with_path(&format!("/api/exotel/status?tenant_id=acme&token={TOKEN}x")),
        status_cb("exolog1", "completed")
            .clone_with_path(&format!("/api/exotel/nowhere?token={TOKEN}")),
    ] {
        let mut b = client
            .request(req.method.clone(), format!("{base}{}", req.path_and_query))
            .body(req.body.clone());
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        b.send().await.unwrap();
        sent += 1;
    }
    assert_eq!(sent, 4);
    let mut logs = Vec::new();
    drain(child.stdout.as_mut().unwrap(), &mut logs).await;
    drain(child.stderr.as_mut().unwrap(), &mut logs).await;
    child.kill().await.unwrap();
    child.wait().await.unwrap();
    let logs = String::from_utf8_lossy(&logs);
    // The requests were logged (so this is not vacuous), the token never.
    assert!(logs.contains("/api/exotel/status"), "{logs}");
    assert!(logs.contains("rejected"), "{logs}");
    assert!(!logs.contains(TOKEN), "{logs}");
}

crate::dual! {

    async fn passthru_hit_becomes_call_started_with_exotels_own_parameters() {
        let app = exotel_app().await;
        let req = passthru("exo0000000000000000000000000001");
        let e = &app.send_for_event("acme", &req, 200).await;
        assert_eq!(e["type"], "call.started");
        assert_eq!(e["tenant_id"], "acme");
        // CurrentTime 2026-05-07 19:53:12 IST.
        assert_eq!(e["timestamp"], "2026-05-07T14:23:12Z");
        let (data, pd) = split_provider_data(&e["data"]);
        assert_eq!(
            data,
            json!({
                "call_id": "exo0000000000000000000000000001",
                "provider": "exotel",
                "direction": "inbound",
                "from": "09812345678",
                "to": "08039591234",
                "status": "ringing",
                "duration_seconds": null,
                "recording_url": null,
                "failure_reason": null,
                "sequence": null,
            })
        );
        assert_eq!(pd["CallType"], "call-attempt");
        assert_eq!(pd["flow_id"], "228461");
        assert_eq!(pd["digits"], "\"1\"");
        // Exotel's own tenant_id is its data; hookgate's routing tenant_id and the token are not.
        assert_eq!(pd["tenant_id"], "67890");
        assert!(pd.get("token").is_none(), "{pd}");
        assert!(!e.to_string().contains(TOKEN));
        assert_eq!(
            e["source"]["provider_event_id"],
            "exo0000000000000000000000000001:call-attempt:exotel_incoming"
        );
        // A duplicate hit answers the same.
        let again = app.send(&req).await;
        assert_eq!(again.status(), 200);
        assert_eq!(
            again.json::<Value>().await.unwrap(),
            json!({"event_id": e["id"]})
        );
        assert_eq!(app.events("acme").await.len(), 1);
    }

    async fn passthru_answers_the_configured_302_first_time_and_duplicate() {
        let app = spawn_tenant(
            "exotel",
            json!({"tokens": [TOKEN], "passthru_status": 302}),
            |_| {},
        )
        .await;
        let req = passthru("exo0000000000000000000000000302");
        assert_eq!(app.send(&req).await.status(), 302);
        assert_eq!(app.send(&req).await.status(), 302);
        assert_eq!(app.events("acme").await.len(), 1);
        // Status callbacks still answer 200.
        assert_eq!(
            app.send(&status_cb("exo0000000000000000000000000302", "completed"))
                .await
                .status(),
            200
        );
    }

    async fn form_status_callback_becomes_call_completed_with_bracketed_legs() {
        let app = exotel_app().await;
        let req = status_cb("exoform0000000000000000000000001", "completed");
        let e = &app.send_for_event("acme", &req, 200).await;
        assert_eq!(e["type"], "call.completed");
        // DateUpdated 2026-05-07 19:55:12 IST.
        assert_eq!(e["timestamp"], "2026-05-07T14:25:12Z");
        let (data, pd) = split_provider_data(&e["data"]);
        assert_eq!(
            data,
            json!({
                "call_id": "exoform0000000000000000000000001",
                "provider": "exotel",
                "direction": "outbound",
                "from": "09812345678",
                "to": "08039591234",
                "status": "completed",
                "duration_seconds": 92,
                "recording_url": "https://s3-ap-southeast-1.amazonaws.com/exotelrecordings/acme/exoform0000000000000000000000001.mp3",
                "failure_reason": null,
                "sequence": null,
            })
        );
        assert_eq!(pd["Legs[0][CauseCode]"], "NORMAL_CLEARING");
        assert_eq!(pd["Legs[1][Number]"], "08047112233");
        assert_eq!(pd["CustomField"], "order-1042");
        assert!(pd.get("tenant_id").is_none() && pd.get("token").is_none());
        assert_eq!(
            e["source"]["provider_event_id"],
            "exoform0000000000000000000000001:completed:exotel_status"
        );
    }

    async fn multipart_status_callback_becomes_call_failed() {
        let app = exotel_app().await;
        let req = status_body(
            "exomulti000000000000000000000001",
            MULTIPART_CT,
            include_str!("../fixtures/exotel/status_no-answer.multipart"),
        );
        let e = &app.send_for_event("acme", &req, 200).await;
        assert_eq!(e["type"], "call.failed");
        let (data, pd) = split_provider_data(&e["data"]);
        assert_eq!(
            data,
            json!({
                "call_id": "exomulti000000000000000000000001",
                "provider": "exotel",
                "direction": "outbound",
                "from": "09812345678",
                "to": "08039591234",
                "status": "no-answer",
                "duration_seconds": 0,
                "recording_url": null,
                "failure_reason": "no-answer",
                "sequence": null,
            })
        );
        assert_eq!(pd["Legs[0][Status]"], "no-answer");
        assert_eq!(pd["Legs[0][CauseCode]"], "NO_ANSWER");
        assert_eq!(e["timestamp"], "2026-05-07T14:32:31Z");
    }

    async fn json_status_callbacks_answered_then_terminal() {
        let app = exotel_app().await;
        let call = "exojson0000000000000000000000001";
        for fixture in [
            include_str!("../fixtures/exotel/status_answered.json"),
            include_str!("../fixtures/exotel/status_terminal.json"),
        ] {
            let r = app
                .send(&status_body(call, "application/json", fixture))
                .await;
            assert_eq!(r.status(), 200);
        }
        let events = app.events("acme").await;
        let types: Vec<_> = events.iter().map(|e| e["type"].clone()).collect();
        assert_eq!(types, vec!["call.answered", "call.completed"]);
        let d = &events[1]["data"];
        assert_eq!(d["duration_seconds"], 92);
        assert_eq!(d["direction"], "outbound");
        assert_eq!(d["provider_data"]["EventType"], "terminal");
        assert_eq!(d["provider_data"]["Legs"][1]["OnCallDuration"], 92);
        assert_eq!(
            events[1]["source"]["provider_event_id"],
            format!("{call}:terminal:exotel_status")
        );
    }

    async fn one_event_per_call_and_type_and_twenty_concurrent_callbacks_give_one() {
        let app = exotel_app().await;
        let call = "exorace0000000000000000000000001";
        let req = status_cb(call, "completed");
        let answers = app.send_concurrently(&req, 20).await;
        assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
        let events = app.events("acme").await;
        assert_eq!(events.len(), 1);
        let expected = json!({"event_id": events[0]["id"]}).to_string();
        assert!(answers.iter().all(|(_, b)| *b == expected));
        // A late ringing and a busy after completion: recorded, not emitted. Queued: ignored.
        for st in ["ringing", "busy", "queued"] {
            assert_eq!(app.send(&status_cb(call, st)).await.status(), 200);
        }
        assert_eq!(app.events("acme").await.len(), 1);
        let reasons = app.inbound_reasons("acme").await;
        assert_eq!(reasons.iter().filter(|(o, _)| o == "duplicate").count(), 19);
        assert_eq!(
            reasons[..3].to_vec(),
            vec![
                ("accepted".to_owned(), "ignored_event_type".to_owned()),
                ("accepted".to_owned(), "superseded".to_owned()),
                ("accepted".to_owned(), "superseded".to_owned()),
            ]
        );
    }

    async fn tokens_are_checked_and_rejections_logged() {
        let app = spawn_tenant(
            "exotel",
            json!({"tokens": ["old-exotel-token-aaaa", TOKEN]}),
            |_| {},
        )
        .await;
        let call = "exotoken000000000000000000000001";
        let good = status_cb(call, "completed");
        let path = |q: &str| good.clone_with_path(&format!("/api/exotel/status?tenant_id=acme{q}"));
        let cases = [
            (String::new(), "missing_token"),
            ("&token=".to_owned(), "missing_token"),
            ("&token=wrong-token-0123456789".to_owned(), "bad_token"),
            (format!("&token={}", &TOKEN[..TOKEN.len() - 1]), "bad_token"),
            // Only the first token counts: hookgate's, before anything Exotel appends.
            (format!("&token=nope&token={TOKEN}"), "bad_token"),
        ];
        for (q, reason) in cases {
            let r = app.send(&path(&q)).await;
            assert_eq!(error_code(r).await, (401, reason.to_owned()), "{q}");
        }
        assert!(app.events("acme").await.is_empty());
        let reasons = app.inbound_reasons("acme").await;
        assert_eq!(reasons.len(), 5);
        assert!(reasons.iter().all(|(o, _)| o == "rejected"));
        assert_eq!(reasons[0].1, "bad_token");
        assert_eq!(reasons[4].1, "missing_token");
        // Both tokens of a rotation are accepted.
        assert_eq!(app.send(&good).await.status(), 200);
        let old = exotel_request(
            Route::ExotelStatus,
            "acme",
            "old-exotel-token-aaaa",
            "busy",
            "exotoken2",
        );
        assert_eq!(app.send(&old).await.status(), 200);
        assert_eq!(app.events("acme").await.len(), 2);
    }

    async fn the_ip_allow_list_sees_the_client_only_through_trusted_proxies() {
        let cfg = json!({"tokens": [TOKEN], "allowed_ips": ["203.0.113.0/24"]});
        // Not behind a trusted proxy: the peer (127.0.0.1) counts, X-Forwarded-For is ignored.
        let app = spawn_tenant("exotel", cfg.clone(), |_| {}).await;
        let mut req = status_cb("exoip00000000000000000000000001", "completed");
        req.headers
            .push(("x-forwarded-for".into(), "203.0.113.9".into()));
        assert_eq!(
            error_code(app.send(&req).await).await,
            (401, "ip_not_allowed".into())
        );
        assert_eq!(app.inbound("acme").await[0]["remote_addr"], "127.0.0.1");
        // Behind a trusted proxy: the forwarded client counts.
        let app = spawn_tenant("exotel", cfg, |m| {
            m.insert("trusted_proxies".into(), "127.0.0.1/32".into());
        })
        .await;
        assert_eq!(app.send(&req).await.status(), 200);
        let mut outsider = status_cb("exoip00000000000000000000000002", "completed");
        outsider
            .headers
            .push(("x-forwarded-for".into(), "198.51.100.7".into()));
        assert_eq!(
            error_code(app.send(&outsider).await).await,
            (401, "ip_not_allowed".into())
        );
        let log = app.inbound("acme").await;
        assert_eq!(log[0]["remote_addr"], "198.51.100.7");
        assert_eq!(log[0]["reason"], "ip_not_allowed");
        assert_eq!(log[1]["remote_addr"], "203.0.113.9");
        assert_eq!(log[1]["outcome"], "accepted");
    }

    async fn a_generated_token_is_shown_in_the_urls_to_paste_and_kept_across_updates() {
        let app = spawn_app().await;
        app.create_tenant("acme").await;
        let created = app
            .admin_get("/v1/tenants/acme")
            .await
            .json::<Value>()
            .await
            .unwrap();
        assert!(created["inbound_urls"]["exotel_status"]
            .as_str()
            .unwrap()
            .ends_with("&token={exotel_token}"));
        let put = app.put_provider("acme", "exotel", json!({})).await;
        let redacted = put["config"]["tokens"][0].as_str().unwrap().to_owned();
        assert!(redacted.starts_with("****") && redacted.len() == 8, "{put}");
        assert_eq!(put["config"]["passthru_status"], 200);
        assert_eq!(put["config"]["allowed_ips"], json!([]));
        let tenant = app
            .admin_get("/v1/tenants/acme")
            .await
            .json::<Value>()
            .await
            .unwrap();
        let status_url = tenant["inbound_urls"]["exotel_status"]
            .as_str()
            .unwrap()
            .to_owned();
        let incoming_url = tenant["inbound_urls"]["exotel_incoming"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(put["inbound_urls"]["exotel_status"], status_url.as_str());
        let token = status_url.split_once("&token=").unwrap().1.to_owned();
        assert!(
            token.starts_with("exo_") && token.ends_with(&redacted[4..]),
            "{token}"
        );
        assert_eq!(
            incoming_url,
            format!(
                "{}/voice/exotel/incoming?tenant_id=acme&token={token}",
                app.config.public_url
            )
        );
        // The reading of the provider config stays redacted.
        let shown = app
            .admin_get("/v1/tenants/acme/providers/exotel")
            .await
            .text()
            .await
            .unwrap();
        assert!(!shown.contains(&token), "{shown}");
        // The pasted URL works as Exotel would call it (it appends its parameters).
        let r = app
            .client
            .get(format!(
                "{incoming_url}&CallSid=exogen1&CallFrom=09812345678&tenant_id=67890"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // Changing the allow-list keeps the token (the URL in Exotel's console stays valid).
        let put = app
            .put_provider(
                "acme",
                "exotel",
                json!({"allowed_ips": ["127.0.0.1"], "passthru_status": 302}),
            )
            .await;
        assert_eq!(put["config"]["tokens"][0], redacted.as_str());
        assert_eq!(put["config"]["allowed_ips"], json!(["127.0.0.1/32"]));
        let r = app
            .client
            .get(format!("{incoming_url}&CallSid=exogen2"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        // Bad configs are refused.
        for bad in [
            json!({"tokens": ["short"]}),
            json!({"passthru_status": 201}),
            json!({"allowed_ips": ["300.1.1.1/8"]}),
            json!({"token": ["exotel-url-token-0123456789"]}),
        ] {
            let r = app
                .admin_json(
                    reqwest::Method::PUT,
                    "/v1/tenants/acme/providers/exotel",
                    bad.clone(),
                )
                .await;
            assert_eq!(error_code(r).await, (400, "invalid_config".into()), "{bad}");
        }
    }

    async fn error_table_for_exotel_callbacks() {
        let app = exotel_app().await;
        app.create_tenant("bare").await;
        let req = status_cb("exoerr00000000000000000000000001", "completed");
        let app = &app;
        let code = |r: SignedRequest| async move { error_code(app.send(&r).await).await };
        let with_body = |ct: &str, body: &[u8]| {
            let mut r = req.clone_with_path(&req.path_and_query);
            r.headers = vec![("content-type".into(), ct.into())];
            r.body = body.to_vec();
            r
        };
        assert_eq!(
            code(with_body("text/plain", b"CallSid=x")).await,
            (415, "unsupported_media_type".into())
        );
        assert_eq!(
            code(with_body("application/json", b"{\"CallSid\": ")).await,
            (400, "malformed_json".into())
        );
        assert_eq!(
            code(with_body("application/json", b"[\"CallSid\"]")).await,
            (400, "malformed_json".into())
        );
        assert_eq!(
            code(with_body(MULTIPART_CT, b"--nope\r\nnot multipart at all")).await,
            (400, "malformed_form".into())
        );
        assert_eq!(
            code(with_body("multipart/form-data", b"x")).await,
            (400, "malformed_form".into())
        );
        assert_eq!(
            code(with_body(
                "application/x-www-form-urlencoded",
                &[b'a', b'=', 0xff]
            ))
            .await,
            (400, "malformed_form".into())
        );
        assert_eq!(
            code(with_body(
                "application/x-www-form-urlencoded",
                b"Status=completed"
            ))
            .await,
            (400, "missing_field".into())
        );
        assert_eq!(
            code(with_body(
                "application/x-www-form-urlencoded",
                b"CallSid=exo1"
            ))
            .await,
            (400, "missing_field".into())
        );
        // A wrong token is refused before the body is parsed.
        let mut bad_token = with_body("application/json", b"{");
        bad_token.path_and_query = "/api/exotel/status?tenant_id=acme&token=wrong-wrong-wrong".into();
        assert_eq!(code(bad_token).await, (401, "bad_token".into()));
        for path in [
            format!("/api/exotel/status?tenant_id=nobody&token={TOKEN}"),
            format!("/api/exotel/status?tenant_id=bare&token={TOKEN}"),
            format!("/voice/exotel/incoming?tenant_id=bare&token={TOKEN}"),
        ] {
            assert_eq!(
                code(req.clone_with_path(&path)).await,
                (404, "not_found".into()),
                "{path}"
            );
        }
        assert!(app.events("acme").await.is_empty());
        assert_eq!(app.send(&req).await.status(), 200);
    }

    async fn simulate_exotel_sends_both_callbacks_and_prints_no_token() {
        let app = exotel_app().await;
        let incoming = [
            "exotel-incoming",
            "--tenant",
            "acme",
            "--call-id",
            "exosim1",
        ];
        let out = app.simulate_ok(&incoming, TOKEN).await;
        assert!(
            out.contains("> GET /voice/exotel/incoming?tenant_id=acme&token=****&CallSid=exosim1"),
            "{out}"
        );
        assert!(out.contains("< 200 OK"), "{out}");
        let status = [
            "exotel-status",
            "--tenant",
            "acme",
            "--call-id",
            "exosim1",
            "--status",
            "busy",
        ];
        let out = app.simulate_ok(&status, TOKEN).await;
        assert!(
            out.contains("> POST /api/exotel/status?tenant_id=acme&token=****"),
            "{out}"
        );
        let events = app.events("acme").await;
        let types: Vec<_> = events.iter().map(|e| e["type"].clone()).collect();
        assert_eq!(types, vec!["call.started", "call.failed"]);
        assert!(events.iter().all(|e| e["data"]["call_id"] == "exosim1"));
        assert_eq!(events[1]["data"]["failure_reason"], "busy");
        // An unreachable gateway: the error names the URL without the token.
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args([
                "simulate",
                "exotel-status",
                "--tenant",
                "acme",
                "--url",
                "http://127.0.0.1:1",
            ])
            .env("HOOKGATE_DATABASE_URL", &app.config.database_url)
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
        let text =
            String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("could not reach the gateway at http://127.0.0.1:1/api/exotel/status?tenant_id=acme&token=****"), "{text}");
        assert!(!text.contains(TOKEN), "{text}");
    }
}
