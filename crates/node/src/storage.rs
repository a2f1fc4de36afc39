//! Durable storage for a server's Paxos state: the promised ballot, the accepted log and the
//! snapshot (`mqpaxos_core::Durable`).
//!
//! `FileStorage` keeps a write-ahead log in `<data-dir>/wal`. Each flush of the driver (every
//! op of a group commit, sharing one fsync) is written as one *group*:
//! `[magic "MQPG"][body length: u32 LE][sequence: u64 LE][crc32 of length, sequence and body:
//! u32 LE]` followed by the body, the group's records, each
//! `[length: u32 LE][crc32: u32 LE][postcard(PersistOp)]`. The file is sized in whole
//! chunks of [`CHUNK`] bytes, and the records are always followed by at least one all-zero
//! header, which marks the end. That is what makes a file cut short detectable: its length is
//! no longer a whole number of chunks, or the end marker is missing. (It also means most syncs
//! do not change the file's size.) When the core takes a snapshot the file is rewritten
//! compactly (snapshot, promise, incarnations, remaining entries) into `wal.new`, synced, and
//! renamed over `wal`, so the file stays as small as the live state.
//!
//! Recovery tells a crash from damage (after Protocol-Aware Recovery, FAST '18): a group is
//! written past the end of the records, where the file holds only zeros, and only the last
//! group can be unsynced when the process or the power dies. A power loss keeps any subset of
//! that group's sectors, so a *torn* last group fails its checksum and has at least one
//! 512-byte block that is still all zeros; it held nothing that was ever acknowledged, and it
//! is cut off without further ado ([`Recovery::TornUnsynced`]). A last group that fails its
//! checksum with no zero block, or a file cut short (its length is no longer whole chunks, or
//! the end marker is gone), lost bytes that had been synced: the server must rejoin before it
//! votes ([`Recovery::LostSynced`]). A bad group followed by a good one is damage in the
//! middle, and loading stops with an error naming the file. `<data-dir>/meta.json` names the cluster and
//! server id the directory belongs to, and a directory of another cluster or server is
//! refused.

use mqpaxos_core::{Durable, NodeId, PersistOp};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use thiserror::Error;

/// Fault injection for power-loss tests: when set, the next group is written torn (some of
/// its 512-byte blocks, never all, and no sync) and the process aborts at once, as a power
/// cut in the middle of a write leaves it. Only set through [`tear_next_group`], which the
/// runtime calls on SIGUSR1 when `MQPAXOS_FAULT_TEAR_WAL=1` (see `docs/storage.md`).
static TEAR_NEXT_GROUP: AtomicBool = AtomicBool::new(false);

/// Arms the fault above.
pub fn tear_next_group() {
    TEAR_NEXT_GROUP.store(true, Ordering::SeqCst);
}

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
    #[error(
        "{path}: another process is using this data directory (is this server already running?)"
    )]
    Locked { path: PathBuf },
    #[error("a write of {bytes} bytes is larger than the log allows")]
    TooLarge { bytes: usize },
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
    /// Makes `ops` durable (in order) before returning. Takes them by value so that their
    /// entries move into the in-memory mirror instead of being copied.
    fn persist(&mut self, ops: Vec<PersistOp>) -> Result<(), StorageError>;
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
    fn persist(&mut self, ops: Vec<PersistOp>) -> Result<(), StorageError> {
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
    /// See [`WAL_FORMAT`].
    #[serde(default)]
    wal_format: u32,
}

/// 4: as 3, and keys in snapshots carry their revisions. 3: records grouped per flush (see the
/// module docs). 2: records one after another, sized in chunks with a zero end marker. 0
/// (absent): records up to the end of the file. Older formats are converted on open; a newer
/// one is refused.
pub const WAL_FORMAT: u32 = 4;

/// The first format whose records carry revisions; older records are read with
/// [`mqpaxos_core::log::legacy`] and converted.
const REVISIONS_FORMAT: u32 = 4;

/// Decodes one record of a log written in WAL format `format`.
fn decode_record(rec: &[u8], format: u32) -> Result<PersistOp, postcard::Error> {
    if format >= REVISIONS_FORMAT {
        postcard::from_bytes(rec)
    } else {
        // Formats 0 and 2 also predate sessions opened through the log.
        postcard::from_bytes::<mqpaxos_core::log::legacy::PersistOp>(rec)
            .map(|op| op.upgrade(format < 3))
    }
}

/// The write-ahead log in a data directory.
pub struct FileStorage {
    dir: PathBuf,
    wal_path: PathBuf,
    wal: File,
    sync: SyncPolicy,
    /// A mirror of what is on disk, for rewriting the file at a snapshot; but for the
    /// snapshot's store, which is dropped once written (`store_on_disk_only`): the core
    /// holds the live store, and a copy here would keep every page the core has changed
    /// since alive (the maps share what did not change).
    durable: Durable,
    store_on_disk_only: bool,
    max_sessions: usize,
    /// What loading found at the end of the log.
    pub recovery: Recovery,
    /// The log held no record at all: a new data directory, or one whose contents were lost.
    pub empty: bool,
    /// Where the next group goes, and the file's length (a whole number of chunks).
    end: u64,
    len: u64,
    /// The next group's sequence number.
    seq: u64,
    /// The group being written, reused from flush to flush (see [`frame`]).
    buf: Vec<u8>,
    /// A snapshot being written on a thread of its own, if one is.
    rewrite: Option<Rewrite>,
    /// [`MAX_REWRITE_TAIL`], but for tests.
    max_tail: usize,
    /// Held for as long as this value lives: one process per data directory.
    _lock: File,
}

/// What loading found at the end of the write-ahead log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// The log ended where it should.
    Clean,
    /// The last group was torn by a crash during its write (before its sync): it was cut off.
    /// Nothing in it was ever acknowledged, so nothing acknowledged is lost.
    TornUnsynced { offset: u64, bytes: u64 },
    /// Bytes that had been synced are gone (the file was cut short, or the last group is
    /// damaged in a way a crash cannot cause): the log was cut back to `offset`, and the
    /// server may have forgotten a promise or an accept it made, so it must rejoin.
    LostSynced { offset: u64, why: String },
}

impl Recovery {
    /// Whether the server must rejoin before it votes.
    pub fn lost_synced(&self) -> bool {
        matches!(self, Recovery::LostSynced { .. })
    }
}

/// The log file grows in steps of this many bytes (zero-filled, sparse until written).
pub const CHUNK: u64 = 1 << 20;

