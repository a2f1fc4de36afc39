//! `mqpaxos status`: what every server last said about itself (retained `status/` and
//! `presence/` topics), as a table or JSON.

use super::kv::client_failure;
use super::{fail, parse_duration, CmdResult, ConnArgs};
use mqpaxos_node::topics::{server_id, Parsed, Topics};
use mqpaxos_node::transport::{Connection, Incoming, Session};
use mqpaxos_node::Status;
use serde::Serialize;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// How many servers the cluster has (default: as the servers report).
    #[arg(long, env = "MQPAXOS_SERVERS")]
    pub servers: Option<u32>,
    /// Print JSON: an array of objects with id, online, role, ballot, leader, commit, executed,
    /// digest.
    #[arg(long)]
    pub json: bool,
    /// The MQTT user name to connect as.
    #[arg(long, env = "MQPAXOS_USER", default_value = "client")]
    pub user: String,
    /// Give up connecting after this long.
    #[arg(long, env = "MQPAXOS_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Serialize, Debug)]
struct Row {
    id: u32,
    online: bool,
    role: Option<String>,
    ballot: Option<String>,
    leader: Option<u32>,
    commit: Option<u64>,
    executed: Option<u64>,
    /// The replicated state's digest at `executed`: replicas that executed the same slots
    /// must show the same one, so comparing them checks agreement from outside.
    digest: Option<String>,
    /// How old the server's report was when read, in milliseconds (reports follow the
    /// commit point within 20 ms, and are refreshed every second regardless).
    age_ms: Option<u64>,
}

pub async fn run(a: Args) -> CmdResult {
    let topics = Topics::new(&a.conn.cluster);
    let session = Session {
        client_id: format!("mqpaxos-status-{:016x}", rand_id()),
        subscriptions: vec![topics.all_presence(), topics.all_status()],
        on_connect: Vec::new(),
        will: None,
    };
    let mut conn = Connection::open(&a.conn.broker_options(&a.user)?, session, Some(a.timeout))
        .await
        .map_err(|e| client_failure(e.into()))?;
    let mut presence: BTreeMap<u32, bool> = BTreeMap::new();
    let mut status: BTreeMap<u32, Status> = BTreeMap::new();
    // Retained messages arrive right after subscribing; stop once they have gone quiet.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    loop {
        let quiet = tokio::time::Instant::now() + Duration::from_millis(300);
        let until = quiet.min(deadline);
        match tokio::time::timeout_at(until, conn.incoming.recv()).await {
            Ok(Some(Incoming::Publish { topic, payload, .. })) => match topics.parse(&topic) {
                Some(Parsed::Presence { node }) => {
                    if let Some(id) = server_id(&node) {
                        presence.insert(id, payload.as_slice() == b"online");
                    }
                }
                Some(Parsed::Status { node }) => {
                    if let (Some(id), Ok(s)) =
                        (server_id(&node), serde_json::from_slice::<Status>(&payload))
                    {
                        status.insert(id, s);
                    }
                }
                _ => {}
            },
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    conn.close().await;
    let n = a
        .servers
        .or_else(|| status.values().map(|s| s.servers).max())
        .or_else(|| presence.keys().max().copied())
        .unwrap_or(0);
    if n == 0 {
        return Err(fail(3, format!(
            "no server of cluster {:?} has ever reported to {} (use --servers N to list them anyway)",
            a.conn.cluster, a.conn.broker
        )));
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let rows: Vec<Row> = (1..=n)
        .map(|id| {
            let s = status.get(&id);
            Row {
                id,
                online: presence.get(&id).copied().unwrap_or(false),
                // A rejoining server is a follower that does not vote yet: say so.
                role: s.map(|s| {
                    if s.rejoining {
                        "rejoining".to_string()
                    } else {
                        s.role.clone()
                    }
                }),
                ballot: s.map(|s| s.ballot.clone()),
                leader: s.and_then(|s| s.leader),
                commit: s.map(|s| s.commit),
                executed: s.map(|s| s.executed),
                digest: s.map(|s| s.digest.clone()),
                age_ms: s
                    .filter(|s| s.published_ms > 0)
                    .map(|s| now_ms.saturating_sub(s.published_ms)),
            }
        })
        .collect();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else {
        println!(
            "{:<4} {:<7} {:<10} {:<8} {:<7} {:>8} {:>9} {:>7}",
            "ID", "ONLINE", "ROLE", "BALLOT", "LEADER", "COMMIT", "EXECUTED", "AGE"
        );
        for r in &rows {
            let dash = || "-".to_string();
            println!(
                "{:<4} {:<7} {:<10} {:<8} {:<7} {:>8} {:>9} {:>7}",
                r.id,
                if r.online { "yes" } else { "no" },
                if r.online {
                    r.role.clone().unwrap_or_else(dash)
                } else {
                    dash()
                },
                r.ballot.clone().unwrap_or_else(dash),
                r.leader.map_or_else(dash, |l| l.to_string()),
                r.commit.map_or_else(dash, |c| c.to_string()),
                r.executed.map_or_else(dash, |c| c.to_string()),
                r.age_ms
                    .map_or_else(dash, |ms| format!("{:.1}s", ms as f64 / 1000.0)),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn rand_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ u64::from(std::process::id()).rotate_left(32)
}
