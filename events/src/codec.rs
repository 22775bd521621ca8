//! Encode and decode events in the Confluent wire format.
//!
//! The format is a magic byte `0`, the schema id as a 4-byte big-endian
//! integer, then the Avro binary body. Schema lookups go through
//! `schema_registry_converter`, which caches them: after the first record of a
//! subject (encode) or schema id (decode), no registry request is made.
//!
//! Errors are typed for routing: [`DecodeError::is_transient`] tells a
//! consumer whether the record is at fault (send it to the DLQ) or the
//! registry is (wait and try again).

use crate::Event;
use crate::subject::SubjectStrategy;
use crate::verify::Plan;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use rustc_hash::FxHashMap;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::avro_common::AvroSchema;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    RawError, SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use std::error::Error as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard};
use std::time::Duration;

/// The first byte of every Confluent-framed payload.
pub const MAGIC_BYTE: u8 = 0;
/// Magic byte plus schema id.
pub const HEADER_LEN: usize = 5;

/// Whether encoding may register the event's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegistrationMode {
    /// Register the compiled-in schema on first use (the registry answers with
    /// the existing id when it is already there). Good for development.
    #[default]
    AutoRegister,
    /// Use the latest schema registered under the subject; never register.
    /// For production registries where a CI step registers schemas.
    UseLatest,
}

/// Where the registry is and how subjects are named.
#[derive(Debug, Clone)]
pub struct CodecSettings {
    /// Base URL of the registry, e.g. `http://127.0.0.1:8081`; a trailing
    /// `/` is ignored.
    pub registry_url: String,
    /// How subjects are named; topic-name by default.
    pub subject_strategy: SubjectStrategy,
    /// Whether encoding may register schemas; auto-register by default.
    pub registration: RegistrationMode,
    /// Per HTTP request to the registry.
    pub request_timeout: Duration,
    /// Basic auth user and password, for hosted registries.
    pub basic_auth: Option<(String, String)>,
    /// PEM file of the certificate authorities to trust for an `https://`
    /// registry besides the system's (a private CA).
    pub ca_file: Option<PathBuf>,
}

impl CodecSettings {
    /// Settings for the registry at `registry_url`: topic-name subjects,
    /// auto-registration, a 5 s request timeout, no credentials, the
    /// system's certificate authorities only.
    pub fn new(registry_url: impl Into<String>) -> Self {
        Self {
            registry_url: registry_url.into(),
            subject_strategy: SubjectStrategy::default(),
            registration: RegistrationMode::default(),
            request_timeout: Duration::from_secs(5),
            basic_auth: None,
            ca_file: None,
        }
    }

    /// An HTTP client for this registry: its timeout, and the CA file's
    /// certificates trusted besides the system's.
    pub fn http_client(&self) -> Result<reqwest::Client, SRCError> {
        self.http_client_builder()?
            .build()
            .map_err(|e| SRCError::non_retryable_with_cause(e, "cannot build the registry client"))
    }