/// The file length that holds `data` bytes of records plus the zero end marker.
fn chunked_len(data: u64) -> u64 {
    (data + HEADER as u64).div_ceil(CHUNK) * CHUNK
}

const HEADER: usize = 8;
/// No single record or group may claim more than this (nearly a length field's range: a
/// snapshot is one record, and the store's quota, `limits::MAX_STORE`, keeps it below 4
/// GiB); a length that runs past the end of the file is corruption. Groups of a flush stay
/// far below it (`limits::MAX_FLUSH`).
const MAX_RECORD: u32 = u32::MAX - (1 << 20);

const GROUP_MAGIC: [u8; 4] = *b"MQPG";
const GROUP_HEADER: usize = 20;
/// A group buffer's capacity that is kept between flushes even when mostly unused.
const KEEP_BUF: usize = 16 << 20;
/// The most bytes of groups kept for the new log while a snapshot's thread writes it: past
/// this, the next flush waits for the thread. The tail grows with the write rate times the
/// snapshot's write time, which grows with the store; the wait keeps memory bounded
/// whatever both are, and is rare (a store of 100 MB is written in well under a second).
const MAX_REWRITE_TAIL: usize = 64 << 20;
/// The unit a crash can leave unwritten (a disk sector).
const BLOCK: usize = 512;

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
        let want = Meta {
            cluster: cluster.to_string(),
            server,
            wal_format: WAL_FORMAT,
        };
        let format = check_meta(dir, &want)?;
        // After the owner check, so a directory of another server is named as such.
        let lock = lock_dir(dir)?;
        let wal_path = dir.join("wal");
        let mut durable = Durable::new(max_sessions);
        let bytes = read_wal(&wal_path)?;
        let (valid_len, seq, recovery) = replay_log(&wal_path, &bytes, format, &mut durable)?;
        drop(bytes);
        let damaged = recovery != Recovery::Clean;
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
            store_on_disk_only: false,
            max_sessions,
            recovery,
            empty: valid_len == 0,
            end: valid_len,
            len: chunked_len(valid_len),
            seq,
            buf: Vec::new(),
            rewrite: None,
            max_tail: MAX_REWRITE_TAIL,
            _lock: lock,
        };
        if format < WAL_FORMAT {
            // An older log: rewrite it in today's format, then say so in meta.json.
            s.rewrite()?;
            write_meta(dir, &want)?;
        } else {
            // Cut back to the last whole record (zeros from there on, the end marker) and
            // restore the chunked length; a no-op on a healthy file.
            let actual = s.wal.metadata().map_err(io(&s.wal_path))?.len();
            if damaged || actual != s.len {
                s.wal.set_len(valid_len).map_err(io(&s.wal_path))?;
                s.wal.set_len(s.len).map_err(io(&s.wal_path))?;
                s.wal.sync_all().map_err(io(&s.wal_path))?;
            }
        }
        Ok(s)
    }

    /// Waits for a snapshot still being written and puts it in place (a clean shutdown, and
    /// tests that look at the file, want the compact log; nothing else needs to wait).
    pub fn settle(&mut self) -> Result<(), StorageError> {
        self.finish_rewrite(true)
    }

    /// Bytes of records in the log (the file itself is longer: whole chunks).
    pub fn log_bytes(&self) -> u64 {
        self.end
    }

    /// Rewrites the log compactly and waits for it (an older format converted at open).
    fn rewrite(&mut self) -> Result<(), StorageError> {
        self.start_rewrite(self.seq)?;
        self.seq += 1;
        self.finish_rewrite(true)
    }

    /// Starts writing what the mirror holds (snapshot, promise, incarnations, remaining
    /// entries) into `wal.new` as one group numbered `seq`, on a thread of its own: a store
    /// of a hundred megabytes took the event loop half a second to encode, write and sync,
    /// long enough for the followers to lose their leader (docs/speed.md). Meanwhile groups
    /// go on being appended and synced to the current log, which alone counts until
    /// [`FileStorage::finish_rewrite`] appends them to the new one and renames it over.
    fn start_rewrite(&mut self, seq: u64) -> Result<(), StorageError> {
        let snapshot = self.durable.snapshot.clone();
        let meta = self.durable.meta_ops();
        let entries: Vec<(u64, mqpaxos_core::Entry)> = self
            .durable
            .log
            .iter_from(0)
            .map(|(slot, e)| (slot, e.clone()))
            .collect();
        let tmp = self.dir.join("wal.new");
        let path = tmp.clone();
        let thread = std::thread::Builder::new()
            .name("mqpaxos-snapshot".into())
            .spawn(move || write_rewrite(&path, seq, snapshot, meta, entries))
            .map_err(io(&tmp))?;
        self.rewrite = Some(Rewrite {
            thread,
            tail: Vec::new(),
        });
        Ok(())
    }

    /// If the snapshot's thread is done (or, with `wait`, once it is): appends the groups
    /// written since to the new log, syncs it and puts it in place of the current one.
    fn finish_rewrite(&mut self, wait: bool) -> Result<(), StorageError> {
        if !wait
            && self
                .rewrite
                .as_ref()
                .is_none_or(|r| !r.thread.is_finished())
        {
            return Ok(());
        }
        let Some(Rewrite { thread, tail }) = self.rewrite.take() else {
            return Ok(());
        };
        let tmp = self.dir.join("wal.new");
        let written = thread.join().map_err(|_| StorageError::Io {
            path: tmp.clone(),
            source: std::io::Error::other("the snapshot writer panicked"),
        })??;
        let end = written + tail.len() as u64;
        let len = chunked_len(end);
        {
            let f = OpenOptions::new()
                .write(true)
                .open(&tmp)
                .map_err(io(&tmp))?;
            f.write_all_at(&tail, written).map_err(io(&tmp))?;
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

/// Reads `<dir>/meta.json` and returns the log's format, refusing a directory of another
/// server or cluster or of a newer mqpaxos; writes it for a new directory.
fn check_meta(dir: &Path, want: &Meta) -> Result<u32, StorageError> {
    let meta_path = dir.join("meta.json");
    let bytes = match fs::read(&meta_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_meta(dir, want)?;
            return Ok(WAL_FORMAT);
        }
        Err(e) => return Err(io(&meta_path)(e)),
    };
    let found: Meta = serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
        path: meta_path.clone(),
        offset: 0,
        why: e.to_string(),
    })?;
    let format = found.wal_format;
    if format > WAL_FORMAT {
        return Err(StorageError::Corrupt {
            path: meta_path,
            offset: 0,
            why: format!(
                "the log is in format {format}, written by a newer mqpaxos (this one reads \
                 formats up to {WAL_FORMAT})"
            ),
        });
    }
    if (&found.cluster, found.server) != (&want.cluster, want.server) {
        return Err(StorageError::WrongOwner {
            path: meta_path,
            found: format!("server {} of cluster {:?}", found.server, found.cluster),
            expected: format!("server {} of cluster {:?}", want.server, want.cluster),
        });
    }
    Ok(format)
}

