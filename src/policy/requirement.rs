//! `rules`: which requests a rule applies to (see [`super::route`]), what
//! it requires (jwt_authn's `JwtRequirement`, providers named by their
//! index) and which scopes.

use std::collections::HashMap;

use crate::policy::error::{ConfigError, err};
use crate::policy::id::ProviderId;
use crate::policy::raw::{RawRequirement, RawRequirementList, RawRule};
use crate::policy::route;
use crate::policy::types::{Requirement, Rule};

const MAX_REQUIREMENT_DEPTH: usize = 8;

/// A rule; `names` maps provider names to their indices.
pub(crate) fn rule(
    at: &str,
    rr: RawRule,
    names: &HashMap<String, ProviderId>,
) -> Result<Rule, ConfigError> {
    let matcher = route::validate(at, rr.matcher)?;
    let requires = rr
        .requires
        .map(|r| requirement(&format!("{at}.requires"), r, names, 0))
        .transpose()?;
    let required_scopes = required_scopes(at, rr.required_scopes.unwrap_or_default())?;
    if !required_scopes.is_empty() && requires.is_none() {
        return Err(err(
            format!("{at}.required_scopes"),
            "a public route (no requires) cannot require scopes",
        ));
    }
    Ok(Rule {
        matcher,
        requires,
        required_scopes,
    })
}

fn required_scopes(at: &str, scopes: Vec<String>) -> Result<Vec<String>, ConfigError> {
    for (i, s) in scopes.iter().enumerate() {
        // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        let ok = !s.is_empty()
            && s.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !ok {
            return Err(err(
                format!("{at}.required_scopes[{i}]"),
                "must be a scope token (RFC 6749 §3.3)",
            ));
        }
    }
    Ok(scopes)
}

fn requirement(
    at: &str,
    r: RawRequirement,
    names: &HashMap<String, ProviderId>,
    depth: usize,
) -> Result<Requirement, ConfigError> {
    if depth > MAX_REQUIREMENT_DEPTH {
        return Err(err(at, "requirements nested too deeply"));
    }
    let given = [
        r.provider_name.is_some(),
        r.provider_and_audiences.is_some(),
        r.requires_any.is_some(),
        r.requires_all.is_some(),
        r.allow_missing.is_some(),
        r.allow_missing_or_failed.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        return Err(err(
            at,
            "exactly one of provider_name, provider_and_audiences, requires_any, requires_all, allow_missing, allow_missing_or_failed is required",
        ));
    }
    if let Some(name) = r.provider_name {
        return provider(at, &name, names).map(Requirement::Provider);
    }
    if let Some(pa) = r.provider_and_audiences {
        let at = format!("{at}.provider_and_audiences");
        let index = provider(&at, &pa.provider_name, names)?;
        if pa.audiences.is_empty() {
            return Err(err(
                format!("{at}.audiences"),
                "must not be empty (use provider_name for the provider's own audiences)",
            ));
        }
        if let Some(i) = pa.audiences.iter().position(String::is_empty) {
            return Err(err(format!("{at}.audiences[{i}]"), "must not be empty"));
        }
        return Ok(Requirement::ProviderAudiences(index, pa.audiences));
    }
    if r.allow_missing.is_some() {
        return Ok(Requirement::AllowMissing);
    }
    if r.allow_missing_or_failed.is_some() {
        return Ok(Requirement::AllowMissingOrFailed);
    }
    let (kind, list) = match (r.requires_any, r.requires_all) {
        (Some(l), None) => ("requires_any", l),
        (None, Some(l)) => ("requires_all", l),
        _ => return Err(err(at, "internal: requirement kind")),
    };
    let list = match list {
        RawRequirementList::Wrapped(w) => w.requirements,
        RawRequirementList::Bare(v) => v,
    };
    if list.is_empty() {
        return Err(err(format!("{at}.{kind}"), "must not be empty"));
    }
    let mut out = Vec::new();
    for (i, item) in list.into_iter().enumerate() {
        out.push(requirement(
            &format!("{at}.{kind}[{i}]"),
            item,
            names,
            depth + 1,
        )?);
    }
    Ok(if kind == "requires_any" {
        Requirement::Any(out)
    } else {
        Requirement::All(out)
    })
}

/// A provider named in a requirement, by its index.
fn provider(
    at: &str,
    name: &str,
    names: &HashMap<String, ProviderId>,
) -> Result<ProviderId, ConfigError> {
    names.get(name).copied().ok_or_else(|| {
        err(
            format!("{at}.provider_name"),
            format!("unknown provider \"{name}\""),
        )
    })
}