    fn http_client_builder(&self) -> Result<reqwest::ClientBuilder, SRCError> {
        let mut builder = reqwest::Client::builder().timeout(self.request_timeout);
        if let Some(file) = &self.ca_file {
            let pem = std::fs::read(file).map_err(|e| {
                SRCError::non_retryable_with_cause(
                    e,
                    &format!("cannot read the registry CA file {}", file.display()),
                )
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                SRCError::non_retryable_with_cause(
                    e,
                    &format!("{} holds no PEM certificate", file.display()),
                )
            })?;
            if certificates.is_empty() {
                return Err(SRCError::non_retryable_without_cause(&format!(
                    "{} holds no PEM certificate",
                    file.display()
                )));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        Ok(builder)
    }
}

/// A subject and the two ways to name it to the converter: `resolving`
/// (carries the schema text when auto-registering) for the first lookup, and
/// `cached` (no schema, same cache key) for every record after, so no schema
/// text is copied per record.
#[derive(Debug)]
struct SubjectAndStrategy {
    /// The event type's full name.
    event: &'static str,
    subject: String,
    resolving: SubjectNameStrategy,
    cached: SubjectNameStrategy,
    warm: AtomicBool,
    /// Set once resolved, when the subject's schema is the event's own (same
    /// canonical form): its id and a writer built once, so encoding writes
    /// straight into the framed buffer instead of building a writer per record.
    direct: OnceLock<Option<DirectWriter>>,
    /// The longest body written so far: the next buffer starts that large.
    size_hint: AtomicUsize,
}

struct DirectWriter {
    id: u32,
    writer: GenericDatumWriter<'static>,
}

impl std::fmt::Debug for DirectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectWriter")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// (event full name, how records of one schema id are read as it)
type EventReading = (&'static str, Arc<Reading>);

/// What a codec knows of one writer schema id for one event type.
enum Reading {
    /// The writer schema is the event's own: check, then read straight into the type.
    Own(OwnReader),
    /// Another schema: go through the converter and Avro schema resolution.
    Resolve,
}

/// Caches are looked up once per record, by the topic (encode) or schema id
/// (decode) first and the event type second, so the hot path hashes one
/// short key and allocates nothing.
pub struct EventCodec {
    registry: SrSettings,
    encoder: AvroEncoder,
    decoder: AvroDecoder,
    /// Subjects by topic, then event type, built once: they carry the schema
    /// text, which is not worth copying per record.
    strategies: RwLock<FxHashMap<String, Vec<Arc<SubjectAndStrategy>>>>,
    /// By writer schema id, then event type: how to read it.
    readings: RwLock<FxHashMap<u32, Vec<EventReading>>>,
    /// Body checks of writer schemas read through the converter, by id.
    plans: RwLock<FxHashMap<u32, Arc<Plan>>>,
    settings: CodecSettings,
}

/// Reads records written with an event's own schema straight into its type.
struct OwnReader {
    plan: Plan,
    reader: GenericDatumReader<'static>,
}

impl OwnReader {
    /// Checks the body (exactly one datum), then reads it into `E`.
    fn read<E: Event>(&self, schema_id: u32, bytes: &[u8]) -> Result<Decoded<E>, DecodeError> {
        let malformed = |reason: String| DecodeError::MalformedBody { schema_id, reason };
        let mut body = &bytes[HEADER_LEN..];
        self.plan.check(body).map_err(malformed)?;
        let event = self
            .reader
            .read_deser::<E>(&mut body)
            .map_err(|e| malformed(e.to_string()))?;
        Ok(Decoded { schema_id, event })
    }
}

impl std::fmt::Debug for EventCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventCodec")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A decoded event with the id of the schema it was written with.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<E> {
    /// Registry id of the writer schema, from the payload's header.
    pub schema_id: u32,
    /// The event, read into its type (through Avro schema resolution when
    /// it was written with another version of the schema).
    pub event: E,
}

/// A payload decoded with its writer schema, whatever type it is.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedValue {
    /// Registry id of the writer schema, from the payload's header.
    pub schema_id: u32,
    /// Full name of the writer schema, when it is a named type.
    pub full_name: Option<String>,
    /// The body as a generic Avro value of the writer schema.
    pub value: Value,
}

/// Why an event could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The registry did not answer, or answered with a server error.
    #[error("schema registry unavailable while resolving subject {subject}: {reason}")]
    RegistryUnavailable {
        /// The subject being resolved.
        subject: String,
        /// What went wrong, without the converter's "retriable" suffix.
        reason: String,
        /// The converter's error.
        #[source]
        source: SRCError,
    },
    /// The registry answered and refused: incompatible or invalid schema, unknown subject.
    #[error("schema registry refused subject {subject}: {reason}")]
    Rejected {
        /// The subject being resolved.
        subject: String,
        /// What the registry answered.
        reason: String,
        /// The converter's error.
        #[source]
        source: SRCError,
    },
    /// The event does not fit the registered schema.
    #[error("event does not fit the schema of subject {subject}: {reason}")]
    Serialize {
        /// The subject whose schema the event was written with.
        subject: String,
        /// Why the event does not fit.
        reason: String,
        /// The converter's error.
        #[source]
        source: SRCError,
    },
}

