//! The report of a run: a few lines on stdout, the verdict and its exit code, and with
//! `--out` the files `history.jsonl`, `summary.json`, `timeseries.json` and the charts. It
//! only describes what the run measured; it decides nothing.

use super::netns::Lab;
use super::sampler::{message_counts, scrape};
use super::schedule::FaultRecord;
use super::verdict::Verdict;
use super::Args;
use crate::charts::{self, PartitionWindow, Timeseries};
use crate::cmd::{fail, Exit, Failure};
use mqpaxos_check::{Event, EventType};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

/// `summary.json`.
#[derive(Serialize, Debug, Default)]
struct Summary {
    seed: u64,
    servers: u32,
    clients: usize,
    duration_s: f64,
    ops_ok: u64,
    ops_info: u64,
    throughput_ok_per_s: f64,
    latency_ms: BTreeMap<String, f64>,
    leader_changes: u64,
    faults: Vec<FaultRecord>,
    /// Per server: message type -> count, for messages in and out.
    messages_in: BTreeMap<String, BTreeMap<String, u64>>,
    messages_out: BTreeMap<String, BTreeMap<String, u64>>,
    linearizable: String,
    replicas_agree: bool,
    violations: Vec<String>,
}

/// Everything the report shows.
pub(super) struct Report {
    summary: Summary,
    series: Timeseries,
    events: Vec<Event>,
}

impl Report {
    /// Puts the run's record together; reads each server's message counters (at `metrics`,
    /// by id) once more.
    pub async fn build(
        a: &Args,
        seed: u64,
        leader_changes: u64,
        faults: Vec<FaultRecord>,
        verdict: Verdict,
        metrics: &[SocketAddr],
        mut series: Timeseries,
    ) -> Report {
        let events = verdict.events;
        let mut summary = Summary {
            seed,
            servers: a.servers,
            clients: a.clients,
            duration_s: a.duration.as_secs_f64(),
            leader_changes,
            faults,
            linearizable: verdict.linearizable,
            replicas_agree: verdict.replicas_agree,
            ..Summary::default()
        };
        // Messages per node and type, from the servers' own metrics.
        for (i, addr) in metrics.iter().enumerate() {
            let node = format!("server{}", i + 1);
            if let Some(text) = scrape(*addr).await {
                let (inn, out) = message_counts(&text);
                summary.messages_in.insert(node.clone(), inn);
                summary.messages_out.insert(node, out);
            }
        }
        summary.ops_ok = events
            .iter()
            .filter(|e| e.ty == EventType::Ok && e.client != "final")
            .count() as u64;
        summary.ops_info = events.iter().filter(|e| e.ty == EventType::Info).count() as u64;
        summary.throughput_ok_per_s = summary.ops_ok as f64 / a.duration.as_secs_f64();
        summary.latency_ms = latency_percentiles(&series);
        complete_series(&mut series, a, seed, &summary.faults);
        summary.violations = verdict.violations;
        Report {
            summary,
            series,
            events,
        }
    }

    /// The lines on stdout, up to the verdict.
    pub fn print(&self, a: &Args, seed: u64, lab: Option<&Lab>) {
        let summary = &self.summary;
        println!("mqpaxos chaos: seed {seed}, {} servers, {} clients, {:.0} s, loss {}, delay {:?}, {} splits into {:?}",
            a.servers, a.clients, a.duration.as_secs_f64(), a.loss, a.delay, a.partitions, a.groups);
        println!(
            "  operations: {} ok, {} unknown; {:.1} ok/s; latency p50 {:.1} ms, p99 {:.1} ms",
            summary.ops_ok,
            summary.ops_info,
            summary.throughput_ok_per_s,
            summary.latency_ms.get("p50").copied().unwrap_or(0.0),
            summary.latency_ms.get("p99").copied().unwrap_or(0.0)
        );
        if let Some(l) = lab {
            println!("  kernel faults: {}", l.describe());
        }
        println!("  leader changes seen: {}", summary.leader_changes);
        for (node, m) in &summary.messages_out {
            let out: u64 = m.values().sum();
            let inn: u64 = summary
                .messages_in
                .get(node)
                .map_or(0, |m| m.values().sum());
            println!("  {node}: {inn} messages in, {out} out");
        }
        println!(
            "  linearizable: {}; replicas agree: {}",
            summary.linearizable, summary.replicas_agree
        );
    }

    /// Writes the report folder `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), Failure> {
        std::fs::create_dir_all(dir).map_err(|e| {
            fail(
                Exit::Failed,
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
        let f = std::fs::File::create(dir.join("history.jsonl"))
            .map_err(|e| fail(Exit::Failed, format!("cannot write history.jsonl: {e}")))?;
        mqpaxos_check::write_jsonl(std::io::BufWriter::new(f), &self.events)
            .map_err(|e| fail(Exit::Failed, format!("cannot write history.jsonl: {e}")))?;
        // A report that cannot be encoded is a failure, never an empty file.
        let body = serde_json::to_vec_pretty(&self.summary)
            .map_err(|e| fail(Exit::Failed, format!("cannot encode summary.json: {e}")))?;
        std::fs::write(dir.join("summary.json"), body)
            .map_err(|e| fail(Exit::Failed, format!("cannot write summary.json: {e}")))?;
        let body = serde_json::to_vec(&self.series)
            .map_err(|e| fail(Exit::Failed, format!("cannot encode timeseries.json: {e}")))?;
        std::fs::write(dir.join("timeseries.json"), body)
            .map_err(|e| fail(Exit::Failed, format!("cannot write timeseries.json: {e}")))?;
        charts::write_charts(dir, &self.series).map_err(|e| fail(Exit::Failed, e.to_string()))?;
        println!("  report: {}", dir.display());
        Ok(())
    }

    /// The verdict's lines, and the exit code: success, or [`Exit::No`] with the violations.
    pub fn verdict(&self) -> ExitCode {
        if self.summary.violations.is_empty() {
            println!("  verdict: PASS");
            ExitCode::SUCCESS
        } else {
            for v in &self.summary.violations {
                println!("  VIOLATION: {v}");
            }
            println!("  verdict: FAIL");
            ExitCode::from(Exit::No)
        }
    }
}

/// p50, p90, p99 and max of the answered operations' latencies, in ms (none without any).
fn latency_percentiles(series: &Timeseries) -> BTreeMap<String, f64> {
    let mut lat: Vec<f64> = series
        .ops
        .iter()
        .filter(|o| o.ok)
        .map(|o| o.latency_ms)
        .collect();
    lat.sort_unstable_by(f64::total_cmp);
    let mut out = BTreeMap::new();
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
        if !lat.is_empty() {
            let i = ((lat.len() as f64 * q) as usize).min(lat.len() - 1);
            out.insert(name.to_string(), lat[i]);
        }
    }
    out
}

/// What the charts need besides the samples: the run's description, the servers' names, the
/// end of the run and the partition windows from the fault log.
fn complete_series(series: &mut Timeseries, a: &Args, seed: u64, faults: &[FaultRecord]) {
    series.run = format!(
        "seed {seed}: {} servers, {} clients, loss {}, delay {:?}, {} splits into {:?}",
        a.servers, a.clients, a.loss, a.delay, a.partitions, a.groups
    );
    series.nodes = (1..=a.servers).map(|i| format!("server{i}")).collect();
    series.end_s = series
        .samples
        .last()
        .map_or(0.0, |s| s.at_s)
        .max(a.duration.as_secs_f64());
    series.partitions = PartitionWindow::from_log(
        faults.iter().map(|f| (f.at_s, f.faults.partition.clone())),
        series.end_s,
    );
}
