//! What the decision reads of a request, and what it asks for.

use crate::binding::Thumbprint;
use crate::binding::forwarded::CertificateSource;
use crate::decide::cache::TokenCache;
use crate::decide::introspect::IntrospectionCache;
use crate::decide::keys::KeyRing;
use crate::headers::RequestHeaders;

/// Upper bound on a header value or `:path` the decision will read.
pub const MAX_HEADER_VALUE_BYTES: usize = 64 * 1024;

/// The client certificate of the request, read lazily: a public route never
/// pays for it.
pub trait ClientCertificate {
    /// The SHA-256 thumbprint of the client's leaf certificate per `source`
    /// (the connection, or a header from a trusted hop), or `None` when
    /// there is none to believe.
    fn thumbprint(&mut self, source: &CertificateSource) -> Option<Thumbprint>;
}

/// A fixed thumbprint, whatever the source (for tests and tools).
impl ClientCertificate for Option<Thumbprint> {
    fn thumbprint(&mut self, _source: &CertificateSource) -> Option<Thumbprint> {
        *self
    }
}

/// What the decision reads of a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `:path`, query string included.
    pub path: &'a str,
    /// Request headers; names lowercase as Envoy gives them.
    pub headers: &'a RequestHeaders,
}

/// A change to the request before it goes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    Remove(String),
    Set(String, String),
}

/// The keys in force, and the verified-token and introspection caches of the VM.
pub struct Verifier<'a> {
    pub keys: &'a KeyRing,
    pub cache: &'a mut TokenCache,
    pub introspection: &'a IntrospectionCache,
}
