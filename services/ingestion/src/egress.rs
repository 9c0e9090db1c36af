//! Where a tenant's channel settings may make ingestion connect: provider
//! API base URLs, a PBX's decision URL, mail servers. A tenant admin
//! writes those settings, so unless the deployment allows private
//! destinations (`ingestion.allow_private_destinations`, for an
//! on-premises mail server or PBX), an address on loopback, a private,
//! shared or link-local network (the cloud metadata address among them),
//! or any other range that is not public is refused:
//! - when the setting is written, if it names such an address outright
//!   (`INVALID_ARGUMENT` on the field);
//! - at every connection, after the name is resolved (the HTTP client's own
//!   resolver, whose addresses the connection uses), so a name that
//!   resolves there (now or later) cannot reach it either; redirects are
//!   not followed. A request refused so fails with a [`RefusedDestination`]
//!   among its causes ([`refusal_in`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use switchboard_core::Error;
use switchboard_core::error::FieldViolation;
use tokio::net::TcpStream;

/// Why a destination was not connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreachable {
    /// The policy refuses every address it has: this will not change.
    Refused(String),
    /// Not resolved or not connected: worth another attempt.
    Failed(String),
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreachable::Refused(reason) | Unreachable::Failed(reason) => formatter.write_str(reason),
        }
    }
}

/// What channel settings may connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// Public addresses only: the default.
    PublicOnly,
    /// Any address, private networks and loopback included.
    Anywhere,
}

impl Egress {
    pub fn allowing_private(allow_private: bool) -> Egress {
        if allow_private { Egress::Anywhere } else { Egress::PublicOnly }
    }

    fn allows(self, address: IpAddr) -> bool {
        self == Egress::Anywhere || is_public(address)
    }

