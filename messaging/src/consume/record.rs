//! A consumed record, owned, in one buffer: what a lane needs of it.
//!
//! librdkafka's own copy (`detach`) allocates the topic name, the key, the
//! value and every header apart; this keeps key, value and header values in
//! one buffer, header names in another, and shares the topic name. Header names that are not
//! UTF-8 cannot be read through rdkafka (it panics); such a record is kept
//! with its key and value and marked, so it is dead-lettered, not lost.

use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Headers};
use std::ops::Range;
use std::sync::Arc;

#[derive(Debug)]
pub struct Record {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    /// Key, value, then header values.
    data: Vec<u8>,
    /// Header names (text already: slicing it needs no UTF-8 check).
    names: String,
    key: Option<Range<usize>>,
    payload: Option<Range<usize>>,
    /// Name in `names`, value in `data`.
    headers: Vec<(Range<usize>, Option<Range<usize>>)>,
    /// The headers could not be read (a name that is not UTF-8).
    pub unreadable_headers: bool,
}

fn push(data: &mut Vec<u8>, bytes: &[u8]) -> Range<usize> {
    let start = data.len();
    data.extend_from_slice(bytes);
    start..data.len()
}

impl Record {
    /// Copies `message`; `topic` is its topic name, shared between records.
    pub fn read(message: &BorrowedMessage<'_>, topic: Arc<str>) -> Self {
        let (key, payload) = (message.key(), message.payload());
        let sizes = key.map_or(0, <[u8]>::len) + payload.map_or(0, <[u8]>::len);
        let mut data = Vec::with_capacity(sizes + 256);
        let key = key.map(|k| push(&mut data, k));
        let payload = payload.map(|p| push(&mut data, p));
        let mut record = Self {
            topic,
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            data,
            names: String::new(),
            key,
            payload,
            headers: Vec::new(),
            unreadable_headers: false,
        };
        if let Some(headers) = message.headers() {
            let mut spans = Vec::with_capacity(headers.count());
            let (data, names) = (&mut record.data, &mut record.names);
            let read = crate::headers::catch_quietly(|| {
                for header in headers.iter() {
                    let start = names.len();
                    names.push_str(header.key);
                    let value = header.value.map(|v| push(data, v));
                    spans.push((start..names.len(), value));
                }
            });
            record.headers = spans;
            record.unreadable_headers = read.is_err();
        }
        record
    }

    pub fn key(&self) -> Option<&[u8]> {
        self.key.clone().and_then(|r| self.data.get(r))
    }

    pub fn payload(&self) -> Option<&[u8]> {
        self.payload.clone().and_then(|r| self.data.get(r))
    }

    /// Key and value bytes.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, |r| r.len()) + self.payload.as_ref().map_or(0, |r| r.len())
    }

    /// Every header in record order (a header without a value reads as empty).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().filter_map(|(name, value)| {
            let name = self.names.get(name.clone())?;
            let value = value
                .clone()
                .and_then(|v| self.data.get(v))
                .unwrap_or_default();
            Some((name, value))
        })
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The headers as borrowed pairs, for routing.
    pub fn header_view(&self) -> Vec<(&str, &[u8])> {
        self.headers().collect()
    }
}
