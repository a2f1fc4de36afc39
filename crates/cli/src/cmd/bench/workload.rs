//! The workload engine every target shares: the op mix, key and value choice, and one step of
//! load (closed loop: each client sends its next command when the last one is answered; open
//! loop: commands start on a fixed schedule and latency counts from the scheduled start, so a
//! slow system is not excused by the load generator waiting for it).

use super::target::{Conn, TargetError};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Put,
    Get,
    Cas,
}

/// Relative weights of puts, gets and compare-and-swaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Mix {
    pub put: u32,
    pub get: u32,
    pub cas: u32,
}

impl Mix {
    pub fn total(&self) -> u32 {
        self.put + self.get + self.cas
    }

    pub fn pick(&self, rng: &mut impl Rng) -> OpKind {
        let r = rng.gen_range(0..self.total());
        if r < self.put {
            OpKind::Put
        } else if r < self.put + self.get {
            OpKind::Get
        } else {
            OpKind::Cas
        }
    }

    /// `put=100`, `put:80,get:10,cas:10`: missing kinds weigh 0.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, w) in [("put", self.put), ("get", self.get), ("cas", self.cas)] {
            if w > 0 {
                parts.push(format!("{name}={w}"));
            }
        }
        parts.join(",")
    }
}

/// Why `--mix` was refused or a step could not finish. The `--mix` ones name the part of the
/// value at fault, as clap prints them after the flag.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("{0:?}: expected kind=weight, e.g. put=80")]
    NoWeight(String),
    #[error("{0:?}: the weight must be a whole number from 0 to 1000000")]
    BadWeight(String),
    #[error("unknown operation {0:?} (put, get or cas)")]
    UnknownOperation(String),
    #[error("{0:?}: at least one weight must be above 0")]
    AllZero(String),
    /// A client task panicked or was cancelled: the step's numbers would be incomplete.
    #[error("a bench client failed: {0}")]
    ClientFailed(tokio::task::JoinError),
}

/// Parses `put=80,get=10,cas=10` (weights, not necessarily summing to 100).
pub fn parse_mix(s: &str) -> Result<Mix, WorkloadError> {
    let mut mix = Mix {
        put: 0,
        get: 0,
        cas: 0,
    };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part
            .split_once(['=', ':'])
            .ok_or_else(|| WorkloadError::NoWeight(part.to_string()))?;
        let weight: u32 = weight
            .trim()
            .parse()
            .ok()
            .filter(|w| *w <= 1_000_000)
            .ok_or_else(|| WorkloadError::BadWeight(part.to_string()))?;
        match name.trim() {
            "put" => mix.put = weight,
            "get" => mix.get = weight,
            "cas" => mix.cas = weight,
            other => return Err(WorkloadError::UnknownOperation(other.to_string())),
        }
    }
    if mix.total() == 0 {
        return Err(WorkloadError::AllZero(s.to_string()));
    }
    Ok(mix)
}

pub fn key(i: usize) -> String {
    format!("bench-{i}")
}

/// What one step measures.
#[derive(Clone, Debug)]
pub struct StepLoad {
    pub keys: usize,
    pub mix: Mix,
    pub value: Arc<str>,
    /// Open loop: commands per second over all clients. Closed loop: `None`.
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub duration: Duration,
    /// Closed loop: commands each client keeps in flight (1: one at a time).
    pub pipeline: usize,
}

/// Counters shared with the progress display while a step runs.
#[derive(Default)]
pub struct Live {
    pub ops: AtomicU64,
    pub errors: AtomicU64,
}

/// A task that stops when its handle is dropped (an interrupted run leaves no clients behind).
pub struct Task<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct Outcome {
    pub hist: Histogram<u64>,
    pub errors: u64,
    pub first_error: Option<TargetError>,
}

/// Runs one step on `conns` (one task per connection) from `start`: warm-up until
/// `start + warmup`, measured until `start + warmup + duration`. Returns the merged latency
/// histogram (microseconds) of the measured commands.
pub async fn run(
    conns: Vec<Conn>,
    load: &StepLoad,
    start: Instant,
    live: Arc<Live>,
) -> Result<Outcome, WorkloadError> {
    let measure_from = start + load.warmup;
    let end = measure_from + load.duration;
    let n = conns.len().max(1);
    let mut tasks = Vec::with_capacity(n);
    for (i, mut conn) in conns.into_iter().enumerate() {
        let load = load.clone();
        let live = live.clone();
        tasks.push(Task(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64 + 1);
            let (hist, errors, first_error) = if load.pipeline > 1 {
                pipelined(&mut conn, &load, &mut rng, measure_from, end, &live).await
            } else {
                one_at_a_time(
                    &mut conn,
                    &load,
                    &mut rng,
                    (i, n),
                    start,
                    measure_from,
                    end,
                    &live,
                )
                .await
            };
            conn.close().await;
            (hist, errors, first_error)
        })));
    }
    let mut out = Outcome {
        hist: new_histogram(),
        errors: 0,
        first_error: None,
    };
    for mut t in tasks {
        let (h, e, fe) = (&mut t.0).await.map_err(WorkloadError::ClientFailed)?;
        let _ = out.hist.add(&h);
        out.errors += e;
        if out.first_error.is_none() {
            out.first_error = fe;
        }
    }
    Ok(out)
}