/// Writes `<dir>/meta.json` atomically (a crash leaves the old one or the new one).
fn write_meta(dir: &Path, meta: &Meta) -> Result<(), StorageError> {
    let meta_path = dir.join("meta.json");
    let tmp = dir.join("meta.json.new");
    let body = serde_json::to_vec_pretty(meta).map_err(|e| StorageError::Corrupt {
        path: meta_path.clone(),
        offset: 0,
        why: format!("cannot encode: {e}"),
    })?;
    write_synced(&tmp, &body)?;
    fs::rename(&tmp, &meta_path).map_err(io(&meta_path))?;
    sync_dir(dir)
}

/// Takes the directory's lock, held for as long as the returned file is open: one process
/// per data directory.
fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let lock_path = dir.join("lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(fs::TryLockError::WouldBlock) => Err(StorageError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(io(&lock_path)(e)),
    }
}

/// A snapshot being written into `wal.new` (see [`FileStorage::start_rewrite`]).
struct Rewrite {
    /// Says how many bytes it wrote (the new log's one group), synced.
    thread: std::thread::JoinHandle<Result<u64, StorageError>>,
    /// The groups appended to the current log since it started, in order: in the new log
    /// they follow its group, whose sequence number is the one before the first of them.
    tail: Vec<u8>,
}

/// The snapshot thread's work: one group numbered `seq` holding the state, written to
/// `path` and synced. Streamed through a small buffer rather than encoded whole first: the
/// store's encoding is as large as the store, and holding it would double the process's
/// memory for as long as the write takes. Each record's header and the group's header are
/// filled in once their bytes have gone by (the checksums are combined, not recomputed).
fn write_rewrite(
    path: &Path,
    seq: u64,
    snapshot: mqpaxos_core::Snapshot,
    meta: Vec<PersistOp>,
    entries: Vec<(u64, mqpaxos_core::Entry)>,
) -> Result<u64, StorageError> {
    let file = File::create(path).map_err(io(path))?;
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        Paced {
            file: &file,
            written: 0,
            started: 0,
        },
    );
    out.write_all(&[0; GROUP_HEADER]).map_err(io(path))?;
    let mut at = GROUP_HEADER as u64;
    let mut body = crc32fast::Hasher::new();
    // The store, streamed: its record's header is written in its place once known.
    let (snapshot_header, (len, crc)) = stream_record(&mut out, &PersistOp::Snapshot(snapshot))
        .map_err(|e| match e {
            StreamError::Io(e) => io(path)(e),
            StreamError::Storage(e) => e,
        })?;
    body.update(&snapshot_header);
    body.combine(&crc);
    at += 8 + len;
    // The rest are small records, framed whole: patching thousands of headers afterwards
    // would read back each page whose writeback [`Paced`] has started and the kernel dropped.
    let mut buf = Vec::new();
    let ops = meta.into_iter().chain(
        entries
            .into_iter()
            .map(|(slot, entry)| PersistOp::Accept { slot, entry }),
    );
    for op in ops {
        buf.clear();
        frame(&mut buf, &op)?;
        out.write_all(&buf).map_err(io(path))?;
        body.update(&buf);
        at += buf.len() as u64;
    }
    out.flush().map_err(io(path))?;
    drop(out);
    file.write_all_at(&snapshot_header, GROUP_HEADER as u64)
        .map_err(io(path))?;
    let header = group_header(checked_len(at - GROUP_HEADER as u64)?, seq, &body);
    file.write_all_at(&header, 0).map_err(io(path))?;
    file.sync_all().map_err(io(path))?;
    Ok(at)
}

/// The snapshot's file, whose writeback is started every [`PACE`] bytes as it is written.
/// Left to the kernel, a store's worth of dirty pages is written back in one burst (at the
/// final sync, or when the dirty limit is reached), and on ext4 a server's next `fdatasync`
/// of its log then waits behind it: the journal commit that makes the log's append durable
/// first writes the data blocks the burst has allocated. `POSIX_FADV_DONTNEED` starts the
/// writeback of what was just written without waiting for it and without a journal commit
/// (a `sync_data` here measured worse: a commit per call), and lets the kernel drop those
/// pages once clean, which nothing reads again before a restart.
struct Paced<'a> {
    file: &'a File,
    written: u64,
    started: u64,
}

/// How many bytes the snapshot thread writes between two starts of writeback.
const PACE: u64 = 4 << 20;

impl Write for Paced<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(b)?;
        self.written += n as u64;
        if let Some(len) =
            std::num::NonZeroU64::new(self.written - self.started).filter(|len| len.get() >= PACE)
        {
            // Advice only: if the kernel declines, the final sync writes the pages.
            let _ = rustix::fs::fadvise(
                self.file,
                self.started,
                Some(len),
                rustix::fs::Advice::DontNeed,
            );
            self.started = self.written;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

enum StreamError {
    Io(std::io::Error),
    Storage(StorageError),
}

/// Writes `op` as a record whose 8-byte header is left as zeros: returns that header (to be
/// written in its place), the payload's length and its checksum's state.
fn stream_record(
    out: &mut impl Write,
    op: &PersistOp,
) -> Result<([u8; 8], (u64, crc32fast::Hasher)), StreamError> {
    /// Counts and checksums what goes through it.
    struct Tee<'a, W> {
        out: &'a mut W,
        crc: crc32fast::Hasher,
        len: u64,
    }
    impl<W: Write> Write for Tee<'_, W> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let n = self.out.write(b)?;
            self.crc.update(&b[..n]);
            self.len += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.out.flush()
        }
    }
    out.write_all(&[0; 8]).map_err(StreamError::Io)?;
    let mut tee = Tee {
        out,
        crc: crc32fast::Hasher::new(),
        len: 0,
    };
    postcard::to_io(op, &mut tee).map_err(|e| match e {
        postcard::Error::SerializeBufferFull => StreamError::Io(std::io::Error::other(e)),
        e => StreamError::Storage(StorageError::Corrupt {
            path: PathBuf::from("<encode>"),
            offset: 0,
            why: e.to_string(),
        }),
    })?;
    let Tee { crc, len, .. } = tee;
    let n = checked_len(len).map_err(StreamError::Storage)?;
    let header = record_header(n, crc.clone().finalize());
    Ok((header, (len, crc)))
}

