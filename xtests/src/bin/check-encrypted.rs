//! Checks other languages' encryptions of the vector plaintexts (xtests/README.md):
//! `check-encrypted encrypted-go.json encrypted-java.json ...`. Every case of every vector file
//! must be present in every results file, and each must pass `check_encryption`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use fieldcrypt_xtests::{check_encryption, vector_files, EncryptResults, Vectors, RESULTS_FORMAT};

fn main() -> ExitCode {
    let files: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if files.is_empty() {
        eprintln!("usage: check-encrypted RESULTS.json...");
        return ExitCode::from(2);
    }
    let mut vectors = BTreeMap::new();
    for p in vector_files() {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        match Vectors::read(&p) {
            Ok(v) => vectors.insert(name, v),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
    }
    let mut failures = 0;
    for file in &files {
        let results: EncryptResults = match std::fs::read(file)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                failures += 1;
                continue;
            }
        };
        if results.format != RESULTS_FORMAT {
            eprintln!("{}: not a results file", file.display());
            failures += 1;
            continue;
        }
        let (mut ok, mut bad) = (0, 0);
        for (name, v) in &vectors {
            for case in &v.cases {
                let got = results.results.iter().find(|r| &r.vectors == name && r.id == case.id);
                let outcome = match got {
                    None => Err("missing".to_string()),
                    Some(r) => check_encryption(v, case, &r.record),
                };
                match outcome {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        bad += 1;
                        eprintln!("{} ({}): {name} {}: {e}", file.display(), results.language, case.id);
                    }
                }
            }
        }
        println!("check-encrypted: {}: {} encryptions checked, {} failed", results.language, ok + bad, bad);
        failures += bad;
    }
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
