//! `kafkit dlq export` / `import`: dead letters as JSON lines, every byte
//! kept (key, value and each header in base64, beside the readable fields
//! of `inspect`), to move them between clusters or keep them in a file;
//! and `kafkit dlq edit`: one dead letter's payload in `$EDITOR`, then
//! re-encoded and replayed.

use super::record::DeadLetter;
use super::{Filter, StatusFilter, coordinates, resolved};
use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kafkit_events::EventCodec;
use kafkit_messaging::{
    KafkaArgs, KafkaSettings, OutgoingRecord, ProducerSettings, Publisher, SchemaRegistryArgs,
};
use std::io::{BufRead, Write};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The dead-letter topic, e.g. orders.dlq
    pub topic: String,
    #[command(flatten)]
    pub filter: Filter,
    /// Only open dead letters, or only those dealt with.
    #[arg(long, value_enum)]
    pub status: Option<StatusFilter>,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The topic the records are written to, e.g. orders.dlq of another cluster.
    pub topic: String,
    /// Read from here instead of standard input.
    #[arg(long = "in")]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// The dead-letter topic, e.g. orders.dlq
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    #[command(flatten)]
    pub registry: SchemaRegistryArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// One exported dead letter: what `inspect --output json` shows, and the
/// record itself, byte for byte.
pub fn to_line(letter: &DeadLetter) -> anyhow::Result<serde_json::Value> {
    let mut json = serde_json::to_value(letter)?;
    let b64 = |bytes: &Option<Vec<u8>>| bytes.as_ref().map(|b| STANDARD.encode(b));
    json["key_base64"] = b64(&letter.key).into();
    json["value_base64"] = b64(&letter.value).into();
    json["headers_base64"] = letter
        .headers
        .iter()
        .map(|(name, value)| serde_json::json!([name, STANDARD.encode(value)]))
        .collect::<Vec<_>>()
        .into();
    Ok(json)
}

/// The record an exported line stands for, written to `topic`.
pub fn from_line(line: &str, topic: &str) -> anyhow::Result<OutgoingRecord> {
    let json: serde_json::Value = serde_json::from_str(line).context("not JSON")?;
    let bytes = |field: &str| -> anyhow::Result<Option<Vec<u8>>> {
        match &json[field] {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::String(text) => Ok(Some(
                STANDARD
                    .decode(text)
                    .with_context(|| format!("{field} is not base64"))?,
            )),
            other => bail!("{field} must be base64 text or null, got {other}"),
        }
    };
    let mut headers = Vec::new();
    for pair in json["headers_base64"]
        .as_array()
        .context("no headers_base64 array")?
    {
        let (Some(name), Some(value)) = (pair[0].as_str(), pair[1].as_str()) else {
            bail!("a header must be [name, base64 value], got {pair}");
        };
        let value = STANDARD
            .decode(value)
            .with_context(|| format!("header {name} is not base64"))?;
        headers.push((name.to_owned().into(), value));
    }
    Ok(OutgoingRecord {
        topic: topic.to_owned(),
        partition: None,
        key: bytes("key_base64")?,
        payload: bytes("value_base64")?,
        headers,
    })
}

pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let kafka = KafkaSettings::from(args.kafka.clone());
    let (letters, _) = super::select(&kafka, &args.topic, &args.filter, args.status, false).await?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    for letter in &letters {
        writeln!(out, "{}", to_line(letter)?)?;
    }
    out.flush()?;
    eprintln!("{}: {} dead letters exported", args.topic, letters.len());
    Ok(())
}

/// Writes every line's record to the topic; a line that cannot be read or
/// sent is reported with its number, the others are still sent, and the
/// command fails at the end.
pub async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let kafka = KafkaSettings::from(args.kafka.clone());
    let publisher = Publisher::new(&kafka, &ProducerSettings::default())?;
    let input: Box<dyn BufRead> = match &args.input {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let (mut imported, mut failed) = (0, Vec::new());
    for (number, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let sent = match from_line(&line, &args.topic) {
            Ok(record) => publisher
                .publish(&record)
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => imported += 1,
            Err(e) => failed.push(format!("line {}: {e:#}", number + 1)),
        }
    }
    println!(
        "{}: {imported} imported, {} failed",
        args.topic,
        failed.len()
    );
    for reason in &failed {
        println!("  {reason}");
    }
    if !failed.is_empty() {
        bail!("{} lines were not imported", failed.len());
    }
    Ok(())
}

