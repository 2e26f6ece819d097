//! Signature helpers shared by the providers: one hex HMAC-SHA256, and one "does any of the
//! tenant's secrets produce any of the presented signatures" check, constant time per comparison
//! and without an early exit (so timing says nothing about which secret or signature matched).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::crypto::ct_eq;

/// Lower-case hex HMAC-SHA256 keyed with `key` over the concatenation of `parts`.
pub fn hmac_sha256_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Does `sign(secret)` equal any of `signatures` for any of `secrets`? Every pair is compared,
/// each in constant time.
pub fn any_secret_matches(
    secrets: &[String],
    signatures: &[&str],
    sign: impl Fn(&str) -> String,
) -> bool {
    let mut ok = false;
    for secret in secrets {
        let expected = sign(secret);
        for sig in signatures {
            ok |= ct_eq(expected.as_bytes(), sig.as_bytes());
        }
    }
    ok
}

/// Lists of secrets given in a provider config must hold at least one non-empty entry.
pub fn validate_secrets(field: &str, secrets: &[String]) -> Result<(), crate::error::ApiError> {
    if secrets.is_empty() || secrets.iter().any(|s| s.trim().is_empty()) {
        return Err(crate::error::ApiError::bad_request(
            "invalid_config",
            format!("{field} must list at least one non-empty secret"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", &[b"what do ya want ", b"for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn any_secret_and_any_signature_may_match() {
        let secrets = vec!["a".to_owned(), "b".to_owned()];
        let sign = |s: &str| hmac_sha256_hex(s.as_bytes(), &[b"body"]);
        let good = sign("b");
        assert!(any_secret_matches(&secrets, &["junk", &good], sign));
        assert!(!any_secret_matches(&secrets, &["junk"], sign));
        assert!(!any_secret_matches(&[], &[&good], sign));
    }
}
