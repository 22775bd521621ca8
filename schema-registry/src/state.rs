//! The registry's state and the rules of every change to it.
//!
//! Pure and synchronous: each operation checks the request against the
//! current state and returns the answer plus the log records that carry it
//! out. `apply` folds records into the state, the same way for a live change
//! and for a replay of the `_schemas` topic, so a restart rebuilds exactly
//! what was there.

use crate::compatibility::CompatibilityLevel;
use crate::error::ApiError;
use crate::records::{LogRecord, Mode, SchemaRecord};
use apache_avro::Schema;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// A version argument: a number or `latest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Number(u32),
}

impl VersionSpec {
    /// Parses a path segment the way Confluent does: `latest`, `-1`, or 1..=2^31-1.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "latest" | "-1" => Ok(Self::Latest),
            _ => match s.parse::<i64>() {
                Ok(n) if (1..=i64::from(i32::MAX)).contains(&n) => Ok(Self::Number(n as u32)),
                _ => Err(ApiError::InvalidVersion(s.to_owned())),
            },
        }
    }
}

/// A schema as Confluent returns it for a subject version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VersionEntry {
    id: u32,
    deleted: bool,
}

/// A schema checked for validity, in the normalized text the registry stores.
#[derive(Debug, Clone)]
pub struct ValidSchema {
    pub text: String,
    pub parsed: Schema,
}

impl ValidSchema {
    /// Parses a schema string. The normalized text is compact JSON with key
    /// order kept, so whitespace differences do not make a new schema.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        if text.trim().is_empty() {
            return Err(ApiError::InvalidSchema("the schema is empty".into()));
        }
        let json: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| ApiError::InvalidSchema(format!("not JSON: {e}")))?;
        let text = json.to_string();
        let parsed =
            Schema::parse_str(&text).map_err(|e| ApiError::InvalidSchema(e.to_string()))?;
        Ok(Self { text, parsed })
    }
}

/// Everything the registry knows.
#[derive(Debug, Default)]
pub struct State {
    schemas: BTreeMap<u32, String>,
    ids_by_text: HashMap<String, u32>,
    subjects: BTreeMap<String, BTreeMap<u32, VersionEntry>>,
    global_level: Option<CompatibilityLevel>,
    subject_levels: BTreeMap<String, CompatibilityLevel>,
    global_mode: Option<Mode>,
    subject_modes: BTreeMap<String, Mode>,
    max_id: u32,
}

impl State {
    /// Folds one change into the state. Applying the same record twice is harmless.
    pub fn apply(&mut self, record: &LogRecord) {
        match record {
            LogRecord::Schema(SchemaRecord {
                subject,
                version,
                id,
                schema,
                deleted,
            }) => {
                self.max_id = self.max_id.max(*id);
                self.schemas.entry(*id).or_insert_with(|| schema.clone());
                self.ids_by_text.entry(schema.clone()).or_insert(*id);
                self.subjects.entry(subject.clone()).or_default().insert(
                    *version,
                    VersionEntry {
                        id: *id,
                        deleted: *deleted,
                    },
                );
            }
            LogRecord::SchemaTombstone { subject, version } => {
                if let Some(versions) = self.subjects.get_mut(subject) {
                    versions.remove(version);
                    if versions.is_empty() {
                        self.subjects.remove(subject);
                    }
                }
                self.forget_unreferenced_schemas();
            }
            LogRecord::Config {
                subject: None,
                level,
            } => self.global_level = Some(*level),
            LogRecord::Config {
                subject: Some(subject),
                level,
            } => {
                self.subject_levels.insert(subject.clone(), *level);
            }
            LogRecord::ConfigTombstone { subject: None } => self.global_level = None,
            LogRecord::ConfigTombstone {
                subject: Some(subject),
            } => {
                self.subject_levels.remove(subject);
            }
            LogRecord::IdFloor { max_id } => self.max_id = self.max_id.max(*max_id),
            LogRecord::Mode {
                subject: None,
                mode,
            } => self.global_mode = Some(*mode),
            LogRecord::Mode {
                subject: Some(subject),
                mode,
            } => {
                self.subject_modes.insert(subject.clone(), *mode);
            }
            LogRecord::ModeTombstone { subject: None } => self.global_mode = None,
            LogRecord::ModeTombstone {
                subject: Some(subject),
            } => {
                self.subject_modes.remove(subject);
            }
        }
    }

