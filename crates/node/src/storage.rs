//! Durable storage for a server's Paxos state: the promised ballot, the accepted log and the
//! snapshot (`mqpaxos_core::Durable`).
//!
//! `FileStorage` keeps a write-ahead log in `<data-dir>/wal`: each record is
//! `[length: u32 LE][crc32: u32 LE][postcard(PersistOp)]`, written and synced once per
//! protocol step (every op a step produced shares one fsync). The file is sized in whole
//! chunks of [`CHUNK`] bytes, and the records are always followed by at least one all-zero
//! header, which marks the end. That is what makes a file cut short detectable: its length is
//! no longer a whole number of chunks, or the end marker is missing. (It also means most syncs
//! do not change the file's size.) When the core takes a snapshot the file is rewritten
//! compactly (snapshot, promise, incarnations, remaining entries) into `wal.new`, synced, and
//! renamed over `wal`, so the file stays as small as the live state.
//! On load, a torn or corrupt record at the very end, or a file cut short, is cut back to the
//! last whole record and reported, and the server then rejoins before voting (it may have
//! lost records it had acknowledged); a bad record followed by good ones is corruption, and
//! loading stops with an error naming the file. `<data-dir>/meta.json` names the cluster and
//! server id the directory belongs to, and a directory of another cluster or server is
//! refused.

