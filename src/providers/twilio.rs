//! Twilio Voice: `X-Twilio-Signature` verification exactly as Twilio's SDKs do it, and
//! normalization of the Voice URL hit (`call.started`) and call status callbacks.
//!
//! Signature: base64 HMAC-SHA1 keyed with the auth token over the URL Twilio requested (public
//! base + path + raw query) followed, for a form POST, by every parameter name and value sorted
//! by name (byte order), the values of a repeated name sorted and de-duplicated. A JSON body is
//! covered by the `bodySHA256` query parameter instead. Both the URL with and without the
//! scheme's default port are accepted (as the SDKs do: the port removed, or the default added).

use axum::http::Method;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::call::Call;
use super::params::{self, Params};
use super::{Inbound, Normalized, Rejection, Route, Verified};
use crate::crypto::{ct_eq, redact};
use crate::error::ApiError;
use crate::event::EventType;

/// A tenant's Twilio credentials.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TwilioConfig {
    /// Auth tokens; any of them may sign (rotation).
    pub auth_tokens: Vec<String>,
    /// What the incoming-call route answers.
    #[serde(default = "default_twiml")]
    pub voice_twiml: String,
}

pub fn default_twiml() -> String {
    r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#.to_owned()
}

impl TwilioConfig {
    pub fn validate(&self) -> Result<(), ApiError> {
        super::signing::validate_secrets("auth_tokens", &self.auth_tokens)
    }
    pub fn redacted(&self) -> serde_json::Value {
        json!({
            "auth_tokens": self.auth_tokens.iter().map(|t| redact(t)).collect::<Vec<_>>(),
            "voice_twiml": self.voice_twiml,
        })
    }
}

/// The string Twilio signs: URL, then the sorted parameters.
pub fn signing_payload(url: &str, form: &[(String, String)]) -> String {
    let mut sorted: Vec<(&str, &str)> =
        form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut s = String::with_capacity(url.len() + 64 * sorted.len());
    s.push_str(url);
    for (k, v) in sorted {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

/// `X-Twilio-Signature` for `url` and form parameters (empty for GET and JSON bodies).
pub fn sign(auth_token: &str, url: &str, form: &[(String, String)]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key");
    mac.update(signing_payload(url, form).as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The URLs Twilio may have signed, as its SDKs try them: the URL as requested, the URL with
/// its port removed, and (when it has none) with the scheme's default port added.
pub fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // The port is after the last ':' that follows any IPv6 literal's closing bracket.
    let host_end = authority.rfind(']').map(|i| i + 1).unwrap_or(0);
    match authority[host_end..].rfind(':') {
        Some(i) => out.push(format!("{scheme}://{}{tail}", &authority[..host_end + i])),
        None => out.push(format!("{scheme}://{authority}:{default_port}{tail}")),
    }
    out
}

/// Checks a signature against every token and URL variant, in constant time per comparison.
pub fn signature_matches(
    tokens: &[String],
    url: &str,
    form: &[(String, String)],
    signature: &str,
) -> bool {
    let mut ok = false;
    for u in url_variants(url) {
        ok |= super::signing::any_secret_matches(tokens, &[signature], |t| sign(t, &u, form));
    }
    ok
}

/// The request's body kind, decided from the method and content type.
enum Body {
    /// GET: parameters are in the query.
    Query,
    Form(Params),
    Json,
}

fn read_body(req: &Inbound) -> Result<Body, ApiError> {
    if req.method == Method::GET {
        return Ok(Body::Query);
    }
    match params::media_type(&req.headers).as_deref() {
        Some("application/x-www-form-urlencoded") => Ok(Body::Form(params::parse_form(&req.body)?)),
        None if req.body.is_empty() => Ok(Body::Form(Vec::new())),
        Some("application/json") => Ok(Body::Json),
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "Twilio callbacks are form-encoded or JSON, not `{other}`"
        ))),
        None => Err(ApiError::UnsupportedMediaType(
            "a Content-Type header is required".into(),
        )),
    }
}

