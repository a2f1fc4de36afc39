//! Golden bytes of every wire message and every WAL record (`tests/data/golden/`, see its
//! README): today's code must encode the fixed values of `tests/support/golden.rs` to exactly
//! the committed bytes, and decode the committed bytes to exactly those values. An accidental
//! change of the wire or disk format fails here instead of stranding data directories and
//! mixed-version clusters. The files are never rewritten by the tests; the generator
//! (`cargo run -p mqpaxos-node --example write-golden`) only adds missing ones.

#[path = "support/golden.rs"]
mod golden;

use mqpaxos_core::{Durable, Message, PersistOp};
use mqpaxos_node::backup;
use mqpaxos_node::codec::{self, DEFAULT_MAX_PAYLOAD};
use mqpaxos_node::storage::{
    encode_group, replay_wal_bytes, FileStorage, Recovery, Storage, SyncPolicy, CHUNK, WAL_FORMAT,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// The formats the golden files are in. A deliberate bump of one of these is a format change:
/// keep the old files for the conversion's test and add a new set (see the README).
const GOLDEN_WIRE_VERSION: u8 = 3;
const GOLDEN_WAL_FORMAT: u32 = 4;
const GOLDEN_BACKUP_FORMAT: u32 = 1;

fn read_golden(name: &str) -> Vec<u8> {
    let path = golden::dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; a golden file is missing (a new case? run `cargo run -p mqpaxos-node \
             --example write-golden` once and commit the new file)",
            path.display()
        )
    })
}

/// Rows of 16 bytes as hex, from the row holding `from` up to the one holding `to`.
fn hex_rows(bytes: &[u8], from: usize, to: usize) -> Vec<String> {
    let first = from / 16 * 16;
    (first..to.min(bytes.len().max(1)))
        .step_by(16)
        .map(|row| {
            let mut s = format!("{row:06x} ");
            for b in bytes.iter().skip(row).take(16) {
                let _ = write!(s, " {b:02x}");
            }
            s
        })
        .collect()
}

/// Fails, with both sides in hex around the first difference, unless `today == golden`.
fn assert_same_bytes(name: &str, today: &[u8], golden: &[u8]) {
    if today == golden {
        return;
    }
    let at = today
        .iter()
        .zip(golden)
        .position(|(a, b)| a != b)
        .unwrap_or(today.len().min(golden.len()));
    let (from, to) = (at.saturating_sub(32), at + 48);
    let today_rows = hex_rows(today, from, to);
    let golden_rows = hex_rows(golden, from, to);
    let mut diff = String::new();
    for i in 0..today_rows.len().max(golden_rows.len()) {
        let g = golden_rows.get(i).map_or("", String::as_str);
        let t = today_rows.get(i).map_or("", String::as_str);
        let mark = if g == t { ' ' } else { '>' };
        let _ = writeln!(diff, "{mark} golden {g}\n{mark} today  {t}");
    }
    panic!(
        "{name}: today's bytes differ from the golden file from byte {at} on (today {} bytes, \
         golden {} bytes):\n{diff}\nThis is a change of the wire or disk format. If it is \
         deliberate, bump codec::VERSION / storage::WAL_FORMAT / backup::FORMAT with a \
         conversion and keep these files (tests/data/golden/README.md); never rewrite them.",
        today.len(),
        golden.len()
    );
}

