//! WAL replay: a server starting up replays `<data-dir>/wal`, whatever a crash, a full disk
//! or a bad sector left in it. Any bytes must give a state and a verdict on the log's end
//! (clean, torn, synced bytes lost) or a "corrupt" error naming the offset, never a panic.
//!
//! The first byte picks the format `meta.json` would name (today's grouped format, or the
//! older chunked and unchunked ones, converted on open); the rest is the whole file.
//!
//! Also checked: when recovery cuts the log back (a torn or damaged end), the prefix it
//! keeps replays to the same state, since that is exactly the file the server continues
//! from (`FileStorage::open` truncates to it).
//!
//! Limitation: today's format expects the file to be a whole number of 1 MiB chunks, which
//! inputs of a few KiB never are, so in that format the fuzzer explores group and record
//! parsing and the state machine's `apply` under the "cut short" verdict; the tests in
//! crates/node/src/storage.rs cover the torn / damaged-end verdicts on real files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqpaxos_node::storage::{replay_wal_bytes, Recovery, StorageError, WAL_FORMAT};

/// Small, so session eviction is exercised too.
const MAX_SESSIONS: usize = 4;

fuzz_target!(|data: &[u8]| {
    let Some((&which, log)) = data.split_first() else {
        return;
    };
    let format = match which % 3 {
        0 => WAL_FORMAT,
        1 => 2,
        _ => 0,
    };
    let (durable, recovery) = match replay_wal_bytes(log, format, MAX_SESSIONS) {
        Ok(replayed) => replayed,
        Err(StorageError::Corrupt { offset, .. }) => {
            assert!(offset as usize <= log.len(), "offset {offset} past the end");
            return;
        }
        Err(e) => panic!("replaying bytes failed other than as corrupt: {e}"),
    };
    let kept = match recovery {
        Recovery::Clean => return,
        Recovery::TornUnsynced { offset, bytes } => {
            assert!(offset as usize + bytes as usize <= log.len());
            offset
        }
        Recovery::LostSynced { offset, .. } => offset,
    };
    let kept = usize::try_from(kept).expect("an offset within the input");
    assert!(
        kept <= log.len(),
        "cut back to {kept}, past the end {}",
        log.len()
    );
    let (again, _) = replay_wal_bytes(&log[..kept], format, MAX_SESSIONS)
        .expect("the prefix recovery keeps replays");
    assert_eq!(again, durable, "the kept prefix replays to another state");
});
