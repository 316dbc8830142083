//! Which requests a rule applies to: the `match` of a `jwt_authn` rule,
//! which is Envoy's `config.route.v3.RouteMatch`. Supported: one path
//! specifier (`prefix`, `path`, `path_separated_prefix` or `safe_regex`),
//! `case_sensitive`, `headers` (`HeaderMatcher`), `query_parameters`
//! (`QueryParameterMatcher`) and `grpc`, with Envoy's semantics; anything else in a
//! `match` is refused when the configuration is read. Parsed, then
//! validated into [`RouteMatch`], which matches a request's `:path` and
//! headers and nothing else.

use serde::Deserialize;
use serde_json::Value;

use crate::headers::RequestHeaders;
use crate::policy::error::{ConfigError, err, header_name};

/// Bounds on what a rule may ask of every request it is tried against.
pub const MAX_REGEX_BYTES: usize = 4096;
pub const MAX_MATCHERS: usize = 64;
/// regex-lite's compiled-size limit for one pattern, in bytes. Matching is
/// linear in the value's length times the program's size: a bound on the
/// program bounds what one long path or header can cost (Envoy's RE2 bounds
/// its program size the same way).
const REGEX_SIZE_LIMIT: usize = 1 << 16;

// ---------------------------------------------------------------------------
// Raw, as written by the user.
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    path_separated_prefix: Option<String>,
    #[serde(default)]
    safe_regex: Option<RawRegex>,
    #[serde(default)]
    case_sensitive: Option<bool>,
    #[serde(default)]
    headers: Vec<RawHeaderMatcher>,
    #[serde(default)]
    query_parameters: Vec<RawQueryMatcher>,
    #[serde(default)]
    grpc: Option<RawGrpc>,
}

/// `GrpcRouteMatchOptions`: no fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrpc {}

/// `type.matcher.v3.RegexMatcher`: RE2 syntax (here: regex-lite, the same
/// syntax without Unicode classes).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegex {
    /// Deprecated in Envoy and the only engine there: accepted, and empty.
    #[serde(default)]
    google_re2: Option<RawGoogleRe2>,
    regex: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGoogleRe2 {
    /// Deprecated in Envoy; ignored.
    #[serde(default)]
    #[allow(dead_code)]
    max_program_size: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderMatcher {
    name: String,
    #[serde(default)]
    exact_match: Option<String>,
    #[serde(default)]
    safe_regex_match: Option<RawRegex>,
    #[serde(default)]
    range_match: Option<RawRange>,
    #[serde(default)]
    present_match: Option<bool>,
    #[serde(default)]
    prefix_match: Option<String>,
    #[serde(default)]
    suffix_match: Option<String>,
    #[serde(default)]
    contains_match: Option<String>,
    #[serde(default)]
    string_match: Option<RawStringMatcher>,
    #[serde(default)]
    invert_match: bool,
    #[serde(default)]
    treat_missing_header_as_empty: bool,
}

/// `type.v3.Int64Range`, `[start, end)`. Proto JSON writes int64 as a
/// string; a number is accepted too.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    #[serde(default)]
    start: Option<Value>,
    #[serde(default)]
    end: Option<Value>,
}

/// `type.matcher.v3.StringMatcher`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStringMatcher {
    #[serde(default)]
    exact: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    contains: Option<String>,
    #[serde(default)]
    safe_regex: Option<RawRegex>,
    #[serde(default)]
    ignore_case: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueryMatcher {
    name: String,
    #[serde(default)]
    string_match: Option<RawStringMatcher>,
    #[serde(default)]
    present_match: Option<bool>,
}

// ---------------------------------------------------------------------------
// Validated.
// ---------------------------------------------------------------------------

/// A compiled regular expression that must match a whole value, as Envoy's
/// RE2 `FullMatch`. Equal when written the same.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: regex_lite::Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl Pattern {
    fn new(field: &str, source: String) -> Result<Pattern, ConfigError> {
        if source.len() > MAX_REGEX_BYTES {
            return Err(err(field, format!("longer than {MAX_REGEX_BYTES} bytes")));
        }
        let regex = regex_lite::RegexBuilder::new(&format!(r"\A(?:{source})\z"))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| err(field, format!("not a supported regular expression: {e}")))?;
        Ok(Pattern { source, regex })
    }

    pub fn full_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    /// Envoy's `path_separated_prefix`: the prefix is the whole path or is
    /// followed by `/` (so `/api` matches `/api` and `/api/x`, not `/apix`).
    SeparatedPrefix(String),
    /// `safe_regex`: the whole path (no query) matches.
    Regex(Pattern),
}