use mqpaxos_core::{Durable, NodeId, PersistOp};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: corrupt record at byte {offset}: {why}; refusing to start from damaged state"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    #[error("{path}: belongs to {found}, not to {expected}")]
    WrongOwner {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a server's durable state lives.
pub trait Storage: Send {
    /// The state as of the last successful `persist`.
    fn load(&mut self) -> Result<Durable, StorageError>;
    /// Makes `ops` durable (in order) before returning.
    fn persist(&mut self, ops: &[PersistOp]) -> Result<(), StorageError>;
}

/// Keeps nothing across a restart. Only for tests and benchmarks: a server that forgets
/// its promises can break Paxos's safety when it restarts.
pub struct MemoryStorage {
    durable: Durable,
}

impl MemoryStorage {
    pub fn new(max_sessions: usize) -> Self {
        MemoryStorage {
            durable: Durable::new(max_sessions),
        }
    }
}

impl Storage for MemoryStorage {
    fn load(&mut self) -> Result<Durable, StorageError> {
        Ok(self.durable.clone())
    }
    fn persist(&mut self, ops: &[PersistOp]) -> Result<(), StorageError> {
        for op in ops {
            self.durable.apply(op);
        }
        Ok(())
    }
}

/// Whether `persist` waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fdatasync after every step's writes: an acknowledged write survives power loss.
    Always,
    /// Leave it to the page cache: survives a process crash, not a machine crash.
    Never,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct Meta {
    cluster: String,
    server: NodeId,
    /// 2: the log is sized in chunks and ends with a zero header. 0 (absent): an older log
    /// that simply ends at the end of the file; it is converted on open.
    #[serde(default)]
    wal_format: u32,
}

const WAL_FORMAT: u32 = 2;

/// The write-ahead log in a data directory.
pub struct FileStorage {
    dir: PathBuf,
    wal_path: PathBuf,
    wal: File,
    sync: SyncPolicy,
    /// A mirror of what is on disk, for rewriting the file at a snapshot.
    durable: Durable,
    /// Set when the end of the log was damaged or missing at load: how many bytes were cut
    /// off (0 when the file had been cut short). The server must then rejoin.
    pub repaired_tail: Option<u64>,
    /// Where the next record goes, and the file's length (a whole number of chunks).
    end: u64,
    len: u64,
}

/// The log file grows in steps of this many bytes (zero-filled, sparse until written).
pub const CHUNK: u64 = 1 << 20;

/// The file length that holds `data` bytes of records plus the zero end marker.
fn chunked_len(data: u64) -> u64 {
    (data + HEADER as u64).div_ceil(CHUNK) * CHUNK
}

const HEADER: usize = 8;
/// No single record may claim more than this; a larger length is corruption, not data.
const MAX_RECORD: u32 = 256 * 1024 * 1024;

impl FileStorage {
    /// Opens (or creates) the data directory of server `server` of cluster `cluster`.
    pub fn open(
        dir: &Path,
        cluster: &str,
        server: NodeId,
        max_sessions: usize,
        sync: SyncPolicy,
    ) -> Result<Self, StorageError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let meta_path = dir.join("meta.json");
        let want = Meta {
            cluster: cluster.to_string(),
            server,
            wal_format: WAL_FORMAT,
        };
        let mut format = WAL_FORMAT;
        match fs::read(&meta_path) {
            Ok(bytes) => {
                let found: Meta =
                    serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                        path: meta_path.clone(),
                        offset: 0,
                        why: e.to_string(),
                    })?;
                format = found.wal_format;
                if (&found.cluster, found.server) != (&want.cluster, want.server) {
                    return Err(StorageError::WrongOwner {
                        path: meta_path,
                        found: format!("server {} of cluster {:?}", found.server, found.cluster),
                        expected: format!("server {server} of cluster {cluster:?}"),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let tmp = dir.join("meta.json.new");
                let body = serde_json::to_vec_pretty(&want).unwrap_or_default();
                write_synced(&tmp, &body)?;
                fs::rename(&tmp, &meta_path).map_err(io(&meta_path))?;
                sync_dir(dir)?;
            }
            Err(e) => return Err(io(&meta_path)(e)),
        }
        let wal_path = dir.join("wal");
        let mut durable = Durable::new(max_sessions);
        let (valid_len, damaged) = replay(&wal_path, &mut durable, format >= WAL_FORMAT)?;
        let wal = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .read(true)
            .open(&wal_path)
            .map_err(io(&wal_path))?;
        let mut s = FileStorage {
            dir: dir.to_path_buf(),
            wal_path,
            wal,
            sync,
            durable,
            repaired_tail: damaged,
            end: valid_len,
            len: chunked_len(valid_len),
        };
        if format < WAL_FORMAT {
            // An older log: rewrite it in today's format, then say so in meta.json.
            s.rewrite()?;
            let tmp = dir.join("meta.json.new");
            let body = serde_json::to_vec_pretty(&want).unwrap_or_default();
            write_synced(&tmp, &body)?;
            fs::rename(&tmp, &meta_path).map_err(io(&meta_path))?;
            sync_dir(dir)?;
        } else {
            // Cut back to the last whole record (zeros from there on, the end marker) and
            // restore the chunked length; a no-op on a healthy file.
            let actual = s.wal.metadata().map_err(io(&s.wal_path))?.len();
            if damaged.is_some() || actual != s.len {
                s.wal.set_len(valid_len).map_err(io(&s.wal_path))?;
                s.wal.set_len(s.len).map_err(io(&s.wal_path))?;
                s.wal.sync_all().map_err(io(&s.wal_path))?;
            }
        }
        Ok(s)
    }

    /// Bytes of records in the log (the file itself is longer: whole chunks).
    pub fn log_bytes(&self) -> u64 {
        self.end
    }

    fn rewrite(&mut self) -> Result<(), StorageError> {
        let tmp = self.dir.join("wal.new");
        let mut buf = Vec::new();
        frame(
            &mut buf,
            &PersistOp::Snapshot(self.durable.snapshot.clone()),
        )?;
        for op in self.durable.meta_ops() {
            frame(&mut buf, &op)?;
        }
        for (slot, entry) in self.durable.log.iter_from(0) {
            frame(
                &mut buf,
                &PersistOp::Accept {
                    slot,
                    entry: entry.clone(),
                },
            )?;
        }
        let end = buf.len() as u64;
        let len = chunked_len(end);
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&buf).map_err(io(&tmp))?;
            f.set_len(len).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &self.wal_path).map_err(io(&self.wal_path))?;
        sync_dir(&self.dir)?;
        self.wal = OpenOptions::new()
            .write(true)
            .read(true)
            .open(&self.wal_path)
            .map_err(io(&self.wal_path))?;
        self.end = end;
        self.len = len;
        Ok(())
    }
}

