//! One Kafka Produce request written by hand, for records the ordinary
//! clients refuse to write: rdkafka takes header names as `&str`, so a
//! header name that is not UTF-8 (which other clients and the protocol
//! allow) can only be sent this way. Produce v3, one record batch (v2), no
//! idempotence, `acks=-1`, to a single-broker cluster (Tansu).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

/// A record: key, value, headers (names as raw bytes).
#[derive(Debug, Clone, Default)]
pub struct RawRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Writes `record` to `topic`/`partition` on the broker at `address`
/// (`host:port`); returns its offset.
pub fn produce(
    address: &str,
    topic: &str,
    partition: i32,
    record: &RawRecord,
) -> std::io::Result<i64> {
    let batch = record_batch(record);
    let mut body = Vec::new();
    body.extend(0i16.to_be_bytes()); // api key: Produce
    body.extend(3i16.to_be_bytes()); // api version
    body.extend(1i32.to_be_bytes()); // correlation id
    string(&mut body, "devstack-raw");
    body.extend((-1i16).to_be_bytes()); // transactional id: null
    body.extend((-1i16).to_be_bytes()); // acks: all
    body.extend(10_000i32.to_be_bytes()); // timeout
    body.extend(1i32.to_be_bytes()); // one topic
    string(&mut body, topic);
    body.extend(1i32.to_be_bytes()); // one partition
    body.extend(partition.to_be_bytes());
    body.extend(i32::try_from(batch.len()).unwrap_or(i32::MAX).to_be_bytes());
    body.extend(batch);

    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    let size = i32::try_from(body.len()).unwrap_or(i32::MAX);
    stream.write_all(&size.to_be_bytes())?;
    stream.write_all(&body)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let mut answer = vec![0u8; usize::try_from(i32::from_be_bytes(size)).unwrap_or(0)];
    stream.read_exact(&mut answer)?;
    // correlation id, topic count, topic name, partition count, partition,
    // error code, base offset, ...
    let mut at = 4 + 4;
    let name_len = usize::try_from(read_i16(&answer, at)?).unwrap_or(0);
    at += 2 + name_len + 4 + 4;
    let error = read_i16(&answer, at)?;
    let offset = read_i64(&answer, at + 2)?;
    if error != 0 {
        return Err(std::io::Error::other(format!(
            "the broker refused the record: error code {error}"
        )));
    }
    Ok(offset)
}

fn short(at: usize) -> std::io::Error {
    std::io::Error::other(format!("short produce answer at byte {at}"))
}

fn read_i16(bytes: &[u8], at: usize) -> std::io::Result<i16> {
    let b = bytes.get(at..at + 2).ok_or_else(|| short(at))?;
    Ok(i16::from_be_bytes([b[0], b[1]]))
}

fn read_i64(bytes: &[u8], at: usize) -> std::io::Result<i64> {
    let b = bytes.get(at..at + 8).ok_or_else(|| short(at))?;
    let mut eight = [0u8; 8];
    eight.copy_from_slice(b);
    Ok(i64::from_be_bytes(eight))
}

fn string(out: &mut Vec<u8>, text: &str) {
    out.extend(i16::try_from(text.len()).unwrap_or(i16::MAX).to_be_bytes());
    out.extend(text.as_bytes());
}

/// Zig-zag varint, as record fields are written.
fn varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn bytes_field(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => varint(out, -1),
        Some(b) => {
            varint(out, i64::try_from(b.len()).unwrap_or(i64::MAX));
            out.extend(b);
        }
    }
}

fn record_batch(record: &RawRecord) -> Vec<u8> {
    let mut body = Vec::new();
    body.push(0); // attributes
    varint(&mut body, 0); // timestamp delta
    varint(&mut body, 0); // offset delta
    bytes_field(&mut body, record.key.as_deref());
    bytes_field(&mut body, record.value.as_deref());
    varint(&mut body, i64::try_from(record.headers.len()).unwrap_or(0));
    for (name, value) in &record.headers {
        bytes_field(&mut body, Some(name));
        bytes_field(&mut body, Some(value));
    }
    let mut one = Vec::new();
    varint(&mut one, i64::try_from(body.len()).unwrap_or(0));
    one.extend(body);

    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(0))
        .unwrap_or(0);
    // From the attributes on: what the CRC covers.
    let mut tail = Vec::new();
    tail.extend(0i16.to_be_bytes()); // attributes
    tail.extend(0i32.to_be_bytes()); // last offset delta
    tail.extend(now.to_be_bytes()); // first timestamp
    tail.extend(now.to_be_bytes()); // max timestamp
    tail.extend((-1i64).to_be_bytes()); // producer id
    tail.extend((-1i16).to_be_bytes()); // producer epoch
    tail.extend((-1i32).to_be_bytes()); // base sequence
    tail.extend(1i32.to_be_bytes()); // record count
    tail.extend(one);

    let mut batch = Vec::new();
    batch.extend(0i64.to_be_bytes()); // base offset
    let length = 4 + 1 + 4 + tail.len(); // leader epoch, magic, crc, rest
    batch.extend(i32::try_from(length).unwrap_or(i32::MAX).to_be_bytes());
    batch.extend((-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend(crc32c(&tail).to_be_bytes());
    batch.extend(tail);
    batch
}

/// CRC-32C (Castagnoli), bit by bit: small records, no table needed.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_and_varints_match_the_known_values() {
        // RFC 3720's check value for "123456789".
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        let mut out = Vec::new();
        varint(&mut out, -1);
        varint(&mut out, 1);
        varint(&mut out, 300);
        assert_eq!(out, vec![0x01, 0x02, 0xd8, 0x04]);
    }
}
