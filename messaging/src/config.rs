//! Typed Kafka client settings.
//!
//! Defaults work against one local broker; everything a deployment needs
//! (TLS, SASL) is reachable by environment variable, and any other librdkafka
//! property passes through with `-X key=value` or `KAFKA_PROPERTIES`.
//! Secrets are never printed: `Debug` redacts the SASL password.

use rdkafka::ClientConfig;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Flags and environment shared by every kafkit process that talks to Kafka.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_servers: String,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL")]
    pub security_protocol: Option<String>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[arg(long, env = "KAFKA_SASL_MECHANISM")]
    pub sasl_mechanism: Option<String>,
    /// SASL user name.
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    /// SASL password; never shown in debug output.
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub sasl_password: Option<Secret>,
    /// CA bundle to verify the brokers' certificates.
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    pub ssl_ca_location: Option<String>,
    /// Client certificate and key, for mutual TLS.
    #[arg(long, env = "KAFKA_SSL_CERTIFICATE_LOCATION")]
    pub ssl_certificate_location: Option<String>,
    /// Private key of the client certificate, for mutual TLS.
    #[arg(long, env = "KAFKA_SSL_KEY_LOCATION")]
    pub ssl_key_location: Option<String>,
    /// Extra librdkafka property as key=value; repeatable. `KAFKA_PROPERTIES`
    /// takes several, comma separated; a value may hold commas itself
    /// (`-X debug=broker,topic`, as kcat takes it).
    #[arg(short = 'X', long = "kafka-property", env = "KAFKA_PROPERTIES", value_parser = parse_properties)]
    pub properties: Vec<Properties>,
}

/// One `-X` value (or `KAFKA_PROPERTIES`): one or more `key=value` pairs.
#[derive(Clone, PartialEq, Eq)]
pub struct Properties(pub Vec<(String, String)>);

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may hold credentials: keys only.
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

impl KafkaArgs {
    /// Every pass-through property, in the order given.
    pub fn properties(&self) -> Vec<(String, String)> {
        self.properties.iter().flat_map(|p| p.0.clone()).collect()
    }
}

/// `a=1,b=2` is two properties; a piece without `=` belongs to the value
/// before it, so `debug=broker,topic` is one.
fn parse_properties(s: &str) -> Result<Properties, String> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for piece in s.split(',') {
        match piece.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                pairs.push((key.trim().to_owned(), value.trim().to_owned()));
            }
            _ => match pairs.last_mut() {
                Some((_, value)) => {
                    value.push(',');
                    value.push_str(piece.trim());
                }
                None => return Err(format!("expected key=value, got {s:?}")),
            },
        }
    }
    if pairs.is_empty() {
        return Err(format!("expected key=value, got {s:?}"));
    }
    Ok(Properties(pairs))
}

/// Where the schema registry is, and the credentials a hosted one asks
/// for: the services' and the CLI's flags and environment.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryConnection {
    /// Schema registry URL.
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub registry_url: String,
    /// HTTP basic authentication user of the registry.
    #[arg(long, env = "SCHEMA_REGISTRY_BASIC_AUTH_USER")]
    pub registry_user: Option<String>,
    /// HTTP basic authentication password of the registry.
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD",
        hide_env_values = true
    )]
    pub registry_password: Option<Secret>,
    /// PEM file of the certificate authorities to trust for an `https://`
    /// registry besides the system's (a private CA).
    #[arg(long, env = "SCHEMA_REGISTRY_SSL_CA_LOCATION")]
    pub registry_ca_file: Option<std::path::PathBuf>,
}

impl RegistryConnection {
    /// The user and password, when a user is set.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        self.registry_user.clone().map(|user| {
            let password = self
                .registry_password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default();
            (user, password)
        })
    }

    /// The codec's settings for this registry (default subject strategy).
    pub fn codec_settings(&self) -> kafkit_events::CodecSettings {
        kafkit_events::CodecSettings {
            basic_auth: self.basic_auth(),
            ca_file: self.registry_ca_file.clone(),
            ..kafkit_events::CodecSettings::new(self.registry_url.clone())
        }
    }
}

/// Flags and environment of the schema registry client, shared by the services.
#[derive(Debug, Clone, clap::Args)]
pub struct SchemaRegistryArgs {
    /// Where the registry is and its credentials.
    #[command(flatten)]
    pub connection: RegistryConnection,
    /// `topic-name`, `record-name` or `topic-record-name`.
    #[arg(long, env = "SUBJECT_NAME_STRATEGY", default_value = "topic-name")]
    pub subject_strategy: kafkit_events::SubjectStrategy,
}

impl SchemaRegistryArgs {
    /// The codec's settings: the connection's, with this subject strategy.
    pub fn codec_settings(&self) -> kafkit_events::CodecSettings {
        kafkit_events::CodecSettings {
            subject_strategy: self.subject_strategy,
            ..self.connection.codec_settings()
        }
    }
}

