//! Razorpay end to end over real HTTP with a fresh SQLite file: the official vector, the mapping
//! field by field, failed-then-captured, dedup on the event id header (and without it), the error
//! table and `hookgate simulate razorpay`.

mod common;

use common::*;
use hookgate::cli::{razorpay_request, SignedRequest};
use hookgate::providers::razorpay::{sign, signature_matches};
use serde_json::{json, Value};

const SECRET: &str = "rzp-webhook-secret-01";

async fn razorpay_app() -> TestApp {
    spawn_tenant("razorpay", json!({"webhook_secrets": [SECRET]}), |_| {}).await
}

fn event(kind: &str, payment_id: &str) -> SignedRequest {
    razorpay_request("acme", SECRET, kind, payment_id).unwrap()
}

/// `req` with another body, signed again.
fn resigned(req: &SignedRequest, body: &[u8]) -> SignedRequest {
    let mut out = req.with_header("x-razorpay-signature", Some(&sign(SECRET, body)));
    out.body = body.to_vec();
    out
}

#[test]
fn the_official_vector_verifies_and_any_change_breaks_it() {
    let v = vector("razorpay.json");
    for c in v["cases"].as_array().unwrap() {
        let secret = c["secret"].as_str().unwrap().to_owned();
        let body = c["body"].as_str().unwrap().as_bytes();
        let sig = c["signature"].as_str().unwrap();
        assert_eq!(sign(&secret, body), sig);
        assert!(signature_matches(std::slice::from_ref(&secret), body, sig));
        assert!(signature_matches(
            &["rotated-out".into(), secret.clone()],
            body,
            sig
        ));
        assert!(!signature_matches(&["654321".into()], body, sig));
        // Razorpay signs the exact bytes: a trailing newline is another body.
        let mut nl = body.to_vec();
        nl.push(b'\n');
        assert!(!signature_matches(std::slice::from_ref(&secret), &nl, sig));
    }
}