impl Drop for FileStorage {
    fn drop(&mut self) {
        // Not to leave a thread writing into the directory after its owner is gone (a
        // restart in the same process would race it), and to leave the log compact. The
        // current log is complete either way.
        if self.rewrite.is_some() {
            if let Err(e) = self.finish_rewrite(true) {
                tracing::warn!(error = %e, "the last snapshot was not put in place; the log holds everything it did");
            }
        }
    }
}

impl FileStorage {
    /// The fault of [`TEAR_NEXT_GROUP`]: writes a pseudo-random subset of `buf`'s 512-byte
    /// blocks (file-aligned, as a disk writes sectors; at least one left out) where the
    /// group belongs, without a sync, and aborts.
    fn write_torn_and_die(&self, buf: &[u8]) -> ! {
        let start = self.end;
        let end = start + buf.len() as u64;
        let blocks: Vec<u64> = (start / BLOCK as u64..end.div_ceil(BLOCK as u64)).collect();
        let mut x = self.seq ^ 0x9e37_79b9_7f4a_7c15;
        let mut keep: Vec<bool> = blocks
            .iter()
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (x >> 33) & 1 == 0
            })
            .collect();
        if keep.iter().all(|k| *k) {
            if let Some(last) = keep.last_mut() {
                *last = false;
            }
        }
        for (b, k) in blocks.iter().zip(keep) {
            if !k {
                continue;
            }
            let from = (b * BLOCK as u64).max(start);
            let to = ((b + 1) * BLOCK as u64).min(end);
            let piece = &buf[(from - start) as usize..(to - start) as usize];
            let _ = self.wal.write_all_at(piece, from);
        }
        tracing::error!(
            wal = %self.wal_path.display(),
            "fault injection: a group written torn at byte {start}; aborting as a power cut would"
        );
        std::process::abort()
    }
}

impl Storage for FileStorage {
    fn load(&mut self) -> Result<Durable, StorageError> {
        self.finish_rewrite(true)?;
        if !self.store_on_disk_only {
            return Ok(self.durable.clone());
        }
        // Only after a snapshot was written (a server loads once, at start): read it back.
        let bytes = read_wal(&self.wal_path)?;
        let mut durable = Durable::new(self.max_sessions);
        replay_log(&self.wal_path, &bytes, WAL_FORMAT, &mut durable)?;
        Ok(durable)
    }

    fn persist(&mut self, ops: Vec<PersistOp>) -> Result<(), StorageError> {
        if ops.is_empty() {
            return Ok(());
        }
        self.finish_rewrite(false)?;
        let mut buf = std::mem::take(&mut self.buf);
        open_group(&mut buf);
        let mut snapshot = false;
        // Whether a crash before every snapshot of this flush is in place would cost only
        // compaction: the log holds entries for all the slots it covers, so what survives is
        // the state of a crash just before the snapshot, which for a voting server loses
        // nothing (its promises and accepts are all in the log). One received from another
        // server (or restored) covers slots the log lacks, and a rejoining server votes
        // again only on what it re-learned, which may be in the snapshot alone: either is
        // written before this returns.
        let mut implied = !self.durable.rejoining;
        for op in ops {
            if let PersistOp::Snapshot(snap) = &op {
                implied &= !self.durable.rejoining
                    && (self.durable.snapshot.next_slot..snap.next_slot)
                        .all(|slot| self.durable.log.get(slot).is_some());
                snapshot = true;
            } else {
                frame(&mut buf, &op)?;
            }
            self.durable.apply(op);
        }
        if snapshot {
            // One at a time: the earlier one goes in place first, and this group after it.
            self.finish_rewrite(true)?;
        }
        // A snapshot's group is written too, even with nothing else in it: the current log
        // must stay numbered without a gap until the new one replaces it, and the new one's
        // group takes this number (it holds what this group and everything before did).
        let seq = self.seq;
        seal_group(&mut buf, seq)?;
        self.seq += 1;
        let end = self.end + buf.len() as u64;
        if chunked_len(end) > self.len {
            // Grow by whole chunks, keeping room for the end marker; fdatasync below makes
            // the new length durable with the records.
            self.len = chunked_len(end);
            self.wal.set_len(self.len).map_err(io(&self.wal_path))?;
        }
        if TEAR_NEXT_GROUP.load(Ordering::SeqCst) {
            self.write_torn_and_die(&buf);
        }
        self.wal
            .write_all_at(&buf, self.end)
            .map_err(io(&self.wal_path))?;
        self.end = end;
        if self.sync == SyncPolicy::Always {
            self.wal.sync_data().map_err(io(&self.wal_path))?;
        }
        if let Some(r) = &mut self.rewrite {
            r.tail.extend_from_slice(&buf);
            if r.tail.len() > self.max_tail {
                self.finish_rewrite(true)?;
            }
        }
        if snapshot {
            self.start_rewrite(seq)?;
            if !implied {
                self.finish_rewrite(true)?;
            }
            // The thread has its own handle on the store (the maps share their nodes).
            self.durable.snapshot.kv = mqpaxos_core::KvStore::new(self.max_sessions);
            self.store_on_disk_only = true;
        }
        // Kept for the next group; but a burst of large groups does not pin its peak.
        if buf.capacity() > KEEP_BUF && buf.capacity() > 4 * buf.len() {
            buf = Vec::new();
        }
        self.buf = buf;
        Ok(())
    }
}

/// Appends `op` to `buf` framed as a record, serialized in place: a large value is copied
/// once, into memory `buf` already owns, rather than into a fresh allocation and again into
/// the group (with 1 MB values, zeroing fresh pages for those copies was 40% of a follower's
/// CPU: docs/speed.md).
fn frame(buf: &mut Vec<u8>, op: &PersistOp) -> Result<(), StorageError> {
    let at = buf.len();
    buf.extend_from_slice(&[0; 8]);
    let out = postcard::to_extend(op, std::mem::take(buf)).map_err(|e| StorageError::Corrupt {
        path: PathBuf::from("<encode>"),
        offset: 0,
        why: e.to_string(),
    })?;
    *buf = out;
    let body = &buf[at + 8..];
    let header = record_header(checked_len(body.len() as u64)?, crc32fast::hash(body));
    buf[at..at + 8].copy_from_slice(&header);
    Ok(())
}