    /// An HTTP client for the destinations of channel settings: it
    /// resolves names to allowed addresses only and follows no redirect.
    pub fn http_client(self, timeout: Duration) -> Result<reqwest::Client, String> {
        let builder = reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none());
        let builder = match self {
            Egress::Anywhere => builder,
            Egress::PublicOnly => builder.dns_resolver(Arc::new(PublicNamesOnly)),
        };
        builder.build().map_err(|error| format!("the HTTP client: {error}"))
    }

    /// Whether `url` may be requested: its host, when an address, must be
    /// allowed (an HTTP client resolves no address, so this is the check);
    /// a name is checked when it resolves, by [`Egress::http_client`]'s
    /// resolver.
    pub fn check_url(self, url: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|error| format!("`{url}` is not a URL: {error}"))?;
        let Some(host) = parsed.host_str() else { return Err(format!("`{url}` names no host")) };
        match parse_address(host) {
            Some(address) => self.check_address(address),
            None => Ok(()),
        }
    }

    fn check_address(self, address: IpAddr) -> Result<(), String> {
        if self.allows(address) {
            Ok(())
        } else {
            Err(format!("{address} is not a public address; channel settings may not reach it"))
        }
    }

    /// The allowed addresses `host` resolves to, at `port`.
    pub async fn resolve(self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Unreachable> {
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|error| Unreachable::Failed(format!("`{host}` not resolved: {error}")))?
            .collect();
        let allowed: Vec<SocketAddr> = resolved.iter().copied().filter(|address| self.allows(address.ip())).collect();
        if allowed.is_empty() {
            return Err(match resolved.first() {
                Some(address) => Unreachable::Refused(format!(
                    "`{host}` resolves to {}, not a public address; channel settings may not reach it",
                    address.ip()
                )),
                None => Unreachable::Failed(format!("`{host}` resolves to no address")),
            });
        }
        Ok(allowed)
    }

    /// A TCP connection to `host:port` on an allowed address.
    pub async fn connect(self, host: &str, port: u16) -> Result<TcpStream, Unreachable> {
        let addresses = self.resolve(host, port).await?;
        TcpStream::connect(addresses.as_slice())
            .await
            .map_err(|error| Unreachable::Failed(format!("`{host}:{port}`: {error}")))
    }

    /// Checks a setting as it is written: `value` (a URL, or a host when
    /// `is_host`) must not name a refused address outright.
    pub fn check_setting(self, field: &str, value: &str, is_host: bool) -> Result<(), FieldViolation> {
        if value.is_empty() {
            return Ok(());
        }
        let refused = if is_host {
            parse_address(value).and_then(|address| self.check_address(address).err())
        } else {
            self.check_url(value).err()
        };
        match refused {
            Some(reason) => Err(FieldViolation { field: field.to_owned(), description: reason }),
            None => Ok(()),
        }
    }

    /// [`Egress::check_setting`] over every destination `channel` names.
    pub fn check_channel(self, channel: &switchboard_proto::ingestion::v1::Channel, field: &str) -> Result<(), Error> {
        use switchboard_proto::ingestion::v1::channel::Provider;
        let mut destinations: Vec<(String, &str, bool)> = Vec::new();
        match &channel.provider {
            Some(Provider::Twilio(twilio)) => {
                destinations.push((format!("{field}.twilio.api_base_url"), &twilio.api_base_url, false));
            }
            Some(Provider::Meta(meta)) => {
                destinations.push((format!("{field}.meta.api_base_url"), &meta.api_base_url, false));
            }
            Some(Provider::Telegram(telegram)) => {
                destinations.push((format!("{field}.telegram.api_base_url"), &telegram.api_base_url, false));
            }
            Some(Provider::Cti(cti)) => {
                destinations.push((format!("{field}.cti.decision_url"), &cti.decision_url, false))
            }
            Some(Provider::Email(email)) => {
                if let Some(imap) = &email.imap {
                    destinations.push((format!("{field}.email.imap.host"), &imap.host, true));
                }
                if let Some(smtp) = &email.smtp {
                    destinations.push((format!("{field}.email.smtp.host"), &smtp.host, true));
                }
            }
            Some(Provider::WebForm(_) | Provider::Social(_) | Provider::WebChat(_)) | None => {}
        }
        let violations: Vec<FieldViolation> = destinations
            .into_iter()
            .filter_map(|(field, value, is_host)| self.check_setting(&field, value, is_host).err())
            .collect();
        if violations.is_empty() { Ok(()) } else { Err(Error::invalid_fields(violations)) }
    }
}

/// `host` as an address, bracketed or not; `None` for a name.
fn parse_address(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// The cause of a request [`Egress::http_client`] refused to send: its
/// host resolves to no address the policy allows. Unlike a failed lookup,
/// this does not change until the setting does.
#[derive(Debug)]
pub struct RefusedDestination(pub String);

impl std::fmt::Display for RefusedDestination {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for RefusedDestination {}

/// The reason of the [`RefusedDestination`] among `error`'s causes, if the
/// request failed because the policy refused where its name led.
pub fn refusal_in(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    std::iter::successors(Some(error), |cause| cause.source())
        .find_map(|cause| cause.downcast_ref::<RefusedDestination>())
        .map(|refused| refused.0.clone())
}

/// reqwest's resolver for [`Egress::PublicOnly`].
struct PublicNamesOnly;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl reqwest::dns::Resolve for PublicNamesOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let allowed = Egress::PublicOnly.resolve(&host, 0).await.map_err(|reason| -> BoxError {
                match reason {
                    Unreachable::Refused(reason) => Box::new(RefusedDestination(reason)),
                    Unreachable::Failed(reason) => Box::new(std::io::Error::other(reason)),
                }
            })?;
            let addresses: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addresses)
        })
    }
}

