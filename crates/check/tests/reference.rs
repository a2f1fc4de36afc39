//! The reference histories in `tests/data/histories` (Porcupine's key/value tests and
//! Jepsen's etcd register histories; `tests/data/README.md` says where each comes from):
//! every `-ok` file must be linearizable and every `-bad` file must not be.
//!
//! The files are part of the repository. If they are missing the test fails rather than
//! skips: a checker that is never compared with histories it did not write proves little.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mqpaxos_check::{check_events, read_file, CheckLimits, CheckOutcome};

/// How many files of each set the repository carries; fewer means some went missing.
const EXPECTED: [(&str, usize); 2] = [("porcupine-kv-", 6), ("jepsen-etcd-", 52)];

fn histories_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/histories")
}

#[test]
fn reference_histories_get_the_verdict_in_their_name() {
    let dir = histories_dir();
    let listing = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "reference histories not found at {} ({e}); they are part of the repository \
             (crates/check/tests/data/histories): restore them with git",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = listing
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.jsonl files in {}", dir.display());
    for (prefix, want) in EXPECTED {
        let have = files
            .iter()
            .filter(|path| {
                path.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(prefix)
            })
            .count();
        assert_eq!(
            have,
            want,
            "{}: expected {want} {prefix}*.jsonl files, found {have}",
            dir.display()
        );
    }

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