    /// The highest id ever handed out (deleted schemas included).
    pub fn max_id(&self) -> u32 {
        self.max_id
    }

    /// Ids stay unique forever (`max_id` is kept), but a schema no version
    /// points to any more is gone, as in Confluent after a permanent delete.
    fn forget_unreferenced_schemas(&mut self) {
        let referenced: std::collections::HashSet<u32> = self
            .subjects
            .values()
            .flat_map(|v| v.values().map(|e| e.id))
            .collect();
        self.schemas.retain(|id, _| referenced.contains(id));
        self.ids_by_text.retain(|_, id| referenced.contains(id));
    }

    pub fn global_mode(&self) -> Mode {
        self.global_mode.unwrap_or_default()
    }

    pub fn subject_mode(&self, subject: &str) -> Option<Mode> {
        self.subject_modes.get(subject).copied()
    }

    /// Refuses a change to `subject` while it (or the registry) is `READONLY`.
    pub fn check_writable(&self, subject: &str) -> Result<(), ApiError> {
        match self
            .subject_mode(subject)
            .unwrap_or_else(|| self.global_mode())
        {
            Mode::ReadOnly => Err(ApiError::ReadOnlyMode(subject.to_owned())),
            Mode::ReadWrite => Ok(()),
        }
    }

    pub fn global_level(&self) -> CompatibilityLevel {
        self.global_level.unwrap_or_default()
    }

    pub fn subject_level(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.subject_levels.get(subject).copied()
    }

    fn effective_level(&self, subject: &str) -> CompatibilityLevel {
        self.subject_level(subject)
            .unwrap_or_else(|| self.global_level())
    }

