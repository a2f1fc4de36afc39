//! Storage options measured on the workload a Paxos acceptor puts on its disk: batches of
//! accepted log entries, each batch durable before the call returns (an Accepted may leave
//! only after that). The same `PersistOp::Accept` ops, postcard-encoded as the WAL does, go to
//!
//! - `FileStorage` (our write-ahead log) with `SyncPolicy::Always`: one append + fdatasync;
//! - redb with `Durability::Immediate`: one write transaction per batch;
//! - fjall with a write batch committed with `PersistMode::SyncData` (a journal fdatasync).
//!
//! A fourth row, "raw fdatasync", appends the same bytes to a plain file: an append with no
//! store around it (not quite a floor: a preallocated file syncs faster). The
//! stores take turns in 100 ms slices so that all see the same disk.
//!
//! Reported per store and batch size: durable batches/s, entries/s, p50/p99 latency of one
//! durable batch, bytes sent to the block layer per entry (`/proc/self/io`: whole pages, so
//! a small sync rewrites at least a page; the file system's own journal is not counted);
//! then, after a fixed number of entries, the bytes on disk (apparent and allocated), the
//! bytes written to the block layer in all, and the time to reopen and read everything back.
//!
//! `cargo bench -p mqpaxos-node --bench storage -- [--seconds S] [--dir DIR]`
//!
//! The data directories are made under DIR (default: the temp dir, or /var/tmp when the temp
//! dir is a tmpfs, where fsync costs nothing and the numbers would mean nothing).

use mqpaxos_core::{Ballot, Command, Entry, Op, PersistOp};
use mqpaxos_node::storage::{FileStorage, Storage, SyncPolicy};
use redb::{ReadableDatabase, ReadableTable};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// One store under test, holding the accepted log of a single acceptor.
trait Store {
    /// Makes every op durable before returning.
    fn persist(&mut self, ops: Vec<PersistOp>) -> Result<()>;
}

/// Opens store `name` again from `dir` and decodes every entry, as recovery would; returns
/// how many.
fn reopen_and_count(name: &str, dir: &Path) -> Result<usize> {
    match name {
        "wal" => {
            let mut s = FileStorage::open(dir, "bench", 1, 1000, SyncPolicy::Always)?;
            Ok(s.load()?.log.iter_from(0).count())
        }
        "redb" => {
            let db = redb::Database::create(dir.join("redb"))?;
            let rx = db.begin_read()?;
            let t = rx.open_table(REDB_LOG)?;
            let mut n = 0;
            for row in t.iter()? {
                let (_, v) = row?;
                let _: PersistOp = postcard::from_bytes(v.value())?;
                n += 1;
            }
            Ok(n)
        }
        "fjall" => {
            let f = open_fjall(dir)?;
            let mut n = 0;
            for guard in f.log.iter() {
                let v = guard.value()?;
                let _: PersistOp = postcard::from_bytes(&v)?;
                n += 1;
            }
            Ok(n)
        }
        _ => Err(format!("{name} cannot be reopened").into()),
    }
}

struct Wal(FileStorage);

impl Store for Wal {
    fn persist(&mut self, ops: Vec<PersistOp>) -> Result<()> {
        Ok(self.0.persist(ops)?)
    }
}

const REDB_LOG: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("log");

struct Redb(redb::Database);

/// The key and value a key/value store holds for one accepted entry: the slot (big-endian,
/// so keys sort in slot order) and the postcard encoding the WAL would frame.
fn kv(op: &PersistOp) -> Result<(u64, Vec<u8>)> {
    match op {
        PersistOp::Accept { slot, .. } => Ok((*slot, postcard::to_allocvec(op)?)),
        _ => Err("the workload holds accepts only".into()),
    }
}

