//! The codec part: encode and decode apart against apache-avro serde alone,
//! heap allocations per call counted.

use anyhow::Context;
use kafkit_events::{CodecSettings, Event, EventCodec};
use shared_events::OrderPlaced;
use std::time::Instant;

use super::args::BenchArgs;
use super::common::*;

/// The codec part's result.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CodecResult {
    pub(crate) kafkit_ns: f64,
    pub(crate) bare_ns: f64,
    /// (encode, decode), best round of each.
    pub(crate) kafkit_split: (f64, f64),
    pub(crate) bare_split: (f64, f64),
    pub(crate) allocations: Option<Allocations>,
}

/// Heap allocations per call (reallocations included), counted on one thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Allocations {
    pub(crate) kafkit_encode: f64,
    pub(crate) kafkit_decode: f64,
    pub(crate) bare_encode: f64,
    pub(crate) bare_decode: f64,
}

/// Heap allocations per call of `f` over `calls` calls, on this thread.
pub(crate) fn allocations_per_call(
    calls: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let (result, spent) = densa_alloc::measure(|| (0..calls).try_for_each(|_| f()));
    result?;
    Ok((spent.allocs + spent.reallocs) as f64 / calls as f64)
}

/// Nanoseconds per encode + decode of one `OrderPlaced`: kafkit's codec
/// (warm registry cache, Confluent framing, the body check before reading)
/// against apache-avro's schema-aware serializer and deserializer with the
/// same framing, writer and reader built once. Best round of each, and the
/// heap allocations of each call (counted per thread by the binary's
/// allocator).
pub(crate) async fn codec_bench(
    args: &BenchArgs,
    registry_url: &str,
) -> anyhow::Result<CodecResult> {
    use futures::FutureExt;
    let codec = EventCodec::new(CodecSettings::new(registry_url))?;
    let order = order();
    let topic = "bench-codec";
    let warm = codec.encode(topic, &order).await?;
    let id = codec.decode::<OrderPlaced>(Some(&warm)).await?.schema_id;
    let writer =
        apache_avro::writer::datum::GenericDatumWriter::builder(OrderPlaced::schema()).build()?;
    let reader =
        apache_avro::reader::datum::GenericDatumReader::builder(OrderPlaced::schema()).build()?;
    let bare_encode = |order: &OrderPlaced| -> anyhow::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(128);
        bytes.push(0u8);
        bytes.extend_from_slice(&id.to_be_bytes());
        writer.write_ser(&mut bytes, order)?;
        Ok(bytes)
    };
    let bare_decode = |bytes: &[u8]| -> anyhow::Result<OrderPlaced> {
        Ok(reader.read_deser(&mut bytes.get(5..).context("short")?)?)
    };
    // Counted synchronously on this thread: a warm codec never waits, so
    // each call must be ready at its first poll.
    let allocations = if densa_alloc::is_active() {
        let ready = "a warm codec call waited";
        let calls = 1_000;
        let encoded = bare_encode(&order)?;
        Some(Allocations {
            kafkit_encode: allocations_per_call(calls, || {
                std::hint::black_box(
                    codec
                        .encode(topic, &order)
                        .now_or_never()
                        .context(ready)??,
                );
                Ok(())
            })?,
            kafkit_decode: allocations_per_call(calls, || {
                let decoded = codec.decode::<OrderPlaced>(Some(&encoded));
                std::hint::black_box(decoded.now_or_never().context(ready)??);
                Ok(())
            })?,
            bare_encode: allocations_per_call(calls, || {
                std::hint::black_box(bare_encode(&order)?);
                Ok(())
            })?,
            bare_decode: allocations_per_call(calls, || {
                std::hint::black_box(bare_decode(&encoded)?);
                Ok(())
            })?,
        })
    } else {
        None
    };
    // Encode and decode are timed apart (decode reads one payload over
    // and over), so each side's split is visible too.
    let encoded = codec.encode(topic, &order).await?;
    let n = args.codec_events as f64;
    let mut best = [f64::INFINITY; 4];
    for round in 1..=args.rounds {
        let started = Instant::now();
        for _ in 0..args.codec_events {
            std::hint::black_box(codec.encode(topic, std::hint::black_box(&order)).await?);
        }
        let kafkit_encode = started.elapsed().as_nanos() as f64 / n;
        let started = Instant::now();
        for _ in 0..args.codec_events {
            let payload = Some(std::hint::black_box(&encoded[..]));
            std::hint::black_box(codec.decode::<OrderPlaced>(payload).await?);
        }
        let kafkit_decode = started.elapsed().as_nanos() as f64 / n;
        let started = Instant::now();
        for _ in 0..args.codec_events {
            std::hint::black_box(bare_encode(std::hint::black_box(&order))?);
        }
        let bare_encode_ns = started.elapsed().as_nanos() as f64 / n;
        let started = Instant::now();
        for _ in 0..args.codec_events {
            std::hint::black_box(bare_decode(std::hint::black_box(&encoded))?);
        }
        let bare_decode_ns = started.elapsed().as_nanos() as f64 / n;
        let (k, b) = (
            kafkit_encode + kafkit_decode,
            bare_encode_ns + bare_decode_ns,
        );
        println!(
            "codec round {round}: kafkit {k:.0} ns (encode {kafkit_encode:.0}, decode {kafkit_decode:.0}), apache-avro serde {b:.0} ns (encode {bare_encode_ns:.0}, decode {bare_decode_ns:.0}) ({:.2}x)",
            k / b
        );
        for (best, now) in
            best.iter_mut()
                .zip([kafkit_encode, kafkit_decode, bare_encode_ns, bare_decode_ns])
        {
            *best = best.min(now);
        }
    }
    let [kafkit_encode, kafkit_decode, bare_encode_ns, bare_decode_ns] = best;
    Ok(CodecResult {
        kafkit_ns: kafkit_encode + kafkit_decode,
        bare_ns: bare_encode_ns + bare_decode_ns,
        kafkit_split: (kafkit_encode, kafkit_decode),
        bare_split: (bare_encode_ns, bare_decode_ns),
        allocations,
    })
}