/// Whether `address` is a public unicast address: not loopback,
/// unspecified, private (RFC 1918, unique local), shared (RFC 6598),
/// link-local, multicast, broadcast, documentation, benchmarking or
/// reserved; an IPv4 address inside IPv6 (mapped, compatible, NAT64) is
/// judged as that IPv4 address.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(address) => is_public_v4(address),
        IpAddr::V6(address) => is_public_v6(address),
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [first, second, third, _] = address.octets();
    let this_network = first == 0;
    let shared = first == 100 && (64..128).contains(&second);
    let protocol_assignments = first == 192 && second == 0 && third == 0;
    let benchmarking = first == 198 && (second == 18 || second == 19);
    let reserved = first >= 240;
    !(this_network
        || address.is_loopback()
        || address.is_private()
        || address.is_link_local()
        || address.is_multicast()
        || address.is_broadcast()
        || address.is_documentation()
        || shared
        || protocol_assignments
        || benchmarking
        || reserved)
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    let segments = address.segments();
    if let Some(mapped) = address.to_ipv4_mapped() {
        return is_public_v4(mapped);
    }
    let [high, low] = [segments[6], segments[7]].map(|segment| segment.to_be_bytes());
    let embedded = Ipv4Addr::new(high[0], high[1], low[0], low[1]);
    let compatible = segments[..6].iter().all(|segment| *segment == 0);
    let nat64 = segments[0] == 0x64 && segments[1] == 0xff9b && segments[2..6].iter().all(|segment| *segment == 0);
    if compatible || nat64 {
        return !address.is_unspecified() && !address.is_loopback() && is_public_v4(embedded);
    }
    let unique_local = segments[0] & 0xfe00 == 0xfc00;
    let link_local = segments[0] & 0xffc0 == 0xfe80;
    let site_local = segments[0] & 0xffc0 == 0xfec0;
    let documentation = segments[0] == 0x2001 && segments[1] == 0x0db8;
    !(address.is_multicast() || unique_local || link_local || site_local || documentation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public(text.parse().unwrap())
    }

    #[test]
    fn internal_ranges_are_not_public() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
        ] {
            assert!(!public(internal), "{internal} must not be public");
        }
    }

    #[test]
    fn public_addresses_are_public() {
        for address in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(public(address), "{address} is public");
        }
    }

    #[test]
    fn a_setting_naming_an_internal_address_is_refused_unless_allowed() {
        let violation = Egress::PublicOnly
            .check_setting("channel.telegram.api_base_url", "http://127.0.0.1:8080/x", false)
            .expect_err("loopback");
        assert_eq!(violation.field, "channel.telegram.api_base_url");
        assert!(
            Egress::PublicOnly.check_setting("channel.email.imap.host", "[fe80::1]", true).is_err(),
            "a bracketed link-local host"
        );
        assert!(Egress::PublicOnly.check_setting("channel.x", "http://[::ffff:10.0.0.1]/", false).is_err());
        assert!(Egress::PublicOnly.check_setting("channel.x", "https://api.telegram.org", false).is_ok(), "a name");
        assert!(Egress::Anywhere.check_setting("channel.x", "http://127.0.0.1:8080", false).is_ok());
    }

    #[tokio::test]
    async fn names_resolving_to_internal_addresses_are_not_connected() {
        let refused = Egress::PublicOnly.connect("localhost", 9).await.expect_err("loopback by name");
        assert!(
            matches!(&refused, Unreachable::Refused(reason) if reason.contains("not a public address")),
            "{refused}"
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        Egress::Anywhere.connect("localhost", port).await.expect("allowed when private destinations are");
    }

    #[tokio::test]
    async fn the_http_client_refuses_names_of_internal_addresses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://localhost:{}/", listener.local_addr().unwrap().port());
        let client = Egress::PublicOnly.http_client(Duration::from_secs(5)).unwrap();
        let error = client.get(&url).send().await.expect_err("refused before connecting");
        assert!(error.is_connect(), "{error:?}");
        let refusal = refusal_in(&error).expect("the refusal is among the causes");
        assert!(refusal.contains("not a public address"), "{refusal}");
    }
}
