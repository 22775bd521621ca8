//! Headers every kafkit record carries.
//!
//! CloudEvents Kafka protocol binding, binary mode: the event attributes are
//! `ce_*` headers and the record value is the Avro payload. W3C trace context
//! travels in `traceparent` / `tracestate` so one trace spans producer,
//! consumer, retries and the DLQ.

use crate::Event;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

/// CloudEvents version of the record; must be [`SPEC_VERSION`].
pub const CE_SPECVERSION: &str = "ce_specversion";
/// The event's unique id ([`EventHeaders::id`]).
pub const CE_ID: &str = "ce_id";
/// The event's type ([`EventHeaders::event_type`]).
pub const CE_TYPE: &str = "ce_type";
/// The producing service ([`EventHeaders::source`]).
pub const CE_SOURCE: &str = "ce_source";
/// When the event happened, RFC 3339 ([`EventHeaders::time`]).
pub const CE_TIME: &str = "ce_time";
/// Media type of the record value; the Kafka binding names it without `ce_`.
pub const CONTENT_TYPE: &str = "content-type";
/// W3C trace context of the span that sent the record ([`TraceParent`]).
pub const TRACEPARENT: &str = "traceparent";
/// W3C vendor trace state, carried along as it is.
pub const TRACESTATE: &str = "tracestate";

/// CloudEvents version written and accepted.
pub const SPEC_VERSION: &str = "1.0";
/// Content type of a Confluent-framed Avro value.
pub const AVRO_CONTENT_TYPE: &str = "application/avro";

/// The CloudEvents attributes and trace context of one record.
///
/// [`to_pairs`](Self::to_pairs) gives the headers to write and
/// [`from_pairs`](Self::from_pairs) reads them back:
///
/// ```
/// use kafkit_events::{EventHeaders, HeaderError};
///
/// // Any type bound to a schema; the path is relative to the crate's Cargo.toml.
/// #[derive(serde::Serialize, serde::Deserialize, kafkit_events::Event)]
/// #[event(schema = "../schemas/order_confirmed.avsc")]
/// struct OrderConfirmed {
///     order_id: String,
///     total_cents: i64,
///     confirmed_at: i64,
///     source_event_id: String,
/// }
///
/// let sent = EventHeaders::new::<OrderConfirmed>("/consumer-service");
/// assert_eq!(sent.event_type, "io.kafkit.orders.OrderConfirmed");
///
/// let pairs = sent.to_pairs();
/// assert_eq!(pairs[0], ("ce_specversion", b"1.0".to_vec()));
///
/// // A Kafka client hands header values over as optional bytes.
/// let read = EventHeaders::from_pairs(
///     pairs.iter().map(|(name, value)| (*name, Some(value.as_slice()))),
/// )?;
/// assert_eq!(read.id, sent.id);
/// assert_eq!(read.source, "/consumer-service");
/// assert_eq!(read.traceparent, sent.traceparent);
///
/// // Without `ce_id` the record has no valid CloudEvents headers.
/// let without_id = pairs.iter().filter(|(name, _)| *name != "ce_id");
/// assert_eq!(
///     EventHeaders::from_pairs(without_id.map(|(n, v)| (*n, Some(v.as_slice())))),
///     Err(HeaderError::Missing("ce_id")),
/// );
/// # Ok::<(), HeaderError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHeaders {
    /// `ce_id`: unique per event; consumers use it to drop duplicates.
    pub id: String,
    /// `ce_type`: the event's Avro full name.
    pub event_type: String,
    /// `ce_source`: URI-reference of the producing service, e.g. `/producer-service`.
    pub source: String,
    /// `ce_time`, RFC 3339 on the wire.
    pub time: SystemTime,
    /// `content-type`: [`AVRO_CONTENT_TYPE`] for kafkit's events, and when
    /// the header is missing.
    pub content_type: String,
    /// `traceparent`: the span that sent the event, when the record has one.
    pub traceparent: Option<TraceParent>,
    /// `tracestate`: passed on unchanged to follow-up events.
    pub tracestate: Option<String>,
}

