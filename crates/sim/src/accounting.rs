//! Message accounting: what an election and a committed command cost in messages, measured by
//! running the simulator, for the docs' table.
//!
//! Two numbers per message: *publishes* (a message to all servers counts once, as one MQTT
//! publish that the broker fans out) and *deliveries* (what arrives at nodes).

use crate::network::NetConfig;
use crate::runner::run_seed;
use crate::scenario::{self, FaultPlan, Scenario};
use crate::simulation::{kind_index_of, Counts, RunReport};
use std::fmt::Write;
use std::time::Duration;

const ELECTION: [&str; 5] = ["pre_vote", "pre_vote_ack", "prepare", "promise", "nack"];
const COMMAND: [&str; 8] = [
    "request",
    "accept",
    "accepted",
    "read_index",
    "read_ack",
    "reply",
    "catchup",
    "chosen",
];

/// Publishes and deliveries of the given message kinds, summed over all nodes.
pub fn total(r: &RunReport, kinds: &[&str]) -> (u64, u64) {
    let mut all = r.client_counts.clone();
    for c in &r.server_counts {
        all.add(c);
    }
    sum(&all, kinds)
}

fn sum(c: &Counts, kinds: &[&str]) -> (u64, u64) {
    kinds
        .iter()
        .map(|k| kind_index_of(k))
        .fold((0, 0), |(p, d), i| (p + c.sent[i], d + c.received[i]))
}

/// A healthy cluster of `n` servers with one sequential client: exactly one election, then
/// steady state.
pub fn steady(n: u32) -> Scenario {
    let mut s = scenario::lossy(3);
    s.name = "steady";
    s.about = "healthy network, one sequential client";
    s.servers = n;
    s.clients = 1;
    s.keys = 1;
    s.net = NetConfig::healthy();
    s.faults = FaultPlan::None;
    s.safety = Duration::from_secs(5);
    s.think = Duration::ZERO;
    s
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub servers: u32,
    pub elections: u64,
    pub election_publishes: f64,
    pub election_deliveries: f64,
    pub commands: u64,
    pub command_publishes: f64,
    pub command_deliveries: f64,
    pub heartbeats_per_second: f64,
    /// Under the reference experiment's faults (20% loss, 10 ms delay, partitions), averaged over seeds.
    pub faulty_command_publishes: f64,
    pub faulty_command_deliveries: f64,
}

pub fn measure(n: u32) -> Row {
    let r = run_seed(&steady(n), 1);
    let elections = r.elections_won.max(1);
    let (ep, ed) = total(&r, &ELECTION);
    let commands = r.ops_completed.max(1);
    let (cp, cd) = total(&r, &COMMAND);
    let (hp, _) = total(&r, &["heartbeat"]);
    let mut faulty = scenario::paper();
    faulty.servers = n;
    faulty.faults = FaultPlan::RandomPartitions {
        count: 5,
        sizes: vec![(n as usize).div_ceil(2), n as usize / 2],
    };
    let (mut fp, mut fd, mut fops) = (0u64, 0u64, 0u64);
    for seed in 0..20 {
        let r = run_seed(&faulty, seed);
        let (p, d) = total(&r, &COMMAND);
        fp += p;
        fd += d;
        fops += r.ops_completed;
    }
    let fops = fops.max(1) as f64;
    Row {
        servers: n,
        elections: r.elections_won,
        election_publishes: ep as f64 / elections as f64,
        election_deliveries: ed as f64 / elections as f64,
        commands: r.ops_completed,
        command_publishes: cp as f64 / commands as f64,
        command_deliveries: cd as f64 / commands as f64,
        heartbeats_per_second: hp as f64 / r.virtual_time.as_secs_f64().max(1e-9),
        faulty_command_publishes: fp as f64 / fops,
        faulty_command_deliveries: fd as f64 / fops,
    }
}

/// The table for the docs, in Markdown.
pub fn markdown_table(sizes: &[u32]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| servers | msgs per election (publishes / deliveries) | msgs per committed command, healthy (publishes / deliveries) | same under the reference experiment's faults | heartbeat publishes per second |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for n in sizes {
        let r = measure(*n);
        let _ = writeln!(
            out,
            "| {} | {:.1} / {:.1} | {:.2} / {:.2} | {:.2} / {:.2} | {:.1} |",
            r.servers,
            r.election_publishes,
            r.election_deliveries,
            r.command_publishes,
            r.command_deliveries,
            r.faulty_command_publishes,
            r.faulty_command_deliveries,
            r.heartbeats_per_second
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_2_costs_grow_linearly_with_the_cluster() {
        let r3 = measure(3);
        let r7 = measure(7);
        assert_eq!(r3.elections, 1, "a healthy run has one election");
        // Request (1 publish) + Accept (1) + N-1 Accepted + Reply (1) per command; a get
        // costs the same with ReadIndex and ReadAck in place of Accept and Accepted.
        assert!((r3.command_publishes - 5.0).abs() < 0.5, "{r3:?}");
        assert!((r7.command_publishes - 9.0).abs() < 0.5, "{r7:?}");
        // PreVote (1 broadcast) + N-1 answers, then Prepare (1 broadcast) + N-1 Promises.
        assert!((r7.election_publishes - 14.0).abs() < 0.5, "{r7:?}");
    }
}