/// A record's or a group's length as its header stores it, refused past [`MAX_RECORD`].
fn checked_len(len: u64) -> Result<u32, StorageError> {
    u32::try_from(len)
        .ok()
        .filter(|n| *n <= MAX_RECORD)
        .ok_or(StorageError::TooLarge {
            bytes: usize::try_from(len).unwrap_or(usize::MAX),
        })
}

/// A group's header: magic, body length, sequence number, and the checksum of those and
/// the body (`body` has hashed the body alone).
fn group_header(len: u32, seq: u64, body: &crc32fast::Hasher) -> [u8; GROUP_HEADER] {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len.to_le_bytes());
    crc.update(&seq.to_le_bytes());
    crc.combine(body);
    let mut h = [0; GROUP_HEADER];
    h[0..4].copy_from_slice(&GROUP_MAGIC);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..20].copy_from_slice(&crc.finalize().to_le_bytes());
    h
}

/// A record's header: payload length and the payload's checksum.
fn record_header(len: u32, crc: u32) -> [u8; 8] {
    let mut h = [0; 8];
    h[0..4].copy_from_slice(&len.to_le_bytes());
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Starts a group in `buf` (cleared; its capacity is kept): room for the header, which
/// [`seal_group`] fills once the records are framed after it.
fn open_group(buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&[0; GROUP_HEADER]);
}

/// Fills the header of the group that [`open_group`] started, numbering it `seq`.
fn seal_group(buf: &mut [u8], seq: u64) -> Result<(), StorageError> {
    let body = &buf[GROUP_HEADER..];
    let len = checked_len(body.len() as u64)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(body);
    buf[..GROUP_HEADER].copy_from_slice(&group_header(len, seq, &crc));
    Ok(())
}

/// The bytes one group numbered `seq` holding `ops` takes in the log: the group header, then
/// each op framed as a record, by the same [`frame`], [`open_group`] and [`seal_group`] that
/// [`FileStorage::persist`] and the rewrite at a snapshot use. Public only so that tests can
/// pin the on-disk format byte for byte (`tests/golden.rs` and `tests/data/golden/`); the
/// server itself never calls it.
pub fn encode_group(seq: u64, ops: &[PersistOp]) -> Result<Vec<u8>, StorageError> {
    let mut buf = Vec::new();
    open_group(&mut buf);
    for op in ops {
        frame(&mut buf, op)?;
    }
    seal_group(&mut buf, seq)?;
    Ok(buf)
}

fn group_crc(len: u32, seq: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&seq.to_le_bytes());
    h.update(body);
    h.finalize()
}

/// The group at `at`, if one is there whole and valid: its sequence number and body.
fn group_at(bytes: &[u8], at: usize) -> Option<(u64, &[u8])> {
    let h = bytes.get(at..at.checked_add(GROUP_HEADER)?)?;
    if h[0..4] != GROUP_MAGIC {
        return None;
    }
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let seq = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
    let crc = u32::from_le_bytes([h[16], h[17], h[18], h[19]]);
    if len > MAX_RECORD {
        return None;
    }
    let body = bytes.get(at + GROUP_HEADER..at + GROUP_HEADER + len as usize)?;
    (group_crc(len, seq, body) == crc).then_some((seq, body))
}

/// Whether a valid group numbered at least `min_seq` starts anywhere from `from` on.
fn valid_group_after(bytes: &[u8], from: usize, min_seq: u64) -> bool {
    (from..bytes.len().saturating_sub(GROUP_HEADER))
        .filter(|at| bytes[*at..*at + 4] == GROUP_MAGIC)
        .any(|at| group_at(bytes, at).is_some_and(|(seq, _)| seq >= min_seq))
}

/// Whether the bad group at `at` looks torn by a crash: some whole block it touches is still
/// all zeros, as the file was there before the write.
fn looks_torn(bytes: &[u8], at: usize) -> bool {
    let claimed = bytes.get(at + 4..at + 8).map_or(0, |l| {
        u32::from_le_bytes([l[0], l[1], l[2], l[3]]).min(MAX_RECORD) as usize
    });
    let end = (at + GROUP_HEADER + claimed).min(bytes.len());
    let first = at / BLOCK * BLOCK;
    (first..end.max(at + 1)).step_by(BLOCK).any(|b| {
        bytes
            .get(b..(b + BLOCK).min(bytes.len()))
            .is_some_and(|blk| blk.iter().all(|x| *x == 0))
    })
}

/// The bytes of the log at `path`; none when there is no file yet. (Both replays treat an
/// empty log exactly as a missing one: a new log, clean.)
fn read_wal(path: &Path) -> Result<Vec<u8>, StorageError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes).map_err(io(path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(path)(e)),
    }
    Ok(bytes)
}

/// Replays the log `bytes` (the whole file), written in WAL format `format` (from meta.json),
/// into `durable`. Returns the length of the valid prefix, the next group's sequence number,
/// and what was found at the end. `path` only names the file in errors.
fn replay_log(
    path: &Path,
    bytes: &[u8],
    format: u32,
    durable: &mut Durable,
) -> Result<(u64, u64, Recovery), StorageError> {
    if format >= 3 {
        return replay_groups(path, bytes, durable, format);
    }
    let (len, damaged) = replay(path, bytes, durable, format >= 2)?;
    // An older log cannot tell a torn write from lost synced bytes: assume the worst.
    let recovery = match damaged {
        None => Recovery::Clean,
        Some(_) => Recovery::LostSynced {
            offset: len,
            why: "the end of a log in an older format was damaged".into(),
        },
    };
    Ok((len, 0, recovery))
}

/// Replays `bytes` as the whole write-ahead log of a data directory whose `meta.json` gives
/// WAL format `wal_format` ([`WAL_FORMAT`] today; 0 and 2 are the older formats), by the
/// same code [`FileStorage::open`] runs, without the file system: the state recovered and
/// what was found at the end. Damage that refuses a start is the same
/// [`StorageError::Corrupt`] (naming the file `<bytes>`). For fuzzing (`fuzz/`): the log is
/// read from disk, so whatever bytes it holds must give a state or an error, never a panic.
pub fn replay_wal_bytes(
    bytes: &[u8],
    wal_format: u32,
    max_sessions: usize,
) -> Result<(Durable, Recovery), StorageError> {
    let mut durable = Durable::new(max_sessions);
    let (_, _, recovery) = replay_log(Path::new("<bytes>"), bytes, wal_format, &mut durable)?;
    Ok((durable, recovery))
}