/// `type.matcher.v3.StringMatcher`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(Pattern),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringMatcher {
    pub kind: StringMatch,
    /// ASCII case-insensitive (not for `safe_regex`, as in Envoy).
    pub ignore_case: bool,
}

impl StringMatcher {
    pub fn matches(&self, value: &str) -> bool {
        let ic = self.ignore_case;
        match &self.kind {
            StringMatch::Exact(s) => {
                if ic {
                    value.eq_ignore_ascii_case(s)
                } else {
                    value == s
                }
            }
            StringMatch::Prefix(s) => starts_with(value, s, ic),
            StringMatch::Suffix(s) => {
                value.len() >= s.len()
                    && value
                        .get(value.len() - s.len()..)
                        .is_some_and(|tail| eq(tail, s, ic))
            }
            StringMatch::Contains(s) => {
                if ic {
                    value.to_ascii_lowercase().contains(&s.to_ascii_lowercase())
                } else {
                    value.contains(s.as_str())
                }
            }
            StringMatch::Regex(p) => p.full_match(value),
        }
    }
}

/// What a `HeaderMatcher` asks of the header's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderTest {
    /// `present_match` (and a matcher with no specifier: present).
    Present(bool),
    /// `exact_match` (deprecated in Envoy): an empty one matches any value.
    Exact(String),
    /// `range_match`: a decimal integer in `[start, end)`.
    Range(i64, i64),
    String(StringMatcher),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatcher {
    /// Lowercase, as Envoy's header map holds names.
    pub name: String,
    pub test: HeaderTest,
    pub invert: bool,
    pub missing_as_empty: bool,
}

impl HeaderMatcher {
    /// Envoy's `HeaderUtility::matchHeaders`: repeated headers are one
    /// value joined by `,`; a missing header matches only `present_match:
    /// false` (or, inverted, `present_match: true`), unless
    /// `treat_missing_header_as_empty`.
    pub fn matches(&self, headers: &RequestHeaders) -> bool {
        let mut values = headers.values(&self.name);
        let joined;
        let value = match (values.next(), values.next()) {
            (None, _) if !self.missing_as_empty => {
                // Inverted or not, only a presence test can match a
                // missing header.
                return matches!(self.test, HeaderTest::Present(want) if want == self.invert);
            }
            (None, _) => "",
            (Some(v), None) => v,
            (Some(first), Some(second)) => {
                let mut all = format!("{first},{second}");
                for v in values {
                    all.push(',');
                    all.push_str(v);
                }
                joined = all;
                joined.as_str()
            }
        };
        let matched = match &self.test {
            HeaderTest::Present(want) => *want,
            HeaderTest::Exact(s) => s.is_empty() || value == s,
            HeaderTest::Range(start, end) => {
                value.parse::<i64>().is_ok_and(|n| *start <= n && n < *end)
            }
            HeaderTest::String(m) => m.matches(value),
        };
        matched != self.invert
    }
}

/// `QueryParameterMatcher`: the first value of the parameter (not
/// percent-decoded, as Envoy's route matching reads it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryMatcher {
    pub name: String,
    /// `None`: present is enough (`present_match`, or no matcher).
    pub value: Option<StringMatcher>,
}

impl QueryMatcher {
    pub fn matches(&self, query: &str) -> bool {
        let first = query
            .split('&')
            .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
            .find(|(k, _)| *k == self.name)
            .map(|(_, v)| v);
        match (first, &self.value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(v), Some(m)) => m.matches(v),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// `case_sensitive` (default true): for prefix, path and
    /// path_separated_prefix; not for `safe_regex`, as in Envoy.
    pub case_sensitive: bool,
    pub headers: Vec<HeaderMatcher>,
    pub query_parameters: Vec<QueryMatcher>,
    /// `grpc: {}`: only gRPC requests (by `content-type`).
    pub grpc: bool,
}

impl RouteMatch {
    /// Whether a request with this `:path` and these headers matches:
    /// its path, then every header and query parameter matcher.
    pub fn matches(&self, path: &str, headers: &RequestHeaders) -> bool {
        let (bare, query) = split_path(path);
        self.path_matches(bare)
            && (!self.grpc || is_grpc(headers))
            && self.headers.iter().all(|h| h.matches(headers))
            && self.query_parameters.iter().all(|q| q.matches(query))
    }