    fn live_versions(&self, subject: &str) -> impl Iterator<Item = (u32, VersionEntry)> + '_ {
        self.subjects
            .get(subject)
            .into_iter()
            .flat_map(|v| v.iter().map(|(n, e)| (*n, *e)))
            .filter(|(_, e)| !e.deleted)
    }

    fn versions_including_deleted(&self, subject: &str, deleted: bool) -> Vec<(u32, VersionEntry)> {
        match self.subjects.get(subject) {
            None => Vec::new(),
            Some(v) => v
                .iter()
                .map(|(n, e)| (*n, *e))
                .filter(|(_, e)| deleted || !e.deleted)
                .collect(),
        }
    }

    fn schema_text(&self, id: u32) -> String {
        self.schemas.get(&id).cloned().unwrap_or_default()
    }

    fn subject_version(&self, subject: &str, version: u32, entry: VersionEntry) -> SubjectVersion {
        SubjectVersion {
            subject: subject.to_owned(),
            version,
            id: entry.id,
            schema: self.schema_text(entry.id),
        }
    }

    /// Subjects with at least one version (soft-deleted ones too when `deleted`).
    pub fn subjects(&self, deleted: bool) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(_, v)| deleted || v.values().any(|e| !e.deleted))
            .map(|(s, _)| s.clone())
            .collect()
    }

    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<u32>, ApiError> {
        let versions: Vec<u32> = self
            .versions_including_deleted(subject, deleted)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        if versions.is_empty() {
            return Err(ApiError::SubjectNotFound(subject.to_owned()));
        }
        Ok(versions)
    }

    pub fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
        deleted: bool,
    ) -> Result<SubjectVersion, ApiError> {
        let versions = self.versions_including_deleted(subject, deleted);
        if versions.is_empty() {
            return Err(ApiError::SubjectNotFound(subject.to_owned()));
        }
        let found = match spec {
            VersionSpec::Latest => versions.last().copied(),
            VersionSpec::Number(n) => versions.iter().find(|(v, _)| *v == n).copied(),
        };
        match found {
            Some((version, entry)) => Ok(self.subject_version(subject, version, entry)),
            None => Err(ApiError::VersionNotFound(match spec {
                VersionSpec::Latest => "latest".into(),
                VersionSpec::Number(n) => n.to_string(),
            })),
        }
    }

    pub fn schema_by_id(&self, id: u32) -> Result<String, ApiError> {
        self.schemas
            .get(&id)
            .cloned()
            .ok_or_else(|| ApiError::SchemaNotFound(format!("Schema {id} not found")))
    }

    /// `POST /subjects/{s}`: is this schema registered under the subject?
    pub fn lookup(
        &self,
        subject: &str,
        schema: &ValidSchema,
        deleted: bool,
    ) -> Result<SubjectVersion, ApiError> {
        let versions = self.versions_including_deleted(subject, deleted);
        if versions.is_empty() {
            return Err(ApiError::SubjectNotFound(subject.to_owned()));
        }
        let id = self.ids_by_text.get(&schema.text).copied();
        versions
            .into_iter()
            .rev()
            .find(|(_, e)| Some(e.id) == id)
            .map(|(version, entry)| self.subject_version(subject, version, entry))
            .ok_or_else(|| ApiError::SchemaNotFound("Schema not found".into()))
    }

    /// Why `schema` may not become the next version of `subject` (empty: it may).
    /// With `against`, checks that one version instead of what the level picks.
    pub fn violations(
        &self,
        subject: &str,
        schema: &ValidSchema,
        against: Option<VersionSpec>,
    ) -> Result<Vec<String>, ApiError> {
        let level = self.effective_level(subject);
        let live: Vec<(u32, VersionEntry)> = self.live_versions(subject).collect();
        let picked: Vec<(u32, VersionEntry)> = match against {
            Some(spec) => {
                let v = self.version(subject, spec, false)?;
                vec![(
                    v.version,
                    VersionEntry {
                        id: v.id,
                        deleted: false,
                    },
                )]
            }
            None if level.is_transitive() => live,
            None => live.last().copied().into_iter().collect(),
        };
        let mut parsed = Vec::new();
        for (version, entry) in picked {
            let text = self.schema_text(entry.id);
            let old = Schema::parse_str(&text).map_err(|e| {
                ApiError::Store(format!("stored schema {} no longer parses: {e}", entry.id))
            })?;
            parsed.push((version, old));
        }
        let existing: Vec<(u32, &Schema)> = parsed.iter().map(|(v, s)| (*v, s)).collect();
        Ok(level.violations(&schema.parsed, &existing))
    }

    /// `POST /subjects/{s}/versions`: the id, and the record to write if the
    /// schema is new to the subject.
    pub fn register(
        &self,
        subject: &str,
        schema: &ValidSchema,
    ) -> Result<(u32, Option<LogRecord>), ApiError> {
        let known_id = self.ids_by_text.get(&schema.text).copied();
        if let Some(id) = known_id
            && self.live_versions(subject).any(|(_, e)| e.id == id)
        {
            return Ok((id, None));
        }
        let details = self.violations(subject, schema, None)?;
        if !details.is_empty() {
            return Err(ApiError::Incompatible {
                subject: subject.to_owned(),
                details,
            });
        }
        let id = known_id.unwrap_or(self.max_id + 1);
        let version = self
            .subjects
            .get(subject)
            .and_then(|v| v.keys().last())
            .map_or(1, |n| n + 1);
        let record = SchemaRecord {
            subject: subject.to_owned(),
            version,
            id,
            schema: schema.text.clone(),
            deleted: false,
        };
        Ok((id, Some(LogRecord::Schema(record))))
    }

    /// `DELETE /subjects/{s}`: the versions deleted and the records that do it.
    pub fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<(Vec<u32>, Vec<LogRecord>), ApiError> {
        let all = self.versions_including_deleted(subject, true);
        if all.is_empty() {
            return Err(ApiError::SubjectNotFound(subject.to_owned()));
        }
        let any_live = all.iter().any(|(_, e)| !e.deleted);
        match (permanent, any_live) {
            (false, false) => Err(ApiError::SubjectSoftDeleted(subject.to_owned())),
            (true, true) => Err(ApiError::SubjectNotSoftDeleted(subject.to_owned())),
            (false, true) => {
                let live: Vec<(u32, VersionEntry)> =
                    all.into_iter().filter(|(_, e)| !e.deleted).collect();
                let records = live
                    .iter()
                    .map(|(v, e)| self.soft_delete_record(subject, *v, *e))
                    .collect();
                Ok((live.iter().map(|(v, _)| *v).collect(), records))
            }
            (true, false) => {
                let records = all
                    .iter()
                    .map(|(v, _)| LogRecord::SchemaTombstone {
                        subject: subject.to_owned(),
                        version: *v,
                    })
                    .collect();
                Ok((all.iter().map(|(v, _)| *v).collect(), records))
            }
        }
    }

    fn soft_delete_record(&self, subject: &str, version: u32, entry: VersionEntry) -> LogRecord {
        LogRecord::Schema(SchemaRecord {
            subject: subject.to_owned(),
            version,
            id: entry.id,
            schema: self.schema_text(entry.id),
            deleted: true,
        })
    }

    /// `DELETE /subjects/{s}/versions/{v}`.
    pub fn delete_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<(u32, LogRecord), ApiError> {
        if self.versions_including_deleted(subject, true).is_empty() {
            return Err(ApiError::SubjectNotFound(subject.to_owned()));
        }
        // `latest` means the latest live version; a number may name a soft-deleted one.
        let (version, entry) = match spec {
            VersionSpec::Latest => self
                .live_versions(subject)
                .last()
                .ok_or_else(|| ApiError::VersionNotFound("latest".into()))?,
            VersionSpec::Number(n) => self
                .versions_including_deleted(subject, true)
                .into_iter()
                .find(|(v, _)| *v == n)
                .ok_or_else(|| ApiError::VersionNotFound(n.to_string()))?,
        };
        let subject_owned = subject.to_owned();
        match (permanent, entry.deleted) {
            (false, true) => Err(ApiError::VersionSoftDeleted {
                subject: subject_owned,
                version,
            }),
            (true, false) => Err(ApiError::VersionNotSoftDeleted {
                subject: subject_owned,
                version,
            }),
            (false, false) => Ok((version, self.soft_delete_record(subject, version, entry))),
            (true, true) => Ok((
                version,
                LogRecord::SchemaTombstone {
                    subject: subject_owned,
                    version,
                },
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(fields: &str) -> ValidSchema {
        ValidSchema::parse(&format!(
            r#"{{"type":"record","name":"R","fields":[{fields}]}}"#
        ))
        .unwrap()
    }

    fn register(state: &mut State, subject: &str, schema: &ValidSchema) -> u32 {
        let (id, record) = state.register(subject, schema).unwrap();
        if let Some(r) = record {
            state.apply(&r);
        }
        id
    }

    #[test]
    fn versions_accept_latest_minus_one_and_positive_ints_only() {
        assert_eq!(VersionSpec::parse("latest").unwrap(), VersionSpec::Latest);
        assert_eq!(VersionSpec::parse("-1").unwrap(), VersionSpec::Latest);
        assert_eq!(VersionSpec::parse("3").unwrap(), VersionSpec::Number(3));
        for bad in ["0", "-2", "abc", "2147483648", ""] {
            assert!(
                matches!(VersionSpec::parse(bad), Err(ApiError::InvalidVersion(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn whitespace_does_not_make_a_new_schema_but_a_default_does() {
        let mut state = State::default();
        let a = register(&mut state, "s", &record(r#"{"name":"a","type":"string"}"#));
        let again = ValidSchema::parse(
            r#"{ "type": "record", "name": "R", "fields": [ {"name": "a", "type": "string"} ] }"#,
        )
        .unwrap();
        assert_eq!(register(&mut state, "s", &again), a);
        assert_eq!(state.versions("s", false).unwrap(), vec![1]);
        let b = register(
            &mut state,
            "s",
            &record(r#"{"name":"a","type":"string","default":"x"}"#),
        );
        assert_ne!(a, b);
    }

    #[test]
    fn permanent_delete_frees_nothing_but_forgets_the_schema() {
        let mut state = State::default();
        let id = register(&mut state, "s", &record(r#"{"name":"a","type":"string"}"#));
        let (_, soft) = state.delete_subject("s", false).unwrap();
        soft.iter().for_each(|r| state.apply(r));
        assert!(
            state.schema_by_id(id).is_ok(),
            "soft-deleted schemas still resolve by id"
        );
        let (_, hard) = state.delete_subject("s", true).unwrap();
        hard.iter().for_each(|r| state.apply(r));
        assert!(state.schema_by_id(id).is_err());
        let next = register(&mut state, "t", &record(r#"{"name":"b","type":"string"}"#));
        assert!(next > id, "ids are never reused");
    }
}
