//! Running many seeds of a scenario on all cores.

use crate::scenario::Scenario;
use crate::simulation::{RunReport, Simulation};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Runs one seed.
pub fn run_seed(sc: &Scenario, seed: u64) -> RunReport {
    Simulation::new(sc.clone(), seed).run()
}

/// What a batch of seeds found.
#[derive(Debug)]
pub struct BatchReport {
    pub scenario: String,
    pub seeds: u64,
    pub failures: Vec<RunReport>,
    pub ops_completed: u64,
    pub wall: Duration,
    pub virtual_time: Duration,
    /// Summed over the seeds (see [`RunReport::ballots_reused`]).
    pub ballots_reused: u64,
}

impl BatchReport {
    pub fn seeds_per_second(&self) -> f64 {
        self.seeds as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Runs seeds `first..first + count` on `threads` threads. Reports for failing seeds are
/// kept whole (in seed order); passing ones only add to the totals.
pub fn run_seeds(sc: &Scenario, first: u64, count: u64, threads: usize) -> BatchReport {
    let started = Instant::now();
    let next = AtomicU64::new(first);
    let end = first + count;
    let failures = Mutex::new(Vec::new());
    let totals = Mutex::new((0u64, Duration::ZERO, 0u64));
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    break;
                }
                let mut r = run_seed(sc, seed);
                if let Ok(mut t) = totals.lock() {
                    t.0 += r.ops_completed;
                    t.1 += r.virtual_time;
                    t.2 += r.ballots_reused;
                }
                if !r.ok() {
                    r.history.clear();
                    if let Ok(mut f) = failures.lock() {
                        f.push(r);
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_default();
    failures.sort_by_key(|r| r.seed);
    let (ops_completed, virtual_time, ballots_reused) = totals.into_inner().unwrap_or_default();
    BatchReport {
        scenario: sc.name.to_string(),
        seeds: count,
        failures,
        ops_completed,
        wall: started.elapsed(),
        virtual_time,
        ballots_reused,
    }
}

/// The number of threads to use: every core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
