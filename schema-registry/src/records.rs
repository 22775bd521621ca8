//! The records of the `_schemas` topic, in Confluent's layout.
//!
//! Keys and values are JSON as Confluent Schema Registry writes them, so the
//! topic reads the same to people who know Confluent's. A schema version is a
//! `SCHEMA` key; soft deletion rewrites it with `deleted: true`, permanent
//! deletion is a tombstone. Compatibility settings are `CONFIG` keys. With one
//! key per version the topic compacts down to the current state.

use crate::compatibility::CompatibilityLevel;
use serde::{Deserialize, Serialize};

/// One change to the registry's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRecord {
    /// A schema version was registered, or soft deleted (`deleted`).
    Schema(SchemaRecord),
    /// A schema version was permanently deleted.
    SchemaTombstone { subject: String, version: u32 },
    /// A compatibility level was set, globally (`subject: None`) or for a subject.
    Config {
        subject: Option<String>,
        level: CompatibilityLevel,
    },
    /// A subject's compatibility level was removed.
    ConfigTombstone { subject: Option<String> },
    /// Every id up to `max_id` was handed out once (kafkit's own key type,
    /// `ID_FLOOR`). Written with each permanent deletion: compaction then
    /// drops the deleted schema's record, and without this a restarted
    /// registry would hand its id out again.
    IdFloor { max_id: u32 },
    /// A mode was set (Confluent's `MODE` key), globally or for a subject.
    Mode { subject: Option<String>, mode: Mode },
    /// A subject's mode was removed.
    ModeTombstone { subject: Option<String> },
}