crate::dual! {

    async fn the_official_vector_over_http_passes_verification() {
        let app = spawn_app().await;
        app.create_tenant("acme").await;
        let c = &vector("razorpay.json")["cases"][0];
        app.put_provider(
            "acme",
            "razorpay",
            json!({"webhook_secrets": [c["secret"]]}),
        )
        .await;
        let send = |sig: &str| {
            app.client
                .post(app.url("/api/payments/razorpay?tenant_id=acme"))
                .header("content-type", "application/json")
                .header("x-razorpay-signature", sig.to_owned())
                .body(c["body"].as_str().unwrap().to_owned())
                .send()
        };
        // Verified, then refused only because `{"a":1,…}` is no Razorpay event.
        let r = send(c["signature"].as_str().unwrap()).await.unwrap();
        assert_eq!(error_code(r).await, (400, "missing_field".into()));
        let r = send(&"0".repeat(64)).await.unwrap();
        assert_eq!(error_code(r).await, (401, "bad_signature".into()));
    }

    async fn payment_captured_becomes_payment_completed_field_by_field() {
        let app = razorpay_app().await;
        let req = event("payment.captured", "pay_TestCaptured01");
        let e = &app.send_for_event("acme", &req, 200).await;
        assert_eq!(e["type"], "payment.completed");
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        let event_id_header = &req
            .headers
            .iter()
            .find(|(k, _)| k == "x-razorpay-event-id")
            .unwrap()
            .1;
        assert_eq!(e["source"]["provider"], "razorpay");
        assert_eq!(e["source"]["provider_event_id"], event_id_header.as_str());
        assert_eq!(e["timestamp"], rfc3339_of(&sent["created_at"]));
        let (data, provider_data) = split_provider_data(&e["data"]);
        assert_eq!(
            data,
            json!({
                "payment_id": "pay_TestCaptured01",
                "provider": "razorpay",
                "status": "succeeded",
                "amount": 50000,
                "currency": "INR",
                "order_id": "order_PqFixture0001",
                "refunded_amount": null,
                "customer": {"email": "gaurav.kumar@example.com", "phone": "+919876543210"},
                "failure_reason": null,
            })
        );
        assert_eq!(provider_data, sent["payload"]);
        assert_eq!(
            provider_data["payment"]["entity"]["id"],
            "pay_TestCaptured01"
        );
    }

    async fn a_failed_attempt_then_a_capture_are_both_emitted_but_never_backwards() {
        let app = razorpay_app().await;
        let pay = "pay_TestFailThenOk";
        for kind in [
            "payment.failed",
            "payment.captured",
            "order.paid",
            "payment.failed",
        ] {
            assert_eq!(app.send(&event(kind, pay)).await.status(), 200, "{kind}");
        }
        let events = app.events("acme").await;
        let types: Vec<_> = events.iter().map(|e| e["type"].clone()).collect();
        assert_eq!(types, vec!["payment.failed", "payment.completed"]);
        let failed = &events[0]["data"];
        assert_eq!(failed["payment_id"], pay);
        assert_eq!(failed["status"], "failed");
        assert_eq!(
            failed["failure_reason"],
            "Payment was unsuccessful as the UPI app did not respond in time."
        );
        // order.paid for the same payment and a late failure are recorded, not emitted.
        let reasons = app.inbound_reasons("acme").await;
        assert_eq!(
            reasons.iter().filter(|(_, r)| r == "superseded").count(),
            2,
            "{reasons:?}"
        );
        // Then a refund: emitted with the refund's amount and the payment's.
        assert_eq!(
            app.send(&event("refund.processed", pay)).await.status(),
            200
        );
        let events = app.events("acme").await;
        assert_eq!(events.len(), 3);
        let refund = &events[2]["data"];
        assert_eq!(events[2]["type"], "payment.refunded");
        assert_eq!(refund["payment_id"], pay);
        assert_eq!(refund["status"], "refunded");
        assert_eq!(refund["amount"], 50000);
        assert_eq!(refund["refunded_amount"], 20000);
        assert_eq!(refund["currency"], "INR");
        assert_eq!(
            refund["provider_data"]["refund"]["entity"]["id"],
            "rfnd_PqFixture0001"
        );
    }

    async fn order_paid_alone_completes_the_payment_with_its_order() {
        let app = razorpay_app().await;
        assert_eq!(
            app.send(&event("order.paid", "pay_TestOrderPaid1"))
                .await
                .status(),
            200
        );
        let e = &app.events("acme").await[0];
        assert_eq!(e["type"], "payment.completed");
        assert_eq!(e["data"]["payment_id"], "pay_TestOrderPaid1");
        assert_eq!(e["data"]["order_id"], "order_PqFixture0001");
        assert_eq!(
            e["data"]["provider_data"]["order"]["entity"]["receipt"],
            "order-1042"
        );
    }

    async fn unmapped_events_are_acknowledged_and_ignored() {
        let app = razorpay_app().await;
        let r = app
            .send(&event("payment.authorized", "pay_TestAuthorized"))
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"event_id": null}));
        assert!(app.events("acme").await.is_empty());
        assert_eq!(
            app.inbound_reasons("acme").await,
            vec![("accepted".into(), "ignored_event_type".into())]
        );
    }

    async fn dedup_uses_the_event_id_header_else_event_entity_and_time() {
        let app = razorpay_app().await;
        let req = event("payment.captured", "pay_TestDedup0001");
        let answers = app.send_concurrently(&req, 20).await;
        assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
        let events = app.events("acme").await;
        assert_eq!(events.len(), 1);
        let expected = json!({"event_id": events[0]["id"]}).to_string();
        assert!(answers.iter().all(|(_, b)| *b == expected));
        // Razorpay's retry carries the same X-Razorpay-Event-Id: a duplicate even for another body.
        let other = event("payment.captured", "pay_TestDedup0002");
        let id = &req
            .headers
            .iter()
            .find(|(k, _)| k == "x-razorpay-event-id")
            .unwrap()
            .1;
        let retry = other.with_header("x-razorpay-event-id", Some(id));
        let r = app.send(&retry).await;
        assert_eq!(r.text().await.unwrap(), expected);
        // Without the header: the same body is a duplicate, another payment is not.
        let bare = other.with_header("x-razorpay-event-id", None);
        assert_eq!(app.send(&bare).await.status(), 200);
        assert_eq!(app.send(&bare).await.status(), 200);
        let events = app.events("acme").await;
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[1]["source"]["provider_event_id"]
                .as_str()
                .unwrap()
                .split(':')
                .take(2)
                .collect::<Vec<_>>(),
            vec!["payment.captured", "pay_TestDedup0002"]
        );
        let reasons = app.inbound_reasons("acme").await;
        assert_eq!(reasons.iter().filter(|(o, _)| o == "duplicate").count(), 21);
    }

    async fn error_table_for_razorpay_callbacks() {
        let app = razorpay_app().await;
        app.create_tenant("bare").await;
        let req = event("payment.captured", "pay_TestErrors001");
        let wrong = req.with_header("x-razorpay-signature", Some(&sign("other", &req.body)));
        assert_eq!(
            error_code(app.send(&wrong).await).await,
            (401, "bad_signature".into())
        );
        let unsigned = req.with_header("x-razorpay-signature", None);
        assert_eq!(
            error_code(app.send(&unsigned).await).await,
            (401, "missing_signature".into())
        );
        let mut tampered = req.clone_with_path(&req.path_and_query);
        tampered.body = String::from_utf8(req.body.clone())
            .unwrap()
            .replace("50000", "5")
            .into_bytes();
        assert_eq!(
            error_code(app.send(&tampered).await).await,
            (401, "bad_signature".into())
        );
        assert_eq!(
            app.inbound_reasons("acme").await,
            vec![
                ("rejected".into(), "bad_signature".into()),
                ("rejected".into(), "missing_signature".into()),
                ("rejected".into(), "bad_signature".into()),
            ]
        );
        let bad_json = resigned(&req, b"{\"event\": ");
        assert_eq!(
            error_code(app.send(&bad_json).await).await,
            (400, "malformed_json".into())
        );
        let no_payment = resigned(&req, br#"{"event":"payment.captured","payload":{}}"#);
        assert_eq!(
            error_code(app.send(&no_payment).await).await,
            (400, "missing_field".into())
        );
        for ct in [Some("text/plain"), None] {
            let r = app.send(&req.with_header("content-type", ct)).await;
            assert_eq!(error_code(r).await, (415, "unsupported_media_type".into()));
        }
        for path in [
            "/api/payments/razorpay?tenant_id=nobody",
            "/api/payments/razorpay?tenant_id=bare",
            "/api/payments/razorpay?tenant_id=Not%20Valid",
        ] {
            let r = app.send(&req.clone_with_path(path)).await;
            assert_eq!(error_code(r).await, (404, "not_found".into()), "{path}");
        }
        assert!(app.events("acme").await.is_empty());
        assert_eq!(app.send(&req).await.status(), 200);
        // Credentials: redacted, validated.
        let shown = app
            .admin_get("/v1/tenants/acme/providers/razorpay")
            .await
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(shown["config"], json!({"webhook_secrets": ["****t-01"]}));
        let r = app
            .admin_json(
                reqwest::Method::PUT,
                "/v1/tenants/acme/providers/razorpay",
                json!({"webhook_secrets": [""]}),
            )
            .await;
        assert_eq!(error_code(r).await, (400, "invalid_config".into()));
    }

    async fn simulate_razorpay_sends_a_signed_event_and_prints_no_secret() {
        let app = razorpay_app().await;
        for status in ["failed", "completed"] {
            let args = [
                "razorpay",
                "--tenant",
                "acme",
                "--payment-id",
                "pay_TestSimulate1",
                "--status",
                status,
            ];
            let out = app.simulate_ok(&args, SECRET).await;
            assert!(out.contains("> POST /api/payments/razorpay?tenant_id=acme"));
            assert!(out.contains("< 200 OK"), "{out}");
        }
        let events = app.events("acme").await;
        let types: Vec<_> = events.iter().map(|e| e["type"].clone()).collect();
        assert_eq!(types, vec!["payment.failed", "payment.completed"]);
        assert!(events
            .iter()
            .all(|e| e["data"]["payment_id"] == "pay_TestSimulate1"));
    }
}