impl Storage for FileStorage {
    fn load(&mut self) -> Result<Durable, StorageError> {
        Ok(self.durable.clone())
    }

    fn persist(&mut self, ops: &[PersistOp]) -> Result<(), StorageError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut snapshot = false;
        for op in ops {
            self.durable.apply(op);
            if matches!(op, PersistOp::Snapshot(_)) {
                snapshot = true;
            } else {
                frame(&mut buf, op)?;
            }
        }
        if snapshot {
            // The rewrite holds everything, including this step's other ops.
            return self.rewrite();
        }
        let end = self.end + buf.len() as u64;
        if chunked_len(end) > self.len {
            // Grow by whole chunks, keeping room for the end marker; fdatasync below makes
            // the new length durable with the records.
            self.len = chunked_len(end);
            self.wal.set_len(self.len).map_err(io(&self.wal_path))?;
        }
        self.wal
            .write_all_at(&buf, self.end)
            .map_err(io(&self.wal_path))?;
        self.end = end;
        if self.sync == SyncPolicy::Always {
            self.wal.sync_data().map_err(io(&self.wal_path))?;
        }
        Ok(())
    }
}

fn frame(buf: &mut Vec<u8>, op: &PersistOp) -> Result<(), StorageError> {
    let body = postcard::to_allocvec(op).map_err(|e| StorageError::Corrupt {
        path: PathBuf::from("<encode>"),
        offset: 0,
        why: e.to_string(),
    })?;
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    buf.extend_from_slice(&body);
    Ok(())
}

/// Applies every valid record of the file to `durable`. Returns the length of the valid
/// prefix and, if the end was damaged, how many bytes past it were discarded (0 for a file
/// cut short). `chunked`: the file is in today's format (see the module docs); otherwise it
/// is an older log that ends where the file ends.
fn replay(
    path: &Path,
    durable: &mut Durable,
    chunked: bool,
) -> Result<(u64, Option<u64>), StorageError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes).map_err(io(path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, None)),
        Err(e) => return Err(io(path)(e)),
    }
    let cut_short = chunked && !(bytes.len() as u64).is_multiple_of(CHUNK);
    let mut at = 0usize;
    while at < bytes.len() {
        if chunked
            && bytes[at..(at + HEADER).min(bytes.len())]
                .iter()
                .all(|b| *b == 0)
        {
            // The end marker. Zeros where records should be are damage, though.
            if valid_record_after(&bytes, at + 1) {
                return Err(StorageError::Corrupt {
                    path: path.to_path_buf(),
                    offset: at as u64,
                    why: "zeros in the middle of the log".into(),
                });
            }
            return Ok((at as u64, cut_short.then_some(0)));
        }
        let bad = |why: &str| (at as u64, why.to_string());
        let outcome: Result<(PersistOp, usize), (u64, String)> = (|| {
            let header = bytes
                .get(at..at + HEADER)
                .ok_or_else(|| bad("short header"))?;
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            if len > MAX_RECORD {
                return Err(bad("impossible record length"));
            }
            let body = bytes
                .get(at + HEADER..at + HEADER + len as usize)
                .ok_or_else(|| bad("short record"))?;
            if crc32fast::hash(body) != crc {
                return Err(bad("checksum mismatch"));
            }
            let op: PersistOp = postcard::from_bytes(body).map_err(|e| bad(&e.to_string()))?;
            Ok((op, HEADER + len as usize))
        })();
        match outcome {
            Ok((op, n)) => {
                durable.apply(&op);
                at += n;
            }
            Err((offset, why)) => {
                // Only the last record can be torn by a crash; if any valid record follows,
                // this is damage in the middle.
                if valid_record_after(&bytes, at + 1) {
                    return Err(StorageError::Corrupt {
                        path: path.to_path_buf(),
                        offset,
                        why,
                    });
                }
                return Ok((at as u64, Some((bytes.len() - at) as u64)));
            }
        }
    }
    // Records up to the very end and no end marker: the file was cut short (an empty or
    // missing file is a new log).
    Ok((at as u64, (chunked && at > 0).then_some(0)))
}