/// Connection settings in the shape librdkafka takes them.
///
/// ```
/// use kafkit_messaging::{KafkaSettings, ProducerSettings};
///
/// let mut kafka = KafkaSettings::new("broker-1:9092,broker-2:9092");
/// kafka.properties.push(("client.id".into(), "orders".into()));
/// kafka.properties.push(("acks".into(), "1".into()));
///
/// let config = kafka.client_config();
/// assert_eq!(config.get("bootstrap.servers"), Some("broker-1:9092,broker-2:9092"));
/// assert_eq!(config.get("client.id"), Some("orders"));
///
/// // A producer's config keeps the properties but not a weaker `acks`.
/// let producer = ProducerSettings::default().client_config(&kafka);
/// assert_eq!(producer.get("client.id"), Some("orders"));
/// assert_eq!(producer.get("acks"), Some("all"));
/// assert_eq!(producer.get("enable.idempotence"), Some("true"));
/// ```
#[derive(Clone, Default)]
pub struct KafkaSettings {
    /// `bootstrap.servers`: comma-separated `host:port` of some brokers.
    pub bootstrap_servers: String,
    /// librdkafka properties, applied in order after the typed ones.
    pub properties: Vec<(String, String)>,
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Property values may hold credentials: show keys only.
        f.debug_struct("KafkaSettings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field(
                "properties",
                &self.properties.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl KafkaSettings {
    /// Settings for `bootstrap_servers` and no other property (librdkafka's
    /// defaults: a plaintext connection).
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            properties: Vec::new(),
        }
    }

    /// The base client config: bootstrap servers, security, pass-through properties.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

impl From<KafkaArgs> for KafkaSettings {
    fn from(args: KafkaArgs) -> Self {
        let passed = args.properties();
        let mut properties = Vec::new();
        let mut set = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                properties.push((key.to_owned(), value));
            }
        };
        set("security.protocol", args.security_protocol);
        set("sasl.mechanism", args.sasl_mechanism);
        set("sasl.username", args.sasl_username);
        set(
            "sasl.password",
            args.sasl_password.map(|s| s.expose().to_owned()),
        );
        set("ssl.ca.location", args.ssl_ca_location);
        set("ssl.certificate.location", args.ssl_certificate_location);
        set("ssl.key.location", args.ssl_key_location);
        properties.extend(passed);
        Self {
            bootstrap_servers: args.bootstrap_servers,
            properties,
        }
    }
}

/// Producer compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// `none`: batches are sent as they are (the default).
    #[default]
    None,
    /// `gzip`.
    Gzip,
    /// `snappy`.
    Snappy,
    /// `lz4`.
    Lz4,
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "gzip" => Ok(Self::Gzip),
            "snappy" => Ok(Self::Snappy),
            "lz4" => Ok(Self::Lz4),
            _ => Err(format!(
                "unknown compression {s:?}: expected none, gzip, snappy or lz4"
            )),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
        })
    }
}

/// How a producer trades latency for safety. The safety part is not
/// negotiable: idempotence on, `acks=all`.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// `compression.type`; none by default.
    pub compression: Compression,
    /// Upper bound from `send` to acknowledgement or failure (`delivery.timeout.ms`).
    pub delivery_timeout: Duration,
    /// How long to wait to fill a batch (`linger.ms`).
    pub linger: Duration,
    /// Records buffered locally before `send` fails with queue full.
    pub queue_max_messages: u32,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        Self {
            compression: Compression::None,
            delivery_timeout: Duration::from_secs(10),
            // kafkit awaits every acknowledgement, so batching delay is latency.
            linger: Duration::from_millis(1),
            queue_max_messages: 100_000,
        }
    }
}

impl ProducerSettings {
    /// The producer config: these settings, then `kafka`'s pass-through
    /// properties (which may tune anything), then idempotence and `acks=all`,
    /// which nothing overrides.
    pub fn client_config(&self, kafka: &KafkaSettings) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &kafka.bootstrap_servers)
            .set("compression.type", self.compression.to_string())
            .set(
                "delivery.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
            )
            .set("linger.ms", self.linger.as_millis().to_string())
            .set(
                "queue.buffering.max.messages",
                self.queue_max_messages.to_string(),
            );
        for (key, value) in &kafka.properties {
            config.set(key, value);
        }
        config.set("enable.idempotence", "true").set("acks", "all");
        config
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    #[test]
    fn security_flags_become_librdkafka_properties_and_cannot_weaken_acks() {
        let cli = Cli::parse_from([
            "x",
            "--security-protocol",
            "sasl_ssl",
            "--sasl-mechanism",
            "SCRAM-SHA-512",
            "--sasl-username",
            "svc",
            "--sasl-password",
            "s3cret",
            "-X",
            "acks=1",
            "-X",
            "client.id=orders",
        ]);
        let settings = KafkaSettings::from(cli.kafka.clone());
        let config = ProducerSettings::default().client_config(&settings);
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.password"), Some("s3cret"));
        assert_eq!(config.get("client.id"), Some("orders"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        let shown = format!("{:?} {settings:?}", cli.kafka);
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn a_property_value_may_hold_commas_and_several_properties_may_share_one_value() {
        let cli = Cli::parse_from([
            "x",
            "-X",
            "debug=broker,topic,msg",
            "-X",
            "client.id=a, linger.ms=5",
        ]);
        assert_eq!(
            cli.kafka.properties(),
            vec![
                ("debug".to_owned(), "broker,topic,msg".to_owned()),
                ("client.id".to_owned(), "a".to_owned()),
                ("linger.ms".to_owned(), "5".to_owned()),
            ]
        );
        assert!(Cli::try_parse_from(["x", "-X", "no-equals-sign"]).is_err());
    }

    #[test]
    fn compression_names_parse() {
        assert_eq!("LZ4".parse::<Compression>().unwrap(), Compression::Lz4);
        assert!("brotli".parse::<Compression>().is_err());
    }
}

/// A credential: usable as a string, never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The credential itself, to hand to a client; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
