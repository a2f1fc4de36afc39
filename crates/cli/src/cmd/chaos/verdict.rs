//! The verdict of a run, after the heal: the replicas reach the same state, and the clients'
//! history, with a final read of every key appended (so a lost acknowledged write fails it),
//! is linearizable. Every way it fails is one line in the violations.

use super::launch::Broker;
use super::observer::Observer;
use mqpaxos_check::{check_events, CheckLimits, CheckOutcome, Event, OpKind};
use mqpaxos_node::{Client, ClientOptions};
use std::time::{Duration, Instant};

/// What the run found.
pub(super) struct Verdict {
    /// The replicas reported the same state within the limit after the heal.
    pub replicas_agree: bool,
    /// The checker's outcome, as a sentence.
    pub linearizable: String,
    /// Why the run fails; empty if it passes.
    pub violations: Vec<String>,
    /// The clients' history and the final reads, as checked.
    pub events: Vec<Event>,
}

/// Waits up to `limit` for every one of `servers` to be online with the same state.
pub(super) async fn wait_agreement(observer: &Observer, servers: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if observer.replicas_agree(servers) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Judges the run: `agree` from [`wait_agreement`], then the final reads of `keys` keys
/// (times since `start`) appended to `events`, then the linearizability check.
pub(super) async fn judge(
    agree: bool,
    observer: &Observer,
    mut events: Vec<Event>,
    reader: ClientOptions,
    keys: usize,
    start: Instant,
) -> Verdict {
    let mut violations = Vec::new();
    if !agree {
        violations.push(format!(
            "replicas did not reach the same state within 30 s of the heal ({})",
            observer.states()
        ));
    }
    final_reads(reader, keys, start, &mut events, &mut violations).await;
    let verdict = match check_events(&events, CheckLimits::default()) {
        Ok(v) => v,
        Err(e) => CheckOutcome::Unknown {
            key: String::new(),
            reason: e.to_string(),
        },
    };
    if !verdict.is_linearizable() {
        violations.push(format!("history: {verdict}"));
    }
    Verdict {
        replicas_agree: agree,
        linearizable: verdict.to_string(),
        violations,
        events,
    }
}

/// How the final reader (`client0`) connects: to the runner's broker, patient.
pub(super) fn reader_options(broker: &Broker, cluster: &str) -> ClientOptions {
    let mut opts = ClientOptions::new(&broker.url, "client0");
    opts.broker = broker.options("client0");
    opts.cluster = cluster.to_string();
    opts.timeout = Duration::from_secs(20);
    opts
}

/// Reads every key once more, as client `final`, into `events`.
async fn final_reads(
    opts: ClientOptions,
    keys: usize,
    start: Instant,
    events: &mut Vec<Event>,
    violations: &mut Vec<String>,
) {
    let reader = match Client::connect(opts).await {
        Ok(reader) => reader,
        Err(e) => {
            violations.push(format!("final reader cannot connect: {e}"));
            return;
        }
    };
    for k in 0..keys {
        let key = format!("k{k}");
        let t0 = start.elapsed().as_nanos() as u64;
        match reader.get(&key).await {
            Ok(v) => {
                events.push(Event::invoke(t0, "final", OpKind::Get, &key));
                events.push(
                    Event::ok(
                        start.elapsed().as_nanos() as u64,
                        "final",
                        OpKind::Get,
                        &key,
                    )
                    .with_value(v.as_deref()),
                );
            }
            Err(e) => violations.push(format!("final read of {key} failed: {e}")),
        }
    }
    reader.close().await;
}