/// Whether any offset from `from` on starts a record with a valid checksum.
fn valid_record_after(bytes: &[u8], from: usize) -> bool {
    (from..bytes.len().saturating_sub(HEADER)).any(|at| {
        let h = &bytes[at..at + HEADER];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        len > 0
            && bytes.get(at + HEADER..at + HEADER + len).is_some_and(|b| {
                crc32fast::hash(b) == crc && postcard::from_bytes::<PersistOp>(b).is_ok()
            })
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let mut f = File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqpaxos_core::{Ballot, Command, Entry, KvStore, Op, Snapshot};

    fn entry(round: u64, v: &str) -> Entry {
        Entry {
            ballot: Ballot::new(round, 1),
            value: vec![Command {
                client: "c/1".into(),
                seq: 1,
                op: Op::Put {
                    key: "k".into(),
                    value: v.into(),
                },
            }],
        }
    }

    fn open(dir: &Path) -> FileStorage {
        FileStorage::open(dir, "test", 1, 100, SyncPolicy::Always).unwrap()
    }

    #[test]
    fn state_survives_reopen_and_snapshots_compact_the_file() {
        let d = tempfile::tempdir().unwrap();
        let mut s = open(d.path());
        s.persist(&[
            PersistOp::Promise(Ballot::new(2, 1)),
            PersistOp::Incarnation {
                server: 3,
                incarnation: 2,
            },
            PersistOp::Rejoining(true),
        ])
        .unwrap();
        for slot in 0..50 {
            s.persist(&[PersistOp::Accept {
                slot,
                entry: entry(2, &format!("v{slot}")),
            }])
            .unwrap();
        }
        let before = s.log_bytes();
        s.persist(&[PersistOp::Snapshot(Snapshot {
            next_slot: 45,
            kv: KvStore::new(100),
        })])
        .unwrap();
        let after = s.log_bytes();
        assert_eq!(fs::metadata(d.path().join("wal")).unwrap().len() % CHUNK, 0);
        assert!(after < before / 4, "{after} vs {before}");
        let expected = s.load().unwrap();
        drop(s);
        let mut s = open(d.path());
        let got = s.load().unwrap();
        assert_eq!(got, expected);
        assert_eq!(got.promised, Ballot::new(2, 1));
        assert_eq!(got.log.start(), 45);
        assert_eq!(got.log.get(49), Some(&entry(2, "v49")));
        // The rewrite keeps what a rejoin depends on, not just the log.
        assert_eq!(got.incarnations.get(&3), Some(&2));
        assert!(got.rejoining);
    }

    #[test]
    fn a_torn_tail_is_cut_off() {
        let d = tempfile::tempdir().unwrap();
        let mut s = open(d.path());
        s.persist(&[PersistOp::Promise(Ballot::new(1, 1))]).unwrap();
        s.persist(&[PersistOp::Accept {
            slot: 0,
            entry: entry(1, "x"),
        }])
        .unwrap();
        let end = s.log_bytes();
        drop(s);
        // A crash mid-write: the last record's bytes stop short, zeros after them.
        let wal = d.path().join("wal");
        let f = OpenOptions::new().write(true).open(&wal).unwrap();
        f.write_all_at(&[0; 3], end - 3).unwrap();
        let mut s = open(d.path());
        assert!(s.repaired_tail.is_some_and(|n| n > 0));
        let got = s.load().unwrap();
        assert_eq!(got.promised, Ballot::new(1, 1));
        assert!(got.log.get(0).is_none(), "the torn accept is gone");
        // The file is usable again.
        s.persist(&[PersistOp::Accept {
            slot: 0,
            entry: entry(1, "y"),
        }])
        .unwrap();
        drop(s);
        assert_eq!(
            open(d.path()).load().unwrap().log.get(0),
            Some(&entry(1, "y"))
        );
    }

    /// Cut exactly at a record boundary, the log is valid but shorter; the chunked length
    /// and the missing end marker give it away.
    #[test]
    fn a_log_cut_short_on_a_record_boundary_is_noticed() {
        let d = tempfile::tempdir().unwrap();
        let mut s = open(d.path());
        let mut ends = Vec::new();
        for slot in 0..5 {
            s.persist(&[PersistOp::Accept {
                slot,
                entry: entry(1, "x"),
            }])
            .unwrap();
            ends.push(s.log_bytes());
        }
        drop(s);
        let wal = d.path().join("wal");
        OpenOptions::new()
            .write(true)
            .open(&wal)
            .unwrap()
            .set_len(ends[2])
            .unwrap();
        let mut s = open(d.path());
        assert_eq!(s.repaired_tail, Some(0), "the cut is noticed");
        assert!(s.load().unwrap().log.get(2).is_some());
        assert!(s.load().unwrap().log.get(3).is_none());
        drop(s);
        // Repaired to a healthy file: the next start is clean.
        assert_eq!(open(d.path()).repaired_tail, None);
        // Cut at a chunk boundary inside the records: no end marker.
        let mut s = open(d.path());
        let big = "y".repeat(4096);
        let mut slot = 3;
        while s.log_bytes() < CHUNK + 100 {
            s.persist(&[PersistOp::Accept {
                slot,
                entry: entry(1, &big),
            }])
            .unwrap();
            slot += 1;
        }
        drop(s);
        OpenOptions::new()
            .write(true)
            .open(&wal)
            .unwrap()
            .set_len(CHUNK)
            .unwrap();
        assert!(open(d.path()).repaired_tail.is_some());
    }

    /// A data directory written before the chunked format is read and converted.
    #[test]
    fn an_older_log_is_converted() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("meta.json"),
            r#"{"cluster":"test","server":1}"#,
        )
        .unwrap();
        let mut buf = Vec::new();
        frame(&mut buf, &PersistOp::Promise(Ballot::new(4, 2))).unwrap();
        frame(
            &mut buf,
            &PersistOp::Accept {
                slot: 0,
                entry: entry(4, "old"),
            },
        )
        .unwrap();
        fs::write(d.path().join("wal"), &buf).unwrap();
        let mut s = open(d.path());
        assert_eq!(s.repaired_tail, None);
        assert_eq!(s.load().unwrap().promised, Ballot::new(4, 2));
        drop(s);
        let meta = fs::read_to_string(d.path().join("meta.json")).unwrap();
        assert!(meta.contains("wal_format"), "{meta}");
        let mut s = open(d.path());
        assert_eq!(s.repaired_tail, None);
        assert_eq!(s.load().unwrap().log.get(0), Some(&entry(4, "old")));
    }

    #[test]
    fn damage_in_the_middle_refuses_to_start() {
        let d = tempfile::tempdir().unwrap();
        let mut s = open(d.path());
        for slot in 0..5 {
            s.persist(&[PersistOp::Accept {
                slot,
                entry: entry(1, "x"),
            }])
            .unwrap();
        }
        drop(s);
        let wal = d.path().join("wal");
        let mut bytes = fs::read(&wal).unwrap();
        bytes[12] ^= 0xff;
        fs::write(&wal, bytes).unwrap();
        let err = FileStorage::open(d.path(), "test", 1, 100, SyncPolicy::Always)
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(msg.contains("wal") && msg.contains("corrupt"), "{msg}");
    }

    #[test]
    fn a_data_dir_of_another_server_is_refused() {
        let d = tempfile::tempdir().unwrap();
        drop(open(d.path()));
        let err = FileStorage::open(d.path(), "test", 2, 100, SyncPolicy::Always)
            .err()
            .unwrap();
        assert!(err.to_string().contains("server 1"), "{err}");
        let err = FileStorage::open(d.path(), "other", 1, 100, SyncPolicy::Always)
            .err()
            .unwrap();
        assert!(err.to_string().contains("cluster"), "{err}");
    }
}
