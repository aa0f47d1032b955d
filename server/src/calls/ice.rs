//! ICE servers for WebRTC clients. STUN and TURN URLs come from configuration; with a TURN shared
//! secret, each user gets short-lived credentials by the TURN REST API scheme that coturn's
//! `use-auth-secret` accepts: username `expiry:user`, credential base64(HMAC-SHA1(secret, username)).
//! Nothing is hard-coded (the original page shipped someone else's TURN password).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha1::Sha1;
use ts_rs::TS;
use utoipa::ToSchema;

use crate::config::Secret;

#[derive(Debug, Clone, Default)]
pub struct IceConfig {
    pub stun_urls: Vec<String>,
    pub turn_urls: Vec<String>,
    pub turn_secret: Option<Secret>,
    pub turn_credential_ttl: Duration,
}

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, Serialize, ToSchema, TS, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema, TS, PartialEq, Eq)]
pub struct IceServers {
    /// Pass as `new RTCPeerConnection({iceServers})`.
    pub ice_servers: Vec<IceServer>,
    /// Seconds the TURN credentials stay valid (absent without TURN credentials).
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
}

/// The TURN REST API credential for `username`.
pub fn turn_credential(secret: &Secret, username: &str) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

impl IceConfig {
    /// The ICE servers for `user`, with credentials expiring `turn_credential_ttl` after `now_unix`.
    pub fn servers_for(&self, user: &str, now_unix: u64) -> IceServers {
        let mut ice_servers = Vec::new();
        if !self.stun_urls.is_empty() {
            ice_servers.push(IceServer {
                urls: self.stun_urls.clone(),
                username: None,
                credential: None,
            });
        }
        let mut ttl = None;
        if !self.turn_urls.is_empty() {
            let (username, credential) = match &self.turn_secret {
                Some(secret) => {
                    let expiry = now_unix + self.turn_credential_ttl.as_secs();
                    let username = format!("{expiry}:{user}");
                    let credential = turn_credential(secret, &username);
                    ttl = Some(self.turn_credential_ttl.as_secs());
                    (Some(username), Some(credential))
                }
                None => (None, None),
            };
            ice_servers.push(IceServer {
                urls: self.turn_urls.clone(),
                username,
                credential,
            });
        }
        IceServers { ice_servers, ttl }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_matches_a_known_hmac_sha1() {
        // HMAC-SHA1(key "key", "The quick brown fox jumps over the lazy dog") is the RFC 2104
        // example de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9.
        let credential = turn_credential(
            &Secret::new("key"),
            "The quick brown fox jumps over the lazy dog",
        );
        assert_eq!(
            credential,
            STANDARD.encode([
                0xde, 0x7c, 0x9b, 0x85, 0xb8, 0xb7, 0x8a, 0xa6, 0xbc, 0x8a, 0x7a, 0x36, 0xf7, 0x0a,
                0x90, 0x70, 0x1c, 0x9d, 0xb4, 0xd9,
            ])
        );
    }

    #[test]
    fn no_configuration_means_no_servers() {
        let servers = IceConfig::default().servers_for("ann", 0);
        assert!(servers.ice_servers.is_empty());
        assert_eq!(servers.ttl, None);
    }
}
