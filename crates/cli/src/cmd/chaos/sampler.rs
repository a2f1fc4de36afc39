//! Every server's message counters, read from its `/metrics` (through [`crate::metrics`]):
//! sampled over the run for the message charts, and summed by message type for the report.
//! A server that does not answer leaves a gap, never a zero.

use crate::charts::{MessageSample, Timeseries};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The sampling task, until [`Sampler::stop`].
pub(super) struct Sampler {
    running: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Sampler {
    /// Samples the servers at `metrics` every `every` into `series`, from `start` on.
    pub fn start(
        metrics: Vec<SocketAddr>,
        every: Duration,
        start: Instant,
        series: Arc<Mutex<Timeseries>>,
    ) -> Sampler {
        let running = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(sample_messages(
            metrics,
            every,
            start,
            series,
            running.clone(),
        ));
        Sampler { running, task }
    }

    /// Stops sampling. A scrape gives up after a few seconds, so the task ends soon; never
    /// wait on it for long.
    pub async fn stop(self) {
        self.running.store(false, Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Samples every server's cumulative message counters until `running` goes false.
async fn sample_messages(
    ports: Vec<SocketAddr>,
    every: Duration,
    start: Instant,
    series: Arc<Mutex<Timeseries>>,
    running: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while running.load(Ordering::Relaxed) {
        tick.tick().await;
        let at_s = start.elapsed().as_secs_f64();
        let (mut inn, mut out) = (Vec::new(), Vec::new());
        for port in &ports {
            // A server that does not answer leaves a gap, not a zero, in its line.
            let counts = scrape(*port).await.map(|t| message_counts(&t));
            inn.push(counts.as_ref().map(|c| c.0.values().sum()));
            out.push(counts.as_ref().map(|c| c.1.values().sum()));
        }
        if let Ok(mut s) = series.lock() {
            s.record_sample(MessageSample {
                at_s,
                messages_in: inn,
                messages_out: out,
            });
        }
    }
}

/// One server's `/metrics` text.
pub(super) async fn scrape(addr: SocketAddr) -> Option<String> {
    crate::metrics::fetch_metrics(&addr.to_string()).await
}

/// Sums `mqpaxos_messages_total` by direction and message type.
pub(super) fn message_counts(text: &str) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let (mut inn, mut out) = (BTreeMap::new(), BTreeMap::new());
    for line in text
        .lines()
        .filter(|l| l.starts_with("mqpaxos_messages_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(str::to_string)
        };
        let (Some(dir), Some(kind)) = (label("direction"), label("kind")) else {
            continue;
        };
        let m = if dir == "in" { &mut inn } else { &mut out };
        *m.entry(kind).or_insert(0) += v as u64;
    }
    (inn, out)
}
