//! Outbound signatures. Standard Webhooks (`webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `{id}.{timestamp}.{body}`, keyed with the base64-decoded part of `whsec_…`), plus
//! hookgate's own `x-hookgate-signature: t=…,v1=<hex HMAC-SHA256 over "{t}.{body}">` with the
//! same key. During a secret rotation every active secret signs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The key bytes of a `whsec_…` secret (the base64 after the prefix).
pub fn secret_key(secret: &str) -> anyhow::Result<Vec<u8>> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    Ok(STANDARD.decode(b64)?)
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// One Standard Webhooks signature: `v1,<base64>`.
pub fn standard_signature(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let sig = hmac(key, &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", STANDARD.encode(sig))
}

/// The hex `v1` of `x-hookgate-signature`.
pub fn hookgate_signature(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    hex::encode(hmac(key, &[ts.as_bytes(), b".", body]))
}

/// The signature headers of one attempt, signed with every key in `keys`.
pub struct SignatureHeaders {
    pub webhook_signature: String,
    pub hookgate_signature: String,
}

pub fn sign_all(keys: &[Vec<u8>], msg_id: &str, timestamp: i64, body: &[u8]) -> SignatureHeaders {
    let webhook_signature = keys
        .iter()
        .map(|k| standard_signature(k, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ");
    let mut hookgate = format!("t={timestamp}");
    for k in keys {
        hookgate.push_str(",v1=");
        hookgate.push_str(&hookgate_signature(k, timestamp, body));
    }
    SignatureHeaders {
        webhook_signature,
        hookgate_signature: hookgate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_keys_each_sign() {
        let h = sign_all(&[vec![1; 32], vec![2; 32]], "evt_1", 10, b"{}");
        assert_eq!(h.webhook_signature.split(' ').count(), 2);
        assert!(h.hookgate_signature.starts_with("t=10,v1="));
        assert_eq!(h.hookgate_signature.matches(",v1=").count(), 2);
    }
}