impl Store for Redb {
    fn persist(&mut self, ops: Vec<PersistOp>) -> Result<()> {
        let mut tx = self.0.begin_write()?;
        tx.set_durability(redb::Durability::Immediate)?;
        {
            let mut t = tx.open_table(REDB_LOG)?;
            for op in &ops {
                let (slot, v) = kv(op)?;
                t.insert(slot, v.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

struct Fjall {
    db: fjall::Database,
    log: fjall::Keyspace,
}

fn open_fjall(dir: &Path) -> Result<Fjall> {
    // Manual journal persistence: every batch below asks for its own fdatasync, which is
    // what an acceptor needs, instead of fjall's default of leaving it to the OS.
    let db = fjall::Database::builder(dir.join("fjall"))
        .manual_journal_persist(true)
        .open()?;
    let log = db.keyspace("log", fjall::KeyspaceCreateOptions::default)?;
    Ok(Fjall { db, log })
}

impl Store for Fjall {
    fn persist(&mut self, ops: Vec<PersistOp>) -> Result<()> {
        let mut batch = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncData));
        for op in &ops {
            let (slot, v) = kv(op)?;
            batch.insert(&self.log, slot.to_be_bytes(), v);
        }
        batch.commit()?;
        Ok(())
    }
}

/// A plain append: the same postcard bytes appended to a plain file and fdatasynced, with no
/// framing, no checksum and no in-memory mirror.
struct Raw(std::fs::File);

impl Store for Raw {
    fn persist(&mut self, ops: Vec<PersistOp>) -> Result<()> {
        use std::io::Write;
        let mut buf = Vec::new();
        for op in &ops {
            buf.extend_from_slice(&postcard::to_allocvec(op)?);
        }
        self.0.write_all(&buf)?;
        self.0.sync_data()?;
        Ok(())
    }
}

const STORES: [&str; 4] = ["raw fdatasync", "wal", "redb", "fjall"];

fn open(name: &str, dir: &Path) -> Result<Box<dyn Store>> {
    Ok(match name {
        "wal" => Box::new(Wal(FileStorage::open(
            dir,
            "bench",
            1,
            1000,
            SyncPolicy::Always,
        )?)),
        "redb" => Box::new(Redb(redb::Database::create(dir.join("redb"))?)),
        "fjall" => Box::new(open_fjall(dir)?),
        _ => Box::new(Raw(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("raw"))?)),
    })
}

/// `n` accepted entries from `slot` on, one 100-byte put each (the size `mqpaxos bench`
/// writes), keys spread over 1000 as there.
fn batch(slot: u64, n: usize) -> Vec<PersistOp> {
    (0..n as u64)
        .map(|i| {
            let s = slot + i;
            PersistOp::Accept {
                slot: s,
                entry: Entry {
                    ballot: Ballot::new(3, 1),
                    value: vec![Command {
                        client: "client1/0123456789abcdef".into(),
                        seq: s + 1,
                        op: Op::Put {
                            key: format!("k{}", s % 1000),
                            value: format!("{s:0100}").into(),
                        },
                    }],
                },
            }
        })
        .collect()
}

/// What one store did in the timed part of one batch size.
#[derive(Default)]
struct Run {
    /// Bytes sent to the block layer while this store ran, if the kernel says.
    written: Option<u64>,
    entries: usize,
    busy: Duration,
    lat: Vec<Duration>,
}

/// Persists batches of `size` into `store` for `slice`, from `*slot` on, adding to `run`
/// unless it is `None` (warm-up).
fn run_slice(
    store: &mut dyn Store,
    size: usize,
    slot: &mut u64,
    slice: Duration,
    mut run: Option<&mut Run>,
) -> Result<()> {
    let before = write_bytes();
    let start = Instant::now();
    while start.elapsed() < slice {
        let ops = batch(*slot, size);
        let t = Instant::now();
        store.persist(ops)?;
        if let Some(r) = run.as_deref_mut() {
            r.lat.push(t.elapsed());
            r.entries += size;
        }
        *slot += size as u64;
    }
    if let Some(r) = run {
        r.busy += start.elapsed();
        if let (Some(b), Some(a)) = (before, write_bytes()) {
            *r.written.get_or_insert(0) += a.saturating_sub(b);
        }
    }
    Ok(())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

/// Apparent and allocated bytes of every file under `dir`.
fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut apparent = 0;
    let mut allocated = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                todo.push(e.path());
            } else {
                apparent += m.len();
                allocated += m.blocks() * 512;
            }
        }
    }
    (apparent, allocated)
}

/// Bytes this process has caused to be sent to the block layer, if the kernel says.
fn write_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
}

fn is_tmpfs(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return false;
    };
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    // The longest mount point that contains `path` is the one it lives on.
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, at, fs) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(at).then(|| (at.len(), fs == "tmpfs"))
        })
        .max()
        .is_some_and(|(_, tmpfs)| tmpfs)
}

