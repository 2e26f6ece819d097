//! Exotel: URL-token verification (Exotel signs nothing) with an optional IP allow-list, and
//! normalization of the Passthru applet hit (`call.started`) and of status callbacks.
//!
//! The `token` query parameter must equal one of the tenant's tokens (constant time); when
//! `allowed_ips` is set the client address (the `X-Forwarded-For` client when the peer is a
//! trusted proxy) must be inside it. Parameters come from the query (GET), a urlencoded or
//! multipart form, or a JSON body; bracketed keys such as `Legs[0][Status]` are kept as they are.
//! hookgate's own `tenant_id` and `token` (the first of each in the query) are not provider data;
//! a `tenant_id` Exotel appends after them is.

use axum::http::Method;
use bytes::Bytes;
use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::call::Call;
use super::params::{self, Params};
use super::signing::any_secret_matches;
use super::{Inbound, Normalized, Rejection, Route, Verified};
use crate::crypto::{random_token, redact};
use crate::error::ApiError;
use crate::event::EventType;

/// A tenant's Exotel settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExotelConfig {
    /// URL tokens; any of them is accepted (rotation). The last one is the current one, shown
    /// in the tenant's inbound URLs.
    pub tokens: Vec<String>,
    /// CIDRs (or single addresses) the callbacks must come from; empty = any.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    /// What the Passthru route answers: 200 (Exotel takes the applet's "next" branch) or 302.
    #[serde(default = "default_passthru_status")]
    pub passthru_status: u16,
}

fn default_passthru_status() -> u16 {
    200
}

/// A `PUT …/providers/exotel` body: every field optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExotelRequest {
    tokens: Option<Vec<String>>,
    #[serde(default)]
    allowed_ips: Vec<String>,
    #[serde(default = "default_passthru_status")]
    passthru_status: u16,
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_config", msg)
}

/// Parses `203.0.113.0/24` or a single address (`203.0.113.7`, a /32 or /128).
fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

impl ExotelConfig {
    /// Builds the config from a `PUT` body. Tokens: when absent, the previous config's are kept
    /// (changing the allow-list does not break the URL pasted into Exotel); when absent with no
    /// previous config, or given as `[]`, one is generated.
    pub fn from_request(body: Value, previous: Option<&ExotelConfig>) -> Result<Self, ApiError> {
        let req: ExotelRequest = serde_json::from_value(body)
            .map_err(|e| invalid(format!("invalid exotel config: {e}")))?;
        let tokens = match (req.tokens, previous) {
            (Some(t), _) if !t.is_empty() => t,
            (None, Some(prev)) => prev.tokens.clone(),
            _ => vec![random_token("exo_")],
        };
        for t in &tokens {
            let url_safe = t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !(16..=256).contains(&t.len()) || !url_safe {
                return Err(invalid(
                    "each token is 16 to 256 characters from A-Z a-z 0-9 - . _ ~ (it goes in a URL as it is)",
                ));
            }
        }
        let mut allowed_ips = Vec::with_capacity(req.allowed_ips.len());
        for s in &req.allowed_ips {
            let net = parse_net(s)
                .ok_or_else(|| invalid(format!("allowed_ips: `{s}` is not a CIDR or address")))?;
            allowed_ips.push(net.to_string());
        }
        if !matches!(req.passthru_status, 200 | 302) {
            return Err(invalid("passthru_status is 200 or 302"));
        }
        Ok(Self {
            tokens,
            allowed_ips,
            passthru_status: req.passthru_status,
        })
    }

    pub fn redacted(&self) -> Value {
        json!({
            "tokens": self.tokens.iter().map(|t| redact(t)).collect::<Vec<_>>(),
            "allowed_ips": self.allowed_ips,
            "passthru_status": self.passthru_status,
        })
    }

    /// The token to put in the URLs pasted into Exotel: the newest (last) one.
    pub fn url_token(&self) -> &str {
        self.tokens.last().map(String::as_str).unwrap_or_default()
    }

    fn ip_allowed(&self, ip: std::net::IpAddr) -> bool {
        self.allowed_ips.is_empty()
            || self
                .allowed_ips
                .iter()
                .filter_map(|s| parse_net(s))
                .any(|n| n.contains(&ip))
    }
}

