//! The registry: state in memory, changes through the store.
//!
//! Reads take a shared lock on the state. Writes are serialized by one async
//! mutex: plan the change against the state, write it to the store and wait
//! for the broker's acknowledgement, then apply it. A change the broker did
//! not take is never visible, so an answer never promises what a restart
//! would lose.

use crate::compatibility::CompatibilityLevel;
use crate::error::ApiError;
use crate::records::{LogRecord, Mode};
use crate::state::{State, ValidSchema, VersionSpec};
use crate::store::Store;
use std::sync::{RwLock, RwLockReadGuard};

#[derive(Debug)]
pub struct Registry {
    state: RwLock<State>,
    writer: tokio::sync::Mutex<()>,
    store: Store,
    /// API requests served, for `GET /metrics` (health and metrics excluded).
    pub requests: std::sync::atomic::AtomicU64,
}

impl Registry {
    /// A registry holding what `replayed` records describe.
    pub fn new(store: Store, replayed: &[LogRecord]) -> Self {
        let mut state = State::default();
        for record in replayed {
            state.apply(record);
        }
        Self {
            state: RwLock::new(state),
            writer: tokio::sync::Mutex::new(()),
            store,
            requests: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Shared read access. A panic while holding the lock cannot leave the
    /// state half-changed (changes are single `apply` calls), so poisoning is ignored.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies what was written since this instance last looked (a write
    /// whose acknowledgement was lost included), so a change is planned on
    /// the whole state; refused once another instance claimed the topic.
    async fn catch_up(&self) -> Result<(), ApiError> {
        let records = self.store.catch_up().await.map_err(|e| match e {
            crate::store::StoreError::Fenced(_) => ApiError::Fenced(e.to_string()),
            e => ApiError::Store(e.to_string()),
        })?;
        if !records.is_empty() {
            let mut state = self
                .state
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for record in &records {
                state.apply(record);
            }
        }
        Ok(())
    }

    async fn commit(&self, records: &[LogRecord]) -> Result<(), ApiError> {
        // A permanent deletion takes the floor of ids with it: compaction
        // will drop the deleted record, never the id it used.
        let floor;
        let records = if records
            .iter()
            .any(|r| matches!(r, LogRecord::SchemaTombstone { .. }))
        {
            let mut with_floor = records.to_vec();
            with_floor.push(LogRecord::IdFloor {
                max_id: self.read().max_id(),
            });
            floor = with_floor;
            &floor[..]
        } else {
            records
        };
        self.store
            .append(records)
            .await
            .map_err(|e| ApiError::Store(e.to_string()))?;
        let mut state = self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for record in records {
            state.apply(record);
        }
        Ok(())
    }

    pub async fn register(&self, subject: &str, schema: &ValidSchema) -> Result<u32, ApiError> {
        let _writing = self.writer.lock().await;
        self.catch_up().await?;
        let (id, record) = {
            let state = self.read();
            let planned = state.register(subject, schema)?;
            // Registering what is already there changes nothing: allowed.
            if planned.1.is_some() {
                state.check_writable(subject)?;
            }
            planned
        };
        if let Some(record) = record {
            self.commit(&[record]).await?;
            tracing::info!(subject, id, "registered a schema");
        }
        Ok(id)
    }

    pub async fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<u32>, ApiError> {
        let _writing = self.writer.lock().await;
        self.catch_up().await?;
        self.read().check_writable(subject)?;
        let (versions, records) = self.read().delete_subject(subject, permanent)?;
        self.commit(&records).await?;
        tracing::info!(subject, permanent, ?versions, "deleted a subject");
        Ok(versions)
    }

    pub async fn delete_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<u32, ApiError> {
        let _writing = self.writer.lock().await;
        self.catch_up().await?;
        self.read().check_writable(subject)?;
        let (version, record) = self.read().delete_version(subject, spec, permanent)?;
        self.commit(&[record]).await?;
        tracing::info!(subject, version, permanent, "deleted a schema version");
        Ok(version)
    }

    pub async fn set_level(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Result<(), ApiError> {
        let _writing = self.writer.lock().await;
        self.catch_up().await?;
        self.commit(&[LogRecord::Config {
            subject: subject.map(str::to_owned),
            level,
        }])
        .await
    }

    /// Sets the mode, globally (`subject: None`) or for a subject.
    pub async fn set_mode(&self, subject: Option<&str>, mode: Mode) -> Result<(), ApiError> {
        let _writing = self.writer.lock().await;
        self.catch_up().await?;
        self.commit(&[LogRecord::Mode {
            subject: subject.map(str::to_owned),
            mode,
        }])
        .await
    }

    /// Removes a subject's mode; returns the mode it had.
    pub async fn delete_subject_mode(&self, subject: &str) -> Result<Mode, ApiError> {
        let _writing = self.writer.lock().await;
        self.catch_up().await?;
        let mode = self
            .read()
            .subject_mode(subject)
            .ok_or_else(|| ApiError::SubjectModeNotConfigured(subject.to_owned()))?;
        self.commit(&[LogRecord::ModeTombstone {
            subject: Some(subject.to_owned()),
        }])
        .await?;
        Ok(mode)
    }

    /// Removes a subject's level; returns the level it had.
    pub async fn delete_subject_level(
        &self,
        subject: &str,
    ) -> Result<CompatibilityLevel, ApiError> {
        let _writing = self.writer.lock().await;
        self.catch_up().await?;
        let level = self
            .read()
            .subject_level(subject)
            .ok_or_else(|| ApiError::SubjectLevelNotConfigured(subject.to_owned()))?;
        self.commit(&[LogRecord::ConfigTombstone {
            subject: Some(subject.to_owned()),
        }])
        .await?;
        Ok(level)
    }
}
