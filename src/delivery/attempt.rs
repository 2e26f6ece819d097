//! One delivery attempt: resolve the subscription (cached), sign, POST, classify the outcome with
//! the retry policy. No database writes here: the result goes to the batched recorder.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};

use super::client::{read_capped, TargetPolicy};
use super::retry::{parse_retry_after, AttemptOutcome, Decision, RetryPolicy};
use super::sign::sign_all;
use crate::store::{now_ms, AttemptRecord, Finish, Job};

/// What the worker needs of a subscription to send to it.
#[derive(Debug)]
pub struct Target {
    pub url: String,
    pub enabled: bool,
    /// Key bytes of every secret that signs now (two during a rotation's grace period).
    pub keys: Vec<Vec<u8>>,
}

/// Sends one attempt and decides what follows.
pub async fn attempt(
    client: &reqwest::Client,
    targets: &TargetPolicy,
    policy: &RetryPolicy,
    target: Option<Arc<Target>>,
    job: Job,
) -> AttemptRecord {
    let started = Instant::now();
    let record =
        |job: Job, status_code, error: Option<String>, response_body, finish| AttemptRecord {
            job,
            status_code,
            error,
            response_body,
            latency_ms: started.elapsed().as_millis() as i64,
            at: now_ms(),
            finish,
        };
    let target = match target {
        Some(t) if t.enabled => t,
        Some(_) => {
            return record(
                job,
                None,
                Some("subscription disabled".into()),
                None,
                Finish::Dropped,
            )
        }
        None => {
            return record(
                job,
                None,
                Some("subscription deleted".into()),
                None,
                Finish::Dropped,
            )
        }
    };
    let outcome;
    let mut error = None;
    let mut response_body = None;
    match literal_ip(&target.url) {
        Some(ip) if !targets.allows_ip(ip) => {
            outcome = AttemptOutcome::NoResponse;
            error = Some("the URL points at an address deliveries may not reach".to_owned());
        }
        _ => {
            let ts = chrono::Utc::now().timestamp();
            let sig = sign_all(&target.keys, &job.event_id, ts, job.body.as_bytes());
            let sent = client
                .post(&target.url)
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .header("webhook-id", &job.event_id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", sig.webhook_signature)
                .header("x-hookgate-event", &job.event_type)
                .header("x-hookgate-signature", sig.hookgate_signature)
                .body(job.body.to_string())
                .send()
                .await;
            match sent {
                Ok(resp) => {
                    let code = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    if !(200..300).contains(&code) {
                        error = Some(format!("HTTP {code}"));
                    }
                    response_body = Some(read_capped(resp).await);
                    outcome = AttemptOutcome::Status { code, retry_after };
                }
                Err(e) => {
                    error = Some(describe(&e));
                    outcome = AttemptOutcome::NoResponse;
                }
            }
        }
    }
    let status_code = match &outcome {
        AttemptOutcome::Status { code, .. } => Some(*code),
        AttemptOutcome::NoResponse => None,
    };
    let finish = match policy.decide(job.attempt, &outcome) {
        Decision::Succeeded => Finish::Succeeded,
        Decision::Gone => Finish::Gone,
        Decision::Failed => Finish::Failed,
        Decision::RetryAfter(d) => Finish::Retry {
            next_at: now_ms() + d.as_millis() as i64,
        },
    };
    record(job, status_code, error, response_body, finish)
}

fn literal_ip(url: &str) -> Option<IpAddr> {
    match url::Url::parse(url).ok()?.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// A short error for the attempt log, without the URL (it may carry the receiver's own token).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_redirect() {
        "redirect not followed"
    } else {
        "request failed"
    };
    let mut msg = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}
