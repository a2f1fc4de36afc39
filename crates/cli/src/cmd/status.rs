//! `mqpaxos status`: asks every server for its status at the moment it runs (a query on the
//! asker's own request topic, answered on its own reply topic), and shows what each answered
//! (role, ballot, leader, positions, data size, version, health), falling back to the
//! retained `status/` report, marked as not answering, for a server that did not answer.
//! Exits non-zero when fewer than a majority of the servers answer.

use super::{fail, parse_duration, CmdResult, ConnArgs};
use crate::cmd::Exit;
use crate::connect::client_failure;
use mqpaxos_node::topics::{server_id, Parsed, Topics};
use mqpaxos_node::transport::{Connection, Incoming, Session};
use mqpaxos_node::{Status, StatusQuery};
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
    /// Print JSON: an array of objects with id, online, answered, role, ballot, leader,
    /// commit, executed, keys, bytes, log, version, ready, health, digest, age_ms.
    #[arg(long, env = "MQPAXOS_JSON")]
    pub json: bool,
    /// The MQTT user name to connect as.
    #[arg(long, env = "MQPAXOS_USER", default_value = "client")]
    pub user: String,
    /// Give up connecting after this long.
    #[arg(long, env = "MQPAXOS_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How long to wait for the servers' answers (it stops early once every server has
    /// answered).
    #[arg(long, env = "MQPAXOS_WAIT", default_value = "1s", value_parser = parse_duration)]
    pub wait: Duration,
}

#[derive(Serialize, Debug)]
struct Row {
    id: u32,
    online: bool,
    /// Whether the server answered this query; if not, the rest comes from its retained
    /// report (as old as `age_ms` says).
    answered: bool,
    role: Option<String>,
    ballot: Option<String>,
    leader: Option<u32>,
    commit: Option<u64>,
    executed: Option<u64>,
    keys: Option<usize>,
    /// Bytes of keys and values (answers only).
    bytes: Option<u64>,
    /// Log entries kept since the last snapshot.
    log: Option<u64>,
    version: Option<String>,
    /// Part of a quorum that can commit, as the server's `/health` says, and why.
    ready: Option<bool>,
    health: Option<String>,
    /// The replicated state's digest at `executed`: replicas that executed the same slots
    /// must show the same one, so comparing them checks agreement from outside.
    digest: Option<String>,
    /// How old the answer (or, without one, the retained report) was when shown, in
    /// milliseconds.
    age_ms: Option<u64>,
}