/// What one client's task measured: its latency histogram, errors, and the first error.
type TaskOutcome = (Histogram<u64>, u64, Option<TargetError>);

/// Counts one command that was started at `started` into the step, if it was in the
/// measured window.
fn count(
    out: &mut TaskOutcome,
    live: &Live,
    r: Result<(), TargetError>,
    started: Instant,
    window: (Instant, Instant),
) {
    if started < window.0 || started >= window.1 {
        return;
    }
    match r {
        Ok(()) => {
            let us = started.elapsed().as_micros().max(1) as u64;
            let high = out.0.high();
            let _ = out.0.record(us.min(high));
            live.ops.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            out.1 += 1;
            live.errors.fetch_add(1, Ordering::Relaxed);
            out.2.get_or_insert(e);
        }
    }
}

/// One client, one command at a time: closed loop, or open loop on its share of the rate
/// (`(i, n)`: this is client `i` of `n`).
#[allow(clippy::too_many_arguments)]
async fn one_at_a_time(
    conn: &mut Conn,
    load: &StepLoad,
    rng: &mut impl Rng,
    (i, n): (usize, usize),
    start: Instant,
    measure_from: Instant,
    end: Instant,
    live: &Live,
) -> TaskOutcome {
    let mut out: TaskOutcome = (new_histogram(), 0, None);
    // Open loop: this task's share of the rate, its first slot staggered.
    let interval = load
        .rate
        .map(|r| Duration::from_secs_f64((n as f64 / r).min(3600.0)));
    let mut next = start + interval.map_or(Duration::ZERO, |iv| iv.mul_f64(i as f64 / n as f64));
    loop {
        let scheduled = match interval {
            Some(iv) => {
                if next >= end {
                    break;
                }
                tokio::time::sleep_until(next).await;
                let s = next;
                next += iv;
                s
            }
            None => {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                now
            }
        };
        let op = load.mix.pick(rng);
        let k = key(rng.gen_range(0..load.keys));
        let r = conn.run(op, &k, &load.value).await;
        count(&mut out, live, r, scheduled, (measure_from, end));
    }
    out
}

/// One client with `load.pipeline` commands in flight (closed loop): a new command starts
/// as soon as one completes, and each one's latency runs from its own start.
async fn pipelined(
    conn: &mut Conn,
    load: &StepLoad,
    rng: &mut impl Rng,
    measure_from: Instant,
    end: Instant,
    live: &Live,
) -> TaskOutcome {
    let out = std::sync::Mutex::new((new_histogram(), 0, None));
    let starts = std::sync::Mutex::new(std::collections::HashMap::<usize, Instant>::new());
    let mut index = 0;
    let next = || {
        let now = Instant::now();
        if now >= end {
            return None;
        }
        if let Ok(mut s) = starts.lock() {
            s.insert(index, now);
        }
        index += 1;
        let op = load.mix.pick(rng);
        Some((op, key(rng.gen_range(0..load.keys))))
    };
    let done = |i: usize, r: Result<(), TargetError>| {
        let started = starts.lock().ok().and_then(|mut s| s.remove(&i));
        if let (Some(started), Ok(mut out)) = (started, out.lock()) {
            count(&mut out, live, r, started, (measure_from, end));
        }
    };
    let r = conn.pipeline(load.pipeline, next, &load.value, done).await;
    let mut out = out.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = r {
        out.1 += 1;
        live.errors.fetch_add(1, Ordering::Relaxed);
        out.2.get_or_insert(e);
    }
    out
}

/// Microseconds from 1 to an hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes() {
        assert_eq!(
            parse_mix("put=80,get=10,cas=10").ok(),
            Some(Mix {
                put: 80,
                get: 10,
                cas: 10
            })
        );
        assert_eq!(
            parse_mix("get:1").map(|m| m.describe()).ok(),
            Some("get=1".to_string())
        );
        assert!(matches!(parse_mix("put=0"), Err(WorkloadError::AllZero(_))));
        assert!(matches!(
            parse_mix("delete=5"),
            Err(WorkloadError::UnknownOperation(op)) if op == "delete"
        ));
        assert!(matches!(
            parse_mix("put=lots"),
            Err(WorkloadError::BadWeight(_))
        ));
        assert!(matches!(parse_mix("put"), Err(WorkloadError::NoWeight(_))));
        let m = parse_mix("put=1,cas=1").unwrap_or_else(|e| panic!("{e}"));
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert!((0..100).all(|_| m.pick(&mut rng) != OpKind::Get));
    }
}
