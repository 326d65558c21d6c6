//! `inspect`: the fieldcrypt header of each record of a topic, as JSON lines. Nothing is
//! decrypted and no value is printed: only what the header says (policy, keys, field paths).

use std::io::{BufWriter, Write};

use clap::Args;
use fieldcrypt::header::{self, DekLocation};
use fieldcrypt::kafka::headers_of;
use fieldcrypt::policy::Part;
use fieldcrypt::HEADER_NAME;
use rdkafka::Message;
use serde::Serialize;
use serde_json::{json, Value};

use crate::fail::{Failure, Outcome};
use crate::progress;
use crate::topic::{ReadArgs, TopicReader};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Kafka bootstrap servers (HOST:PORT[,HOST:PORT...]).
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: String,
    /// The topic to read.
    #[arg(long, value_name = "TOPIC")]
    pub topic: String,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// A record's place first, then what is known about it.
#[derive(Serialize)]
pub struct Located {
    pub partition: i32,
    pub offset: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<i64>,
    #[serde(flatten)]
    pub rest: Value,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn part_name(part: Part) -> &'static str {
    match part {
        Part::Value => "value",
        Part::Key => "key",
    }
}

/// What one record's headers say, as a JSON object (without partition and offset).
pub fn describe(header_value: Option<Option<&[u8]>>) -> Value {
    let Some(Some(bytes)) = header_value else {
        return json!({ "fieldcrypt": null });
    };
    match header::parse(bytes) {
        Err(e) => json!({ "error": { "kind": e.kind().as_str(), "message": e.message() } }),
        Ok(env) => {
            let keys: Vec<Value> = env
                .keys
                .iter()
                .map(|k| {
                    json!({
                        "algorithm": k.algorithm.name(),
                        "dek_id": hex(&k.dek_id),
                        "kek": k.kek,
                        "kek_version": k.kek_version,
                        "dek": match k.dek { DekLocation::Inline(_) => "inline", DekLocation::KeyStore => "key_store" },
                        "fields": k.fields.iter().map(|(part, path)| json!({"part": part_name(*part), "path": path})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "policy": { "id": env.policy_id, "revision": env.policy_revision },
                "keys": keys,
            })
        }
    }
}

pub fn run(args: &InspectArgs) -> Outcome {
    let mut reader = TopicReader::open(&args.bootstrap, &args.topic, &args.read)?;
    let bar = progress::bar(reader.expected, &format!("inspecting {}", args.topic));
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut malformed = 0u64;
    let read = reader.each(|m| {
        let headers = headers_of(m);
        let found = headers.iter().rev().find(|(name, _)| *name == HEADER_NAME).map(|(_, v)| *v);
        let described = describe(found);
        if described.get("error").is_some() {
            malformed += 1;
        }
        let line = Located {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            rest: described,
        };
        serde_json::to_writer(&mut out, &line).map_err(|e| Failure::failed(e.to_string()))?;
        out.write_all(b"\n").map_err(|e| Failure::failed(format!("writing stdout: {e}")))?;
        bar.inc(1);
        Ok(())
    });
    bar.finish_and_clear();
    out.flush().map_err(|e| Failure::failed(format!("writing stdout: {e}")))?;
    let read = read?;
    if malformed > 0 {
        return Err(Failure::failed(format!("{malformed} of {read} records have a malformed fieldcrypt header")));
    }
    Ok(())
}
