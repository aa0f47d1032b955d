//! Access tokens (JWT, HS256 only) and opaque refresh tokens.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::error::AppError;

/// How long after `exp` a token is still accepted: the clocks of a cluster's instances may differ
/// by this much (keep them in sync with NTP), and no more.
pub const EXPIRY_LEEWAY_SECS: u64 = 2;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id, as a string per RFC 7519.
    pub sub: String,
    /// The session (refresh-token family) this token was issued for.
    pub sid: i64,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
}

impl Claims {
    pub fn user_id(&self) -> Option<i64> {
        self.sub.parse().ok()
    }
}

#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
}

impl TokenIssuer {
    pub fn new(secret: &Secret, access_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = EXPIRY_LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            access_ttl,
        }
    }

    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    pub fn issue(&self, user_id: i64, session_id: i64) -> Result<String, AppError> {
        let now = unix_now();
        let claims = Claims {
            sub: user_id.to_string(),
            sid: session_id,
            iat: now,
            exp: now + self.access_ttl.as_secs(),
            jti: random_token(16),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(AppError::internal)
    }

    /// Checks signature, algorithm and expiry; any failure is `invalid_token`.
    pub fn verify(&self, token: &str) -> Result<Claims, AppError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| AppError::invalid_token())
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `bytes` random bytes from the OS-seeded CSPRNG, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// What is stored for a refresh token: its SHA-256, hex. The token itself has 256 bits of
/// entropy, so a fast hash is enough; a database leak does not reveal usable tokens.
pub fn hash_refresh_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(secret: &str) -> TokenIssuer {
        TokenIssuer::new(&Secret::new(secret), Duration::from_secs(900))
    }

    #[test]
    fn round_trip() {
        let tokens = issuer(&"a".repeat(32));
        let token = tokens.issue(7, 3).expect("issue");
        let claims = tokens.verify(&token).expect("verify");
        assert_eq!(claims.user_id(), Some(7));
        assert_eq!(claims.sid, 3);
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn rejects_other_key() {
        let token = issuer(&"a".repeat(32)).issue(7, 3).expect("issue");
        assert!(issuer(&"b".repeat(32)).verify(&token).is_err());
    }

    #[test]
    fn expiry_leeway_is_two_seconds() {
        let secret = "a".repeat(32);
        let tokens = issuer(&secret);
        let expired_ago = |secs: u64| {
            let now = unix_now();
            let claims = Claims {
                sub: "7".into(),
                sid: 3,
                iat: now - 900,
                exp: now - secs,
                jti: "j".into(),
            };
            let key = EncodingKey::from_secret(secret.as_bytes());
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).expect("encode")
        };
        assert!(tokens.verify(&expired_ago(1)).is_ok());
        assert!(tokens.verify(&expired_ago(EXPIRY_LEEWAY_SECS + 1)).is_err());
    }

    #[test]
    fn refresh_hash_is_hex_sha256() {
        let hash = hash_refresh_token("abc");
        assert_eq!(
            hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