/// A header is missing or does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    /// A required header (named here) is absent or has no value.
    #[error("required header {0} is missing")]
    Missing(&'static str),
    /// A header is there but its value cannot be used.
    #[error("header {name} is not valid: {reason}")]
    Invalid {
        /// The header's name.
        name: &'static str,
        /// What is wrong with the value.
        reason: String,
    },
}

impl EventHeaders {
    /// Headers for a new event of type `E` with a fresh id, the current time and a new trace.
    pub fn new<E: Event>(source: impl Into<String>) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            event_type: E::CE_TYPE.to_owned(),
            source: source.into(),
            time: SystemTime::now(),
            content_type: AVRO_CONTENT_TYPE.to_owned(),
            traceparent: Some(TraceParent::new_root()),
            tracestate: None,
        }
    }

    /// Headers for an event of type `E` that `cause` (the headers of the
    /// event being handled, when it had valid ones) led to: the given id
    /// (derive it from the cause's id and a redelivery yields the same one),
    /// the current time, a child span of the cause's trace and its
    /// `tracestate`, or a new trace.
    pub fn follow_up<E: Event>(
        cause: Option<&EventHeaders>,
        id: impl Into<String>,
        source: impl Into<String>,
    ) -> Self {
        // Built field by field: `..Self::new()` would make a UUID and a root
        // trace per output record only to throw them away.
        Self {
            id: id.into(),
            event_type: E::CE_TYPE.to_owned(),
            source: source.into(),
            time: SystemTime::now(),
            content_type: AVRO_CONTENT_TYPE.to_owned(),
            traceparent: Some(
                cause
                    .and_then(|h| h.traceparent)
                    .map_or_else(TraceParent::new_root, |t| t.child()),
            ),
            tracestate: cause.and_then(|h| h.tracestate.clone()),
        }
    }

    /// Header name and bytes pairs, ready for any Kafka client.
    pub fn to_pairs(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut pairs = Vec::with_capacity(8);
        self.write_pairs(|name, value| pairs.push((name, value.to_vec())));
        pairs
    }

    /// Hands each header name and value to `write`, in the order of
    /// [`to_pairs`](Self::to_pairs), without allocating: for a producer that
    /// copies the bytes into its own record anyway.
    pub fn write_pairs(&self, mut write: impl FnMut(&'static str, &[u8])) {
        write(CE_SPECVERSION, SPEC_VERSION.as_bytes());
        write(CE_ID, self.id.as_bytes());
        write(CE_TYPE, self.event_type.as_bytes());
        write(CE_SOURCE, self.source.as_bytes());
        // RFC 3339 with milliseconds is 24 bytes for years 0000-9999.
        let mut time = [0u8; 40];
        let left = {
            let mut rest = &mut time[..];
            use std::io::Write as _;
            // Cannot fail for a buffer this size; an impossible overflow
            // would only shorten the value.
            let _ = write!(rest, "{}", humantime::format_rfc3339_millis(self.time));
            rest.len()
        };
        write(CE_TIME, &time[..time.len() - left]);
        write(CONTENT_TYPE, self.content_type.as_bytes());
        if let Some(tp) = &self.traceparent {
            write(TRACEPARENT, &tp.to_bytes());
        }
        if let Some(ts) = &self.tracestate {
            write(TRACESTATE, ts.as_bytes());
        }
    }

    /// Reads the headers of a record. The first occurrence of a name wins.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> Result<Self, HeaderError> {
        // One pass, borrowing: only the values kept are copied.
        const NAMES: [&str; 8] = [
            CE_SPECVERSION,
            CE_ID,
            CE_TYPE,
            CE_SOURCE,
            CE_TIME,
            CONTENT_TYPE,
            TRACEPARENT,
            TRACESTATE,
        ];
        let mut found: [Option<Option<&[u8]>>; 8] = [None; 8];
        for (name, value) in pairs {
            if let Some(slot) = NAMES
                .iter()
                .position(|n| *n == name)
                .and_then(|i| found.get_mut(i))
                && slot.is_none()
            {
                *slot = Some(value);
            }
        }
        let text = |name: &'static str| -> Result<Option<&str>, HeaderError> {
            let value = NAMES
                .iter()
                .position(|n| *n == name)
                .and_then(|i| found.get(i).copied().flatten())
                .flatten();
            value
                .map(|bytes| {
                    std::str::from_utf8(bytes).map_err(|_| HeaderError::Invalid {
                        name,
                        reason: "not UTF-8".into(),
                    })
                })
                .transpose()
        };
        let required = |name: &'static str| text(name)?.ok_or(HeaderError::Missing(name));
        let spec = required(CE_SPECVERSION)?;
        if spec != SPEC_VERSION {
            return Err(HeaderError::Invalid {
                name: CE_SPECVERSION,
                reason: format!("version {spec:?} is not {SPEC_VERSION}"),
            });
        }
        let time = match text(CE_TIME)? {
            None => SystemTime::UNIX_EPOCH,
            Some(t) => humantime::parse_rfc3339_weak(t).map_err(|e| HeaderError::Invalid {
                name: CE_TIME,
                reason: e.to_string(),
            })?,
        };
        let traceparent = text(TRACEPARENT)?
            .map(|t| {
                t.parse().map_err(|reason| HeaderError::Invalid {
                    name: TRACEPARENT,
                    reason,
                })
            })
            .transpose()?;
        Ok(Self {
            id: required(CE_ID)?.to_owned(),
            event_type: required(CE_TYPE)?.to_owned(),
            source: required(CE_SOURCE)?.to_owned(),
            time,
            content_type: text(CONTENT_TYPE)?.unwrap_or(AVRO_CONTENT_TYPE).to_owned(),
            traceparent,
            tracestate: text(TRACESTATE)?.map(str::to_owned),
        })
    }
}