/// The groups of a log prefix in today's format, read by hand from the layout the storage
/// module documents (not by its code): `[magic "MQPG"][body length: u32 LE][sequence: u64 LE]
/// [crc32 of length, sequence and body: u32 LE]` then records `[length: u32 LE][crc32: u32
/// LE][postcard(PersistOp)]`.
fn parse_log(name: &str, bytes: &[u8]) -> Vec<(u64, Vec<PersistOp>)> {
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4"));
    let mut groups = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        assert_eq!(&bytes[at..at + 4], b"MQPG", "{name}: group magic at {at}");
        let len = u32_at(bytes, at + 4) as usize;
        let seq = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().expect("8"));
        let crc = u32_at(bytes, at + 16);
        let body = &bytes[at + 20..at + 20 + len];
        let mut h = crc32fast::Hasher::new();
        h.update(&(len as u32).to_le_bytes());
        h.update(&seq.to_le_bytes());
        h.update(body);
        assert_eq!(h.finalize(), crc, "{name}: group checksum at {at}");
        let mut ops = Vec::new();
        let mut r = 0;
        while r < body.len() {
            let rlen = u32_at(body, r) as usize;
            let rcrc = u32_at(body, r + 4);
            let rec = &body[r + 8..r + 8 + rlen];
            assert_eq!(crc32fast::hash(rec), rcrc, "{name}: record checksum");
            let (op, rest) = postcard::take_from_bytes::<PersistOp>(rec)
                .unwrap_or_else(|e| panic!("{name}: a record at {at}+{r} does not decode: {e}"));
            assert!(rest.is_empty(), "{name}: trailing bytes in a record");
            ops.push(op);
            r += 8 + rlen;
        }
        groups.push((seq, ops));
        at += 20 + len;
    }
    groups
}

/// The whole log file a data directory holds: the golden records, then zeros up to a chunk.
fn whole_file(log: &[u8]) -> Vec<u8> {
    let mut file = log.to_vec();
    file.resize(CHUNK as usize, 0);
    file
}

/// Replays a golden log through the storage's own replay and checks the state it recovers.
fn assert_replays_to(name: &str, log: &[u8], expected: &Durable) {
    let (durable, recovery) =
        replay_wal_bytes(&whole_file(log), GOLDEN_WAL_FORMAT, golden::MAX_SESSIONS)
            .unwrap_or_else(|e| panic!("{name}: the storage does not replay it: {e}"));
    assert_eq!(recovery, Recovery::Clean, "{name}");
    assert_eq!(&durable, expected, "{name}: the state replayed");
}

/// Opens a data directory made of the golden `meta.json` and log with `FileStorage`, as a
/// server would at its start.
fn assert_opens_to(name: &str, log: &[u8], expected: &Durable) {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().join("server");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("meta.json"), read_golden("datadir-meta.json")).expect("meta");
    std::fs::write(dir.join("wal"), whole_file(log)).expect("wal");
    let mut s = FileStorage::open(
        &dir,
        golden::CLUSTER,
        golden::SERVER,
        golden::MAX_SESSIONS,
        SyncPolicy::Never,
    )
    .unwrap_or_else(|e| panic!("{name}: FileStorage refuses it: {e}"));
    assert_eq!(s.recovery, Recovery::Clean, "{name}");
    assert_eq!(
        &s.load().expect("load"),
        expected,
        "{name}: the state opened"
    );
    assert_eq!(s.log_bytes(), log.len() as u64, "{name}: the log's end");
}

#[test]
fn the_formats_are_those_the_golden_files_were_written_in() {
    let why = "a format constant changed: keep the golden files of the old format for the \
               conversion's test and add a new set (tests/data/golden/README.md)";
    assert_eq!(codec::VERSION, GOLDEN_WIRE_VERSION, "{why}");
    assert_eq!(WAL_FORMAT, GOLDEN_WAL_FORMAT, "{why}");
    assert_eq!(backup::FORMAT, GOLDEN_BACKUP_FORMAT, "{why}");
    let meta = String::from_utf8(read_golden("datadir-meta.json")).expect("utf-8");
    assert!(
        meta.contains(&format!("\"wal_format\": {GOLDEN_WAL_FORMAT}")),
        "{meta}"
    );
}

#[test]
fn every_wire_message_encodes_to_its_golden_bytes() {
    for msg in golden::wire_cases() {
        let name = golden::wire_file(&msg);
        let today = codec::encode(&msg, DEFAULT_MAX_PAYLOAD).expect("encode");
        assert_same_bytes(&name, &today, &read_golden(&name));
    }
}

