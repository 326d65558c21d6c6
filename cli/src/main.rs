//! `fieldcrypt` — the command-line tool: policies (validate, sign, publish), the key store
//! (list, shred, rotate), `inspect` of records' fieldcrypt headers on a topic, and `encrypt` /
//! `decrypt` of records as JSON lines (or of a topic). Reference: docs/CLI.md.
//!
//! Errors are printed as `fieldcrypt: <message>` on stderr (never values or key material);
//! exit codes are in [`fail`].

mod fail;
mod inspect;
mod keys_cmd;
mod policy_cmd;
mod progress;
mod records;
mod topic;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::fail::{Outcome, EXIT_CODES_HELP};

#[derive(Parser, Debug)]
#[command(
    name = "fieldcrypt",
    version,
    about = "Field-level encryption for Kafka records: policies, keys, inspection, encryption",
    long_about = "Field-level encryption for Kafka records.\n\n\
        Sign and publish the security team's policies, manage per-subject data keys (rotate, \
        crypto-shred), look at the fieldcrypt headers of a topic's records without decrypting \
        them, and encrypt or decrypt records (JSON lines on stdin, or a topic).",
    after_help = EXIT_CODES_HELP,
    after_long_help = concat!(
        "Examples:\n",
        "  fieldcrypt policy keygen --out sec.pem --public-out sec.pub\n",
        "  fieldcrypt policy sign policy.json --key sec.pem --key-id sec-2026 --out signed.json\n",
        "  fieldcrypt policy publish signed.json --bootstrap kafka-1:9092\n",
        "  fieldcrypt inspect --bootstrap kafka-1:9092 --topic customers --from-beginning --max 10\n",
        "  fieldcrypt keys shred cust-42 --store kafka:kafka-1:9092 --yes\n\n",
        "Exit codes:\n",
        "  0  success\n",
        "  1  a record or an operation failed (the error is printed on stderr)\n",
        "  2  bad usage or configuration (arguments, files, policy or configuration document)\n",
        "  3  verification failed: a policy signature does not verify, or the document is not signed\n",
        "  4  Kafka or the KMS could not be reached (retryable)\n\n",
        "Reference: docs/CLI.md"
    ),
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Encrypt records read as JSON lines on stdin; write them to stdout.
    #[command(after_help = concat!(
        "Records are JSON lines: {\"key\": B64|null, \"value\": B64|null, \"headers\": [[\"name\", B64|null], ...]}\n",
        "(B64 = standard Base64 of the raw bytes). Processing stops at the first record that fails.\n\n",
        "Examples:\n",
        "  fieldcrypt encrypt --policy policy.json --topic customers --local-keys keys.json < in.jsonl > out.jsonl\n",
        "  fieldcrypt encrypt --policy policy.json --topic customers --config fieldcrypt.json < in.jsonl\n\n",
        "Exit codes: 0 ok, 1 a record failed, 2 usage/configuration, 4 KMS or registry unreachable"
    ))]
    Encrypt(records::EncryptArgs),
    /// Decrypt records: JSON lines from stdin, or a topic consumed with --bootstrap.
    #[command(after_help = concat!(
        "Without --bootstrap, records are read as JSON lines on stdin and written the same way\n",
        "(see `fieldcrypt encrypt --help`); processing stops at the first record that fails.\n\n",
        "With --bootstrap, --topic is consumed (no consumer group offsets are committed) and each\n",
        "record is printed as {\"partition\", \"offset\", \"timestamp_ms\", \"key\", \"value\"}: key and value\n",
        "as JSON when they parse as JSON, else as \"key_base64\" / \"value_base64\". A record that does not decrypt\n",
        "is printed as {\"partition\", \"offset\", \"error\": {\"kind\", \"message\"}}; the exit code is then 1.\n\n",
        "Examples:\n",
        "  fieldcrypt decrypt --policy policy.json --topic customers --local-keys keys.json < sealed.jsonl\n",
        "  fieldcrypt decrypt --bootstrap kafka-1:9092 --topic customers --from-beginning --max 100 \\\n",
        "      --policy policy.json --config consumer.json --profile support\n\n",
        "Exit codes: 0 ok, 1 a record failed, 2 usage/configuration, 4 Kafka, KMS or registry unreachable"
    ))]
    Decrypt(records::DecryptArgs),
    /// Validate, sign and publish policies; generate signing keys.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// List, rotate and shred the per-subject data keys of a key store.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// Show the fieldcrypt headers of a topic's records (policy, keys, fields), without decrypting.
    #[command(after_help = concat!(
        "Prints one JSON line per record: {\"partition\", \"offset\", \"timestamp_ms\", \"policy\": {\"id\",\n",
        "\"revision\"}, \"keys\": [{\"algorithm\", \"dek_id\", \"kek\", \"kek_version\", \"dek\": \"inline\"|\"key_store\",\n",
        "\"fields\": [{\"part\", \"path\"}]}]}; {\"fieldcrypt\": null} for a record without a fieldcrypt header.\n",
        "Nothing is decrypted and no key or value is read: no KMS access is needed.\n\n",
        "Examples:\n",
        "  fieldcrypt inspect --bootstrap kafka-1:9092 --topic customers --from-beginning --max 20\n",
        "  fieldcrypt inspect --bootstrap kafka-1:9092 --topic customers      # new records, until Ctrl-C\n\n",
        "Exit codes: 0 ok, 1 a header is malformed or the topic does not exist, 2 usage, 4 Kafka unreachable"
    ))]
    Inspect(inspect::InspectArgs),
    /// Check a policy file (same as `fieldcrypt policy validate`).
    #[command(hide = true)]
    Validate {
        /// The policy file (JSON).
        policy: PathBuf,
    },
}

fn run(cli: &Cli) -> Outcome {
    match &cli.command {
        Command::Encrypt(args) => records::encrypt(args),
        Command::Decrypt(args) => records::decrypt(args),
        Command::Policy(c) => policy_cmd::run(c),
        Command::Keys(c) => keys_cmd::run(c),
        Command::Inspect(args) => inspect::run(args),
        Command::Validate { policy } => {
            policy_cmd::run(&policy_cmd::PolicyCommand::Validate { file: policy.clone(), trust: Vec::new() })
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("fieldcrypt: {f}");
            ExitCode::from(f.code)
        }
    }
}

#[cfg(test)]
mod tests;