impl EncodeError {
    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RegistryUnavailable { .. })
    }
}

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The record has no value (a tombstone) where an event was expected.
    #[error("record has no value where an Avro event was expected")]
    NoPayload,
    /// The payload does not start with the Confluent magic byte.
    #[error("payload starts with byte {found:#04x}, not the Confluent magic byte 0x00")]
    BadMagicByte {
        /// The payload's first byte.
        found: u8,
    },
    /// Shorter than the 5-byte Confluent header.
    #[error("payload is {len} bytes long, shorter than the 5-byte Confluent header")]
    Truncated {
        /// The payload's length in bytes.
        len: usize,
    },
    /// The registry does not know the schema id.
    #[error("schema id {schema_id} is not known to the schema registry")]
    UnknownSchemaId {
        /// The schema id in the payload's header.
        schema_id: u32,
    },
    /// The registry could not be asked for the schema; not the record's fault.
    #[error("schema registry unavailable while fetching schema id {schema_id}: {reason}")]
    RegistryUnavailable {
        /// The schema id in the payload's header.
        schema_id: u32,
        /// What went wrong, without the converter's "retriable" suffix.
        reason: String,
        /// The converter's error.
        #[source]
        source: SRCError,
    },
    /// The registry returned a schema that cannot be used.
    #[error("schema id {schema_id} cannot be used: {reason}")]
    UnusableSchema {
        /// The schema id in the payload's header.
        schema_id: u32,
        /// Why the schema cannot be used.
        reason: String,
    },
    /// The Avro body does not decode with its writer schema (truncated or corrupt).
    #[error("Avro body does not decode with schema id {schema_id}: {reason}")]
    MalformedBody {
        /// The writer schema's id.
        schema_id: u32,
        /// What the check or the Avro reader found.
        reason: String,
    },
    /// A valid record, but of another event type.
    #[error("expected a {expected} event but schema id {schema_id} is {found}")]
    WrongEventType {
        /// The writer schema's id.
        schema_id: u32,
        /// Full name of the event type asked for.
        expected: &'static str,
        /// Full name of the writer schema, or "an unnamed schema".
        found: String,
    },
    /// Written with a schema of this type that the compiled-in schema cannot read.
    #[error("schema id {schema_id} cannot be read as {expected}: {reason}")]
    Incompatible {
        /// The writer schema's id.
        schema_id: u32,
        /// Full name of the event type asked for.
        expected: &'static str,
        /// Why Avro schema resolution failed.
        reason: String,
    },
}

impl DecodeError {
    /// True when the record is not at fault and trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RegistryUnavailable { .. })
    }

    /// A stable name for grouping failures (DLQ `kafkit.error.class`).
    pub fn class(&self) -> &'static str {
        match self {
            Self::NoPayload => "no-payload",
            Self::BadMagicByte { .. } => "bad-magic-byte",
            Self::Truncated { .. } => "truncated-header",
            Self::UnknownSchemaId { .. } => "unknown-schema-id",
            Self::RegistryUnavailable { .. } => "registry-unavailable",
            Self::UnusableSchema { .. } => "unusable-schema",
            Self::MalformedBody { .. } => "malformed-body",
            Self::WrongEventType { .. } => "wrong-event-type",
            Self::Incompatible { .. } => "incompatible-schema",
        }
    }
}

/// What the registry's answer, if any, says about an error.
enum RegistryAnswer {
    /// No answer or a server error: try again later.
    Unavailable,
    /// A definite client error with Confluent's error code.
    Refused { error_code: u32 },
    /// Not an HTTP error: the answer came but could not be used.
    Unusable,
}

