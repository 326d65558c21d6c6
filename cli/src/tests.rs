//! Argument parsing and help texts (no servers needed; tests/tests/cli.rs runs the binary
//! against a real broker).

use clap::{CommandFactory, Parser};

use super::*;
use crate::keys_cmd::{KeysCommand, StoreSpec};
use crate::policy_cmd::PolicyCommand;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("fieldcrypt").chain(args.iter().copied()))
}

#[test]
fn the_command_definition_is_consistent() {
    Cli::command().debug_assert();
}

/// Every command and subcommand, with its path (`keys shred`).
fn all_commands() -> Vec<(String, clap::Command)> {
    fn walk(prefix: &str, c: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
        for sub in c.get_subcommands() {
            let path = format!("{prefix} {}", sub.get_name()).trim().to_string();
            out.push((path.clone(), sub.clone()));
            walk(&path, sub, out);
        }
    }
    let mut out = vec![(String::new(), Cli::command())];
    walk("", &Cli::command(), &mut out);
    out
}

#[test]
fn every_command_has_an_about_line_and_help() {
    let commands = all_commands();
    let names: Vec<&str> = commands.iter().map(|(p, _)| p.as_str()).collect();
    for expected in [
        "encrypt",
        "decrypt",
        "inspect",
        "policy validate",
        "policy keygen",
        "policy sign",
        "policy publish",
        "keys list",
        "keys shred",
        "keys rotate",
    ] {
        assert!(names.contains(&expected), "no command {expected:?} in {names:?}");
    }
    for (path, mut c) in commands {
        if c.get_name() == "help" {
            continue;
        }
        assert!(
            c.get_about().is_some_and(|a| !a.to_string().trim().is_empty()),
            "`fieldcrypt {path}` has no about line"
        );
        let help = c.render_long_help().to_string();
        assert!(help.contains("Usage:"), "`fieldcrypt {path} --help`:\n{help}");
        for arg in c.get_arguments() {
            if ["help", "version"].contains(&arg.get_id().as_str()) {
                continue;
            }
            assert!(arg.get_help().is_some(), "`fieldcrypt {path}`: argument {} has no help", arg.get_id());
        }
    }
}

#[test]
fn top_level_help_documents_exit_codes() {
    let help = Cli::command().render_long_help().to_string();
    for code in ["0  success", "2  bad usage", "3  verification failed", "4  Kafka or the KMS"] {
        assert!(help.contains(code), "no {code:?} in:\n{help}");
    }
    let short = Cli::command().render_help().to_string();
    assert!(short.contains("Exit codes:"), "{short}");
}

#[test]
fn help_and_version_of_every_command_parse() {
    for (path, _) in all_commands() {
        let mut args: Vec<&str> = path.split_whitespace().collect();
        args.push("--help");
        let e = parse(&args).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{path}");
        assert!(!e.to_string().trim().is_empty(), "`fieldcrypt {path} --help` is empty");
    }
    assert_eq!(parse(&["--version"]).unwrap_err().kind(), clap::error::ErrorKind::DisplayVersion);
}

#[test]
fn usage_errors_exit_with_2() {
    for args in [
        &["policy", "sign", "p.json"][..],               // --key, --key-id missing
        &["keys", "shred", "cust-1", "--store", "s3:x"], // unknown store kind
        &["keys", "rotate", "c", "--store", "file:k", "--local-keys", "k.json"], // no --policy or --kek
        &["encrypt", "--policy", "p", "--topic", "t", "--local-keys", "k", "--config", "c"],
        &["decrypt", "--policy", "p", "--topic", "t", "--max", "3"], // --max needs --bootstrap
        &["inspect", "--topic", "t"],
    ] {
        let e = parse(args).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
    }
}

#[test]
fn store_specs() {
    assert_eq!("file:/tmp/k.jsonl".parse::<StoreSpec>(), Ok(StoreSpec::File("/tmp/k.jsonl".into())));
    assert_eq!(
        "kafka:h:9092".parse::<StoreSpec>(),
        Ok(StoreSpec::Kafka { bootstrap: "h:9092".into(), topic: "_fieldcrypt_keys".into() })
    );
    assert_eq!(
        "kafka:a:1,b:2/keys-x".parse::<StoreSpec>(),
        Ok(StoreSpec::Kafka { bootstrap: "a:1,b:2".into(), topic: "keys-x".into() })
    );
    assert!("kafka:".parse::<StoreSpec>().is_err());
    assert!("file:".parse::<StoreSpec>().is_err());
    assert!("/tmp/k".parse::<StoreSpec>().is_err());
}

#[test]
fn commands_parse_as_documented() {
    let cli = parse(&["keys", "shred", "cust-1", "--store", "file:k.jsonl", "--yes"]).unwrap();
    assert!(
        matches!(cli.command, Command::Keys(KeysCommand::Shred { ref subject, yes: true, by_id: false, .. }) if subject == "cust-1")
    );
    let cli =
        parse(&["keys", "rotate", "c", "--store", "kafka:h:1", "--kek", "local://k", "--config", "c.json"]).unwrap();
    assert!(
        matches!(cli.command, Command::Keys(KeysCommand::Rotate { ref algorithm, .. }) if algorithm == "AES256_GCM")
    );
    let cli = parse(&["policy", "publish", "s.json", "--bootstrap", "h:1"]).unwrap();
    assert!(
        matches!(cli.command, Command::Policy(PolicyCommand::Publish { ref topic, allow_unsigned: false, .. }) if topic == "_fieldcrypt_policy")
    );
    let cli = parse(&["policy", "validate", "s.json", "--trust", "a=a.pub", "--trust", "keys.json"]).unwrap();
    assert!(matches!(cli.command, Command::Policy(PolicyCommand::Validate { ref trust, .. }) if trust.len() == 2));
    let cli = parse(&[
        "decrypt",
        "--policy",
        "p",
        "--topic",
        "t",
        "--bootstrap",
        "h:1",
        "--config",
        "c",
        "--profile",
        "support",
        "--max",
        "5",
        "--from-beginning",
    ])
    .unwrap();
    assert!(matches!(cli.command, Command::Decrypt(ref d) if d.read.max == Some(5) && d.read.from_beginning));
    // The bindings' form.
    parse(&["encrypt", "--policy", "p", "--topic", "t", "--local-keys", "k", "--registry", "http://r"]).unwrap();
    parse(&["decrypt", "--policy", "p", "--topic", "t", "--local-keys", "k", "--profile", "x"]).unwrap();
    assert!(
        parse(&["inspect", "--bootstrap", "h:1", "--topic", "t", "--follow"]).is_err(),
        "--follow needs --from-beginning"
    );
}
