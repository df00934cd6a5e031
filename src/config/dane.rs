//! `relay.dane`: whether DANE (RFC 7672) is used for MX hosts, written as
//! a TOML boolean or as "auto" / "true" / "false".

use serde::Deserialize;
use std::fmt;

/// `relay.dane`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Raw")]
pub enum DaneSetting {
    /// On if and only if the start-up probe of `relay.dnssec_probe` gets
    /// an answer with AD from `dns_server` (a validating resolver).
    #[default]
    Auto,
    /// On; start-up warns when the probe gets no AD.
    On,
    /// Off: TLSA records are never looked up.
    Off,
}

/// How the setting may be written.
#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Bool(bool),
    Text(String),
}

impl TryFrom<Raw> for DaneSetting {
    type Error = String;

    fn try_from(raw: Raw) -> Result<DaneSetting, String> {
        match raw {
            Raw::Bool(true) => Ok(DaneSetting::On),
            Raw::Bool(false) => Ok(DaneSetting::Off),
            Raw::Text(text) => match text.to_ascii_lowercase().as_str() {
                "auto" => Ok(DaneSetting::Auto),
                "true" | "on" | "yes" => Ok(DaneSetting::On),
                "false" | "off" | "no" => Ok(DaneSetting::Off),
                _ => Err(format!("relay.dane = {text:?}: expected \"auto\", true or false")),
            },
        }
    }
}

impl fmt::Display for DaneSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DaneSetting::Auto => "auto",
            DaneSetting::On => "true",
            DaneSetting::Off => "false",
        })
    }
}

/// `relay.dnssec_probe`'s default: the root zone, signed since 2010.
pub fn default_dnssec_probe() -> String {
    ".".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        dane: DaneSetting,
    }

    fn parse(value: &str) -> Result<DaneSetting, String> {
        toml::from_str::<T>(&format!("dane = {value}")).map(|t| t.dane).map_err(|e| e.to_string())
    }

    #[test]
    fn dane_takes_a_boolean_or_auto() {
        assert_eq!(parse("true"), Ok(DaneSetting::On));
        assert_eq!(parse("false"), Ok(DaneSetting::Off));
        assert_eq!(parse("\"auto\""), Ok(DaneSetting::Auto));
        assert_eq!(parse("\"True\""), Ok(DaneSetting::On));
        assert_eq!(parse("\"false\""), Ok(DaneSetting::Off));
        assert!(parse("\"sometimes\"").unwrap_err().contains("relay.dane"));
        assert!(parse("1").is_err());
    }
}