/// Confluent's modes this registry keeps: `READONLY` refuses registrations
/// and deletions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    ReadWrite,
    ReadOnly,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ReadWrite => "READWRITE",
            Self::ReadOnly => "READONLY",
        })
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "READWRITE" => Ok(Self::ReadWrite),
            "READONLY" => Ok(Self::ReadOnly),
            other => Err(format!(
                "Invalid mode {other:?}: this registry knows READWRITE and READONLY"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaRecord {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
    #[serde(default)]
    pub deleted: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "keytype")]
enum Key {
    #[serde(rename = "SCHEMA")]
    Schema {
        subject: String,
        version: u32,
        magic: u8,
    },
    #[serde(rename = "CONFIG")]
    Config { subject: Option<String>, magic: u8 },
    #[serde(rename = "ID_FLOOR")]
    IdFloor { magic: u8 },
    #[serde(rename = "MODE")]
    Mode { subject: Option<String>, magic: u8 },
}

#[derive(Debug, Serialize, Deserialize)]
struct ModeValue {
    mode: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct IdFloorValue {
    #[serde(rename = "maxId")]
    max_id: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct ConfigValue {
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: String,
}

/// A `_schemas` record that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable _schemas record: {0}")]
pub struct RecordError(String);

impl LogRecord {
    /// Kafka key and value (`None` for a tombstone).
    pub fn to_kafka(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        match self {
            Self::Schema(record) => {
                let key = Key::Schema {
                    subject: record.subject.clone(),
                    version: record.version,
                    magic: 1,
                };
                (json(&key), Some(json(record)))
            }
            Self::SchemaTombstone { subject, version } => (
                json(&Key::Schema {
                    subject: subject.clone(),
                    version: *version,
                    magic: 1,
                }),
                None,
            ),
            Self::Config { subject, level } => {
                let value = ConfigValue {
                    compatibility_level: level.to_string(),
                };
                (
                    json(&Key::Config {
                        subject: subject.clone(),
                        magic: 0,
                    }),
                    Some(json(&value)),
                )
            }
            Self::ConfigTombstone { subject } => (
                json(&Key::Config {
                    subject: subject.clone(),
                    magic: 0,
                }),
                None,
            ),
            Self::IdFloor { max_id } => (
                json(&Key::IdFloor { magic: 0 }),
                Some(json(&IdFloorValue { max_id: *max_id })),
            ),
            Self::Mode { subject, mode } => (
                json(&Key::Mode {
                    subject: subject.clone(),
                    magic: 0,
                }),
                Some(json(&ModeValue {
                    mode: mode.to_string(),
                })),
            ),
            Self::ModeTombstone { subject } => (
                json(&Key::Mode {
                    subject: subject.clone(),
                    magic: 0,
                }),
                None,
            ),
        }
    }

    /// What an unreadable record still tells: the id in its value, if any
    /// (a schema record this registry cannot read still took its id).
    pub fn id_in_unreadable(value: Option<&[u8]>) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_slice(value?).ok()?;
        let id = value.get("id")?.as_u64()?;
        Some(Self::IdFloor {
            max_id: u32::try_from(id).unwrap_or(u32::MAX),
        })
    }

    /// Reads a record; `Ok(None)` for key types this registry does not use
    /// (Confluent's `NOOP`, `MODE`, `DELETE_SUBJECT`, ...).
    pub fn from_kafka(key: &[u8], value: Option<&[u8]>) -> Result<Option<Self>, RecordError> {
        let raw: serde_json::Value = serde_json::from_slice(key)
            .map_err(|e| RecordError(format!("key is not JSON: {e}")))?;
        if !matches!(
            raw.get("keytype").and_then(|k| k.as_str()),
            Some("SCHEMA" | "CONFIG" | "ID_FLOOR" | "MODE")
        ) {
            return Ok(None);
        }
        let key: Key = serde_json::from_value(raw).map_err(|e| RecordError(format!("key: {e}")))?;
        Ok(Some(match (key, value) {
            (
                Key::Schema {
                    subject, version, ..
                },
                None,
            ) => Self::SchemaTombstone { subject, version },
            (Key::Schema { .. }, Some(value)) => Self::Schema(
                serde_json::from_slice(value)
                    .map_err(|e| RecordError(format!("schema value: {e}")))?,
            ),
            (Key::Config { subject, .. }, None) => Self::ConfigTombstone { subject },
            (Key::Config { subject, .. }, Some(value)) => {
                let value: ConfigValue = serde_json::from_slice(value)
                    .map_err(|e| RecordError(format!("config value: {e}")))?;
                let level = value.compatibility_level.parse().map_err(RecordError)?;
                Self::Config { subject, level }
            }
            (Key::IdFloor { .. }, None) => return Ok(None),
            (Key::Mode { subject, .. }, None) => Self::ModeTombstone { subject },
            (Key::Mode { subject, .. }, Some(value)) => {
                let value: ModeValue = serde_json::from_slice(value)
                    .map_err(|e| RecordError(format!("mode value: {e}")))?;
                // A mode this registry does not know (IMPORT) writes nothing it must refuse.
                match value.mode.parse() {
                    Ok(mode) => Self::Mode { subject, mode },
                    Err(_) => return Ok(None),
                }
            }
            (Key::IdFloor { .. }, Some(value)) => {
                let value: IdFloorValue = serde_json::from_slice(value)
                    .map_err(|e| RecordError(format!("id floor value: {e}")))?;
                Self::IdFloor {
                    max_id: value.max_id,
                }
            }
        }))
    }
}

/// Serializing these plain structs cannot fail.
fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_in_confluent_layout() {
        let records = [
            LogRecord::Schema(SchemaRecord {
                subject: "orders-value".into(),
                version: 2,
                id: 7,
                schema: "\"string\"".into(),
                deleted: true,
            }),
            LogRecord::SchemaTombstone {
                subject: "orders-value".into(),
                version: 2,
            },
            LogRecord::Config {
                subject: None,
                level: CompatibilityLevel::Full,
            },
            LogRecord::ConfigTombstone {
                subject: Some("orders-value".into()),
            },
            LogRecord::IdFloor { max_id: 41 },
            LogRecord::Mode {
                subject: None,
                mode: Mode::ReadOnly,
            },
            LogRecord::ModeTombstone {
                subject: Some("orders-value".into()),
            },
        ];
        for record in records {
            let (key, value) = record.to_kafka();
            assert_eq!(
                LogRecord::from_kafka(&key, value.as_deref()).unwrap(),
                Some(record)
            );
        }
        let (key, _) = LogRecord::Config {
            subject: None,
            level: CompatibilityLevel::Full,
        }
        .to_kafka();
        assert_eq!(
            String::from_utf8(key).unwrap(),
            r#"{"keytype":"CONFIG","subject":null,"magic":0}"#
        );
    }

    #[test]
    fn other_confluent_key_types_are_skipped_and_garbage_is_an_error() {
        assert_eq!(
            LogRecord::from_kafka(br#"{"keytype":"NOOP","magic":0}"#, None).unwrap(),
            None
        );
        let (key, _) = LogRecord::ModeTombstone { subject: None }.to_kafka();
        assert_eq!(
            String::from_utf8(key).unwrap(),
            r#"{"keytype":"MODE","subject":null,"magic":0}"#,
            "Confluent's MODE key"
        );
        assert!(LogRecord::from_kafka(b"not json", None).is_err());
    }
}