fn main() -> Result<()> {
    let mut seconds = 3.0;
    let mut base: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    // `cargo bench` adds `--bench`; anything unknown is ignored.
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().ok_or("--seconds S")?.parse()?,
            "--dir" => base = Some(args.next().ok_or("--dir DIR")?.into()),
            _ => {}
        }
    }
    let base = base.unwrap_or_else(|| {
        let t = std::env::temp_dir();
        if is_tmpfs(&t) {
            PathBuf::from("/var/tmp")
        } else {
            t
        }
    });
    if is_tmpfs(&base) {
        return Err(format!("{} is a tmpfs: fsync would cost nothing", base.display()).into());
    }
    println!("data dirs under {}; {seconds} s per case\n", base.display());
    println!(
        "| store | batch | batches/s | entries/s | p50 ms | p99 ms | written/entry |\n\
         |---|---|---|---|---|---|---|"
    );
    // The stores take turns in short slices, so that all of them see the same disk: on a
    // shared (virtual) disk the cost of a sync drifts by 10x within seconds, and running
    // one store after the other would compare the disk's moods, not the stores.
    let slice = Duration::from_millis(100);
    for size in [1usize, 8, 64] {
        let mut cases = Vec::new();
        for name in STORES {
            let dir = tempfile::Builder::new()
                .prefix("mqpaxos-storage-bench")
                .tempdir_in(&base)?;
            let store = open(name, dir.path())?;
            cases.push((name, dir, store, 0u64, Run::default()));
        }
        for (_, _, store, slot, _) in cases.iter_mut() {
            run_slice(store.as_mut(), size, slot, Duration::from_millis(300), None)?;
        }
        // Bounded: as many rounds as it takes each store to run `seconds`.
        let rounds = (seconds / slice.as_secs_f64()).ceil() as usize;
        for _ in 0..rounds {
            for (_, _, store, slot, run) in cases.iter_mut() {
                run_slice(store.as_mut(), size, slot, slice, Some(run))?;
            }
        }
        for (name, _dir, store, _, mut run) in cases {
            drop(store);
            run.lat.sort();
            let secs = run.busy.as_secs_f64();
            let per_entry = run.written.map_or("-".to_string(), |w| {
                format!("{:.0}", w as f64 / run.entries.max(1) as f64)
            });
            println!(
                "| {name} | {size} | {:.0} | {:.0} | {:.2} | {:.2} | {per_entry} |",
                run.lat.len() as f64 / secs,
                run.entries as f64 / secs,
                pct(&run.lat, 0.50),
                pct(&run.lat, 0.99),
            );
        }
    }

    // Footprint: the same entries in each store, in batches of 64 (few syncs, so this part
    // is quick and measures layout, not sync cost).
    let n = 20_000usize;
    let payload: usize = batch(0, n)
        .iter()
        .map(|op| postcard::to_allocvec(op).map_or(0, |b| b.len()))
        .sum();
    println!(
        "\n{n} entries in batches of 64 (postcard payload {payload} bytes, {:.0}/entry):\n",
        payload as f64 / n as f64
    );
    println!(
        "| store | bytes on disk | allocated | written to block layer | reopen + read all ms |\n\
         |---|---|---|---|---|"
    );
    for name in ["wal", "redb", "fjall"] {
        let dir = tempfile::Builder::new()
            .prefix("mqpaxos-storage-bench")
            .tempdir_in(&base)?;
        let before = write_bytes();
        let mut store = open(name, dir.path())?;
        for b in (0..n).step_by(64) {
            store.persist(batch(b as u64, 64.min(n - b)))?;
        }
        // Count what a clean close writes too (fjall persists its journal on drop).
        drop(store);
        let written = match (before, write_bytes()) {
            (Some(b), Some(a)) => format!("{}", a.saturating_sub(b)),
            _ => "-".into(),
        };
        let t = Instant::now();
        let read = reopen_and_count(name, dir.path())?;
        let reopen_ms = t.elapsed().as_secs_f64() * 1e3;
        if read != n {
            return Err(format!("{name}: read back {read} of {n} entries").into());
        }
        let (apparent, allocated) = disk_usage(dir.path());
        println!("| {name} | {apparent} | {allocated} | {written} | {reopen_ms:.1} |");
    }
    Ok(())
}
