//! The request's client certificate, as the host presents it: the
//! connection's (a property of the TLS session) or a forwarded header,
//! believed only from a trusted hop.

use crate::binding::forwarded::{self, CertificateSource, Source};
use crate::binding::{Thumbprint, ThumbprintCache};
use crate::decide::ClientCertificate;
use crate::headers::RequestHeaders;
use crate::host::Host;

/// The request's client certificate, read from the host on first use, per
/// source: the connection, or a forwarded header believed only from a
/// trusted hop.
pub struct PeerCertificate<'a> {
    pub host: &'a dyn Host,
    pub headers: &'a RequestHeaders,
    /// The connection's thumbprint, once read (it depends on nothing else
    /// in the source's configuration).
    pub connection: Option<Option<Thumbprint>>,
    /// Forwarded certificates read so far, by source.
    pub read: Vec<(CertificateSource, Option<Thumbprint>)>,
    /// A forwarded certificate header came from an untrusted hop.
    pub untrusted: bool,
    pub thumbprints: &'a mut ThumbprintCache,
}

impl ClientCertificate for PeerCertificate<'_> {
    fn thumbprint(&mut self, source: &CertificateSource) -> Option<Thumbprint> {
        if source.source == Source::Connection {
            return *self
                .connection
                .get_or_insert_with(|| read_peer_thumbprint(self.host, self.thumbprints));
        }
        if let Some((_, t)) = self.read.iter().find(|(s, _)| s == source) {
            return *t;
        }
        let t = self.forwarded(source, &source.source);
        self.read.push((source.clone(), t));
        t
    }
}

impl PeerCertificate<'_> {
    fn forwarded(&mut self, cfg: &CertificateSource, source: &Source) -> Option<Thumbprint> {
        let name = source.header()?;
        let mut values = self.headers.values(name);
        let value = values.next()?;
        if values.next().is_some() {
            // Two copies of the header: no way to tell which hop wrote which.
            return None;
        }
        let text = |path: &[&str]| {
            self.host
                .property(path)
                .and_then(|b| String::from_utf8(b).ok())
        };
        let address = text(&["source", "address"]);
        let san = text(&["connection", "uri_san_peer_certificate"]);
        if !cfg.trusts(address.as_deref(), san.as_deref()) {
            self.untrusted = true;
            return None;
        }
        match source {
            Source::Xfcc => forwarded::from_xfcc(value),
            Source::Header { encoding, .. } => forwarded::from_header(value, *encoding),
            Source::Connection => None,
        }
    }
}
/// The connection's client-certificate thumbprint. First Envoy's
/// `connection.sha256_peer_certificate_digest`: the SHA-256 of the leaf
/// certificate's DER, which is exactly the `x5t#S256` input (RFC 8705
/// §3.1), as 64 hex digits that Envoy computes once per connection. That
/// spares every request a copy of the PEM and a lookup keyed by it. Else
/// `connection.peer_certificate` (PEM, or URL-encoded PEM), hashed here.
fn read_peer_thumbprint(host: &dyn Host, cache: &mut ThumbprintCache) -> Option<Thumbprint> {
    let mut digest = None;
    host.read_property(
        &["connection", "sha256_peer_certificate_digest"],
        &mut |d| {
            digest = core::str::from_utf8(d).ok().and_then(Thumbprint::from_hex);
        },
    );
    if digest.is_some() {
        return digest;
    }
    let pem = host
        .property(&["connection", "peer_certificate"])
        .filter(|p| !p.is_empty())?;
    match cache.thumbprint_of_pem(&pem) {
        Ok(t) => Some(t),
        Err(e) => {
            host.log(
                log::Level::Warn,
                &format!("certbound: unreadable peer certificate: {e:?}"),
            );
            None
        }
    }
}