pub async fn run(a: Args) -> CmdResult {
    let topics = Topics::new(&a.conn.cluster);
    let nonce = format!("status-{:016x}", rand_id());
    let reply_topic = topics.reply(&format!("{}/{nonce}", a.user));
    let session = Session {
        client_id: format!("mqpaxos-status-{:016x}", rand_id()),
        subscriptions: vec![
            topics.all_presence(),
            topics.all_status(),
            reply_topic.clone(),
        ],
        on_connect: Vec::new(),
        will: None,
    };
    let mut conn = Connection::open(&a.conn.broker_options(&a.user)?, session, Some(a.timeout))
        .await
        .map_err(|e| client_failure(e.into()))?;
    // The subscriptions went out before the broker's ConnAck was handed over, so the broker
    // has them before this query.
    let query = serde_json::to_vec(&StatusQuery {
        status_to: nonce.clone(),
    })
    .map_err(|e| fail(Exit::Failed, e.to_string()))?;
    conn.publish(topics.request(&a.user), query)
        .await
        .map_err(|e| client_failure(e.into()))?;
    let heard = listen(&mut conn, &topics, &reply_topic, a.servers, a.wait).await;
    conn.close().await;
    let n = heard
        .cluster_size(a.servers)
        .or_else(|| heard.presence.keys().max().copied())
        .unwrap_or(0);
    if n == 0 {
        return Err(fail(Exit::Unavailable, format!(
            "no server of cluster {:?} has ever reported to {} (use --servers N to list them anyway)",
            a.conn.cluster, a.conn.broker
        )));
    }
    let rows = heard.rows(n);
    if a.json {
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| fail(Exit::Failed, format!("cannot encode the status: {e}")))?;
        println!("{text}");
    } else {
        print_table(&rows);
    }
    let quorum = n as usize / 2 + 1;
    if heard.answers.len() < quorum {
        return Err(fail(
            Exit::Unavailable,
            format!(
                "only {} of {n} servers answered within {:?} (a quorum is {quorum})",
                heard.answers.len(),
                a.wait
            ),
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// What the servers said while `status` listened: presence, retained reports and answers
/// to the query, by server id.
#[derive(Default)]
struct Heard {
    presence: BTreeMap<u32, bool>,
    retained: BTreeMap<u32, Status>,
    answers: BTreeMap<u32, Status>,
    /// How old each answer was on arrival, in milliseconds.
    arrived: BTreeMap<u32, u64>,
}

impl Heard {
    /// How many servers the cluster has: `--servers` if given, else the largest number a
    /// report or answer gives.
    fn cluster_size(&self, servers: Option<u32>) -> Option<u32> {
        servers.or_else(|| {
            self.retained
                .values()
                .chain(self.answers.values())
                .map(|s| s.servers)
                .max()
        })
    }

    /// One row per server 1..=n: its answer, or else its retained report.
    fn rows(&self, n: u32) -> Vec<Row> {
        let now_ms = unix_ms();
        (1..=n)
            .map(|id| {
                let answer = self.answers.get(&id);
                let s = answer.or_else(|| self.retained.get(&id));
                Row {
                    id,
                    // An answer is proof of life even before its presence arrives.
                    online: answer.is_some() || self.presence.get(&id).copied().unwrap_or(false),
                    answered: answer.is_some(),
                    // A rejoining server is a follower that does not vote yet: say so.
                    role: s.map(|s| {
                        if s.rejoining {
                            "rejoining".to_string()
                        } else {
                            s.role.to_string()
                        }
                    }),
                    ballot: s.map(|s| s.ballot.clone()),
                    leader: s.and_then(|s| s.leader),
                    commit: s.map(|s| s.commit),
                    executed: s.map(|s| s.executed),
                    keys: s.map(|s| s.keys),
                    bytes: answer.map(|s| s.bytes),
                    log: s.map(|s| s.log),
                    version: s.map(|s| s.version.clone()).filter(|v| !v.is_empty()),
                    ready: s.filter(|s| !s.health.is_empty()).map(|s| s.ready),
                    health: s.map(|s| s.health.clone()).filter(|h| !h.is_empty()),
                    digest: s.map(|s| s.digest.clone()),
                    age_ms: self.arrived.get(&id).copied().or_else(|| {
                        s.filter(|s| s.published_ms > 0)
                            .map(|s| now_ms.saturating_sub(s.published_ms))
                    }),
                }
            })
            .collect()
    }
}

/// Collects answers, presence and retained reports until every server has answered, the
/// wait is over or the connection ends.
async fn listen(
    conn: &mut Connection,
    topics: &Topics,
    reply_topic: &str,
    servers: Option<u32>,
    wait: Duration,
) -> Heard {
    let mut heard = Heard::default();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let known = heard.cluster_size(servers);
        if known.is_some_and(|n| heard.answers.len() >= n as usize) {
            break;
        }
        match tokio::time::timeout_at(deadline, conn.recv()).await {
            Ok(Some(Incoming::Publish { topic, payload, .. })) => {
                if topic == reply_topic {
                    if let Ok(s) = serde_json::from_slice::<Status>(&payload) {
                        // How old it was on arrival, not after the wait for the others.
                        heard
                            .arrived
                            .insert(s.id, unix_ms().saturating_sub(s.published_ms));
                        heard.answers.insert(s.id, s);
                    }
                    continue;
                }
                match topics.parse(&topic) {
                    Some(Parsed::Presence { node }) => {
                        if let Some(id) = server_id(&node) {
                            heard.presence.insert(id, payload.as_slice() == b"online");
                        }
                    }
                    Some(Parsed::Status { node }) => {
                        if let (Some(id), Ok(s)) =
                            (server_id(&node), serde_json::from_slice::<Status>(&payload))
                        {
                            heard.retained.insert(id, s);
                        }
                    }
                    _ => {}
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    heard
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<3} {:<6} {:<6} {:<10} {:<7} {:<6} {:>7} {:>8} {:>7} {:>9} {:>6} {:<8} {:>6}",
        "ID",
        "ONLINE",
        "ANSWER",
        "ROLE",
        "BALLOT",
        "LEADER",
        "COMMIT",
        "EXECUTED",
        "KEYS",
        "BYTES",
        "LOG",
        "VERSION",
        "AGE"
    );
    let dash = || "-".to_string();
    let yes = |b: bool| if b { "yes" } else { "no" };
    for r in rows {
        println!(
            "{:<3} {:<6} {:<6} {:<10} {:<7} {:<6} {:>7} {:>8} {:>7} {:>9} {:>6} {:<8} {:>6}",
            r.id,
            yes(r.online),
            yes(r.answered),
            if r.online || r.answered {
                r.role.clone().unwrap_or_else(dash)
            } else {
                dash()
            },
            r.ballot.clone().unwrap_or_else(dash),
            r.leader.map_or_else(dash, |l| l.to_string()),
            r.commit.map_or_else(dash, |c| c.to_string()),
            r.executed.map_or_else(dash, |c| c.to_string()),
            r.keys.map_or_else(dash, |c| c.to_string()),
            r.bytes.map_or_else(dash, |c| c.to_string()),
            r.log.map_or_else(dash, |c| c.to_string()),
            r.version.clone().unwrap_or_else(dash),
            r.age_ms
                .map_or_else(dash, |ms| format!("{:.1}s", ms as f64 / 1000.0)),
        );
    }
    // Why each answering server is or is not ready (its /health line).
    for r in rows.iter().filter(|r| r.answered) {
        if let Some(h) = &r.health {
            println!("server {}: {h}", r.id);
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn rand_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ u64::from(std::process::id()).rotate_left(32)
}