/// A W3C `traceparent` (version 00): trace id, parent span id, flags.
///
/// Parsed with [`str::parse`] and written back with `to_string`, in the
/// header's text form:
///
/// ```
/// use kafkit_events::TraceParent;
///
/// let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let parent: TraceParent = header.parse()?;
/// assert_eq!(parent.trace_id[..2], [0x4b, 0xf9]);
/// assert_eq!(parent.parent_id[..2], [0x00, 0xf0]);
/// assert!(parent.is_sampled());
/// assert_eq!(parent.to_string(), header);
///
/// // The next hop keeps the trace and names a span of its own.
/// let next = parent.child();
/// assert_eq!(next.trace_id, parent.trace_id);
/// assert_ne!(next.parent_id, parent.parent_id);
///
/// // Other versions, upper-case hex and all-zero ids are refused.
/// for bad in [
///     "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
///     "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
///     "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
/// ] {
///     assert!(bad.parse::<TraceParent>().is_err());
/// }
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace every hop of the event shares; never all zeros.
    pub trace_id: [u8; 16],
    /// The span that sent the record; each hop sets its own. Never all zeros.
    pub parent_id: [u8; 8],
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceParent {
    /// A new sampled trace with random ids.
    pub fn new_root() -> Self {
        let mut trace = random_bytes();
        if trace == [0; 16] {
            trace[15] = 1;
        }
        Self {
            trace_id: trace,
            parent_id: random_span_id(),
            flags: 0x01,
        }
    }

    /// The same trace with a new span as parent, for the next hop.
    pub fn child(&self) -> Self {
        Self {
            parent_id: random_span_id(),
            ..*self
        }
    }

    /// The header value, `00-<trace id>-<parent id>-<flags>` in lowercase hex.
    pub fn to_bytes(&self) -> [u8; 55] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'-'; 55];
        out[0] = b'0';
        out[1] = b'0';
        let mut hex = |at: usize, bytes: &[u8]| {
            for (i, byte) in bytes.iter().enumerate() {
                out[at + 2 * i] = DIGITS[usize::from(byte >> 4)];
                out[at + 2 * i + 1] = DIGITS[usize::from(byte & 0x0f)];
            }
        };
        hex(3, &self.trace_id);
        hex(36, &self.parent_id);
        hex(53, &[self.flags]);
        out
    }

    /// True when the sampled flag (bit 0 of [`flags`](Self::flags)) is set.
    pub fn is_sampled(&self) -> bool {
        self.flags & 0x01 == 0x01
    }
}

