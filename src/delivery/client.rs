//! The outbound HTTP client, safe by construction: only `https` (or `http` when allowed), no
//! redirects, no proxies from the environment, a whole-request timeout, response bodies read
//! only up to a cap, and a resolver that refuses private, loopback, link-local, multicast and
//! metadata addresses unless `HOOKGATE_ALLOW_PRIVATE_TARGETS` covers them. The check is made
//! on the addresses the connection will use (the resolver's answer, or the literal IP), so DNS
//! rebinding does not get around it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Largest part of a response body kept in the attempt log.
pub const MAX_STORED_BODY: usize = 4096;

/// Outbound address policy.
#[derive(Clone, Debug, Default)]
pub struct TargetPolicy {
    pub allow_http: bool,
    pub allow_private: Vec<IpNet>,
}

/// Is `ip` a private, loopback, link-local, multicast, unspecified, shared or metadata address?
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal_v4(v4);
            }
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // unique local (incl. fd00:ec2::254 metadata)
                || (seg0 & 0xffc0) == 0xfe80 // link-local
                || (seg0 == 0x64 && v6.segments()[1] == 0xff9b) // NAT64 of anything
                || v6 == Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1)
        }
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local() // includes 169.254.169.254
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 shared address space
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || o[0] >= 240
}

impl TargetPolicy {
    /// May a delivery connect to `ip`?
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        !is_internal(ip) || self.allow_private.iter().any(|n| n.contains(&ip))
    }

    /// Checks a subscription URL when it is created or changed: scheme, host, and a literal IP.
    pub fn check_url(&self, raw: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("not a valid URL: {e}"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(
                    "only https:// URLs are allowed (HOOKGATE_ALLOW_HTTP_TARGETS is off)".into(),
                )
            }
            other => return Err(format!("scheme `{other}` is not allowed")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("URLs with credentials are not allowed".into());
        }
        match url.host() {
            None => return Err("the URL has no host".into()),
            Some(url::Host::Ipv4(ip)) if !self.allows_ip(IpAddr::V4(ip)) => {
                return Err("the URL points at a private or internal address".into())
            }
            Some(url::Host::Ipv6(ip)) if !self.allows_ip(IpAddr::V6(ip)) => {
                return Err("the URL points at a private or internal address".into())
            }
            _ => {}
        }
        Ok(url)
    }
}

/// A resolver that drops every address the policy refuses.
struct GuardedResolver {
    policy: Arc<TargetPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| policy.allows_ip(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(
                    format!("{host} resolves only to addresses deliveries may not reach").into(),
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Builds the shared delivery client. Plain `http://` is refused at send time too (not only
/// when a subscription is saved) unless allowed, so turning the allowance off takes effect for
/// subscriptions made while it was on.
pub fn build_client(policy: Arc<TargetPolicy>, timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .https_only(!policy.allow_http)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .user_agent(concat!("hookgate/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        .build()
        .expect("the delivery client builds")
}

/// Reads at most [`MAX_STORED_BODY`] bytes of a response body (the rest is discarded unread).
pub async fn read_capped(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_STORED_BODY - buf.len();
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= MAX_STORED_BODY {
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        let p = TargetPolicy::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::",
        ] {
            assert!(!p.allows_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "8.8.8.8",
        ] {
            assert!(p.allows_ip(ip.parse().unwrap()), "{ip}");
        }
        let local = TargetPolicy {
            allow_http: true,
            allow_private: vec!["127.0.0.0/8".parse().unwrap()],
        };
        assert!(local.allows_ip("127.0.0.1".parse().unwrap()));
        assert!(!local.allows_ip("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn urls_are_checked_for_scheme_credentials_and_literal_ips() {
        let p = TargetPolicy::default();
        assert!(p.check_url("https://example.com/hook").is_ok());
        assert!(p.check_url("http://example.com/hook").is_err());
        assert!(p.check_url("ftp://example.com").is_err());
        assert!(p.check_url("https://user:pw@example.com").is_err());
        assert!(p.check_url("https://127.0.0.1/x").is_err());
        assert!(p.check_url("https://[::1]/x").is_err());
        assert!(p.check_url("not a url").is_err());
    }
}
