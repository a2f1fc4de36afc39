//! Backup files (`mqpaxos snapshot save`) and restoring a server's data directory from one
//! (`mqpaxos snapshot restore`).
//!
//! A backup is the state machine as a leader confirmed it at one commit point (see
//! `Op::SnapshotPiece`), in the encoding servers send each other, wrapped so that a file
//! that was cut short, damaged, or is not a backup at all is refused with a reason:
//!
//! ```text
//! "MQPXBKUP"                     8 bytes
//! format version                 u32 LE (FORMAT)
//! header length                  u32 LE
//! header                         JSON (Header): cluster, slot, sizes, when, by which version
//! snapshot                       header.snapshot_bytes bytes (postcard `Snapshot`)
//! SHA-256 of all the above       32 bytes
//! ```
//!
//! The header is JSON so that `head -c 400 FILE` shows an operator what a file holds.
//! Restoring never touches a directory that holds anything: it writes a new one.

use crate::storage::{FileStorage, Storage, StorageError, SyncPolicy};
use mqpaxos_core::{NodeId, PersistOp, Snapshot};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

const MAGIC: &[u8; 8] = b"MQPXBKUP";
/// The file format this code writes; it reads this one only.
pub const FORMAT: u32 = 1;
const DIGEST: usize = 32;
/// A header is a few hundred bytes; a larger length is damage, not a header.
const MAX_HEADER: usize = 64 * 1024;

#[derive(Debug, Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an mqpaxos backup: {why}")]
    NotABackup { path: PathBuf, why: String },
    #[error("{path}: backup format {found}, but this mqpaxos reads format {FORMAT} only")]
    Format { path: PathBuf, found: u32 },
    #[error("{path} is damaged: {why}; refusing to restore from it")]
    Damaged { path: PathBuf, why: String },
    #[error(
        "{path} is not empty: a restore writes a new data directory (move the old one away first)"
    )]
    NotEmpty { path: PathBuf },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What a backup says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The cluster it was taken from.
    pub cluster: String,
    /// The copy holds exactly the slots before this one.
    pub next_slot: u64,
    pub keys: u64,
    /// Client sessions in the copy (a restore drops them; see docs/operations.md).
    pub sessions: u64,
    pub snapshot_bytes: u64,
    /// Seconds since the Unix epoch, by the clock of the machine that saved it.
    pub saved_at_unix: u64,
    /// The mqpaxos version that saved it.
    pub version: String,
}

/// A backup read and checked.
#[derive(Clone, Debug)]
pub struct Backup {
    pub header: Header,
    pub snapshot: Snapshot,
}

/// The bytes of a backup file of `snapshot` (encoded as `encoded`), taken from `cluster`.
pub fn encode(cluster: &str, snapshot: &Snapshot, encoded: &[u8], saved_at_unix: u64) -> Vec<u8> {
    let header = Header {
        cluster: cluster.to_string(),
        next_slot: snapshot.next_slot,
        keys: snapshot.kv.len() as u64,
        sessions: snapshot.kv.sessions() as u64,
        snapshot_bytes: encoded.len() as u64,
        saved_at_unix,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let mut out = Vec::with_capacity(16 + header.len() + encoded.len() + DIGEST);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(encoded);
    let digest = ring::digest::digest(&ring::digest::SHA256, &out);
    out.extend_from_slice(digest.as_ref());
    out
}

/// Checks and decodes the bytes of a backup file (`path` only names it in errors).
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Backup, BackupError> {
    let not = |why: &str| BackupError::NotABackup {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let damaged = |why: String| BackupError::Damaged {
        path: path.to_path_buf(),
        why,
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(not("it does not start with MQPXBKUP"));
    }
    let word = |at: usize| -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(b))
    };
    let format = word(8).ok_or_else(|| damaged("cut short in its first bytes".into()))?;
    if format != FORMAT {
        return Err(BackupError::Format {
            path: path.to_path_buf(),
            found: format,
        });
    }
    let header_len =
        word(12).ok_or_else(|| damaged("cut short in its first bytes".into()))? as usize;
    if header_len > MAX_HEADER {
        return Err(damaged(format!("a header length of {header_len} bytes")));
    }
    // Whole-file checksum first: then every length below describes bytes that are as saved.
    let Some(body_len) = bytes.len().checked_sub(DIGEST) else {
        return Err(damaged("cut short (no checksum at the end)".into()));
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes[..body_len]);
    if digest.as_ref() != &bytes[body_len..] {
        return Err(damaged(format!(
            "its SHA-256 checksum does not match ({} bytes: cut short or altered)",
            bytes.len()
        )));
    }
    let header_end = 16 + header_len;
    let header: Header = bytes
        .get(16..header_end)
        .and_then(|h| serde_json::from_slice(h).ok())
        .ok_or_else(|| damaged("its header is unreadable".into()))?;
    let snapshot_end = usize::try_from(header.snapshot_bytes)
        .ok()
        .and_then(|n| header_end.checked_add(n))
        .filter(|end| *end == body_len)
        .ok_or_else(|| damaged("its length does not match its header".into()))?;
    let snapshot = mqpaxos_core::decode_snapshot(&bytes[header_end..snapshot_end])
        .ok_or_else(|| damaged("its snapshot does not decode".into()))?;
    if snapshot.next_slot != header.next_slot {
        return Err(damaged(format!(
            "its header says slot {} but its snapshot is of slot {}",
            header.next_slot, snapshot.next_slot
        )));
    }
    Ok(Backup { header, snapshot })
}