/// `uri` (or a query string) with the value of every `token` parameter replaced by `****`, for
/// anything that prints or logs a URL.
pub fn redact_token(uri: &str) -> String {
    let Some((head, query)) = uri.split_once('?') else {
        return uri.to_owned();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k == "token" => format!("{k}=****"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{head}?{}", parts.join("&"))
}

/// How the request carries its parameters.
enum Body {
    /// GET, or a POST without a body: the query only.
    Empty,
    Form,
    /// Multipart with its boundary.
    Multipart(String),
    Json,
}

/// Decides the body kind from the method and content type (415 for anything else).
fn body_kind(req: &Inbound) -> Result<Body, ApiError> {
    if req.method == Method::GET {
        return Ok(Body::Empty);
    }
    match params::media_type(&req.headers).as_deref() {
        Some("application/x-www-form-urlencoded") => Ok(Body::Form),
        Some("application/json") => Ok(Body::Json),
        Some("multipart/form-data") => {
            let ct = req
                .headers
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            multer::parse_boundary(ct)
                .map(Body::Multipart)
                .map_err(|_| {
                    ApiError::bad_request(
                        "malformed_form",
                        "multipart/form-data without a boundary",
                    )
                })
        }
        None if req.body.is_empty() => Ok(Body::Empty),
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "Exotel callbacks are a query, a form, multipart or JSON, not `{other}`"
        ))),
        None => Err(ApiError::UnsupportedMediaType(
            "a Content-Type header is required with a body".into(),
        )),
    }
}

/// Checks the URL token and the allow-list. Nothing of the body is read (its content type is
/// checked first, as on every route).
pub fn verify(req: Inbound, cfg: &ExotelConfig) -> Result<Result<Verified, Rejection>, ApiError> {
    body_kind(&req)?;
    let query = params::parse_query(req.raw_query.as_deref());
    let Some(token) = params::first_nonempty(&query, "token") else {
        return Ok(Err(Rejection::new(
            "missing_token",
            "the token query parameter is missing",
        )));
    };
    if !any_secret_matches(&cfg.tokens, &[token], str::to_owned) {
        return Ok(Err(Rejection::new(
            "bad_token",
            "the token query parameter does not match",
        )));
    }
    if !cfg.ip_allowed(req.client_ip) {
        return Ok(Err(Rejection::new(
            "ip_not_allowed",
            format!("{} is not in the tenant's allowed_ips", req.client_ip),
        )));
    }
    Ok(Ok(Verified::new(req)))
}

/// The fields of a multipart form (file parts are not Exotel parameters and are skipped).
async fn parse_multipart(body: Bytes, boundary: String) -> Result<Params, ApiError> {
    let bad = |e: multer::Error| ApiError::bad_request("malformed_form", format!("{e}"));
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut out = Vec::new();
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let (Some(name), None) = (field.name().map(str::to_owned), field.file_name()) else {
            continue;
        };
        let value =
            String::from_utf8(field.bytes().await.map_err(bad)?.to_vec()).map_err(|_| {
                ApiError::bad_request("malformed_form", "a multipart field is not valid UTF-8")
            })?;
        out.push((name, value));
    }
    Ok(out)
}

/// The provider's parameters (body first, then the query less hookgate's own `tenant_id` and
/// `token`) and their JSON for `provider_data` (a JSON body as it came, plus query extras).
async fn provider_params(req: &Inbound) -> Result<(Params, Value), ApiError> {
    let query = params::without_first(
        params::without_first(params::parse_query(req.raw_query.as_deref()), "tenant_id"),
        "token",
    );
    let (mut p, json_body) = match body_kind(req)? {
        Body::Empty => (Vec::new(), None),
        Body::Form => (params::parse_form(&req.body)?, None),
        Body::Multipart(boundary) => (parse_multipart(req.body.clone(), boundary).await?, None),
        Body::Json => {
            let v = params::parse_json_object(&req.body)?;
            (params::json_object_params(&v), Some(v))
        }
    };
    let data = match json_body {
        Some(Value::Object(mut m)) => {
            if let Value::Object(extra) = params::to_json(&query) {
                for (k, v) in extra {
                    m.entry(k).or_insert(v);
                }
            }
            Value::Object(m)
        }
        _ => {
            p.extend(query.iter().cloned());
            params::to_json(&p)
        }
    };
    p.extend(query);
    Ok((p, data))
}

/// Exotel's times are `YYYY-MM-DD HH:MM:SS` in India Standard Time (UTC+05:30).
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let ist = FixedOffset::east_opt(5 * 3600 + 30 * 60)?;
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .ok()?
        .and_local_timezone(ist)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// The first non-empty value among several parameter names.
