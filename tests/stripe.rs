//! Stripe end to end over real HTTP with a fresh SQLite file: the official vectors, the replay
//! window, the mapping of each event type field by field, one event per payment and type,
//! dedup under concurrency, the error table and `hookgate simulate stripe`.

mod common;

use common::*;
use hookgate::cli::{stripe_request, SignedRequest};
use hookgate::providers::stripe::{check_signature, header};
use serde_json::{json, Value};

const SECRET: &str = "whsec_tenant_secret_for_tests_01";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn stripe_app() -> TestApp {
    spawn_tenant("stripe", json!({"signing_secrets": [SECRET]}), |_| {}).await
}

fn event(kind: &str, payment_id: &str) -> SignedRequest {
    stripe_request("acme", SECRET, kind, payment_id, now()).unwrap()
}

/// `req` with another body, signed again with `secret` at `t`.
fn resigned(req: &SignedRequest, body: Vec<u8>, secret: &str, t: i64) -> SignedRequest {
    let mut out = req.clone_with_path(&req.path_and_query);
    out.body = body;
    for (k, v) in out.headers.iter_mut() {
        if k == "stripe-signature" {
            *v = header(secret, t, &out.body);
        }
    }
    out
}

#[test]
fn every_official_vector_verifies_at_its_time_and_fails_when_altered() {
    let v = vector("stripe.json");
    let secret = v["secret"].as_str().unwrap().to_owned();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let payload = c["payload"].as_str().unwrap().as_bytes();
        let h = c["header"].as_str().unwrap();
        let t = c["timestamp"].as_i64().unwrap();
        let secrets = std::slice::from_ref(&secret);
        assert_eq!(
            check_signature(Some(h), payload, secrets, t, 300),
            Ok(()),
            "{c}"
        );
        let reason = |r: Result<(), hookgate::providers::Rejection>| r.unwrap_err().reason;
        assert_eq!(
            reason(check_signature(
                Some(h),
                payload,
                &["whsec_other".into()],
                t,
                300
            )),
            "bad_signature"
        );
        let mut tampered = payload.to_vec();
        tampered.push(b' ');
        assert_eq!(
            reason(check_signature(Some(h), &tampered, secrets, t, 300)),
            "bad_signature"
        );
        assert_eq!(
            reason(check_signature(Some(h), payload, secrets, t + 301, 300)),
            "timestamp_out_of_window"
        );
        // Our own signer produces the vector's v1.
        let ours = header(&secret, t, payload);
        assert!(h.contains(ours.split_once(",v1=").unwrap().1), "{c}");
    }
}