#[test]
fn every_golden_wire_message_decodes_to_its_value() {
    for msg in golden::wire_cases() {
        let name = golden::wire_file(&msg);
        let bytes = read_golden(&name);
        assert_eq!(bytes[0], GOLDEN_WIRE_VERSION, "{name}: the version byte");
        let decoded = codec::decode(&bytes, DEFAULT_MAX_PAYLOAD)
            .unwrap_or_else(|e| panic!("{name} no longer decodes: {e}"));
        assert_eq!(decoded, msg, "{name} decodes to another value");
    }
}

#[test]
fn every_wal_record_is_framed_as_its_golden_bytes() {
    for op in golden::wal_cases() {
        let name = golden::wal_file(&op);
        let today = encode_group(0, std::slice::from_ref(&op)).expect("frame");
        assert_same_bytes(name, &today, &read_golden(name));
    }
}

#[test]
fn every_golden_wal_record_decodes_and_replays_to_its_value() {
    for op in golden::wal_cases() {
        let name = golden::wal_file(&op);
        let bytes = read_golden(name);
        assert_eq!(
            parse_log(name, &bytes),
            vec![(0, vec![op.clone()])],
            "{name}"
        );
        let mut expected = Durable::new(golden::MAX_SESSIONS);
        expected.apply(op);
        assert_replays_to(name, &bytes, &expected);
    }
}

/// `FileStorage` itself, persisting the same flushes in a new data directory today, writes
/// exactly the golden `meta.json` and logs (one of them rewritten at a snapshot).
#[test]
fn file_storage_writes_the_golden_data_directory_byte_for_byte() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let (meta, log) = golden::write_data_dir(&tmp.path().join("a"), &golden::log_flushes());
    assert_same_bytes(
        "datadir-meta.json",
        &meta,
        &read_golden("datadir-meta.json"),
    );
    assert_same_bytes("wal-log.bin", &log, &read_golden("wal-log.bin"));
    // The pub framing function the per-record files are checked with frames as `persist` does.
    let mut framed = Vec::new();
    for (seq, ops) in golden::log_flushes().iter().enumerate() {
        framed.extend(encode_group(seq as u64, ops).expect("frame"));
    }
    assert_same_bytes("wal-log.bin (by encode_group)", &framed, &log);
    let (_, log) =
        golden::write_data_dir(&tmp.path().join("b"), &golden::log_after_snapshot_flushes());
    let name = "wal-log-after-snapshot.bin";
    assert_same_bytes(name, &log, &read_golden(name));
}

#[test]
fn the_golden_logs_decode_replay_and_open_to_their_state() {
    let name = "wal-log.bin";
    let bytes = read_golden(name);
    let groups: Vec<(u64, Vec<PersistOp>)> = golden::log_flushes()
        .into_iter()
        .enumerate()
        .map(|(seq, ops)| (seq as u64, ops))
        .collect();
    assert_eq!(parse_log(name, &bytes), groups, "{name}");
    let expected = golden::durable_after(&golden::log_flushes());
    assert_eq!(expected.promised, mqpaxos_core::Ballot::new(7, 2));
    assert_eq!(expected.log.end(), 3);
    assert_replays_to(name, &bytes, &expected);
    assert_opens_to(name, &bytes, &expected);

    let name = "wal-log-after-snapshot.bin";
    let bytes = read_golden(name);
    assert_eq!(
        parse_log(name, &bytes),
        golden::log_after_snapshot_groups(),
        "{name}"
    );
    let expected = golden::durable_after(&golden::log_after_snapshot_flushes());
    assert_eq!(expected.snapshot, golden::snapshot());
    assert_eq!((expected.log.start(), expected.log.end()), (4, 5));
    assert_replays_to(name, &bytes, &expected);
    assert_opens_to(name, &bytes, &expected);
}

