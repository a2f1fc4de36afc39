//! Damaged data files with real processes: 3 servers on Mosquitto under a concurrent
//! put/append/cas load; again and again one server is killed with SIGKILL, its write-ahead
//! log (`<data-dir>/wal`, one group per flush: a 20-byte header `["MQPG"][len u32 LE][seq u64
//! LE][crc32 u32 LE]` and the group's records, see `mqpaxos_node::storage`) is damaged in one
//! of several ways, and it is restarted under load.
//!
//! A server whose log is damaged in the middle must refuse to start, with an error naming the
//! file; the test then wipes the directory as an operator would and starts it again. Any
//! other damage looks like a crash during the last write, and the server must come back. At
//! the end every acknowledged append is in the final value, the whole history (JSON Lines,
//! kept under the target's tmp dir) is linearizable, and all replicas report the same state
//! digest at the same executed slot.
//!
//! `MQPAXOS_DAMAGE_SEED=N` replays the choice of victims and damage (the processes' timing
//! is not replayable).

mod common;

use common::*;
use mqpaxos_check::{check_events, CheckLimits, CheckOutcome, Event, EventType, OpKind};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Damage {
    /// Cut the log at a random byte in its last quarter (a torn write, or lost pages).
    TruncateLastQuarter,
    /// Cut the log exactly where its last record starts.
    TruncateLastRecord,
    /// Flip a byte in the body of the last record.
    FlipLastRecord,
    /// Flip a byte in the body of a record that has valid records after it.
    FlipMiddle,
    /// Remove the whole data directory (a lost disk).
    DeleteDir,
}

const DAMAGES: [Damage; 5] = [
    Damage::TruncateLastQuarter,
    Damage::TruncateLastRecord,
    Damage::FlipLastRecord,
    Damage::FlipMiddle,
    Damage::DeleteDir,
];

/// What a user can observe for each damage with today's binary, in one place so that the
/// rejoin work (a server that lost a tail, or starts on an empty directory, rejoins as a
/// non-voting member until it has re-learned state from its peers) can change it here.
mod expect {
    use super::Damage;

    /// Extra flags to start a server on a directory an operator has wiped (or that was lost):
    /// it must re-learn from its peers before it votes, and nothing on disk can tell it so.
    pub const WIPED_DIR_FLAGS: &[&str] = &[];

    /// Extra flags to restart a server whose log may have lost a tail: none, the server
    /// notices the damaged end itself and rejoins.
    pub const DAMAGED_TAIL_FLAGS: &[&str] = &[];

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Outcome {
        /// The server starts and serves again.
        ComesBack,
        /// The server exits non-zero at once, naming the damaged file on stderr.
        Refuses,
    }

    pub fn outcome(d: Damage) -> Outcome {
        match d {
            Damage::FlipMiddle => Outcome::Refuses,
            _ => Outcome::ComesBack,
        }
    }

    /// The flags for restarting after `d`.
    pub fn restart_flags(d: Damage) -> &'static [&'static str] {
        match d {
            Damage::DeleteDir => WIPED_DIR_FLAGS,
            _ => DAMAGED_TAIL_FLAGS,
        }
    }
}

/// The start offset and total length of each whole group in a WAL image, in order; stops at
/// the end marker (an all-zero header: the file is padded with zeros to whole chunks) or at
/// the first group that does not fit in the file.
fn records(bytes: &[u8]) -> Vec<(usize, usize)> {
    const GROUP_HEADER: usize = 20;
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(h) = bytes.get(at..at + GROUP_HEADER) {
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if h.iter().all(|b| *b == 0) || at + GROUP_HEADER + len > bytes.len() {
            break;
        }
        out.push((at, GROUP_HEADER + len));
        at += GROUP_HEADER + len;
    }
    out
}