/// Applies every valid group of a log in today's format to `durable`. Returns the length of
/// the valid prefix, the next group's sequence number, and what was found at the end.
fn replay_groups(
    path: &Path,
    bytes: &[u8],
    durable: &mut Durable,
    format: u32,
) -> Result<(u64, u64, Recovery), StorageError> {
    let cut_short = !(bytes.len() as u64).is_multiple_of(CHUNK);
    let corrupt = |offset: usize, why: &str| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        why: why.to_string(),
    };
    let mut at = 0usize;
    let mut next_seq: Option<u64> = None;
    loop {
        let min_seq = next_seq.unwrap_or(0);
        let header = &bytes[at..(at + GROUP_HEADER).min(bytes.len())];
        let at_end = header.is_empty() || header.iter().all(|b| *b == 0);
        let valid = if at_end { None } else { group_at(bytes, at) };
        let Some((seq, body)) = valid.filter(|(seq, _)| next_seq.is_none_or(|n| *seq == n)) else {
            // The end of the records: the end marker, a torn last group, or damage.
            if valid_group_after(bytes, at + 1, min_seq) {
                return Err(corrupt(at, "a damaged group with valid groups after it"));
            }
            let recovery = if cut_short || (header.is_empty() && at > 0) {
                Recovery::LostSynced {
                    offset: at as u64,
                    why: "the file was cut short: synced records may be missing".into(),
                }
            } else if at_end && bytes[at..].iter().all(|b| *b == 0) {
                Recovery::Clean
            } else if looks_torn(bytes, at) || at_end {
                let tail = bytes[at..]
                    .iter()
                    .rposition(|b| *b != 0)
                    .map_or(0, |p| p + 1);
                Recovery::TornUnsynced {
                    offset: at as u64,
                    bytes: tail as u64,
                }
            } else {
                Recovery::LostSynced {
                    offset: at as u64,
                    why: "the last group is damaged and not by a torn write".into(),
                }
            };
            return Ok((at as u64, next_seq.unwrap_or(0), recovery));
        };
        let mut r = 0usize;
        while r < body.len() {
            let h = body
                .get(r..r + HEADER)
                .ok_or_else(|| corrupt(at, "a short record inside a valid group"))?;
            let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            let rec = body
                .get(r + HEADER..r + HEADER + len)
                .filter(|b| crc32fast::hash(b) == crc)
                .ok_or_else(|| corrupt(at, "a bad record inside a valid group"))?;
            let op = decode_record(rec, format).map_err(|e| corrupt(at, &e.to_string()))?;
            durable.apply(op);
            r += HEADER + len;
        }
        at += GROUP_HEADER + body.len();
        next_seq = Some(seq + 1);
    }
}