crate::dual! {

    async fn official_vectors_over_http_verify_then_fail_only_on_their_age() {
        let app = spawn_app().await;
        app.create_tenant("acme").await;
        let v = vector("stripe.json");
        app.put_provider("acme", "stripe", json!({"signing_secrets": [v["secret"]]}))
            .await;
        for c in v["cases"].as_array().unwrap() {
            let r = app
                .post(
                    "/api/payments/stripe?tenant_id=acme",
                    &[("content-type", "application/json"), ("stripe-signature", c["header"].as_str().unwrap())],
                    c["payload"].as_str().unwrap().to_owned(),
                )
                .await;
            // The signature holds (a forged one would be `bad_signature`); the 2017 timestamp does not.
            assert_eq!(error_code(r).await, (401, "timestamp_out_of_window".into()));
        }
        assert!(app.events("acme").await.is_empty());
    }

    async fn payment_intent_succeeded_becomes_payment_completed_field_by_field() {
        let app = stripe_app().await;
        let req = event("payment_intent.succeeded", "pi_3TestCompleted0000001");
        let e = &app.send_for_event("acme", &req, 200).await;
        assert_eq!(e["type"], "payment.completed");
        assert_eq!(e["tenant_id"], "acme");
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(e["source"]["provider"], "stripe");
        assert_eq!(e["source"]["provider_event_id"], sent["id"]);
        assert_eq!(e["timestamp"], rfc3339_of(&sent["created"]));
        let (data, provider_data) = split_provider_data(&e["data"]);
        assert_eq!(
            data,
            json!({
                "payment_id": "pi_3TestCompleted0000001",
                "provider": "stripe",
                "status": "succeeded",
                "amount": 2000,
                "currency": "USD",
                "order_id": "order-1042",
                "refunded_amount": null,
                "customer": {"email": "jenny.rosen@example.com", "phone": "+14155550123"},
                "failure_reason": null,
            })
        );
        assert_eq!(provider_data, sent["data"]["object"]);
        let log = app.inbound("acme").await;
        assert_eq!(log.len(), 1);
        assert_eq!(log[0]["provider"], "stripe");
        assert_eq!(log[0]["outcome"], "accepted");
        assert_eq!(log[0]["event_id"], e["id"]);
    }

    async fn failures_and_refunds_carry_the_payment_intent_reason_and_amounts() {
        let app = stripe_app().await;
        let pi = "pi_3TestFailRefund000001";
        for kind in ["payment_intent.payment_failed", "charge.refunded"] {
            assert_eq!(app.send(&event(kind, pi)).await.status(), 200, "{kind}");
        }
        // A Refund object on another payment: the refund's amount, the payment's is unknown.
        let other = "pi_3TestRefundOnly000001";
        assert_eq!(
            app.send(&event("refund.updated", other)).await.status(),
            200
        );
        let events = app.events("acme").await;
        let types: Vec<_> = events.iter().map(|e| e["type"].clone()).collect();
        assert_eq!(
            types,
            vec!["payment.failed", "payment.refunded", "payment.refunded"]
        );
        let failed = &events[0]["data"];
        assert_eq!(failed["payment_id"], pi);
        assert_eq!(failed["status"], "failed");
        assert_eq!(
            failed["failure_reason"],
            "Your card has insufficient funds."
        );
        assert_eq!(failed["amount"], 2000);
        assert_eq!(failed["customer"]["email"], "jenny.rosen@example.com");
        assert_eq!(failed["refunded_amount"], Value::Null);
        let refunded = &events[1]["data"];
        assert_eq!(
            refunded["payment_id"], pi,
            "a charge's payment is its PaymentIntent"
        );
        assert_eq!(refunded["status"], "refunded");
        assert_eq!(refunded["amount"], 2000);
        assert_eq!(refunded["refunded_amount"], 500);
        assert_eq!(refunded["currency"], "USD");
        assert_eq!(refunded["provider_data"]["id"], "ch_3PqFixtureCharge00001");
        let refund = &events[2]["data"];
        assert_eq!(refund["payment_id"], other);
        assert_eq!(refund["amount"], Value::Null);
        assert_eq!(refund["refunded_amount"], 500);
        assert_eq!(refund["provider_data"]["object"], "refund");
    }

    async fn one_event_per_payment_and_type_and_no_going_back() {
        let app = stripe_app().await;
        let pi = "pi_3TestOncePerType00001";
        // Checkout and the PaymentIntent both say "paid": one payment.completed. The session's
        // client_reference_id is the order.
        for kind in [
            "checkout.session.completed",
            "payment_intent.succeeded",
            "charge.failed",
        ] {
            assert_eq!(app.send(&event(kind, pi)).await.status(), 200, "{kind}");
        }
        let events = app.events("acme").await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["type"], "payment.completed");
        assert_eq!(events[0]["data"]["payment_id"], pi);
        assert_eq!(events[0]["data"]["order_id"], "order-1042");
        assert_eq!(events[0]["data"]["customer"]["phone"], "+14155550123");
        assert_eq!(
            events[0]["data"]["provider_data"]["object"],
            "checkout.session"
        );
        let reasons = app.inbound_reasons("acme").await;
        assert_eq!(
            reasons,
            vec![
                ("accepted".to_owned(), "superseded".to_owned()),
                ("accepted".to_owned(), "superseded".to_owned()),
                ("accepted".to_owned(), String::new()),
            ]
        );
    }

    async fn unpaid_sessions_pending_refunds_and_other_types_are_acknowledged_and_ignored() {
        let app = stripe_app().await;
        let created = event("payment_intent.created", "pi_3TestIgnored000000001");
        let r = app.send(&created).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"event_id": null}));
        let session = event("checkout.session.completed", "pi_3TestIgnored000000002");
        let body = String::from_utf8(session.body.clone()).unwrap().replace(
            r#""payment_status": "paid""#,
            r#""payment_status": "unpaid""#,
        );
        assert!(body.contains("unpaid"));
        let unpaid = resigned(&session, body.into_bytes(), SECRET, now());
        assert_eq!(app.send(&unpaid).await.status(), 200);
        let refund = event("refund.updated", "pi_3TestIgnored000000003");
        let body = String::from_utf8(refund.body.clone())
            .unwrap()
            .replace(r#""status": "succeeded""#, r#""status": "pending""#);
        let pending = resigned(&refund, body.into_bytes(), SECRET, now());
        assert_eq!(app.send(&pending).await.status(), 200);
        assert!(app.events("acme").await.is_empty());
        let reasons = app.inbound_reasons("acme").await;
        assert_eq!(reasons.len(), 3);
        assert!(reasons
            .iter()
            .all(|(o, r)| o == "accepted" && r == "ignored_event_type"));
        // A redelivery of an ignored event is a duplicate, answered the same.
        assert_eq!(app.send(&created).await.status(), 200);
        assert_eq!(app.inbound_reasons("acme").await[0].0, "duplicate");
    }

    async fn twenty_concurrent_deliveries_of_one_event_give_one_event() {
        let app = stripe_app().await;
        let req = event("payment_intent.succeeded", "pi_3TestRace00000000001");
        let answers = app.send_concurrently(&req, 20).await;
        assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
        let events = app.events("acme").await;
        assert_eq!(events.len(), 1);
        let expected = json!({"event_id": events[0]["id"]}).to_string();
        assert!(answers.iter().all(|(_, b)| *b == expected), "{answers:?}");
        let reasons = app.inbound_reasons("acme").await;
        assert_eq!(reasons.iter().filter(|(o, _)| o == "accepted").count(), 1);
        assert_eq!(reasons.iter().filter(|(o, _)| o == "duplicate").count(), 19);
    }

    async fn signatures_and_the_replay_window_are_enforced_and_logged() {
        let app = stripe_app().await;
        let req = event("payment_intent.succeeded", "pi_3TestErrors0000000001");
        let t = now();
        let cases: Vec<(SignedRequest, &str)> = vec![
            (
                resigned(&req, req.body.clone(), "whsec_wrong", t),
                "bad_signature",
            ),
            (
                req.with_header("stripe-signature", None),
                "missing_signature",
            ),
            (
                req.with_header("stripe-signature", Some("garbage")),
                "bad_signature",
            ),
            (
                resigned(&req, req.body.clone(), SECRET, t - 301),
                "timestamp_out_of_window",
            ),
            (
                resigned(&req, req.body.clone(), SECRET, t + 301),
                "timestamp_out_of_window",
            ),
        ];
        for (bad, reason) in &cases {
            let r = app.send(bad).await;
            assert_eq!(error_code(r).await, (401, (*reason).to_owned()));
        }
        // Tampering with one byte of a correctly signed body.
        let mut tampered = resigned(&req, req.body.clone(), SECRET, t);
        tampered.body = String::from_utf8(tampered.body)
            .unwrap()
            .replace("2000", "2")
            .into_bytes();
        assert_eq!(
            error_code(app.send(&tampered).await).await,
            (401, "bad_signature".into())
        );
        assert!(app.events("acme").await.is_empty());
        let reasons = app.inbound_reasons("acme").await;
        let mut expected: Vec<_> = cases
            .iter()
            .map(|(_, r)| ("rejected".to_owned(), (*r).to_owned()))
            .collect();
        expected.push(("rejected".into(), "bad_signature".into()));
        expected.reverse();
        assert_eq!(reasons, expected);
        // Inside the window either way, and with a rotated-out v1 next to a good one: accepted.
        let early = resigned(&req, req.body.clone(), SECRET, t + 200);
        assert_eq!(app.send(&early).await.status(), 200);
        let late = event("payment_intent.payment_failed", "pi_3TestErrors0000000002");
        let late = resigned(&late, late.body.clone(), SECRET, t - 250);
        let sig = late
            .headers
            .iter()
            .find(|(k, _)| k == "stripe-signature")
            .unwrap();
        let two = format!("{},v1={}", sig.1, "0".repeat(64));
        assert_eq!(
            app.send(&late.with_header("stripe-signature", Some(&two)))
                .await
                .status(),
            200
        );
        assert_eq!(app.events("acme").await.len(), 2);
    }

    async fn a_narrower_tolerance_is_honoured() {
        let app = spawn_app().await;
        app.create_tenant("acme").await;
        app.put_provider(
            "acme",
            "stripe",
            json!({"signing_secrets": [SECRET], "tolerance_seconds": 10}),
        )
        .await;
        let req = event("payment_intent.succeeded", "pi_3TestTolerance0000001");
        let old = resigned(&req, req.body.clone(), SECRET, now() - 60);
        assert_eq!(
            error_code(app.send(&old).await).await,
            (401, "timestamp_out_of_window".into())
        );
        assert_eq!(app.send(&req).await.status(), 200);
    }

    async fn error_table_for_stripe_callbacks() {
        let app = stripe_app().await;
        app.create_tenant("bare").await;
        let req = event("payment_intent.succeeded", "pi_3TestTable0000000001");
        // Malformed JSON with a valid signature: 400, logged.
        let bad_json = resigned(&req, b"{\"id\": \"evt_1\", ".to_vec(), SECRET, now());
        assert_eq!(
            error_code(app.send(&bad_json).await).await,
            (400, "malformed_json".into())
        );
        // Valid JSON that is not an event object, or a mapped event without its id.
        let not_object = resigned(&req, b"[1,2]".to_vec(), SECRET, now());
        assert_eq!(
            error_code(app.send(&not_object).await).await,
            (400, "malformed_json".into())
        );
        let no_id = resigned(
            &req,
            br#"{"type":"payment_intent.succeeded","data":{"object":{}}}"#.to_vec(),
            SECRET,
            now(),
        );
        assert_eq!(
            error_code(app.send(&no_id).await).await,
            (400, "missing_field".into())
        );
        // Wrong or missing content type: 415, even when correctly signed.
        for ct in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            let r = app.send(&req.with_header("content-type", ct)).await;
            assert_eq!(
                error_code(r).await,
                (415, "unsupported_media_type".into()),
                "{ct:?}"
            );
        }
        // Unknown tenant, tenant without Stripe: 404.
        for path in [
            "/api/payments/stripe?tenant_id=nobody",
            "/api/payments/stripe?tenant_id=bare",
        ] {
            let r = app.send(&req.clone_with_path(path)).await;
            assert_eq!(error_code(r).await, (404, "not_found".into()), "{path}");
        }
        // GET is not a Stripe method.
        let r = app
            .client
            .get(app.url("/api/payments/stripe?tenant_id=acme"))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await, (405, "method_not_allowed".into()));
        assert!(app.events("acme").await.is_empty());
        let reasons = app.inbound_reasons("acme").await;
        assert!(reasons.contains(&("rejected".into(), "malformed_json".into())));
        // After all that, the real event still goes through.
        assert_eq!(app.send(&req).await.status(), 200);
    }

    async fn credentials_rotate_validate_and_stay_redacted() {
        let app = spawn_app().await;
        app.create_tenant("acme").await;
        let shown = app
            .put_provider(
                "acme",
                "stripe",
                json!({"signing_secrets": ["whsec_old_secret_aaaa", "whsec_new_secret_bbbb"]}),
            )
            .await;
        assert_eq!(
            shown["config"],
            json!({"signing_secrets": ["****aaaa", "****bbbb"], "tolerance_seconds": 300})
        );
        assert!(shown["inbound_urls"]["stripe"]
            .as_str()
            .unwrap()
            .ends_with("/api/payments/stripe?tenant_id=acme"));
        for (i, s) in ["whsec_old_secret_aaaa", "whsec_new_secret_bbbb"]
            .iter()
            .enumerate()
        {
            let req = stripe_request(
                "acme",
                s,
                "payment_intent.succeeded",
                &format!("pi_3TestRotate{i}"),
                now(),
            )
            .unwrap();
            assert_eq!(app.send(&req).await.status(), 200);
        }
        let text = app
            .admin_get("/v1/tenants/acme/providers/stripe")
            .await
            .text()
            .await
            .unwrap();
        assert!(
            !text.contains("old_secret") && !text.contains("new_secret"),
            "{text}"
        );
        for bad in [
            json!({"signing_secrets": []}),
            json!({"signing_secrets": ["sk_live_not_a_signing_secret"]}),
            json!({"signing_secrets": ["whsec_x"], "tolerance_seconds": 0}),
            json!({"signing_secrets": ["whsec_x"], "tolerence_seconds": 30}),
        ] {
            let r = app
                .admin_json(
                    reqwest::Method::PUT,
                    "/v1/tenants/acme/providers/stripe",
                    bad.clone(),
                )
                .await;
            assert_eq!(error_code(r).await, (400, "invalid_config".into()), "{bad}");
        }
    }

    async fn simulate_stripe_sends_a_signed_event_and_prints_no_secret() {
        let app = stripe_app().await;
        let args = [
            "stripe",
            "--tenant",
            "acme",
            "--payment-id",
            "pi_3TestSimulate0000001",
        ];
        let out = app.simulate_ok(&args, SECRET).await;
        assert!(
            out.contains("> POST /api/payments/stripe?tenant_id=acme"),
            "{out}"
        );
        assert!(out.contains("< 200 OK"), "{out}");
        let events = app.events("acme").await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["type"], "payment.completed");
        assert_eq!(events[0]["data"]["payment_id"], "pi_3TestSimulate0000001");
        assert!(out.contains(events[0]["id"].as_str().unwrap()), "{out}");
        // Each run is a new Stripe event; --status picks the kind.
        let refund = [&args[..], &["--status", "refunded"]].concat();
        assert!(app.simulate_ok(&refund, SECRET).await.contains("< 200 OK"));
        let types: Vec<_> = app
            .events("acme")
            .await
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(types, vec!["payment.completed", "payment.refunded"]);
        let (ok, _, err) = app
            .simulate(&["stripe", "--tenant", "acme", "--status", "no.such.type"])
            .await;
        assert!(!ok);
        assert!(err.contains("no Stripe sample for `no.such.type`"), "{err}");
        let (ok, _, err) = app.simulate(&["stripe", "--tenant", "nobody"]).await;
        assert!(!ok);
        assert!(err.contains("has no stripe credentials"), "{err}");
    }
}
