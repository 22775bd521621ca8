//! Compatibility levels and the check behind them.
//!
//! The check itself is `apache-avro`'s schema resolution
//! (`SchemaCompatibility::can_read`); this module only decides which pairs of
//! schemas to check and in which direction, as Confluent's levels define.

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use std::fmt;
use std::str::FromStr;

/// Confluent's compatibility levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompatibilityLevel {
    None,
    /// New schema can read data written with the latest one (the default).
    #[default]
    Backward,
    BackwardTransitive,
    /// Latest schema can read data written with the new one.
    Forward,
    ForwardTransitive,
    /// Both of the above.
    Full,
    FullTransitive,
}

impl CompatibilityLevel {
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    fn checks_backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    fn checks_forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    /// Checks `new` against `existing` (the versions this level looks at) and
    /// returns why it is incompatible; an empty list means compatible.
    pub fn violations(self, new: &Schema, existing: &[(u32, &Schema)]) -> Vec<String> {
        let mut messages = Vec::new();
        for (version, old) in existing {
            if self.checks_backward()
                && let Some(why) = can_read(old, new)
            {
                messages.push(format!(
                        "BACKWARD: the new schema cannot read data written with version {version}: {why}"
                    ));
            }
            if self.checks_forward()
                && let Some(why) = can_read(new, old)
            {
                messages.push(format!(
                    "FORWARD: version {version} cannot read data written with the new schema: {why}"
                ));
            }
        }
        messages
    }
}

/// `None` when a reader with `reader` schema can always read `writer` data.
fn can_read(writer: &Schema, reader: &Schema) -> Option<String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => None,
        Ok(Compatibility::Partial) => {
            Some("only some values can be read (for example a union or enum lost a branch)".into())
        }
        Err(e) => Some(e.to_string()),
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        })
    }
}

impl FromStr for CompatibilityLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "NONE" => Self::None,
            "BACKWARD" => Self::Backward,
            "BACKWARD_TRANSITIVE" => Self::BackwardTransitive,
            "FORWARD" => Self::Forward,
            "FORWARD_TRANSITIVE" => Self::ForwardTransitive,
            "FULL" => Self::Full,
            "FULL_TRANSITIVE" => Self::FullTransitive,
            _ => {
                return Err(format!(
                    "Invalid compatibility level {s:?}: expected one of NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE"
                ));
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn schema(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"R","fields":[{fields}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_field_added_without_default_breaks_backward_only() {
        let v1 = schema(r#"{"name":"a","type":"string"}"#);
        let v2 = schema(r#"{"name":"a","type":"string"},{"name":"b","type":"int"}"#);
        let old = [(1, &v1)];
        assert_eq!(CompatibilityLevel::Backward.violations(&v2, &old).len(), 1);
        assert!(CompatibilityLevel::Forward.violations(&v2, &old).is_empty());
        assert_eq!(CompatibilityLevel::Full.violations(&v2, &old).len(), 1);
        assert!(CompatibilityLevel::None.violations(&v2, &old).is_empty());
    }

    #[test]
    fn levels_parse_case_insensitively_and_print_upper_case() {
        for level in [
            "NONE",
            "BACKWARD",
            "BACKWARD_TRANSITIVE",
            "FORWARD",
            "FORWARD_TRANSITIVE",
            "FULL",
            "FULL_TRANSITIVE",
        ] {
            assert_eq!(
                level
                    .to_lowercase()
                    .parse::<CompatibilityLevel>()
                    .unwrap()
                    .to_string(),
                level
            );
        }
        assert!("SIDEWAYS".parse::<CompatibilityLevel>().is_err());
    }
}