/// Applies every valid record of an older-format file to `durable`. Returns the length of the valid
/// prefix and, if the end was damaged, how many bytes past it were discarded (0 for a file
/// cut short). `chunked`: the file is in today's format (see the module docs); otherwise it
/// is an older log that ends where the file ends.
fn replay(
    path: &Path,
    bytes: &[u8],
    durable: &mut Durable,
    chunked: bool,
) -> Result<(u64, Option<u64>), StorageError> {
    let cut_short = chunked && !(bytes.len() as u64).is_multiple_of(CHUNK);
    let mut at = 0usize;
    while at < bytes.len() {
        if chunked
            && bytes[at..(at + HEADER).min(bytes.len())]
                .iter()
                .all(|b| *b == 0)
        {
            // The end marker. Zeros where records should be are damage, though.
            if valid_record_after(bytes, at + 1) {
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
            // Formats 0 and 2 predate revisions.
            let op = decode_record(body, 0).map_err(|e| bad(&e.to_string()))?;
            Ok((op, HEADER + len as usize))
        })();
        match outcome {
            Ok((op, n)) => {
                durable.apply(op);
                at += n;
            }
            Err((offset, why)) => {
                // Only the last record can be torn by a crash; if any valid record follows,
                // this is damage in the middle.
                if valid_record_after(bytes, at + 1) {
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

    /// A store holding `k` = `v`, put at `slot`.
    fn store_with_k_v(slot: u64) -> KvStore {
        let mut kv = KvStore::new(100);
        kv.apply(
            slot,
            &Command {
                client: "c".into(),
                seq: 1,
                op: Op::Once(Box::new(Op::Put {
                    key: "k".into(),
                    value: "v".into(),
                })),
            },
        );
        kv
    }

    /// The streamed snapshot group must be the very bytes [`encode_group`] makes (the same
    /// format `replay` reads): its headers are written after their records, from checksums
    /// combined piece by piece.
    #[test]
    fn a_streamed_snapshot_group_is_byte_for_byte_the_encoded_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.new");
        let snapshot = mqpaxos_core::Snapshot {
            next_slot: 7,
            kv: store_with_k_v(6),
        };
        let meta = vec![
            PersistOp::Promise(Ballot::new(3, 2)),
            PersistOp::Incarnation {
                server: 2,
                incarnation: 5,
            },
        ];
        let entries = vec![(7, entry(3, "x")), (9, entry(3, &"y".repeat(3000)))];
        let mut ops = vec![PersistOp::Snapshot(snapshot.clone())];
        ops.extend(meta.iter().cloned());
        ops.extend(entries.iter().map(|(slot, entry)| PersistOp::Accept {
            slot: *slot,
            entry: entry.clone(),
        }));
        let expected = encode_group(41, &ops).unwrap();
        let written = write_rewrite(&path, 41, snapshot, meta, entries).unwrap();
        assert_eq!(written, expected.len() as u64);
        assert_eq!(fs::read(&path).unwrap(), expected);
    }

    #[test]
    fn a_received_snapshot_is_on_disk_when_persist_returns() {
        // Slots the log never held (a snapshot from the leader, or a rejoining server's
        // re-learned past): the log alone does not imply it, so it may not wait for a thread.
        let d = tempfile::tempdir().unwrap();
        let mut s = open(d.path());
        s.persist(vec![PersistOp::Promise(Ballot::new(3, 1))])
            .unwrap();
        let kv = store_with_k_v(99);
        s.persist(vec![PersistOp::Snapshot(Snapshot { next_slot: 100, kv })])
            .unwrap();
        let bytes = fs::read(d.path().join("wal")).unwrap();
        let mut got = Durable::new(100);
        replay_log(Path::new("wal"), &bytes, WAL_FORMAT, &mut got).unwrap();
        assert_eq!(got.snapshot.next_slot, 100);
        assert_eq!(got.snapshot.kv.get("k"), Some("v"));
        assert_eq!(got.promised, Ballot::new(3, 1));
    }

    #[test]
    fn a_rejoining_servers_snapshot_is_on_disk_when_persist_returns() {
        // Even of slots its log holds: it votes again on what it re-learned, and a crash
        // must not take that back while `Rejoining(false)` stays on disk.
        let d = tempfile::tempdir().unwrap();
        let mut s = open(d.path());
        s.persist(vec![PersistOp::Rejoining(true)]).unwrap();
        for slot in 0..3 {
            s.persist(vec![PersistOp::Accept {
                slot,
                entry: entry(2, "v"),
            }])
            .unwrap();
        }
        let kv = store_with_k_v(2);
        s.persist(vec![
            PersistOp::Snapshot(Snapshot { next_slot: 3, kv }),
            PersistOp::Rejoining(false),
        ])
        .unwrap();
        let bytes = fs::read(d.path().join("wal")).unwrap();
        let mut got = Durable::new(100);
        replay_log(Path::new("wal"), &bytes, WAL_FORMAT, &mut got).unwrap();
        assert_eq!(got.snapshot.next_slot, 3);
        assert!(!got.rejoining);
    }

    /// Groups written while a snapshot's thread runs are held for the new log; past the cap
    /// the flush waits for the thread rather than hold more. (A store of 20 MB takes the
    /// thread far longer to write and sync than the next flush takes to come.)
    #[test]
    fn groups_held_for_a_running_snapshot_are_capped() {
        let d = tempfile::tempdir().unwrap();
        let mut s = open(d.path());
        s.max_tail = 0;
        for slot in 0..3 {
            s.persist(vec![PersistOp::Accept {
                slot,
                entry: entry(2, &format!("v{slot}")),
            }])
            .unwrap();
        }
        let mut kv = store_with_k_v(2);
        let big = "x".repeat(10_000);
        for k in 0..2_000u64 {
            kv.apply(
                2,
                &Command {
                    client: "c".into(),
                    seq: 2 + k,
                    op: Op::Put {
                        key: format!("big{k}"),
                        value: big.as_str().into(),
                    },
                },
            );
        }
        s.persist(vec![PersistOp::Snapshot(Snapshot { next_slot: 3, kv })])
            .unwrap();
        s.persist(vec![PersistOp::Accept {
            slot: 3,
            entry: entry(2, "v3"),
        }])
        .unwrap();
        assert!(
            s.rewrite.is_none(),
            "the flush past the cap waited for the thread"
        );
        let mut on_disk = Durable::new(100);
        let bytes = fs::read(d.path().join("wal")).unwrap();
        replay_log(Path::new("wal"), &bytes, WAL_FORMAT, &mut on_disk).unwrap();
        assert_eq!(on_disk.log.start(), 3);
        assert_eq!(on_disk.log.get(3), Some(&entry(2, "v3")));
        assert_eq!(on_disk.snapshot.kv.len(), 2_001);
    }

    #[test]
    fn state_survives_reopen_and_snapshots_compact_the_file() {
        let d = tempfile::tempdir().unwrap();
        let mut s = open(d.path());
        s.persist(vec![
            PersistOp::Promise(Ballot::new(2, 1)),
            PersistOp::Incarnation {
                server: 3,
                incarnation: 2,
            },
        ])
        .unwrap();
        for slot in 0..50 {
            s.persist(vec![PersistOp::Accept {
                slot,
                entry: entry(2, &format!("v{slot}")),
            }])
            .unwrap();
        }
        let before = s.log_bytes();
        let kv = store_with_k_v(44);
        s.persist(vec![PersistOp::Snapshot(Snapshot { next_slot: 45, kv })])
            .unwrap();
        // A snapshot of slots the log holds is written on a thread of its own; until it is
        // in place, the log as it was holds everything (a crash then loses nothing).
        let old = fs::read(d.path().join("wal")).unwrap();
        let mut from_old = Durable::new(100);
        replay_log(Path::new("wal"), &old, WAL_FORMAT, &mut from_old).unwrap();
        assert_eq!(from_old.log.len(), 50);
        assert_eq!(from_old.promised, Ballot::new(2, 1));
        // Written meanwhile: it follows the snapshot into the new log.
        s.persist(vec![PersistOp::Rejoining(true)]).unwrap();
        // Storage keeps no copy of a written snapshot's store: loading (which waits for the
        // snapshot to be in place) reads it back.
        let expected = s.load().unwrap();
        let after = s.log_bytes();
        assert_eq!(fs::metadata(d.path().join("wal")).unwrap().len() % CHUNK, 0);
        assert!(after < before / 4, "{after} vs {before}");
        assert_eq!(expected.snapshot.kv.get("k"), Some("v"));
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

    /// Writes a few small groups, then one large group, and returns where the large one
    /// starts and ends.
    fn with_a_big_last_group(dir: &Path) -> (FileStorage, u64, u64) {
        let mut s = open(dir);
        s.persist(vec![PersistOp::Promise(Ballot::new(1, 1))])
            .unwrap();
        s.persist(vec![PersistOp::Accept {
            slot: 0,
            entry: entry(1, "x"),
        }])
        .unwrap();
        let start = s.log_bytes();
        let big: Vec<PersistOp> = (1..8)
            .map(|slot| PersistOp::Accept {
                slot,
                entry: entry(1, &"z".repeat(700)),
            })
            .collect();
        s.persist(big).unwrap();
        let end = s.log_bytes();
        (s, start, end)
    }

    /// A power cut during a group's write keeps any subset of its sectors: the group is
    /// dropped whole, and since it was never synced the server need not rejoin.
    #[test]
    fn a_torn_last_group_is_dropped_without_a_rejoin() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        for round in 0..40 {
            let d = tempfile::tempdir().unwrap();
            let (s, start, end) = with_a_big_last_group(d.path());
            drop(s);
            let wal = d.path().join("wal");
            let mut bytes = fs::read(&wal).unwrap();
            // Blocks wholly inside the last group, each lost with probability one half (at
            // least one): they read back as the zeros that were there before.
            let first = (start as usize).div_ceil(BLOCK);
            let last = end as usize / BLOCK;
            let blocks: Vec<usize> = (first..last).collect();
            assert!(blocks.len() >= 3, "{start}..{end}");
            let mut lost: Vec<usize> = blocks
                .iter()
                .copied()
                .filter(|_| rng.gen_bool(0.5))
                .collect();
            if lost.is_empty() {
                lost.push(blocks[round % blocks.len()]);
            }
            for b in &lost {
                bytes[b * BLOCK..(b + 1) * BLOCK].fill(0);
            }
            fs::write(&wal, &bytes).unwrap();
            let mut s = open(d.path());
            assert!(
                matches!(s.recovery, Recovery::TornUnsynced { offset, .. } if offset == start),
                "round {round}, lost blocks {lost:?}: {:?}",
                s.recovery
            );
            let got = s.load().unwrap();
            assert_eq!(got.promised, Ballot::new(1, 1));
            assert_eq!(got.log.get(0), Some(&entry(1, "x")));
            assert!(got.log.get(1).is_none(), "the torn group is gone whole");
            // The file is usable again, and clean at the next start.
            s.persist(vec![PersistOp::Accept {
                slot: 1,
                entry: entry(1, "y"),
            }])
            .unwrap();
            drop(s);
            let s = open(d.path());
            assert_eq!(s.recovery, Recovery::Clean);
            assert_eq!(s.durable.log.get(1), Some(&entry(1, "y")));
        }
    }

    /// A flipped byte in the last group is not what a crash does: synced bytes were damaged,
    /// and the server must rejoin.
    #[test]
    fn a_damaged_last_group_means_lost_synced_state() {
        let d = tempfile::tempdir().unwrap();
        let (s, start, end) = with_a_big_last_group(d.path());
        drop(s);
        let wal = d.path().join("wal");
        let mut bytes = fs::read(&wal).unwrap();
        bytes[((start + end) / 2) as usize] ^= 0x40;
        fs::write(&wal, &bytes).unwrap();
        let s = open(d.path());
        assert!(s.recovery.lost_synced(), "{:?}", s.recovery);
        assert!(s.durable.log.get(0).is_some() && s.durable.log.get(1).is_none());
    }

    #[test]
    fn a_second_process_cannot_open_the_same_directory() {
        let d = tempfile::tempdir().unwrap();
        let first = open(d.path());
        let err = FileStorage::open(d.path(), "test", 1, 100, SyncPolicy::Always)
            .err()
            .unwrap();
        assert!(err.to_string().contains("already running"), "{err}");
        drop(first);
        drop(open(d.path()));
    }

    /// Cut exactly at a record boundary, the log is valid but shorter; the chunked length
    /// and the missing end marker give it away.
    #[test]
    fn a_log_cut_short_on_a_record_boundary_is_noticed() {
        let d = tempfile::tempdir().unwrap();
        let mut s = open(d.path());
        let mut ends = Vec::new();
        for slot in 0..5 {
            s.persist(vec![PersistOp::Accept {
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
        assert!(s.recovery.lost_synced(), "the cut is noticed");
        assert!(s.load().unwrap().log.get(2).is_some());
        assert!(s.load().unwrap().log.get(3).is_none());
        drop(s);
        // Repaired to a healthy file: the next start is clean.
        assert_eq!(open(d.path()).recovery, Recovery::Clean);
        // Cut at a chunk boundary inside the records: no end marker.
        let mut s = open(d.path());
        let big = "y".repeat(4096);
        let mut slot = 3;
        while s.log_bytes() < CHUNK + 100 {
            s.persist(vec![PersistOp::Accept {
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
        assert!(open(d.path()).recovery.lost_synced());
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
        assert_eq!(s.recovery, Recovery::Clean);
        assert_eq!(s.load().unwrap().promised, Ballot::new(4, 2));
        drop(s);
        let meta = fs::read_to_string(d.path().join("meta.json")).unwrap();
        assert!(meta.contains("wal_format"), "{meta}");
        let mut s = open(d.path());
        assert_eq!(s.recovery, Recovery::Clean);
        // A log this old predates sessions opened through the log: its commands run as they
        // did then (crates/node/tests/old_data.rs opens real old data directories).
        let mut old = entry(4, "old");
        for cmd in &mut old.value {
            cmd.op = Op::Once(Box::new(cmd.op.clone()));
        }
        assert_eq!(s.load().unwrap().log.get(0), Some(&old));
    }

    #[test]
    fn damage_in_the_middle_refuses_to_start() {
        let d = tempfile::tempdir().unwrap();
        let mut s = open(d.path());
        for slot in 0..5 {
            s.persist(vec![PersistOp::Accept {
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

    /// `replay_wal_bytes` (what the fuzz target drives) recovers what `open` recovers, from a
    /// healthy log, a cut one, a torn one, one damaged in the middle and an older format.
    #[test]
    fn replaying_bytes_agrees_with_open() {
        let d = tempfile::tempdir().unwrap();
        let mut s = open(d.path());
        s.persist(vec![PersistOp::Promise(Ballot::new(3, 1))])
            .unwrap();
        for slot in 0..5 {
            s.persist(vec![PersistOp::Accept {
                slot,
                entry: entry(3, &format!("v{slot}")),
            }])
            .unwrap();
        }
        let end = s.log_bytes() as usize;
        drop(s);
        let wal = d.path().join("wal");
        let healthy = fs::read(&wal).unwrap();
        let mut torn = healthy.clone();
        torn[end..end + 30].copy_from_slice(&healthy[..30]);
        let mut middle = healthy.clone();
        middle[12] ^= 0xff;
        for (what, bytes) in [
            ("healthy", healthy.clone()),
            ("cut short", healthy[..end - 3].to_vec()),
            ("torn", torn),
            ("damaged in the middle", middle),
        ] {
            fs::write(&wal, &bytes).unwrap();
            let replayed = replay_wal_bytes(&bytes, WAL_FORMAT, 100);
            match FileStorage::open(d.path(), "test", 1, 100, SyncPolicy::Always) {
                Ok(mut s) => {
                    let (durable, recovery) = replayed.unwrap();
                    assert_eq!(durable, s.load().unwrap(), "{what}");
                    assert_eq!(recovery, s.recovery, "{what}");
                }
                Err(e) => {
                    let err = replayed.err().unwrap().to_string();
                    assert_eq!(
                        err.replace("<bytes>", &wal.display().to_string()),
                        e.to_string()
                    );
                }
            }
        }
        let mut old = Vec::new();
        frame(&mut old, &PersistOp::Promise(Ballot::new(4, 2))).unwrap();
        let (durable, recovery) = replay_wal_bytes(&old, 0, 100).unwrap();
        assert_eq!(
            (durable.promised, recovery),
            (Ballot::new(4, 2), Recovery::Clean)
        );
        let (_, recovery) = replay_wal_bytes(&old[..old.len() - 1], 0, 100).unwrap();
        assert!(recovery.lost_synced());
        assert_eq!(
            replay_wal_bytes(&[], WAL_FORMAT, 100).unwrap(),
            (Durable::new(100), Recovery::Clean)
        );
    }
}