/// The store in the golden snapshot is built by executing fixed commands; this pins what
/// they build, so a change in how commands execute (not a format change) shows here first.
#[test]
fn the_golden_snapshot_holds_the_state_it_describes() {
    let snap = golden::snapshot();
    let kv = &snap.kv;
    assert_eq!(snap.next_slot, 4);
    assert_eq!(kv.len(), 2);
    assert_eq!(kv.sessions(), 2);
    assert_eq!(kv.revision(), 4_001);
    let r = kv.entry("greeting").expect("greeting");
    assert_eq!(
        (&*r.value, r.create, r.modified, r.version),
        ("hello, world", 2_000, 3_001, 2)
    );
    let r = kv.entry("clé/ü").expect("clé/ü");
    assert_eq!(
        (&*r.value, r.create, r.modified, r.version),
        ("ünïcödé", 4_001, 4_001, 1)
    );
    assert_eq!(kv.entry("gone"), None);
    assert_eq!(kv.last_seq("alice/t1/0"), Some(4));
    assert_eq!(kv.last_seq("json/req-1"), Some(1));
}

#[test]
fn the_golden_snapshot_encodes_and_decodes() {
    let snap = golden::snapshot();
    let today = mqpaxos_core::encode_snapshot(&snap).expect("encode");
    let bytes = read_golden("snapshot.bin");
    assert_same_bytes("snapshot.bin", &today, &bytes);
    assert_eq!(
        mqpaxos_core::decode_snapshot(&bytes).as_ref(),
        Some(&snap),
        "snapshot.bin decodes to another value"
    );
}

/// The backup's header names the mqpaxos version that wrote it, which changes with every
/// release without changing the format: today's bytes are compared with the golden file's
/// once its version is replaced by today's (and the length and checksum that cover it).
#[test]
fn the_golden_backup_file_encodes_and_decodes() {
    let name = "backup.bin";
    let bytes = read_golden(name);
    let snap = golden::snapshot();
    let b = backup::decode(std::path::Path::new(name), &bytes)
        .unwrap_or_else(|e| panic!("{name} is refused: {e}"));
    assert_eq!(b.snapshot, snap, "{name}: the snapshot");
    let encoded = read_golden("snapshot.bin");
    let h = &b.header;
    assert_eq!(
        (
            h.cluster.as_str(),
            h.next_slot,
            h.keys,
            h.sessions,
            h.snapshot_bytes,
            h.saved_at_unix,
        ),
        (
            golden::CLUSTER,
            4,
            2,
            2,
            encoded.len() as u64,
            golden::SAVED_AT_UNIX
        ),
        "{name}: the header"
    );

    let today_encoded = mqpaxos_core::encode_snapshot(&snap).expect("encode");
    let today = backup::encode(
        golden::CLUSTER,
        &snap,
        &today_encoded,
        golden::SAVED_AT_UNIX,
    );
    // The golden file as today's version would have written it, by hand from the layout.
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4")) as usize;
    let header = std::str::from_utf8(&bytes[16..16 + header_len]).expect("a JSON header");
    let old = format!("\"version\":\"{}\"", h.version);
    assert_eq!(header.matches(&old).count(), 1, "{header}");
    let header = header.replace(
        &old,
        &format!("\"version\":\"{}\"", env!("CARGO_PKG_VERSION")),
    );
    let mut expected = bytes[..12].to_vec();
    expected.extend((header.len() as u32).to_le_bytes());
    expected.extend(header.as_bytes());
    expected.extend(&bytes[16 + header_len..bytes.len() - 32]);
    let digest = ring::digest::digest(&ring::digest::SHA256, &expected);
    expected.extend(digest.as_ref());
    assert_same_bytes(name, &today, &expected);
}

/// The names of an enum's variants, as its derived `Deserialize` hands them to a format: a
/// list the compiler keeps complete, so a new variant cannot go without a golden case.
fn variants<'de, T: serde::Deserialize<'de>>() -> BTreeSet<&'static str> {
    use serde::de::{Deserializer, Visitor};
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    struct Grab<'a>(&'a mut Option<&'static [&'static str]>);
    impl<'de> Deserializer<'de> for Grab<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            variants: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = Some(variants);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
            identifier ignored_any
        }
    }
    let mut got = None;
    let _ = T::deserialize(Grab(&mut got));
    got.expect("an enum").iter().copied().collect()
}