/// One dead letter by its coordinates.
async fn read_one(
    kafka: &KafkaSettings,
    topic: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<DeadLetter> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let consumer: StreamConsumer =
        crate::reader::config(kafka, &crate::reader::throwaway_group("edit")).create()?;
    let mut at = rdkafka::TopicPartitionList::new();
    at.add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset))?;
    consumer.assign(&at)?;
    let message = tokio::time::timeout(std::time::Duration::from_secs(15), consumer.recv())
        .await
        .with_context(|| format!("no dead letter at {topic}/{partition}/{offset} within 15 s"))??;
    let letter = DeadLetter::from_message(&message.detach());
    if letter.dlq_offset != offset {
        bail!(
            "no dead letter at {topic}/{partition}/{offset} (the next one is at {})",
            letter.dlq_offset
        );
    }
    Ok(letter)
}

/// `kafkit dlq edit`: the payload, decoded, in `$EDITOR` (`vi` when unset);
/// when it was changed, re-encoded against the latest schema and replayed.
pub async fn edit(args: EditArgs) -> anyhow::Result<()> {
    let kafka = KafkaSettings::from(args.kafka.clone());
    let letter = read_one(&kafka, &args.topic, args.partition, args.offset).await?;
    let codec = EventCodec::new(args.registry.codec_settings())?;
    let decoded = super::watch::decoded(&codec, letter.value.as_deref()).await;
    let (Some(json), Some(full_name)) = (decoded.get("json"), decoded["type"].as_str()) else {
        bail!(
            "the payload does not decode ({}): nothing to edit",
            decoded["undecodable"]
        );
    };
    let file = std::env::temp_dir().join(format!(
        "{}.json",
        crate::reader::throwaway_group("dead-letter")
    ));
    let before = serde_json::to_string_pretty(json)?;
    std::fs::write(&file, &before)?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("{editor} \"$1\""), "editor"])
        .arg(&file)
        .status()
        .with_context(|| format!("could not run {editor}"))?;
    let after = std::fs::read_to_string(&file)?;
    std::fs::remove_file(&file).ok();
    if !status.success() {
        bail!("{editor} failed ({status}): nothing sent");
    }
    if after.trim() == before.trim() {
        println!("nothing changed: nothing sent");
        return Ok(());
    }
    let corrected: serde_json::Value =
        serde_json::from_str(&after).context("the edited payload is not JSON: nothing sent")?;
    let registry = crate::schemas::Registry::of(&args.registry.connection)?;
    let publisher = Publisher::new(&kafka, &ProducerSettings::default())?;
    // Where the dead letter will be recorded as replayed.
    resolved::ensure(&kafka, &args.topic).await?;
    match super::edit::replay_edited(
        &letter,
        full_name,
        &corrected,
        &registry,
        args.registry.subject_strategy,
        &publisher,
        "by kafkit dlq edit",
    )
    .await
    {
        Ok(sent) => {
            println!(
                "{} edited and sent to {}",
                coordinates(&letter),
                sent.destination
            );
            if let Err(e) = sent.recorded {
                bail!("sent, but not recorded as replayed: {e}");
            }
            Ok(())
        }
        Err(errors) => {
            for error in &errors {
                eprintln!(
                    "  {}: {}",
                    if error.field.is_empty() {
                        "payload"
                    } else {
                        &error.field
                    },
                    error.message
                );
            }
            bail!("the schema refuses the edited payload: nothing sent");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_exported_line_imports_as_the_same_record() {
        let mut letter = crate::dlq::record::tests::died_at(5);
        letter.key = Some(vec![0, 159, 146, 150]);
        letter.value = Some(b"\\x00\\x00\\x00\\x00\\x01body".to_vec());
        letter.headers = vec![
            ("kafkit.error.class".into(), b"x".to_vec()),
            ("bin".into(), vec![255, 0]),
        ];
        let line = to_line(&letter).unwrap().to_string();
        let record = from_line(&line, "other.dlq").unwrap();
        assert_eq!(record.topic, "other.dlq");
        assert_eq!(record.key, letter.key);
        assert_eq!(record.payload, letter.value);
        let headers: Vec<(String, Vec<u8>)> = record
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        assert_eq!(headers, letter.headers);
        assert!(from_line("{", "t").is_err());
        assert!(
            from_line(
                r#"{"key_base64":"!!","value_base64":null,"headers_base64":[]}"#,
                "t"
            )
            .is_err()
        );
    }
}