    /// The path part of `:path` (before any `?` or `#`).
    fn path_matches(&self, path: &str) -> bool {
        let ic = !self.case_sensitive;
        match &self.path {
            PathMatch::Prefix(p) => starts_with(path, p, ic),
            PathMatch::Exact(p) => eq(path, p, ic),
            PathMatch::SeparatedPrefix(p) => {
                starts_with(path, p, ic)
                    && path
                        .get(p.len()..)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            PathMatch::Regex(re) => re.full_match(path),
        }
    }
}

/// Envoy's test for a gRPC request: `content-type` is `application/grpc`,
/// or that followed by `+` (`application/grpc+proto`) or `;`.
fn is_grpc(headers: &RequestHeaders) -> bool {
    headers
        .values("content-type")
        .next()
        .and_then(|v| v.strip_prefix("application/grpc"))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', ';']))
}

/// `:path` as (path, query): the query without its `?`, and without any
/// fragment.
fn split_path(path: &str) -> (&str, &str) {
    let path = path.split('#').next().unwrap_or("");
    path.split_once('?').unwrap_or((path, ""))
}

fn eq(a: &str, b: &str, ignore_case: bool) -> bool {
    if ignore_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

fn starts_with(value: &str, prefix: &str, ignore_case: bool) -> bool {
    value.as_bytes().get(..prefix.len()).is_some_and(|head| {
        if ignore_case {
            head.eq_ignore_ascii_case(prefix.as_bytes())
        } else {
            head == prefix.as_bytes()
        }
    })
}

// ---------------------------------------------------------------------------
// Validation.
// ---------------------------------------------------------------------------

/// Validates a rule's `match` (`at` is the rule's field path).
pub(crate) fn validate(at: &str, m: RawMatch) -> Result<RouteMatch, ConfigError> {
    let field = |name: &str| format!("{at}.match.{name}");
    let path = match (m.prefix, m.path, m.path_separated_prefix, m.safe_regex) {
        (Some(p), None, None, None) => PathMatch::Prefix(absolute(&field("prefix"), p)?),
        (None, Some(p), None, None) => PathMatch::Exact(absolute(&field("path"), p)?),
        (None, None, Some(p), None) => {
            PathMatch::SeparatedPrefix(separated_prefix(&field("path_separated_prefix"), p)?)
        }
        (None, None, None, Some(r)) => PathMatch::Regex(regex(&field("safe_regex"), r)?),
        _ => {
            return Err(err(
                format!("{at}.match"),
                "exactly one of prefix, path, path_separated_prefix or safe_regex is required",
            ));
        }
    };
    if m.headers.len() > MAX_MATCHERS || m.query_parameters.len() > MAX_MATCHERS {
        return Err(err(
            format!("{at}.match"),
            format!("at most {MAX_MATCHERS} header and {MAX_MATCHERS} query parameter matchers"),
        ));
    }
    let headers = m
        .headers
        .into_iter()
        .enumerate()
        .map(|(i, h)| header_matcher(&field(&format!("headers[{i}]")), h))
        .collect::<Result<Vec<_>, _>>()?;
    let query_parameters = m
        .query_parameters
        .into_iter()
        .enumerate()
        .map(|(i, q)| query_matcher(&field(&format!("query_parameters[{i}]")), q))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RouteMatch {
        path,
        case_sensitive: m.case_sensitive.unwrap_or(true),
        headers,
        query_parameters,
        grpc: m.grpc.is_some(),
    })
}

fn absolute(field: &str, p: String) -> Result<String, ConfigError> {
    if p.starts_with('/') {
        Ok(p)
    } else {
        Err(err(field, "must start with /"))
    }
}

/// Envoy's rule for `path_separated_prefix`: starts with `/`, has no `?`
/// or `#`, and does not end with `/` (`/api/` would never match `/api`).
fn separated_prefix(field: &str, p: String) -> Result<String, ConfigError> {
    let p = absolute(field, p)?;
    if p.ends_with('/') || p.contains(['?', '#']) {
        return Err(err(field, "must not end with / or contain ? or #"));
    }
    Ok(p)
}

fn regex(field: &str, r: RawRegex) -> Result<Pattern, ConfigError> {
    let _ = r.google_re2;
    Pattern::new(&format!("{field}.regex"), r.regex)
}

fn header_matcher(at: &str, h: RawHeaderMatcher) -> Result<HeaderMatcher, ConfigError> {
    // A pseudo-header (`:method`, `:authority`) is a header name after `:`.
    let field = format!("{at}.name");
    let name = match h.name.strip_prefix(':') {
        Some(pseudo) => format!(":{}", header_name(&field, pseudo)?),
        None => header_name(&field, &h.name)?,
    };
    let mut tests = Vec::new();
    if let Some(s) = h.exact_match {
        tests.push(HeaderTest::Exact(s));
    }
    if let Some(r) = h.safe_regex_match {
        let kind = StringMatch::Regex(regex(&format!("{at}.safe_regex_match"), r)?);
        tests.push(HeaderTest::String(StringMatcher {
            kind,
            ignore_case: false,
        }));
    }
    if let Some(r) = h.range_match {
        tests.push(range(&format!("{at}.range_match"), r)?);
    }
    if let Some(p) = h.present_match {
        tests.push(HeaderTest::Present(p));
    }
    for (kind, s) in [
        (
            StringMatch::Prefix as fn(String) -> StringMatch,
            h.prefix_match,
        ),
        (StringMatch::Suffix, h.suffix_match),
        (StringMatch::Contains, h.contains_match),
    ] {
        if let Some(s) = s {
            tests.push(HeaderTest::String(StringMatcher {
                kind: kind(s),
                ignore_case: false,
            }));
        }
    }
    if let Some(m) = h.string_match {
        tests.push(HeaderTest::String(string_matcher(
            &format!("{at}.string_match"),
            m,
        )?));
    }
    if tests.len() > 1 {
        return Err(err(at, "at most one way to match the value"));
    }
    Ok(HeaderMatcher {
        name,
        // As Envoy: a matcher that says nothing of the value asks that the
        // header be present.
        test: tests.pop().unwrap_or(HeaderTest::Present(true)),
        invert: h.invert_match,
        missing_as_empty: h.treat_missing_header_as_empty,
    })
}

fn range(at: &str, r: RawRange) -> Result<HeaderTest, ConfigError> {
    let int = |name: &str, v: Option<Value>| -> Result<i64, ConfigError> {
        let n = match v {
            None => Some(0),
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.parse().ok(),
            Some(_) => None,
        };
        n.ok_or_else(|| err(format!("{at}.{name}"), "must be a 64-bit integer"))
    };
    Ok(HeaderTest::Range(
        int("start", r.start)?,
        int("end", r.end)?,
    ))
}

pub(crate) fn string_matcher(at: &str, m: RawStringMatcher) -> Result<StringMatcher, ConfigError> {
    let mut kinds = Vec::new();
    kinds.extend(m.exact.map(StringMatch::Exact));
    kinds.extend(m.prefix.map(StringMatch::Prefix));
    kinds.extend(m.suffix.map(StringMatch::Suffix));
    kinds.extend(m.contains.map(StringMatch::Contains));
    if let Some(r) = m.safe_regex {
        kinds.push(StringMatch::Regex(regex(&format!("{at}.safe_regex"), r)?));
    }
    match (kinds.pop(), kinds.is_empty()) {
        (Some(kind), true) => Ok(StringMatcher {
            kind,
            ignore_case: m.ignore_case,
        }),
        _ => Err(err(
            at,
            "exactly one of exact, prefix, suffix, contains or safe_regex is required",
        )),
    }
}

fn query_matcher(at: &str, q: RawQueryMatcher) -> Result<QueryMatcher, ConfigError> {
    if q.name.is_empty() {
        return Err(err(format!("{at}.name"), "must not be empty"));
    }
    let value = match (q.string_match, q.present_match) {
        (Some(_), Some(_)) => {
            return Err(err(at, "string_match and present_match are exclusive"));
        }
        (Some(m), None) => Some(string_matcher(&format!("{at}.string_match"), m)?),
        (None, _) => None,
    };
    Ok(QueryMatcher {
        name: q.name,
        value,
    })
}
