//! Data directories written by earlier releases, kept in the repository as they were written
//! (see `tests/data/old-data-dirs/README.md`), must open with today's code, keep every value,
//! and be converted once. A format change that forgets them fails here, not on a user's disk.

use mqpaxos_core::kv::{REVISIONS_PER_SLOT, REVISION_BEFORE_RECORDS};
use mqpaxos_core::{Config, Driver, KvStore, RoleKind, Server};
use mqpaxos_node::storage::{FileStorage, Recovery, Storage, SyncPolicy, WAL_FORMAT};
use std::path::Path;
use std::time::Duration;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "README.md" {
            continue;
        }
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The store a lone server rebuilds from `dir`: it recovers, wins its election and executes
/// what its log holds, as a restarted server does.
fn state_of(dir: &Path) -> KvStore {
    let mut storage = FileStorage::open(dir, "default", 1, 100_000, SyncPolicy::Always)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert_eq!(storage.recovery, Recovery::Clean, "{}", dir.display());
    let durable = storage.load().unwrap();
    let server = Server::recover(Config::new(1, 1), durable).unwrap();
    let mut d = Driver::new(server, 1);
    d.start(Duration::ZERO);
    let mut now = Duration::ZERO;
    for _ in 0..10 {
        if d.server().role() == RoleKind::Leader && !d.has_pending() {
            break;
        }
        if let Some(t) = d.next_deadline() {
            now = now.max(t);
            d.fire_due(now);
        }
        d.flush();
    }
    assert_eq!(d.server().role(), RoleKind::Leader);
    eprintln!(
        "{}: log {}..{}, commit {}",
        dir.display(),
        d.server().log().start(),
        d.server().log().end(),
        d.server().commit()
    );
    d.server().kv().clone()
}

fn check(format: u32) {
    let kept = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/old-data-dirs")
        .join(format!("format-{format}"));
    let meta = std::fs::read_to_string(kept.join("meta.json")).unwrap();
    assert!(
        meta.contains(&format!("\"wal_format\": {format}")),
        "{meta}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("server1");
    copy_dir(&kept, &dir);

    let kv = &state_of(&dir);
    assert_eq!(kv.get("greeting"), Some("hello, world"));
    assert_eq!(kv.get("config/mode"), Some("fast"));
    assert_eq!(kv.get("last"), Some("written after the snapshot"));
    assert_eq!(kv.get("gone"), None);
    // The bench's keys, k0..k49 or so: many, each with a value.
    assert!(kv.len() > 40, "{} keys", kv.len());
    // Keys from the old snapshot carry the placeholder revision; keys changed in the log
    // after it carry real ones; none is above the store's.
    for (key, _) in kv.iter() {
        let r = kv.entry(key).unwrap();
        assert!(
            r.modified == REVISION_BEFORE_RECORDS || r.modified >= REVISIONS_PER_SLOT,
            "{key}: {r:?}"
        );
        assert!(
            r.create <= r.modified && r.modified <= kv.revision(),
            "{key}"
        );
        assert!(r.version >= 1, "{key}");
    }
    // The last put came after the snapshot: it has a real revision.
    assert!(kv.entry("last").unwrap().modified >= REVISIONS_PER_SLOT);

    // Converted once: meta.json now names today's format, and the state is the same.
    let meta = std::fs::read_to_string(dir.join("meta.json")).unwrap();
    assert!(
        meta.contains(&format!("\"wal_format\": {WAL_FORMAT}")),
        "{meta}"
    );
    let again = state_of(&dir);
    assert_eq!(&again, kv);
}

#[test]
fn a_format_2_data_directory_of_9d6aa8a_opens_with_every_value() {
    check(2);
}

#[test]
fn a_format_3_data_directory_of_23b26b1_opens_with_every_value() {
    check(3);
}

#[test]
fn a_data_directory_of_a_newer_release_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("server1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("meta.json"),
        format!(
            "{{\"cluster\": \"default\", \"server\": 1, \"wal_format\": {}}}",
            WAL_FORMAT + 1
        ),
    )
    .unwrap();
    let err = FileStorage::open(&dir, "default", 1, 100, SyncPolicy::Always)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("newer mqpaxos"), "{err}");
}