/// Damages server `dir`'s log as `d` says. Returns what was done, for the log, or `None`
/// when the log holds too few records for this damage (then nothing was changed).
fn damage(dir: &Path, d: Damage, rng: &mut impl Rng) -> Option<String> {
    let wal = dir.join("wal");
    if d == Damage::DeleteDir {
        std::fs::remove_dir_all(dir).expect("remove data dir");
        return Some(format!("deleted {}", dir.display()));
    }
    let mut bytes = std::fs::read(&wal).expect("read wal");
    let recs = records(&bytes);
    // Where the records end; the zero padding after them is not worth damaging.
    let len = recs.last().map_or(0, |(start, total)| start + total);
    // A body byte of group `i`: the checksum catches any flip there.
    let body_byte = |(start, total): (usize, usize)| start + 20 + (total - 20) / 2;
    match d {
        Damage::TruncateLastQuarter => {
            if len < 16 {
                return None;
            }
            let at = rng.gen_range(len - len / 4..len);
            bytes.truncate(at);
            std::fs::write(&wal, &bytes).expect("write wal");
            Some(format!("cut at byte {at} of {len}"))
        }
        Damage::TruncateLastRecord => {
            let &(start, _) = recs.last()?;
            bytes.truncate(start);
            std::fs::write(&wal, &bytes).expect("write wal");
            Some(format!(
                "cut the last record: at byte {start} of {len} ({} records)",
                recs.len()
            ))
        }
        Damage::FlipLastRecord => {
            let &last = recs.last()?;
            if last.1 <= 20 {
                return None;
            }
            let at = body_byte(last);
            bytes[at] ^= 0x5a;
            std::fs::write(&wal, &bytes).expect("write wal");
            Some(format!("flipped byte {at} of {len}, in the last record"))
        }
        Damage::FlipMiddle => {
            // A record with at least one valid record after it.
            if recs.len() < 2 {
                return None;
            }
            let i = rng.gen_range(0..recs.len() - 1);
            if recs[i].1 <= 20 {
                return None;
            }
            let at = body_byte(recs[i]);
            bytes[at] ^= 0x5a;
            std::fs::write(&wal, &bytes).expect("write wal");
            Some(format!(
                "flipped byte {at} of {len}, in record {i} of {}",
                recs.len()
            ))
        }
        Damage::DeleteDir => unreachable!("handled above"),
    }
}

/// One writer: puts, appends and compare-and-sets with unique values, every call recorded.
/// Bounded by `stop` and a cap on operations.
async fn writer(
    name: String,
    opts: mqpaxos::ClientOptions,
    seed: u64,
    history: History,
    stop: Arc<AtomicBool>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let now = || history.now();
    let push = |e: Event| history.push(e);
    let mut client = mqpaxos::Client::connect(opts.clone())
        .await
        .expect("connect");
    let mut cas_seen: Option<String> = None;
    // Paced, so that the load lasts as long as the damage cycles do: unpaced, three writers
    // ran through their 15,000 operations in under six seconds on a quiet machine, the logs
    // stopped growing, and a log compacted by the last snapshot held too few records to be
    // damaged in the middle (seed 1796174954661723665).
    for i in 0..8000u32 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let value = format!("{name}-{i}");
        let roll = rng.gen_range(0..10);
        let (kind, key, invoke) = if roll < 3 {
            let key = format!("p{}", rng.gen_range(0..2));
            let ev = Event::invoke(now(), &name, OpKind::Put, &key).with_value(Some(&value));
            (OpKind::Put, key, ev)
        } else if roll < 6 {
            let key = format!("a{}", rng.gen_range(0..2));
            // The separator makes every append findable in the final value.
            let ev = Event::invoke(now(), &name, OpKind::Append, &key)
                .with_value(Some(&format!("{value};")));
            (OpKind::Append, key, ev)
        } else if roll < 7 {
            // Reads of the append keys are what keep their check tractable: without them
            // nothing constrains the order of appends until the final read, and the
            // checker's search backtracks over every interleaving.
            let key = format!("a{}", rng.gen_range(0..2));
            let ev = Event::invoke(now(), &name, OpKind::Get, &key);
            (OpKind::Get, key, ev)
        } else {
            let ev = Event::invoke(now(), &name, OpKind::Cas, "c0")
                .with_value(Some(&value))
                .with_expected(cas_seen.as_deref());
            (OpKind::Cas, "c0".to_string(), ev)
        };
        let expected = invoke.expected.clone();
        let written = invoke.value.clone().unwrap_or_default();
        push(invoke);
        let result = match kind {
            OpKind::Put => client.put(&key, &written).await.map(|()| None),
            OpKind::Append => client.append(&key, &written).await.map(|()| None),
            OpKind::Get => match client.get(&key).await {
                Ok(v) => {
                    push(Event::ok(now(), &name, OpKind::Get, &key).with_value(v.as_deref()));
                    continue;
                }
                Err(e) => Err(e),
            },
            _ => client
                .cas(&key, expected.as_deref(), &written)
                .await
                .map(Some),
        };
        match result {
            Ok(swapped) => {
                let mut ev = Event::ok(now(), &name, kind, &key).with_value(Some(&written));
                if let Some(s) = swapped {
                    ev = ev.with_expected(expected.as_deref()).with_result(s);
                }
                push(ev);
                if swapped == Some(true) {
                    cas_seen = Some(written);
                } else if swapped == Some(false) {
                    // Learn the current value so the next cas has a chance.
                    push(Event::invoke(now(), &name, OpKind::Get, "c0"));
                    match client.get("c0").await {
                        Ok(v) => {
                            push(
                                Event::ok(now(), &name, OpKind::Get, "c0").with_value(v.as_deref()),
                            );
                            cas_seen = v;
                        }
                        Err(_) => {
                            push(Event::info(now(), &name, OpKind::Get, "c0"));
                            client.close().await;
                            client = mqpaxos::Client::connect(opts.clone())
                                .await
                                .expect("reconnect");
                        }
                    }
                }
            }
            Err(_) => {
                push(Event::info(now(), &name, kind, &key));
                // A timed-out command may still execute: continue as a new client session
                // so the history stays sequential per client.
                client.close().await;
                client = mqpaxos::Client::connect(opts.clone())
                    .await
                    .expect("reconnect");
            }
        }
    }
    client.close().await;
}

