//! Small cryptographic helpers: random tokens, hashes of API keys, constant-time comparison, and
//! the at-rest sealing of secrets with `HOOKGATE_MASTER_KEY` (XChaCha20-Poly1305).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// `prefix` + 32 random bytes, URL-safe base64.
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes.
pub fn new_webhook_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// Hex SHA-256, used to store API keys and the admin token (they are high-entropy, so a fast
/// hash is enough and lets the key be looked up by its hash).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Constant-time equality of two byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// `****` + the last four characters: how secrets are shown after creation.
pub fn redact(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("****{tail}")
}

/// Seals and opens secrets stored in the database. Without a master key, values are stored
/// marked as plain text; with one, every write is encrypted.
#[derive(Clone)]
pub struct Sealer {
    cipher: Option<XChaCha20Poly1305>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("encrypting", &self.cipher.is_some())
            .finish()
    }
}

const ENC_PREFIX: &str = "enc1:";
const PLAIN_PREFIX: &str = "plain:";

impl Sealer {
    pub fn new(master_key: Option<[u8; 32]>) -> Self {
        Self {
            cipher: master_key.map(|k| XChaCha20Poly1305::new((&k).into())),
        }
    }

    pub fn seal(&self, plaintext: &str) -> String {
        match &self.cipher {
            None => format!("{PLAIN_PREFIX}{plaintext}"),
            Some(c) => {
                let mut nonce = [0u8; 24];
                rand::thread_rng().fill_bytes(&mut nonce);
                let ct = c
                    .encrypt(XNonce::from_slice(&nonce), plaintext.as_bytes())
                    .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory data");
                let mut out = nonce.to_vec();
                out.extend_from_slice(&ct);
                format!("{ENC_PREFIX}{}", STANDARD.encode(out))
            }
        }
    }

    pub fn open(&self, stored: &str) -> anyhow::Result<String> {
        if let Some(p) = stored.strip_prefix(PLAIN_PREFIX) {
            return Ok(p.to_owned());
        }
        let Some(b64) = stored.strip_prefix(ENC_PREFIX) else {
            anyhow::bail!("stored secret has an unknown format");
        };
        let Some(c) = &self.cipher else {
            anyhow::bail!("a stored secret is encrypted but HOOKGATE_MASTER_KEY is not set");
        };
        let raw = STANDARD.decode(b64)?;
        if raw.len() < 24 {
            anyhow::bail!("stored secret is truncated");
        }
        let (nonce, ct) = raw.split_at(24);
        let pt = c
            .decrypt(XNonce::from_slice(nonce), ct)
            .map_err(|_| anyhow::anyhow!("stored secret does not open with HOOKGATE_MASTER_KEY"))?;
        Ok(String::from_utf8(pt)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_and_hides_the_secret() {
        let s = Sealer::new(Some([7u8; 32]));
        let sealed = s.seal("whsec_topsecret");
        assert!(!sealed.contains("topsecret"));
        assert_eq!(s.open(&sealed).unwrap(), "whsec_topsecret");
        assert!(Sealer::new(Some([8u8; 32])).open(&sealed).is_err());
        assert!(Sealer::new(None).open(&sealed).is_err());
        let plain = Sealer::new(None).seal("x");
        assert_eq!(s.open(&plain).unwrap(), "x");
    }

    #[test]
    fn redaction_keeps_the_last_four() {
        assert_eq!(redact("whsec_abcdef"), "****cdef");
        assert_eq!(redact("ab"), "****ab");
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"a", b"ab"));
    }
}