/// Verifies `X-Twilio-Signature` over the raw request. The body is only split into form pairs
/// (Twilio signs them); nothing is interpreted before the signature holds.
pub fn verify(req: Inbound, cfg: &TwilioConfig) -> Result<Result<Verified, Rejection>, ApiError> {
    let body = read_body(&req)?;
    let Some(sig) = req
        .headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(Err(Rejection::new(
            "missing_signature",
            "X-Twilio-Signature header is missing",
        )));
    };
    let mut url = format!("{}{}", req.public_base, req.path);
    if let Some(q) = &req.raw_query {
        url.push('?');
        url.push_str(q);
    }
    let form: &[(String, String)] = match &body {
        Body::Form(p) => p,
        _ => &[],
    };
    if !signature_matches(&cfg.auth_tokens, &url, form, sig.trim()) {
        return Ok(Err(Rejection::new(
            "bad_signature",
            "X-Twilio-Signature does not match",
        )));
    }
    if let Body::Json = body {
        let query = params::parse_query(req.raw_query.as_deref());
        let Some(expected) = params::first(&query, "bodySHA256") else {
            return Ok(Err(Rejection::new(
                "missing_body_hash",
                "a JSON body needs the bodySHA256 query parameter",
            )));
        };
        let actual = hex::encode(Sha256::digest(&req.body));
        if !ct_eq(actual.as_bytes(), expected.to_ascii_lowercase().as_bytes()) {
            return Ok(Err(Rejection::new(
                "bad_body_hash",
                "bodySHA256 does not match the body",
            )));
        }
    }
    Ok(Ok(Verified::new(req)))
}

/// The provider parameters of a verified request: form body, JSON members, or the query (minus
/// hookgate's own `tenant_id`).
fn provider_params(req: &Inbound) -> Result<(Params, serde_json::Value), ApiError> {
    Ok(match read_body(req)? {
        Body::Query => {
            let p =
                params::without_first(params::parse_query(req.raw_query.as_deref()), "tenant_id");
            let data = params::to_json(&p);
            (p, data)
        }
        Body::Form(p) => {
            let data = params::to_json(&p);
            (p, data)
        }
        Body::Json => {
            let v = params::parse_json_object(&req.body)?;
            (params::json_object_params(&v), v)
        }
    })
}

/// Turns a verified Twilio callback into its dedup key and normalized event.
pub fn normalize(v: &Verified) -> Result<Normalized, ApiError> {
    let req = v.request();
    let (p, provider_data) = provider_params(req)?;
    let Some(call_sid) = params::first_nonempty(&p, "CallSid") else {
        return Err(ApiError::bad_request(
            "missing_field",
            "CallSid is required",
        ));
    };
    let status = params::first(&p, "CallStatus")
        .unwrap_or("")
        .trim()
        .to_owned();
    let (dedup_key, event_type) = match req.route {
        Route::TwilioIncoming => (format!("{call_sid}:incoming"), Some(EventType::CallStarted)),
        _ => {
            if status.is_empty() {
                return Err(ApiError::bad_request(
                    "missing_field",
                    "CallStatus is required",
                ));
            }
            let seq = params::first(&p, "SequenceNumber").unwrap_or("");
            (
                format!("{call_sid}:{status}:{seq}"),
                super::call_event_for_status(&status),
            )
        }
    };
    let Some(event_type) = event_type else {
        return Ok(Normalized::ignored(dedup_key));
    };
    let occurred_at = params::first(&p, "Timestamp")
        .and_then(|t| chrono::DateTime::parse_from_rfc2822(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    Ok(Call {
        event_type,
        call_id: call_sid,
        direction: params::first(&p, "Direction"),
        from: params::first_nonempty(&p, "From"),
        to: params::first_nonempty(&p, "To"),
        status: if status.is_empty() {
            "ringing"
        } else {
            &status
        },
        duration_seconds: params::int(&p, "CallDuration"),
        recording_url: params::first_nonempty(&p, "RecordingUrl"),
        sequence: params::int(&p, "SequenceNumber"),
        provider_data,
    }
    .normalized(req, dedup_key, occurred_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_variants_add_or_drop_the_default_port() {
        assert_eq!(
            url_variants("https://a.com/x?y=1"),
            vec!["https://a.com/x?y=1", "https://a.com:443/x?y=1"]
        );
        assert_eq!(
            url_variants("https://a.com:443/x"),
            vec!["https://a.com:443/x", "https://a.com/x"]
        );
        assert_eq!(
            url_variants("http://a.com:8080/x"),
            vec!["http://a.com:8080/x", "http://a.com/x"]
        );
        assert_eq!(
            url_variants("http://[::1]/x"),
            vec!["http://[::1]/x", "http://[::1]:80/x"]
        );
        assert_eq!(
            url_variants("http://[::1]:80/x"),
            vec!["http://[::1]:80/x", "http://[::1]/x"]
        );
    }

    #[test]
    fn repeated_values_are_sorted_and_deduplicated() {
        let form = vec![
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "9".to_owned()),
            ("a".to_owned(), "1".to_owned()),
            ("a".to_owned(), "9".to_owned()),
        ];
        assert_eq!(signing_payload("U", &form), "Ua1a9b2");
    }
}