/// The status rows by server id.
fn status_by_id(cluster: &Cluster) -> BTreeMap<u64, serde_json::Value> {
    cluster
        .status()
        .into_iter()
        .filter_map(|s| Some((s["id"].as_u64()?, s)))
        .collect()
}

/// Waits (bounded) until server `id` is online, its process alive, it has executed at least
/// what the others had executed when it was started (it has re-learned the state), and it
/// has finished rejoining. The last matters: a server still rejoining cannot vote, and the
/// next cycle damaging another server would then leave one voter of three — two disks lost
/// at once, outside what the cluster promises to survive (the CI failure of seed
/// 1796030068536532474: cycle 8 wiped server 3 while server 1 was still rejoining).
fn wait_back(cluster: &mut Cluster, id: u32, limit: Duration) {
    let target = status_by_id(cluster)
        .iter()
        .filter(|(i, _)| **i != u64::from(id))
        .filter_map(|(_, s)| s["executed"].as_u64())
        .max()
        .unwrap_or(0);
    let deadline = Instant::now() + limit;
    loop {
        assert!(
            cluster.is_running(id),
            "server {id} exited after a restart that should have worked"
        );
        let st = status_by_id(cluster);
        let me = &st[&u64::from(id)];
        if me["online"] == true
            && me["role"] != "rejoining"
            && me["executed"].as_u64().is_some_and(|e| e >= target)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server {id} not back (executed ≥ {target}) within {limit:?}: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn damaged_data_files_are_refused_or_recovered_without_losing_a_write() {
    let seed = std::env::var("MQPAXOS_DAMAGE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("MQPAXOS_DAMAGE_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let broker = Broker::start(Kind::Mosquitto);
    let mut cluster = Cluster::start(&broker, 3);
    cluster.leader(Duration::from_secs(20));
    let start = Instant::now();
    let history = History::new();
    let rt = load_runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (1..=3u32)
        .map(|c| {
            let mut opts = cluster.client_options(&format!("client{c}"));
            opts.timeout = Duration::from_secs(5);
            rt.spawn(writer(
                format!("client{c}"),
                opts,
                seed ^ u64::from(c),
                history.clone(),
                stop.clone(),
            ))
        })
        .collect();

    // Bounded in count and in time: at most 15 cycles (about 3 of each damage), none started
    // after 30 s.
    let mut done: BTreeMap<Damage, u32> = BTreeMap::new();
    let mut refused = 0;
    // The next damage in DAMAGES; it only moves on once a damage was done, so a log that
    // held too few records for one (just compacted by a snapshot) gets it again on another
    // cycle, likely on another server.
    let mut next = 0;
    for cycle in 0..15usize {
        if start.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        let id = rng.gen_range(1..=3u32);
        let d = DAMAGES[next % DAMAGES.len()];
        let dir: PathBuf = cluster.data.path().join(format!("server{id}"));
        cluster.kill(id);
        let what = match damage(&dir, d, &mut rng) {
            Some(w) => w,
            None => {
                eprintln!("cycle {cycle}: server {id}: {d:?} skipped, too few records");
                cluster.start_server(id);
                wait_back(&mut cluster, id, Duration::from_secs(15));
                continue;
            }
        };
        eprintln!(
            "cycle {cycle} at {:.1} s: server {id}: {d:?}: {what}",
            start.elapsed().as_secs_f64()
        );
        match expect::outcome(d) {
            expect::Outcome::Refuses => {
                let wal = dir.join("wal");
                let mut child = cluster
                    .server_command(id, &format!("server{id}"))
                    .args(expect::restart_flags(d))
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("run server");
                // Bounded: a server that starts instead of refusing is killed and reported.
                let deadline = Instant::now() + Duration::from_secs(10);
                while child.try_wait().expect("wait").is_none() {
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!("server {id} started from a log damaged in the middle ({what})");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let out = child.wait_with_output().expect("server output");
                let err = stderr(&out);
                assert!(!out.status.success(), "refusal exits non-zero: {err}");
                assert!(
                    err.contains(&wal.display().to_string()) && err.contains("corrupt"),
                    "the error names the damaged file: {err}"
                );
                refused += 1;
                // What an operator does: wipe the directory and let the server re-learn.
                std::fs::remove_dir_all(&dir).expect("wipe data dir");
                cluster.start_server_with(id, expect::WIPED_DIR_FLAGS);
            }
            expect::Outcome::ComesBack => {
                cluster.start_server_with(id, expect::restart_flags(d));
            }
        }
        wait_back(&mut cluster, id, Duration::from_secs(15));
        *done.entry(d).or_default() += 1;
        next += 1;
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        rt.block_on(w).expect("writer");
    }

    // Final reads after everything settled: a lost acknowledged write shows up as a missing
    // append token and as a non-linearizable history.
    let keys = ["p0", "p1", "a0", "a1", "c0"];
    let (events, values) = history.with_final_reads(&rt, &cluster, &keys);
    let finals: BTreeMap<&str, String> = keys
        .into_iter()
        .zip(values.into_iter().map(Option::unwrap_or_default))
        .collect();
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("damage-history.jsonl");
    let file = std::fs::File::create(&path).expect("create history file");
    mqpaxos_check::write_jsonl(std::io::BufWriter::new(file), &events).expect("write history");

    let acked: Vec<&Event> = events
        .iter()
        .filter(|e| e.ty == EventType::Ok && e.f != OpKind::Get)
        .collect();
    for e in acked.iter().filter(|e| e.f == OpKind::Append) {
        let token = e.value.as_deref().unwrap_or_default();
        assert!(
            finals[e.key.as_str()]
                .split_inclusive(';')
                .any(|t| t == token),
            "acknowledged append {token:?} to {} is lost (history: {})",
            e.key,
            path.display()
        );
    }
    let cycles: u32 = done.values().sum();
    eprintln!(
        "{cycles} damage cycles ({done:?}; {refused} refused and wiped), \
         {} acknowledged writes; history {}",
        acked.len(),
        path.display()
    );
    assert!(
        done.contains_key(&Damage::FlipMiddle),
        "damage in the middle was tried"
    );
    assert!(acked.len() > 20, "the load made progress: {}", acked.len());
    let t = Instant::now();
    let verdict = check_events(&events, CheckLimits::default()).expect("well-formed history");
    eprintln!(
        "checked {} events in {:.1} s",
        events.len(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(verdict, CheckOutcome::Linearizable, "{}", path.display());

    // All replicas agree: the same state digest at the same executed slot (bounded wait for
    // the followers to learn the last commits).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = cluster.status();
        let seen: Vec<(bool, Option<u64>, Option<String>)> = st
            .iter()
            .map(|s| {
                (
                    s["online"] == true,
                    s["executed"].as_u64(),
                    s["digest"].as_str().map(str::to_string),
                )
            })
            .collect();
        if seen.iter().all(|s| s.0 && s.1.is_some() && s.2.is_some())
            && seen
                .windows(2)
                .all(|w| w[0].1 == w[1].1 && w[0].2 == w[1].2)
        {
            eprintln!(
                "replicas agree: executed {:?}, digest {:?}",
                seen[0].1, seen[0].2
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas do not converge: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
