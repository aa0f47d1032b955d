//! Which address a request comes from. The TCP peer, unless the peer is one of the operator's
//! trusted proxies: then the proxy's header says, read from the right (the entry the nearest
//! proxy appended) past every trusted hop. Anything a client writes into the header itself sits to
//! the left of what its first trusted proxy appended, so it is never taken.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// Where clients' addresses come from when a proxy sits in front.
#[derive(Debug, Clone, Default)]
pub struct ClientIpConfig {
    /// Peers whose header is believed. Empty: the header is never read.
    pub trusted_proxies: Vec<IpNet>,
    /// Lower-case header name, `x-forwarded-for` by default.
    pub header: String,
}

impl ClientIpConfig {
    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client's address. `peer` is the TCP peer; `header` the header's values in order
    /// (several header lines count as one comma-separated list, as RFC 9110 says).
    pub fn client(&self, peer: IpAddr, header: &[&str]) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = header.iter().rev().flat_map(|value| value.rsplit(','));
        for hop in hops {
            // An entry that is not an address (`unknown`, garbage) ends the chain: what lies to
            // its left was written by someone who cannot be vouched for.
            let Some(ip) = parse_hop(hop) else {
                break;
            };
            client = ip;
            if !self.is_trusted(ip) {
                break;
            }
        }
        client
    }
}

/// One entry of `X-Forwarded-For`: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`), as some proxies write it.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse().ok())
        })?;
    Some(ip.to_canonical())
}

/// The key an address is counted under. An IPv6 end user usually holds a whole /64 and can pick
/// any address in it, so IPv6 addresses count by their /64.
pub fn limit_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let prefix = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{prefix}/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn config(trusted: &[&str]) -> ClientIpConfig {
        ClientIpConfig {
            trusted_proxies: trusted
                .iter()
                .map(|t| t.parse().expect("test network"))
                .collect(),
            header: "x-forwarded-for".into(),
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let none = config(&[]);
        assert_eq!(none.client(ip("10.0.0.5"), &["1.1.1.1"]), ip("10.0.0.5"));
        let other = config(&["10.9.0.0/16"]);
        assert_eq!(other.client(ip("10.0.0.5"), &["1.1.1.1"]), ip("10.0.0.5"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let cfg = config(&["10.0.0.0/8"]);
        // The client forged the first entry; the proxy appended the real one.
        assert_eq!(
            cfg.client(ip("10.0.0.1"), &["6.6.6.6, 203.0.113.7"]),
            ip("203.0.113.7")
        );
        // Two trusted hops, and the list split over two header lines.
        assert_eq!(
            cfg.client(ip("10.0.0.1"), &["6.6.6.6, 203.0.113.7", "10.1.1.1"]),
            ip("203.0.113.7")
        );
        // No header: the proxy itself.
        assert_eq!(cfg.client(ip("10.0.0.1"), &[]), ip("10.0.0.1"));
        // Garbage stops the walk at the last good hop.
        assert_eq!(
            cfg.client(ip("10.0.0.1"), &["6.6.6.6, junk, 10.2.2.2"]),
            ip("10.2.2.2")
        );
        assert_eq!(
            cfg.client(ip("10.0.0.1"), &["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        assert_eq!(
            cfg.client(ip("10.0.0.1"), &["198.51.100.2:5555"]),
            ip("198.51.100.2")
        );
    }

    #[test]
    fn mapped_addresses_are_plain_ipv4() {
        let cfg = config(&["127.0.0.1/32"]);
        assert_eq!(
            cfg.client(ip("::ffff:127.0.0.1"), &["::ffff:198.51.100.9"]),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        assert_eq!(limit_key(ip("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
        assert_eq!(
            limit_key(ip("2001:db8:1:2:ffff::1")),
            limit_key(ip("2001:db8:1:2::9"))
        );
        assert_eq!(limit_key(ip("192.0.2.1")), "192.0.2.1");
    }
}