fn first_of<'a>(p: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| params::first_nonempty(p, n))
}

/// Turns a verified Exotel callback into its dedup key and normalized event.
pub async fn normalize(v: &Verified) -> Result<Normalized, ApiError> {
    let req = v.request();
    let (p, provider_data) = provider_params(req).await?;
    let call_sid = params::first_nonempty(&p, "CallSid")
        .ok_or_else(|| ApiError::bad_request("missing_field", "CallSid is required"))?;
    let kind = first_of(&p, &["EventType", "Status", "CallStatus", "CallType"]).unwrap_or("");
    let dedup_key = format!("{call_sid}:{kind}:{}", req.route.name());
    let status = first_of(&p, &["Status", "CallStatus", "EventType"]);
    let event_type = match (req.route, status) {
        (Route::ExotelIncoming, _) => Some(EventType::CallStarted),
        (_, Some(s)) => super::call_event_for_status(s),
        (_, None) => return Err(ApiError::bad_request("missing_field", "Status is required")),
    };
    let Some(event_type) = event_type else {
        return Ok(Normalized::ignored(dedup_key));
    };
    // Passthru's DialCallDuration is of an earlier applet, not of this call's start.
    let duration_seconds = (req.route == Route::ExotelStatus)
        .then(|| {
            ["ConversationDuration", "Duration", "DialCallDuration"]
                .iter()
                .find_map(|n| params::int(&p, n))
        })
        .flatten();
    let occurred_at = first_of(&p, &["DateUpdated", "CurrentTime"]).and_then(parse_time);
    Ok(Call {
        event_type,
        call_id: call_sid,
        direction: params::first(&p, "Direction"),
        from: first_of(&p, &["From", "CallFrom"]),
        to: first_of(&p, &["To", "CallTo"]),
        status: status.unwrap_or("ringing"),
        duration_seconds,
        recording_url: params::first_nonempty(&p, "RecordingUrl"),
        sequence: None,
        provider_data,
    }
    .normalized(req, dedup_key, occurred_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_redacted_in_printed_urls() {
        assert_eq!(
            redact_token("/api/exotel/status?tenant_id=a&token=secret&x=1"),
            "/api/exotel/status?tenant_id=a&token=****&x=1"
        );
        assert_eq!(redact_token("http://h/p"), "http://h/p");
    }

    #[test]
    fn exotel_times_are_india_standard_time() {
        assert_eq!(
            parse_time("2026-05-07 19:53:11").map(crate::event::rfc3339),
            Some("2026-05-07T14:23:11Z".to_owned())
        );
        assert_eq!(
            parse_time("1970-01-01 05:30:00").map(|t| t.timestamp()),
            Some(0)
        );
        assert_eq!(parse_time("junk"), None);
    }

    #[test]
    fn tokens_are_kept_generated_or_validated() {
        let generated = ExotelConfig::from_request(json!({}), None).unwrap();
        assert_eq!(generated.tokens.len(), 1);
        assert!(generated.tokens[0].starts_with("exo_"));
        let kept =
            ExotelConfig::from_request(json!({"passthru_status": 302}), Some(&generated)).unwrap();
        assert_eq!(kept.tokens, generated.tokens);
        let fresh = ExotelConfig::from_request(json!({"tokens": []}), Some(&generated)).unwrap();
        assert_ne!(fresh.tokens, generated.tokens);
        assert!(ExotelConfig::from_request(json!({"tokens": ["short"]}), None).is_err());
        assert!(
            ExotelConfig::from_request(json!({"tokens": ["has space in it 0123456"]}), None)
                .is_err()
        );
        assert!(ExotelConfig::from_request(json!({"passthru_status": 500}), None).is_err());
        assert!(ExotelConfig::from_request(json!({"allowed_ips": ["nope"]}), None).is_err());
        let ips =
            ExotelConfig::from_request(json!({"allowed_ips": ["203.0.113.7", "10.0.0.0/8"]}), None)
                .unwrap();
        assert_eq!(ips.allowed_ips, vec!["203.0.113.7/32", "10.0.0.0/8"]);
        assert!(ips.ip_allowed("10.1.2.3".parse().unwrap()));
        assert!(!ips.ip_allowed("203.0.113.8".parse().unwrap()));
    }
}