/// The name of the variant a value is (its external tag in JSON).
fn variant_of<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v).expect("to JSON") {
        serde_json::Value::String(s) => s,
        serde_json::Value::Object(m) if m.len() == 1 => m.keys().next().expect("a key").clone(),
        other => panic!("not an enum: {other}"),
    }
}

fn assert_covers(what: &str, all: BTreeSet<&'static str>, seen: &BTreeSet<String>) {
    let missing: Vec<_> = all.iter().filter(|v| !seen.contains(**v)).collect();
    assert!(
        missing.is_empty(),
        "{what} variants without a golden case: {missing:?}; add one to \
         tests/support/golden.rs and run `cargo run -p mqpaxos-node --example write-golden`"
    );
}

/// The guard. At compile time, `golden::wire_file` and `golden::wal_file` match every
/// variant of `Message`, `Op`, `OpResult`, `ErrorCode` and `PersistOp` with no wildcard arm,
/// so a new variant does not compile until it is named there. Here, every variant of those
/// (and of `ChangeKind`) must have a case, each case its own file, and the golden directory
/// must hold exactly the files the cases make (plus the README): none missing, none untested.
#[test]
fn every_variant_has_a_golden_file_and_every_file_is_tested() {
    let wire = golden::wire_cases();
    let mut seen: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut note = |what, name: String| {
        seen.entry(what).or_default().insert(name);
    };
    for msg in &wire {
        note("Message", variant_of(msg));
        match msg {
            Message::Request(c) => note("Op", variant_of(&c.op)),
            Message::Reply { result, .. } => {
                note("OpResult", variant_of(result));
                match result {
                    mqpaxos_core::OpResult::Rejected { code, .. } => {
                        note("ErrorCode", variant_of(code))
                    }
                    mqpaxos_core::OpResult::Changes { changes, .. } => {
                        for c in changes {
                            note("ChangeKind", variant_of(&c.kind));
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    for op in golden::wal_cases() {
        note("PersistOp", variant_of(&op));
    }
    let seen_of = |what: &str| seen.get(what).cloned().unwrap_or_default();
    assert_covers("Message", variants::<Message>(), &seen_of("Message"));
    assert_covers("Op", variants::<mqpaxos_core::Op>(), &seen_of("Op"));
    assert_covers(
        "OpResult",
        variants::<mqpaxos_core::OpResult>(),
        &seen_of("OpResult"),
    );
    assert_covers(
        "ErrorCode",
        variants::<mqpaxos_core::ErrorCode>(),
        &seen_of("ErrorCode"),
    );
    assert_covers(
        "ChangeKind",
        variants::<mqpaxos_core::ChangeKind>(),
        &seen_of("ChangeKind"),
    );
    assert_covers("PersistOp", variants::<PersistOp>(), &seen_of("PersistOp"));
    // Sanity of the guard itself: it sees the variants there are.
    assert_eq!(variants::<Message>().len(), Message::KINDS.len());

    // Each case its own file (all_files refuses two cases of one name), and the directory
    // holds exactly those.
    let expected: BTreeSet<String> = golden::all_files().into_keys().collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(golden::dir())
        .expect("the golden directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        // The README and .gitattributes (which keeps git from converting line endings).
        .filter(|n| n != "README.md" && n != ".gitattributes")
        .collect();
    let missing: Vec<_> = expected.difference(&on_disk).collect();
    let untested: Vec<_> = on_disk.difference(&expected).collect();
    assert!(
        missing.is_empty() && untested.is_empty(),
        "golden files missing: {missing:?} (run `cargo run -p mqpaxos-node --example \
         write-golden`); golden files no case checks: {untested:?}"
    );
    // And the README names every one.
    let readme = String::from_utf8(read_golden("README.md")).expect("utf-8");
    let unnamed: Vec<_> = expected
        .iter()
        .filter(|n| !readme.contains(&format!("`{n}`")))
        .collect();
    assert!(
        unnamed.is_empty(),
        "README.md does not describe {unnamed:?}"
    );
}
