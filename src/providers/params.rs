//! Parsing of provider parameters. Forms are kept as ordered `(name, value)` pairs, never a map:
//! Twilio signs every value of a repeated name, and repeated names become arrays in
//! `provider_data`.

use axum::http::HeaderMap;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Parameters as received, in order.
pub type Params = Vec<(String, String)>;

/// Parses `a=1&b=2` (percent-decoded, `+` as space). Invalid UTF-8 is a malformed form.
pub fn parse_form(bytes: &[u8]) -> Result<Params, ApiError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::bad_request(
            "malformed_form",
            "form body is not valid UTF-8",
        ));
    }
    Ok(form_urlencoded::parse(bytes).into_owned().collect())
}

/// The query string's pairs.
pub fn parse_query(raw_query: Option<&str>) -> Params {
    raw_query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// The first value of `name`.
pub fn first<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The first non-empty value of `name`.
pub fn first_nonempty<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    first(params, name).filter(|v| !v.trim().is_empty())
}

/// Removes the first occurrence of `name` (hookgate's own routing parameter), keeping any later
/// one a provider appended as its own data.
pub fn without_first(mut params: Params, name: &str) -> Params {
    if let Some(i) = params.iter().position(|(k, _)| k == name) {
        params.remove(i);
    }
    params
}

/// A JSON object of the parameters: a repeated name becomes an array of its values.
pub fn to_json(params: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (k, v) in params {
        match map.get_mut(k) {
            None => {
                map.insert(k.clone(), Value::String(v.clone()));
            }
            Some(Value::Array(items)) => items.push(Value::String(v.clone())),
            Some(existing) => {
                let prev = existing.take();
                *existing = Value::Array(vec![prev, Value::String(v.clone())]);
            }
        }
    }
    Value::Object(map)
}

/// The top-level members of a JSON object as parameters (strings as they are, other values as
/// their JSON text).
pub fn json_object_params(v: &Value) -> Params {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k.clone(), s)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The media type of the request, lower case, without parameters (`application/json`).
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    (!essence.is_empty()).then_some(essence)
}

/// Parses a JSON body, mapping failure to a stable 400.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("malformed_json", format!("body is not valid JSON: {e}"))
    })
}

/// Parses a JSON body that must be an object (every provider's callbacks are).
pub fn parse_json_object(body: &[u8]) -> Result<Value, ApiError> {
    let v = parse_json(body)?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "malformed_json",
            "body must be a JSON object",
        ));
    }
    Ok(v)
}

/// Parses an integer parameter, ignoring junk (providers send empty strings for absent values).
pub fn int(params: &[(String, String)], name: &str) -> Option<i64> {
    first(params, name).and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_names_become_arrays_in_order() {
        let p = parse_form(b"a=1&b=x+y&a=2&a=%33").unwrap();
        assert_eq!(
            to_json(&p),
            serde_json::json!({"a": ["1", "2", "3"], "b": "x y"})
        );
    }

    #[test]
    fn only_the_first_routing_parameter_is_removed() {
        let p = parse_query(Some("tenant_id=acme&x=1&tenant_id=theirs"));
        let rest = without_first(p, "tenant_id");
        assert_eq!(first(&rest, "tenant_id"), Some("theirs"));
    }

    #[test]
    fn invalid_utf8_is_a_malformed_form() {
        assert_eq!(
            parse_form(&[b'a', b'=', 0xff]).unwrap_err().code(),
            "malformed_form"
        );
    }
}