/// Reads and checks the backup file at `path`.
pub fn read(path: &Path) -> Result<Backup, BackupError> {
    let bytes = std::fs::read(path).map_err(|source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same directory, synced and then
/// renamed, so that a crash never leaves a half-written file under the backup's name.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    use std::io::Write;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| BackupError::Io { path: p, source }
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".partial");
    let tmp = path.with_file_name(tmp_name);
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}

/// Writes a new data directory `dir` for server `id` of `cluster` that starts from the
/// backup's state: its snapshot, without client sessions, and nothing promised or accepted.
/// Every server of the new cluster restored from the same file starts from the same slot,
/// so they agree on everything before it and elect a leader as a new cluster does.
pub fn restore(
    backup: &Backup,
    dir: &Path,
    cluster: &str,
    id: NodeId,
    max_sessions: usize,
) -> Result<(), BackupError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty {
                    path: dir.to_path_buf(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(BackupError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    }
    let mut storage = FileStorage::open(dir, cluster, id, max_sessions, SyncPolicy::Always)?;
    let snapshot = Snapshot {
        next_slot: backup.snapshot.next_slot,
        kv: backup.snapshot.kv.without_sessions(),
    };
    storage.persist(vec![PersistOp::Snapshot(snapshot)])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqpaxos_core::{Command, KvStore, Op};

    fn sample() -> Snapshot {
        let mut kv = KvStore::new(100);
        let open = Command {
            client: "c/1".into(),
            seq: 0,
            op: Op::Open,
        };
        kv.apply(3, &open);
        let put = Command {
            client: "c/1/3".into(),
            seq: 1,
            op: Op::Put {
                key: "k".into(),
                value: "v".into(),
            },
        };
        kv.apply(4, &put);
        Snapshot { next_slot: 5, kv }
    }

    fn file() -> Vec<u8> {
        let s = sample();
        let encoded = mqpaxos_core::encode_snapshot(&s).expect("encodes");
        encode("prod", &s, &encoded, 1)
    }

    #[test]
    fn a_backup_reads_back_as_written() {
        let b = decode(Path::new("f"), &file()).expect("reads back");
        assert_eq!(b.header.cluster, "prod");
        assert_eq!(b.header.next_slot, 5);
        assert_eq!((b.header.keys, b.header.sessions), (1, 1));
        assert_eq!(b.snapshot, sample());
    }

    #[test]
    fn a_cut_or_altered_file_is_refused_with_a_reason() {
        let f = file();
        let p = Path::new("f");
        for cut in [0, 4, 10, 15, 20, f.len() / 2, f.len() - 1] {
            let e = decode(p, &f[..cut]).expect_err("a cut file is refused");
            assert!(
                matches!(
                    e,
                    BackupError::Damaged { .. } | BackupError::NotABackup { .. }
                ),
                "cut at {cut}: {e}"
            );
        }
        for i in 16..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x40;
            let e = decode(p, &g).expect_err("a flipped bit is refused");
            assert!(matches!(e, BackupError::Damaged { .. }), "byte {i}: {e}");
        }
        let mut g = f.clone();
        g[8] = 9;
        assert!(matches!(
            decode(p, &g),
            Err(BackupError::Format { found: 9, .. })
        ));
        assert!(matches!(
            decode(p, b"{\"json\": 1}"),
            Err(BackupError::NotABackup { .. })
        ));
    }

    #[test]
    fn a_restored_directory_starts_from_the_backup_without_sessions() {
        let d = tempfile::tempdir().expect("temp dir");
        let b = decode(Path::new("f"), &file()).expect("reads back");
        let dir = d.path().join("server2");
        restore(&b, &dir, "prod", 2, 100).expect("restores");
        let mut s = FileStorage::open(&dir, "prod", 2, 100, SyncPolicy::Always).expect("opens");
        assert!(!s.empty, "a restored directory is not taken for a lost one");
        let durable = s.load().expect("loads");
        assert_eq!(durable.snapshot.next_slot, 5);
        assert_eq!(durable.snapshot.kv.get("k"), Some("v"));
        assert_eq!(durable.snapshot.kv.sessions(), 0);
        drop(s);
        let e = restore(&b, &dir, "prod", 2, 100).expect_err("never over a directory");
        assert!(matches!(e, BackupError::NotEmpty { .. }), "{e}");
    }
}