fn registry_answer(error: &SRCError) -> RegistryAnswer {
    if error.retriable {
        return RegistryAnswer::Unavailable;
    }
    // Confluent's error code when the body had one, else the HTTP status.
    let from_body = error
        .source()
        .and_then(|s| s.downcast_ref::<RawError>())
        .map(|raw| raw.error_code)
        .filter(|code| *code != 0);
    match from_body.or_else(|| http_status(&error.error).map(u32::from)) {
        None => RegistryAnswer::Unusable,
        Some(code) if code >= 50000 || (500..600).contains(&code) || code == 408 || code == 429 => {
            RegistryAnswer::Unavailable
        }
        Some(error_code) => RegistryAnswer::Refused { error_code },
    }
}

/// `schema_registry_converter` reports "... failed with status 404 Not Found".
fn http_status(message: &str) -> Option<u16> {
    let rest = message.split("with status ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The message of an error without the converter's "it's retriable" suffix.
fn reason(error: &SRCError) -> String {
    match &error.cause {
        Some(cause) => format!("{}: {cause}", error.error),
        None => error.error.clone(),
    }
}

/// Sorts a failed schema lookup by id: only a definite "no such id" is the
/// record's fault; no answer, a server error or a refused client is not.
fn schema_lookup_failure(schema_id: u32, source: SRCError) -> DecodeError {
    let reason = reason(&source);
    match registry_answer(&source) {
        RegistryAnswer::Refused {
            error_code: 40403 | 404,
        } => DecodeError::UnknownSchemaId { schema_id },
        RegistryAnswer::Unusable => DecodeError::UnusableSchema { schema_id, reason },
        RegistryAnswer::Refused { .. } | RegistryAnswer::Unavailable => {
            DecodeError::RegistryUnavailable {
                schema_id,
                reason,
                source,
            }
        }
    }
}

/// Sorts a failed subject resolution: the registry refusing the schema itself
/// (unknown subject, incompatible, invalid) is final; anything else,
/// including 401/403 from a misconfigured client, is not the event's fault.
fn schema_resolution_failure(subject: String, source: SRCError) -> EncodeError {
    let reason = reason(&source);
    match registry_answer(&source) {
        RegistryAnswer::Refused {
            error_code: 404 | 409 | 422 | 40401..=40499 | 42200..=42299,
        }
        | RegistryAnswer::Unusable => EncodeError::Rejected {
            subject,
            reason,
            source,
        },
        RegistryAnswer::Refused { .. } | RegistryAnswer::Unavailable => {
            EncodeError::RegistryUnavailable {
                subject,
                reason,
                source,
            }
        }
    }
}

impl EventCodec {
    /// A codec talking to the registry in `settings`. Makes no request yet.
    pub fn new(settings: CodecSettings) -> Result<Self, SRCError> {
        let mut builder =
            SrSettings::new_builder(settings.registry_url.trim_end_matches('/').to_owned());
        builder.set_timeout(settings.request_timeout);
        if let Some((user, password)) = &settings.basic_auth {
            builder.set_basic_authorization(user, Some(password));
        }
        let sr = builder.build_with(settings.http_client_builder()?)?;
        Ok(Self {
            registry: sr.clone(),
            encoder: AvroEncoder::new(sr.clone()),
            decoder: AvroDecoder::new(sr),
            strategies: RwLock::default(),
            readings: RwLock::default(),
            plans: RwLock::default(),
            settings,
        })
    }

    /// The settings the codec was made with.
    pub fn settings(&self) -> &CodecSettings {
        &self.settings
    }

    /// Readiness: the registry answers `GET /subjects` with these settings
    /// (URL, credentials, timeout).
    pub async fn check_registry(&self) -> Result<(), String> {
        schema_registry_converter::async_impl::schema_registry::get_all_subjects(&self.registry)
            .await
            .map(|_| ())
            .map_err(|e| reason(&e))
    }

    /// The subject `E` is registered under when produced to `topic`.
    pub fn subject_for<E: Event>(&self, topic: &str) -> String {
        self.settings
            .subject_strategy
            .subject(topic, E::FULL_NAME, false)
    }

    fn strategy_for<E: Event>(&self, topic: &str) -> SubjectNameStrategy {
        self.strategy_with::<E>(
            topic,
            self.settings.registration == RegistrationMode::AutoRegister,
        )
    }

    fn strategy_with<E: Event>(&self, topic: &str, auto: bool) -> SubjectNameStrategy {
        let supplied = || {
            SuppliedSchema::new(
                Some(E::FULL_NAME.to_owned()),
                SchemaType::Avro,
                E::SCHEMA_JSON.to_owned(),
            )
        };
        match (self.settings.subject_strategy, auto) {
            (SubjectStrategy::TopicName, true) => SubjectNameStrategy::TopicNameStrategyWithSchema(
                topic.to_owned(),
                false,
                supplied(),
            ),
            (SubjectStrategy::TopicName, false) => {
                SubjectNameStrategy::TopicNameStrategy(topic.to_owned(), false)
            }
            (SubjectStrategy::RecordName, true) => {
                SubjectNameStrategy::RecordNameStrategyWithSchema(supplied())
            }
            (SubjectStrategy::RecordName, false) => {
                SubjectNameStrategy::RecordNameStrategy(E::FULL_NAME.to_owned())
            }
            (SubjectStrategy::TopicRecordName, true) => {
                SubjectNameStrategy::TopicRecordNameStrategyWithSchema(topic.to_owned(), supplied())
            }
            (SubjectStrategy::TopicRecordName, false) => {
                SubjectNameStrategy::TopicRecordNameStrategy(
                    topic.to_owned(),
                    E::FULL_NAME.to_owned(),
                )
            }
        }
    }

    /// Resolves (and in [`RegistrationMode::AutoRegister`], registers) the
    /// schema of `E` on `topic` and returns its id. Cached after the first call.
    pub async fn schema_id<E: Event>(&self, topic: &str) -> Result<u32, EncodeError> {
        self.resolve::<E>(&self.cached_strategy::<E>(topic)).await
    }

    /// Looks the subject up (registering in auto-register mode) the first
    /// time; afterwards the converter answers from its cache.
    async fn resolve<E: Event>(&self, entry: &SubjectAndStrategy) -> Result<u32, EncodeError> {
        let strategy = if entry.warm.load(Ordering::Acquire) {
            &entry.cached
        } else {
            &entry.resolving
        };
        let schema = self
            .encoder
            .get_schema_and_id(&entry.subject, strategy.clone())
            .await
            .map_err(|source| {
                self.encoder.remove_errors_from_cache();
                schema_resolution_failure(entry.subject.clone(), source)
            })?;
        entry.direct.get_or_init(|| {
            let own = schema.parsed.canonical_form() == E::schema().canonical_form();
            own.then(|| GenericDatumWriter::builder(E::schema()).build().ok())
                .flatten()
                .map(|writer| DirectWriter {
                    id: schema.id,
                    writer,
                })
        });
        entry.warm.store(true, Ordering::Release);
        Ok(schema.id)
    }

    /// Encodes `event` for `topic` in the Confluent wire format.
    pub async fn encode<E: Event>(&self, topic: &str, event: &E) -> Result<Vec<u8>, EncodeError> {
        if let Some(encoded) = self.encode_warm(topic, event) {
            return encoded;
        }
        let entry = self.cached_strategy::<E>(topic);
        // Resolve first so registry errors and serialization errors stay apart.
        if !entry.warm.load(Ordering::Acquire) {
            self.resolve::<E>(&entry).await?;
        }
        if let Some(Some(direct)) = entry.direct.get() {
            return write_direct(&entry, direct, event);
        }
        self.encoder
            .encode_struct(event, &entry.cached)
            .await
            .map_err(|source| EncodeError::Serialize {
                subject: entry.subject.clone(),
                reason: reason(&source),
                source,
            })
    }

    /// The hot path: a subject already resolved to the event's own schema
    /// is written without awaiting anything. `None`: take the long way.
    fn encode_warm<E: Event>(
        &self,
        topic: &str,
        event: &E,
    ) -> Option<Result<Vec<u8>, EncodeError>> {
        let strategies = read(&self.strategies);
        let entry = strategies
            .get(topic)?
            .iter()
            .find(|entry| entry.event == E::FULL_NAME)?;
        if !entry.warm.load(Ordering::Acquire) {
            return None;
        }
        let direct = entry.direct.get()?.as_ref()?;
        Some(write_direct(entry, direct, event))
    }

    fn cached_strategy<E: Event>(&self, topic: &str) -> Arc<SubjectAndStrategy> {
        let find = |entries: &Vec<Arc<SubjectAndStrategy>>| {
            entries
                .iter()
                .find(|entry| entry.event == E::FULL_NAME)
                .map(Arc::clone)
        };
        if let Some(found) = read(&self.strategies).get(topic).and_then(find) {
            return found;
        }
        let built = Arc::new(SubjectAndStrategy {
            event: E::FULL_NAME,
            subject: self.subject_for::<E>(topic),
            resolving: self.strategy_for::<E>(topic),
            cached: self.strategy_with::<E>(topic, false),
            warm: AtomicBool::new(false),
            direct: OnceLock::new(),
            size_hint: AtomicUsize::new(64),
        });
        let mut strategies = self.strategies.write().unwrap_or_else(|p| p.into_inner());
        let entries = strategies.entry(topic.to_owned()).or_default();
        match find(entries) {
            Some(found) => found,
            None => {
                entries.push(Arc::clone(&built));
                built
            }
        }
    }

    /// Decodes a payload with its writer schema, whatever type it is.
    pub async fn decode_value(&self, payload: Option<&[u8]>) -> Result<DecodedValue, DecodeError> {
        let bytes = payload.ok_or(DecodeError::NoPayload)?;
        let (schema_id, writer) = self.writer_schema(bytes).await?;
        self.decode_checked(bytes, schema_id, &writer).await
    }

    /// The schema id in the header of `bytes` and its schema (cached after
    /// the first record that names it).
    async fn writer_schema(&self, bytes: &[u8]) -> Result<(u32, Arc<AvroSchema>), DecodeError> {
        let schema_id = split_header(bytes)?;
        match self.decoder.get_schema(schema_id).await {
            Ok(writer) => Ok((schema_id, writer)),
            Err(source) => {
                // The converter caches some failures; a later record must ask again.
                self.decoder.remove_errors_from_cache();
                Err(schema_lookup_failure(schema_id, source))
            }
        }
    }

    /// Checks the body against the writer schema (exactly one datum, every
    /// byte used), then decodes it to a `Value`.
    async fn decode_checked(
        &self,
        bytes: &[u8],
        schema_id: u32,
        writer: &AvroSchema,
    ) -> Result<DecodedValue, DecodeError> {
        let malformed = |reason: String| DecodeError::MalformedBody { schema_id, reason };
        let known = read(&self.plans).get(&schema_id).map(Arc::clone);
        let plan = match known {
            Some(plan) => plan,
            None => {
                let plan = Arc::new(Plan::compile(&writer.parsed).map_err(malformed)?);
                self.plans
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(schema_id, Arc::clone(&plan));
                plan
            }
        };
        plan.check(&bytes[HEADER_LEN..]).map_err(malformed)?;
        // The schema is cached now, so any error left is the body's.
        let decoded = self
            .decoder
            .decode(Some(bytes))
            .await
            .map_err(|e| malformed(reason(&e)))?;
        Ok(DecodedValue {
            schema_id,
            full_name: decoded.name.map(|n| n.fullname(None)),
            value: decoded.value,
        })
    }

    /// The hot path: records of a schema id already known to be `E`'s own
    /// schema are checked and read without awaiting anything. `None`: not
    /// known yet, or read through schema resolution.
    fn decode_known<E: Event>(
        &self,
        schema_id: u32,
        bytes: &[u8],
    ) -> Option<Result<Decoded<E>, DecodeError>> {
        let readings = read(&self.readings);
        let (_, reading) = readings
            .get(&schema_id)?
            .iter()
            .find(|(event, _)| *event == E::FULL_NAME)?;
        match &**reading {
            Reading::Own(own) => Some(own.read(schema_id, bytes)),
            Reading::Resolve => None,
        }
    }

    /// How records of `schema_id` are read as `E`, once known.
    fn known_reading<E: Event>(&self, schema_id: u32) -> Option<Arc<Reading>> {
        read(&self.readings)
            .get(&schema_id)?
            .iter()
            .find(|(event, _)| *event == E::FULL_NAME)
            .map(|(_, reading)| Arc::clone(reading))
    }

    /// Decides once per schema id how records are read as `E`: straight
    /// into the type when `writer` is `E`'s own schema (same canonical form,
    /// so the same bytes), else through schema resolution.
    fn learn_reading<E: Event>(&self, schema_id: u32, writer: &AvroSchema) -> Arc<Reading> {
        let own = (writer.parsed.canonical_form() == E::schema().canonical_form())
            .then(|| {
                Some(OwnReader {
                    plan: Plan::compile(E::schema()).ok()?,
                    reader: GenericDatumReader::builder(E::schema()).build().ok()?,
                })
            })
            .flatten();
        let reading = Arc::new(own.map_or(Reading::Resolve, Reading::Own));
        let mut readings = self.readings.write().unwrap_or_else(|p| p.into_inner());
        let entries = readings.entry(schema_id).or_default();
        if let Some((_, known)) = entries.iter().find(|(event, _)| *event == E::FULL_NAME) {
            return Arc::clone(known);
        }
        entries.push((E::FULL_NAME, Arc::clone(&reading)));
        reading
    }

    /// Decodes a payload into the event type `E`. A record written with
    /// `E`'s own schema is checked and read straight into `E`; one written
    /// with an older or newer schema goes through Avro schema resolution.
    /// Either way the body must be exactly one datum of its writer schema.
    pub async fn decode<E: Event>(
        &self,
        payload: Option<&[u8]>,
    ) -> Result<Decoded<E>, DecodeError> {
        let bytes = payload.ok_or(DecodeError::NoPayload)?;
        let schema_id = split_header(bytes)?;
        if let Some(decoded) = self.decode_known::<E>(schema_id, bytes) {
            return decoded;
        }
        let (_, writer) = self.writer_schema(bytes).await?;
        let reading = match self.known_reading::<E>(schema_id) {
            Some(reading) => reading,
            None => self.learn_reading::<E>(schema_id, &writer),
        };
        if let Reading::Own(own) = &*reading {
            return own.read(schema_id, bytes);
        }
        let DecodedValue {
            schema_id,
            full_name,
            value,
        } = self.decode_checked(bytes, schema_id, &writer).await?;
        let found = full_name.unwrap_or_else(|| "an unnamed schema".to_owned());
        if found != E::FULL_NAME {
            return Err(DecodeError::WrongEventType {
                schema_id,
                expected: E::FULL_NAME,
                found,
            });
        }
        let incompatible = |reason: String| DecodeError::Incompatible {
            schema_id,
            expected: E::FULL_NAME,
            reason,
        };
        let resolved = value
            .resolve(E::schema())
            .map_err(|e| incompatible(e.to_string()))?;
        let event =
            apache_avro::from_value::<E>(&resolved).map_err(|e| incompatible(e.to_string()))?;
        Ok(Decoded { schema_id, event })
    }
}

/// A read lock that a panic elsewhere does not poison for good.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

/// What the converter does (apache-avro's schema-aware serializer), with a
/// writer built once and straight into the framed buffer, sized by the
/// longest body written so far.
fn write_direct<E: Event>(
    entry: &SubjectAndStrategy,
    direct: &DirectWriter,
    event: &E,
) -> Result<Vec<u8>, EncodeError> {
    let mut bytes = Vec::with_capacity(entry.size_hint.load(Ordering::Relaxed));
    bytes.push(MAGIC_BYTE);
    bytes.extend_from_slice(&direct.id.to_be_bytes());
    match direct.writer.write_ser(&mut bytes, event) {
        Ok(_) => {
            if bytes.len() > entry.size_hint.load(Ordering::Relaxed) {
                entry.size_hint.fetch_max(bytes.len(), Ordering::Relaxed);
            }
            Ok(bytes)
        }
        Err(e) => Err(EncodeError::Serialize {
            subject: entry.subject.clone(),
            reason: e.to_string(),
            source: SRCError::non_retryable_with_cause(e, "Could not get Avro bytes"),
        }),
    }
}

/// Checks the Confluent header and returns the schema id.
pub fn split_header(bytes: &[u8]) -> Result<u32, DecodeError> {
    match bytes {
        [MAGIC_BYTE, a, b, c, d, ..] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        [first, ..] if *first != MAGIC_BYTE => Err(DecodeError::BadMagicByte { found: *first }),
        _ => Err(DecodeError::Truncated { len: bytes.len() }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn header_checks_magic_byte_then_length() {
        assert_eq!(split_header(&[0, 0, 0, 1, 44, 2]).unwrap(), 300);
        assert!(matches!(
            split_header(&[7, 0, 0, 0, 1]),
            Err(DecodeError::BadMagicByte { found: 7 })
        ));
        assert!(matches!(
            split_header(&[0, 0, 1]),
            Err(DecodeError::Truncated { len: 3 })
        ));
        assert!(matches!(
            split_header(&[]),
            Err(DecodeError::Truncated { len: 0 })
        ));
    }

    #[test]
    fn http_status_is_read_from_the_converter_message() {
        assert_eq!(
            http_status("HTTP request to schema registry failed with status 404 Not Found"),
            Some(404)
        );
        assert_eq!(http_status("Could not get id from response"), None);
    }

    /// An error as the converter builds it from a registry's HTTP answer.
    fn answered(status: &str, error_code: u32) -> SRCError {
        let raw: RawError =
            serde_json::from_value(serde_json::json!({"error_code": error_code, "message": "m"}))
                .unwrap();
        SRCError::non_retryable_with_cause(
            raw,
            &format!("HTTP request to schema registry failed with status {status}"),
        )
    }

    #[test]
    fn registry_answers_are_sorted_into_record_faults_and_outages() {
        let unknown = schema_lookup_failure(7, answered("404 Not Found", 40403));
        assert!(matches!(
            unknown,
            DecodeError::UnknownSchemaId { schema_id: 7 }
        ));
        for (status, code) in [
            ("401 Unauthorized", 40101),
            ("403 Forbidden", 40301),
            ("500 Internal Server Error", 50001),
        ] {
            assert!(
                schema_lookup_failure(7, answered(status, code)).is_transient(),
                "{status}"
            );
            assert!(
                schema_resolution_failure("s".into(), answered(status, code)).is_transient(),
                "{status}"
            );
        }
        let unreachable = SRCError::retryable_with_cause(
            "connection refused",
            "http call to schema registry failed",
        );
        assert!(schema_lookup_failure(7, unreachable.clone()).is_transient());
        assert!(schema_resolution_failure("s".into(), unreachable).is_transient());
        for (status, code) in [
            ("409 Conflict", 409),
            ("422 Unprocessable Entity", 42201),
            ("404 Not Found", 40401),
        ] {
            assert!(
                !schema_resolution_failure("s".into(), answered(status, code)).is_transient(),
                "{status}"
            );
        }
        let garbled =
            SRCError::non_retryable_without_cause("Could not get raw schema from response");
        assert!(matches!(
            schema_lookup_failure(7, garbled),
            DecodeError::UnusableSchema { .. }
        ));
    }

    #[test]
    fn only_registry_outages_are_transient() {
        assert!(!DecodeError::UnknownSchemaId { schema_id: 1 }.is_transient());
        assert!(!DecodeError::BadMagicByte { found: 1 }.is_transient());
        let source = SRCError::new("http call to schema registry failed", None, true);
        let outage = DecodeError::RegistryUnavailable {
            schema_id: 1,
            reason: "down".into(),
            source,
        };
        assert!(outage.is_transient());
        assert_eq!(outage.class(), "registry-unavailable");
    }
}