/// 16 random bytes: a version 4 UUID with its fixed version and variant
/// bits replaced by random ones from a second, so every bit is random (a
/// sampler that reads the low 63 bits of a trace id, as OpenTelemetry's
/// ratio sampler does, would otherwise find the variant bit always set).
fn random_bytes() -> [u8; 16] {
    let mut bytes = uuid::Uuid::new_v4().into_bytes();
    let more = uuid::Uuid::new_v4().into_bytes();
    bytes[6] = more[0];
    bytes[8] = more[1];
    bytes
}

fn random_span_id() -> [u8; 8] {
    let bytes = random_bytes();
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[..8]);
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

/// Lowercase hex digits of `bytes`, written straight into `f` (no allocation).
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buffer = [0u8; 64];
    let mut len = 0;
    for byte in bytes.iter().take(32) {
        buffer[len] = DIGITS[usize::from(byte >> 4)];
        buffer[len + 1] = DIGITS[usize::from(byte & 0x0f)];
        len += 2;
    }
    f.write_str(std::str::from_utf8(&buffer[..len]).map_err(|_| fmt::Error)?)
}

fn unhex<const N: usize>(s: &str, what: &str) -> Result<[u8; N], String> {
    if s.len() != N * 2
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "{what} must be {} lowercase hex digits, got {s:?}",
            N * 2
        ));
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).map_err(|e| e.to_string())?;
    }
    if out.iter().all(|b| *b == 0) {
        return Err(format!("{what} must not be all zeros"));
    }
    Ok(out)
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        write_hex(f, &self.trace_id)?;
        f.write_str("-")?;
        write_hex(f, &self.parent_id)?;
        f.write_str("-")?;
        write_hex(f, &[self.flags])
    }
}

