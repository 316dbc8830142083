//! `client_certificate`: where the client certificate of a request comes
//! from (the TLS connection, `x-forwarded-client-cert` or a header a proxy
//! in front writes), and whom a forwarded one is believed from.

use crate::binding::forwarded::{CertificateSource, Cidr, Source};
use crate::policy::error::{ConfigError, err, header_name};
use crate::policy::raw::{RawCertificateSource, RawSource};

pub(crate) fn certificate_source(
    at: &str,
    c: RawCertificateSource,
) -> Result<CertificateSource, ConfigError> {
    let source = source(at, &c)?;
    let trusted_proxies = trusted_proxies(at, c.trusted_proxies.unwrap_or_default())?;
    let trusted_peer_uri_sans = c.trusted_peer_uri_sans.unwrap_or_default();
    for (i, san) in trusted_peer_uri_sans.iter().enumerate() {
        if san.is_empty() {
            return Err(err(
                format!("{at}.trusted_peer_uri_sans[{i}]"),
                "must not be empty",
            ));
        }
    }
    let forwarded = source != Source::Connection;
    if forwarded && trusted_proxies.is_empty() && trusted_peer_uri_sans.is_empty() {
        return Err(err(
            at,
            "a forwarded certificate needs trusted_proxies or trusted_peer_uri_sans: \
             believing it from anyone would make the binding worthless",
        ));
    }
    if !forwarded
        && (!trusted_proxies.is_empty()
            || !trusted_peer_uri_sans.is_empty()
            || c.forward_certificate_header.is_some())
    {
        return Err(err(
            at,
            "trusted_proxies, trusted_peer_uri_sans and forward_certificate_header apply to forwarded sources only",
        ));
    }
    Ok(CertificateSource {
        source,
        trusted_proxies,
        trusted_peer_uri_sans,
        forward_header: c.forward_certificate_header.unwrap_or(false),
    })
}

/// `source`, with the `name` and `encoding` that only `header` takes.
fn source(at: &str, c: &RawCertificateSource) -> Result<Source, ConfigError> {
    let source = match c.source.0 {
        RawSource::Connection => Source::Connection,
        RawSource::Xfcc => Source::Xfcc,
        RawSource::Header => {
            let name = c
                .name
                .as_deref()
                .ok_or_else(|| err(format!("{at}.name"), "required with source \"header\""))?;
            let name = header_name(&format!("{at}.name"), name)?;
            let encoding = c
                .encoding
                .ok_or_else(|| err(format!("{at}.encoding"), "required with source \"header\""))?
                .0;
            return Ok(Source::Header { name, encoding });
        }
    };
    if c.name.is_some() {
        return Err(err(format!("{at}.name"), "only with source \"header\""));
    }
    if c.encoding.is_some() {
        return Err(err(format!("{at}.encoding"), "only with source \"header\""));
    }
    Ok(source)
}

fn trusted_proxies(at: &str, cidrs: Vec<String>) -> Result<Vec<Cidr>, ConfigError> {
    let mut out = Vec::new();
    for (i, cidr) in cidrs.iter().enumerate() {
        out.push(Cidr::parse(cidr).ok_or_else(|| {
            err(
                format!("{at}.trusted_proxies[{i}]"),
                format!("\"{cidr}\" is not an IP prefix like 10.0.0.0/8"),
            )
        })?);
    }
    Ok(out)
}
