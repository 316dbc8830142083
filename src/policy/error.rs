//! Configuration errors, each naming the field path it is about, and the
//! checks shared by every part of the configuration (header names).

/// A configuration error, naming the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.field.is_empty() {
            write!(f, "invalid configuration: {}", self.message)
        } else {
            write!(
                f,
                "invalid configuration at {}: {}",
                self.field, self.message
            )
        }
    }
}

pub(crate) fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// Header names are lowercase tokens (RFC 9110 §5.1); pseudo-headers are refused.
pub(crate) fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        return Err(err(field, format!("\"{name}\" is not a valid header name")));
    }
    Ok(name.to_ascii_lowercase())
}
