//! Server-side request forgery guard: a webhook url may only be `http` or `https`, and
//! (unless the operator starts the service with `--allow-private-webhooks`) may not
//! reach loopback, private, link-local, unique-local, unspecified, multicast, CGNAT or
//! other special-purpose addresses, in any IPv4-embedding IPv6 form either. Checked
//! when an endpoint is created and again at every delivery's connection: hostnames
//! resolve through [`FilteringResolver`], which drops such addresses (so a name that
//! later resolves to one, DNS rebinding, is refused too); an IP-literal url is checked
//! by [`check_url`] directly. Redirects are never followed (`delivery.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a url is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// Not an absolute url.
    Malformed,
    /// A scheme other than http or https.
    Scheme,
    /// Credentials in the url (they would be sent, and shown in the endpoint list).
    Credentials,
    /// The host is a refused address.
    PrivateAddress,
}

impl std::fmt::Display for UrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UrlError::Malformed => "the url is not an absolute http or https url",
            UrlError::Scheme => "only http and https urls are allowed",
            UrlError::Credentials => "the url must not carry a user name or password",
            UrlError::PrivateAddress => {
                "the url's host is a loopback, private or otherwise special address (refused unless the service \
                 runs with --allow-private-webhooks)"
            }
        })
    }
}

impl std::error::Error for UrlError {}

/// Longest webhook url accepted.
pub const URL_CHARS_MAX: usize = 2048;

/// Checks `url` as a webhook target: http or https, no credentials, and, unless
/// `allow_private`, a host that is not a refused IP literal. Returns the parsed url.
pub fn check_url(url: &str, allow_private: bool) -> Result<reqwest::Url, UrlError> {
    if url.chars().count() > URL_CHARS_MAX {
        return Err(UrlError::Malformed);
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| UrlError::Malformed)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UrlError::Scheme);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlError::Credentials);
    }
    // The parser has normalized the host: `0x7f000001` and `2130706433` are
    // `127.0.0.1` here, and an IPv6 literal is bracketed.
    let host = parsed.host_str().ok_or(UrlError::Malformed)?.to_ascii_lowercase();
    if !allow_private {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            if !is_public(ip) {
                return Err(UrlError::PrivateAddress);
            }
        } else {
            // "localhost" and its subdomains resolve to loopback by convention
            // (RFC 6761), whatever DNS says.
            let name = host.trim_end_matches('.');
            if name == "localhost" || name.ends_with(".localhost") {
                return Err(UrlError::PrivateAddress);
            }
        }
    }
    Ok(parsed)
}

/// Whether `ip` is an ordinary public unicast address a webhook may reach.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0 // "this network", unspecified
        || a == 10 // private
        || a == 127 // loopback
        || (a == 100 && (64..128).contains(&b)) // CGNAT (shared address space)
        || (a == 169 && b == 254) // link-local (cloud metadata services)
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 168) // private
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224; // multicast, reserved, broadcast
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| {
        let [h1, h2] = hi.to_be_bytes();
        let [l1, l2] = lo.to_be_bytes();
        Ipv4Addr::new(h1, h2, l1, l2)
    };
    if ip.is_unspecified() || ip.is_loopback() {
        return false;
    }
    // IPv4-mapped (::ffff:a.b.c.d) and the deprecated IPv4-compatible (::a.b.c.d).
    if segments[..5] == [0; 5] && (segments[5] == 0xffff || segments[5] == 0) {
        return is_public_v4(embedded_v4(segments[6], segments[7]));
    }
    // NAT64 (64:ff9b::/96) embeds an IPv4 address in its last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded_v4(segments[6], segments[7]));
    }
    // 6to4 (2002::/16) embeds one in bits 16..48.
    if segments[0] == 0x2002 {
        return is_public_v4(embedded_v4(segments[1], segments[2]));
    }
    let first = segments[0];
    let refused = (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || (first & 0xff00) == 0xff00 // multicast
        || (first == 0x2001 && segments[1] == 0x0db8) // documentation
        || (first == 0x0100 && segments[1..4] == [0, 0, 0]); // discard-only 100::/64
    !refused
}

/// A resolver for the delivery client that keeps only public addresses: a host that
/// resolves to nothing else is refused at connection time.
#[derive(Debug, Clone, Copy, Default)]
pub struct FilteringResolver;

impl reqwest::dns::Resolve for FilteringResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = found.filter(|addr| is_public(addr.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(UrlError::PrivateAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public(text.parse().expect("an address"))
    }

    #[test]
    fn special_addresses_are_refused() {
        for refused in [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(!public(refused), "{refused} must be refused");
        }
        for allowed in ["93.184.215.14", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(public(allowed), "{allowed} is public");
        }
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_with_only_private_addresses() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().expect("a name");
        let resolved = FilteringResolver.resolve(name).await;
        assert!(resolved.is_err(), "localhost resolves to loopback only");
    }

    #[test]
    fn urls_are_checked_for_scheme_credentials_and_literal_hosts() {
        assert!(check_url("https://hooks.example.com/x", false).is_ok());
        assert!(check_url("http://93.184.215.14:8080/x", false).is_ok());
        assert_eq!(check_url("ftp://example.com/", false), Err(UrlError::Scheme));
        assert_eq!(check_url("file:///etc/passwd", false), Err(UrlError::Scheme));
        assert_eq!(check_url("gopher://example.com/", true), Err(UrlError::Scheme));
        assert_eq!(check_url("not a url", false), Err(UrlError::Malformed));
        assert_eq!(check_url("https://user:pw@example.com/", false), Err(UrlError::Credentials));
        for private in [
            "http://127.0.0.1:9/x",
            "http://[::1]/",
            "http://[::ffff:7f00:1]/",
            "http://10.0.0.8/",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost:8080/",
            "http://api.localhost/",
            "http://0x7f000001/",
            "http://2130706433/",
        ] {
            assert_eq!(check_url(private, false), Err(UrlError::PrivateAddress), "{private}");
            assert!(check_url(private, true).is_ok(), "{private} with --allow-private-webhooks");
        }
    }
}
