//! The reference histories in `shared/testdata/histories` (Porcupine's key/value tests and
//! Jepsen's etcd register histories): every `-ok` file must be linearizable and every
//! `-bad` file must not be.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mqpaxos_check::{check_events, read_file, CheckLimits, CheckOutcome};

fn histories_dir() -> PathBuf {
    match std::env::var_os("MQPAXOS_HISTORIES") {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/histories")
        }
    }
}

#[test]
fn reference_histories_get_the_verdict_in_their_name() {
    let dir = histories_dir();
    let listing = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "reference histories not found at {} ({e}); they live in shared/testdata/histories \
             beside the repository, or point MQPAXOS_HISTORIES at them",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = listing
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.jsonl files in {}", dir.display());

    let mut wrong = Vec::new();
    let (mut oks, mut bads) = (0, 0);
    let mut total = Duration::ZERO;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let want_ok = if name.ends_with("-ok.jsonl") {
            oks += 1;
            true
        } else if name.ends_with("-bad.jsonl") {
            bads += 1;
            false
        } else {
            panic!("{name}: reference histories must be named *-ok.jsonl or *-bad.jsonl");
        };
        let events = read_file(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let start = Instant::now();
        let outcome =
            check_events(&events, CheckLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let elapsed = start.elapsed();
        total += elapsed;
        let verdict = match &outcome {
            CheckOutcome::Linearizable => "linearizable",
            CheckOutcome::NotLinearizable { .. } => "not linearizable",
            CheckOutcome::Unknown { .. } => "unknown",
        };
        eprintln!("{name}: {} events, {verdict}, {elapsed:?}", events.len());
        let right = match outcome {
            CheckOutcome::Linearizable => want_ok,
            CheckOutcome::NotLinearizable { .. } => !want_ok,
            CheckOutcome::Unknown { .. } => false,
        };
        if !right {
            wrong.push(format!("{name}: {outcome}"));
        }
    }
    eprintln!(
        "{} reference histories ({oks} ok, {bads} bad) checked in {total:?}",
        files.len()
    );
    assert!(oks > 0 && bads > 0, "expected both -ok and -bad files");
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
}
