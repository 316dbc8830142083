//! RFC 9728 protected-resource metadata: the JSON document certbound serves
//! itself, and the URL each 401 challenge names in `resource_metadata`.

use serde_json::{Value, json};

use crate::policy::dpop::origin;
use crate::policy::error::{ConfigError, err};
use crate::policy::raw::RawResourceMetadata;
use crate::policy::types::{Provider, ResourceMetadata, TokenSource};

/// Where the document is served unless `path` says otherwise (RFC 9728 §3).
pub const DEFAULT_PATH: &str = "/.well-known/oauth-protected-resource";

pub(crate) fn resource_metadata(
    raw: RawResourceMetadata,
    providers: &[Provider],
    scopes: &[String],
) -> Result<ResourceMetadata, ConfigError> {
    let at = "resource_metadata";
    let resource = resource(&format!("{at}.resource"), &raw.resource)?;
    let authorization_servers = raw.authorization_servers.unwrap_or_else(|| {
        let mut issuers: Vec<String> = providers.iter().map(|p| p.issuer.clone()).collect();
        issuers.dedup();
        issuers
    });
    for (i, s) in authorization_servers.iter().enumerate() {
        if !s.starts_with("https://") && !s.starts_with("http://") {
            return Err(err(
                format!("{at}.authorization_servers[{i}]"),
                "must be an issuer URL",
            ));
        }
    }
    let path = raw.path.unwrap_or_else(|| DEFAULT_PATH.to_string());
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        return Err(err(
            format!("{at}.path"),
            "must be an absolute path without query or fragment",
        ));
    }
    let origin = origin_of(&resource);
    let url = format!("{origin}{path}");
    let document = document(
        &resource,
        &authorization_servers,
        providers,
        raw.scopes_supported.as_deref().unwrap_or(scopes),
        raw.resource_name.as_deref(),
    );
    Ok(ResourceMetadata {
        path,
        url,
        document: document.to_string(),
    })
}

/// The resource identifier: an https URL without fragment (RFC 9728 §1.2).
fn resource(at: &str, r: &str) -> Result<String, ConfigError> {
    let authority_end = r
        .strip_prefix("https://")
        .or_else(|| r.strip_prefix("http://"))
        .map(|rest| rest.find('/').unwrap_or(rest.len()));
    if authority_end.is_none() || r.contains(['#', ' ', '"', '\\']) {
        return Err(err(at, "must be an https:// URL without fragment"));
    }
    Ok(r.to_string())
}

/// `scheme://authority` of the resource.
fn origin_of(resource: &str) -> String {
    let scheme_end = resource.find("://").map_or(0, |i| i + 3);
    let rest = resource.get(scheme_end..).unwrap_or("");
    let end = scheme_end + rest.find('/').unwrap_or(rest.len());
    let o = resource.get(..end).unwrap_or(resource);
    origin("", o).unwrap_or_else(|_| o.to_string())
}

/// The metadata of RFC 9728 §2, derived from the providers.
fn document(
    resource: &str,
    authorization_servers: &[String],
    providers: &[Provider],
    scopes: &[String],
    resource_name: Option<&str>,
) -> Value {
    let dpop_required = providers
        .iter()
        .all(|p| p.dpop.as_ref().is_some_and(|d| d.config.required));
    let mut dpop_algs: Vec<&str> = Vec::new();
    for p in providers {
        for alg in p.dpop.iter().flat_map(|d| d.config.algorithms.iter()) {
            if !dpop_algs.contains(&alg.name()) {
                dpop_algs.push(alg.name());
            }
        }
    }
    let mut methods: Vec<&str> = Vec::new();
    for source in providers.iter().flat_map(|p| p.sources.iter()) {
        let m = match source {
            TokenSource::Header { .. } => "header",
            TokenSource::Param(_) => "query",
            // Not a method of RFC 6750 §2.
            TokenSource::Cookie(_) => continue,
        };
        if !methods.contains(&m) {
            methods.push(m);
        }
    }
    let mut doc = json!({
        "resource": resource,
        "authorization_servers": authorization_servers,
        "bearer_methods_supported": methods,
        // Every provider checks `cnf.x5t#S256` when a token has it; only a
        // provider that requires DPoP refuses certificate-bound tokens.
        "tls_client_certificate_bound_access_tokens": !dpop_required,
        "dpop_bound_access_tokens_required": dpop_required,
    });
    if let Some(obj) = doc.as_object_mut() {
        if !dpop_algs.is_empty() {
            obj.insert("dpop_signing_alg_values_supported".into(), json!(dpop_algs));
        }
        if !scopes.is_empty() {
            obj.insert("scopes_supported".into(), json!(scopes));
        }
        if let Some(name) = resource_name {
            obj.insert("resource_name".into(), json!(name));
        }
    }
    doc
}