impl FromStr for TraceParent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().split('-');
        let (Some(version), Some(trace), Some(parent), Some(flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(format!(
                "expected version-traceid-parentid-flags, got {s:?}"
            ));
        };
        if version != "00" {
            return Err(format!("unsupported traceparent version {version:?}"));
        }
        let flags = match flags.len() {
            2 => {
                u8::from_str_radix(flags, 16).map_err(|_| format!("flags {flags:?} are not hex"))?
            }
            _ => return Err(format!("flags must be 2 hex digits, got {flags:?}")),
        };
        Ok(Self {
            trace_id: unhex(trace, "trace id")?,
            parent_id: unhex(parent, "parent id")?,
            flags,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fixture::OrderPlaced;

    #[test]
    fn headers_round_trip_through_pairs() {
        let headers = EventHeaders::new::<OrderPlaced>("/producer-service");
        let pairs = headers.to_pairs();
        let names: Vec<&str> = pairs.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                CE_SPECVERSION,
                CE_ID,
                CE_TYPE,
                CE_SOURCE,
                CE_TIME,
                CONTENT_TYPE,
                TRACEPARENT
            ]
        );
        let read =
            EventHeaders::from_pairs(pairs.iter().map(|(n, v)| (*n, Some(v.as_slice())))).unwrap();
        // ce_time travels with millisecond precision.
        let millis = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        };
        assert_eq!(millis(read.time), millis(headers.time));
        assert_eq!(
            EventHeaders {
                time: headers.time,
                ..read
            },
            headers
        );
    }

    #[test]
    fn a_follow_up_continues_the_cause_trace_or_starts_one() {
        let mut cause = EventHeaders::new::<OrderPlaced>("/a");
        cause.tracestate = Some("vendor=1".into());
        let next = EventHeaders::follow_up::<OrderPlaced>(Some(&cause), "id-2", "/b");
        let (parent, child) = (cause.traceparent.unwrap(), next.traceparent.unwrap());
        assert_eq!(child.trace_id, parent.trace_id);
        assert_ne!(child.parent_id, parent.parent_id);
        assert_eq!(next.tracestate.as_deref(), Some("vendor=1"));
        assert_eq!((next.id.as_str(), next.source.as_str()), ("id-2", "/b"));
        let fresh = EventHeaders::follow_up::<OrderPlaced>(None, "id-3", "/b");
        assert_ne!(fresh.traceparent.unwrap().trace_id, parent.trace_id);
        assert_eq!(fresh.tracestate, None);
    }

    #[test]
    fn a_missing_id_is_reported_by_name() {
        let pairs = [
            (CE_SPECVERSION, Some(&b"1.0"[..])),
            (CE_TYPE, Some(&b"t"[..])),
        ];
        assert_eq!(
            EventHeaders::from_pairs(pairs).unwrap_err(),
            HeaderError::Missing(CE_ID)
        );
    }

    #[test]
    fn the_first_of_a_repeated_header_wins_and_bad_values_are_named() {
        let base = [
            (CE_SPECVERSION, Some(&b"1.0"[..])),
            (CE_ID, Some(&b"first"[..])),
            (CE_ID, Some(&b"second"[..])),
            (CE_TYPE, Some(&b"t"[..])),
            (CE_SOURCE, Some(&b"/s"[..])),
            ("unrelated", Some(&b"\xff"[..])),
        ];
        let read = EventHeaders::from_pairs(base).unwrap();
        assert_eq!(read.id, "first");
        assert_eq!(read.content_type, AVRO_CONTENT_TYPE);
        assert_eq!(read.time, SystemTime::UNIX_EPOCH);
        assert_eq!(read.traceparent, None);
        let mut not_utf8 = base.to_vec();
        not_utf8.insert(0, (CE_SOURCE, Some(&[0xff, 0xfe][..])));
        assert!(matches!(
            EventHeaders::from_pairs(not_utf8).unwrap_err(),
            HeaderError::Invalid {
                name: CE_SOURCE,
                ..
            }
        ));
        let mut bad_trace = base.to_vec();
        bad_trace.push((TRACEPARENT, Some(&b"00-abc-def-01"[..])));
        assert!(matches!(
            EventHeaders::from_pairs(bad_trace).unwrap_err(),
            HeaderError::Invalid {
                name: TRACEPARENT,
                ..
            }
        ));
        let mut old_spec = base.to_vec();
        old_spec[0] = (CE_SPECVERSION, Some(&b"0.3"[..]));
        assert!(matches!(
            EventHeaders::from_pairs(old_spec).unwrap_err(),
            HeaderError::Invalid {
                name: CE_SPECVERSION,
                ..
            }
        ));
    }

    #[test]
    fn new_traces_and_spans_are_random_in_every_bit() {
        let roots: Vec<TraceParent> = (0..200).map(|_| TraceParent::new_root()).collect();
        // A version 4 UUID would fix byte 6's high nibble to 4 and byte 8's
        // top bit to 1; over 200 ids each differs at least once.
        assert!(roots.iter().any(|t| t.trace_id[6] >> 4 != 4));
        assert!(roots.iter().any(|t| t.trace_id[8] & 0x80 == 0));
        assert!(roots.iter().any(|t| t.parent_id[6] >> 4 != 4));
        assert!(
            roots
                .iter()
                .all(|t| t.trace_id != [0; 16] && t.parent_id != [0; 8])
        );
    }

    #[test]
    fn traceparent_parses_the_w3c_example_and_rejects_bad_ones() {
        let example = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp: TraceParent = example.parse().unwrap();
        assert!(tp.is_sampled());
        assert_eq!(tp.to_string(), example);
        assert_eq!(&tp.to_bytes()[..], example.as_bytes());
        let unsampled = TraceParent { flags: 0, ..tp };
        assert_eq!(&unsampled.to_bytes()[..], unsampled.to_string().as_bytes());
        assert!(unsampled.to_string().ends_with("-00"));
        assert_eq!(tp.child().trace_id, tp.trace_id);
        assert_ne!(tp.child().parent_id, tp.parent_id);
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert!(
                bad.parse::<TraceParent>().is_err(),
                "{bad} should not parse"
            );
        }
    }
}
