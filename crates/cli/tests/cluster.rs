//! Multi-process tests: real `mqpaxos server` processes on a real broker (Mosquitto and the
//! built-in one), with per-node users and the production ACL. Each test is bounded: every
//! wait has a deadline, and every load loop a count.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

/// Several clients at once: their own keys, a shared counter by cas, and a shared append log
/// that shows each command executed exactly once.
fn concurrent_clients(kind: Kind, n: u32) {
    let broker = Broker::start(kind);
    let cluster = Cluster::start(&broker, n);
    cluster.leader(Duration::from_secs(20));
    let clients = 4;
    let rounds = 8;
    load_runtime().block_on(async {
        let mut tasks = Vec::new();
        for c in 1..=clients {
            let opts = cluster.client_options(&format!("client{c}"));
            tasks.push(tokio::spawn(async move {
                let client = mqpaxos::Client::connect(opts).await.expect("connect");
                for i in 0..rounds {
                    let key = format!("own-{c}-{i}");
                    client.put(&key, &format!("v{i}")).await.expect("put");
                    assert_eq!(client.get(&key).await.expect("get"), Some(format!("v{i}")));
                    client
                        .append("log", &format!("c{c}.{i};"))
                        .await
                        .expect("append");
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        assert!(tries < 1000, "cas never succeeded");
                        let old = client.get("counter").await.expect("get counter");
                        let next = old
                            .as_deref()
                            .map_or(1, |v| v.parse::<u64>().expect("a number") + 1)
                            .to_string();
                        if client
                            .cas("counter", old.as_deref(), &next)
                            .await
                            .expect("cas")
                        {
                            break;
                        }
                    }
                    // The same counter on revisions, as etcd clients do with mod_revision.
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        assert!(tries < 1000, "cas on revision never succeeded");
                        let (_, entry) = client.read("rcounter").await.expect("read");
                        let (n, rev) = entry.map_or((0, 0), |e| {
                            (e.value.parse::<u64>().expect("a number"), e.modified)
                        });
                        if client
                            .cas_revision("rcounter", rev, &(n + 1).to_string())
                            .await
                            .expect("cas on revision")
                        {
                            break;
                        }
                    }
                }
                client.close().await;
            }));
        }
        for t in tasks {
            t.await.expect("client task");
        }
        let client = mqpaxos::Client::connect(cluster.client_options("client1"))
            .await
            .expect("connect");
        let total = clients * rounds;
        assert_eq!(
            client.get("counter").await.expect("get"),
            Some(total.to_string()),
            "every cas increment counted once"
        );
        let (store, entry) = client.read("rcounter").await.expect("read");
        let entry = entry.expect("rcounter exists");
        assert_eq!(
            &*entry.value,
            total.to_string(),
            "every increment counted once"
        );
        assert_eq!(entry.version, total, "one change per increment");
        assert!(entry.create < entry.modified && entry.modified <= store);
        let log = client.get("log").await.expect("get").expect("log exists");
        let entries: Vec<&str> = log.split(';').filter(|s| !s.is_empty()).collect();
        let unique: BTreeSet<&str> = entries.iter().copied().collect();
        assert_eq!(
            entries.len(),
            total as usize,
            "each append executed exactly once: {log}"
        );
        assert_eq!(unique.len(), total as usize);
        assert!(!client.delete("own-1-0-missing").await.expect("delete"));
        assert!(client.delete("own-1-0").await.expect("delete"));
        assert_eq!(client.get("own-1-0").await.expect("get"), None);
        client.close().await;
    });
    wait_converged(&cluster, Duration::from_secs(10));
}

/// One client keeps 8 commands in flight (`Client::pipeline`) through 30% message loss and
/// 20% duplicated deliveries: each of 240 appends, spread over 6 keys, executes exactly once,
/// and a lane's session survives many commands. Then the losses stop and a pipelined get of
/// every key agrees with a plain one.
fn pipelined_commands_run_once(kind: Kind) {
    let broker = Broker::start(kind);
    let cluster = Cluster::start(&broker, 3);
    cluster.leader(Duration::from_secs(20));
    set_faults(&broker, &cluster.cluster, r#"{"loss":0.3,"duplicate":0.2}"#);
    let total = 240;
    let keys = 6;
    load_runtime().block_on(async {
        let mut opts = cluster.client_options("client1");
        opts.resend = Duration::from_millis(100);
        let client = mqpaxos::Client::connect(opts).await.expect("connect");
        let ops = (0..total).map(|i| mqpaxos_core::Op::Append {
            key: format!("pl-{}", i % keys),
            value: format!("a{i};").into(),
        });
        let mut results = vec![None; total];
        client
            .pipeline(ops, 8, |i, r| {
                results[i] = Some(r.map_err(|e| e.to_string()))
            })
            .await
            .expect("the connection stays up");
        for (i, r) in results.iter().enumerate() {
            assert_eq!(
                r.as_ref(),
                Some(&Ok(mqpaxos_core::OpResult::Done)),
                "append {i}"
            );
        }
        set_faults(&broker, &cluster.cluster, "{}");
        let mut seen = BTreeSet::new();
        let gets = (0..keys).map(|k| mqpaxos_core::Op::Get {
            key: format!("pl-{k}"),
        });
        let mut values = vec![None; keys];
        client
            .pipeline(gets, 4, |i, r| values[i] = Some(r.expect("get")))
            .await
            .expect("the connection stays up");
        for (k, value) in values.iter().enumerate() {
            let plain = client.get(&format!("pl-{k}")).await.expect("get");
            assert_eq!(
                *value,
                Some(mqpaxos_core::OpResult::Value(plain.clone())),
                "pipelined and plain gets agree"
            );
            let plain = plain.expect("appended to");
            for token in plain.split(';').filter(|t| !t.is_empty()) {
                assert!(seen.insert(token.to_string()), "{token} executed twice");
                let i: usize = token[1..].parse().expect("a number");
                assert_eq!(i % keys, k, "{token} landed on the wrong key");
            }
        }
        assert_eq!(seen.len(), total, "every acknowledged append executed");
        client.close().await;
    });
}

/// Waits until every server is online and reports the same commit point.
fn wait_converged(cluster: &Cluster, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let st = cluster.status();
        let commits: BTreeSet<u64> = st.iter().filter_map(|s| s["commit"].as_u64()).collect();
        let online = st.iter().all(|s| s["online"] == true);
        if online && commits.len() == 1 && st.len() == cluster.n as usize {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not converge: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// kill -9 the leader while a client keeps writing; a new leader takes over; the killed
/// server restarts from its data directory and catches up; nothing acknowledged is lost.
/// `extra`: the servers' flags.
fn kill_the_leader(kind: Kind, n: u32, extra: &[&str]) {
    let broker = Broker::start(kind);
    let mut cluster = Cluster::start_with(&broker, n, extra);
    let old = cluster.leader(Duration::from_secs(20));
    let rt = load_runtime();
    let client = rt
        .block_on(mqpaxos::Client::connect(cluster.client_options("client2")))
        .expect("connect");
    let mut acked = Vec::new();
    for i in 0..10 {
        rt.block_on(client.put(&format!("k{i}"), &format!("before-{i}")))
            .expect("put before the kill");
        acked.push(i);
    }
    // The leader announced itself to this client's user, and the client sends to it alone.
    assert_eq!(rt.block_on(client.leader()), Some(old));
    cluster.kill(old);
    let killed_at = Instant::now();
    // Writes keep succeeding (they wait out the election) without any help from the test.
    for i in 10..30 {
        rt.block_on(client.put(&format!("k{i}"), &format!("after-{i}")))
            .expect("put after the kill");
        acked.push(i);
    }
    eprintln!(
        "20 writes after killing leader {old} took {:?}",
        killed_at.elapsed()
    );
    let new = cluster.leader(Duration::from_secs(20));
    assert_ne!(new, old, "a new leader took over");
    assert_eq!(
        rt.block_on(client.leader()),
        Some(new),
        "the new leader announced itself"
    );
    cluster.start_server_with(old, extra);
    for i in 30..40 {
        rt.block_on(client.put(&format!("k{i}"), &format!("rejoined-{i}")))
            .expect("put after the restart");
        acked.push(i);
    }
    wait_converged(&cluster, Duration::from_secs(20));
    for i in acked {
        let v = rt.block_on(client.get(&format!("k{i}"))).expect("get");
        assert!(v.is_some(), "acknowledged write k{i} lost");
    }
    rt.block_on(client.close());
}

/// The broker itself goes away for a while; clients keep retrying and everything resumes.
fn broker_restart(kind: Kind) {
    let mut broker = Broker::start(kind);
    let cluster = Cluster::start(&broker, 3);
    cluster.leader(Duration::from_secs(20));
    let rt = load_runtime();
    let client = rt
        .block_on(mqpaxos::Client::connect(cluster.client_options("client3")))
        .expect("connect");
    rt.block_on(client.put("a", "1")).expect("put before");
    broker.restart(Duration::from_secs(1));
    // The same client object: its connection comes back on its own.
    rt.block_on(client.put("b", "2"))
        .expect("put after the broker restart");
    assert_eq!(rt.block_on(client.get("a")).expect("get"), Some("1".into()));
    assert_eq!(rt.block_on(client.get("b")).expect("get"), Some("2".into()));
    rt.block_on(client.close());
    // The CLI works too, and status sees every server back online.
    let out = cluster.cli(&["get", "b"]);
    assert_eq!(stdout(&out), "2", "{}", stderr(&out));
    wait_converged(&cluster, Duration::from_secs(20));
}

/// The ACL keeps clients out of Paxos traffic and other clients' replies.
fn acl_is_enforced(kind: Kind) {
    let broker = Broker::start(kind);
    let cluster = Cluster::start(&broker, 3);
    cluster.leader(Duration::from_secs(20));
    let sub = |user: &str, topic: &str| {
        Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
            .args([
                "-u", user, "-P", PASSWORD, "-t", topic, "-C", "1", "-W", "2",
            ])
            .output()
            .expect("mosquitto_sub is installed (apt-get install mosquitto-clients)")
    };
    // Heartbeats flow ten times a second: a server sees one, a client sees none.
    let peer = format!("mqpaxos/{}/peer/all/+", cluster.cluster);
    let as_server = sub(&format!("{}-server2", cluster.cluster), &peer);
    assert!(!as_server.stdout.is_empty(), "a server reads peer traffic");
    let as_client = sub("client1", &peer);
    assert!(
        as_client.stdout.is_empty(),
        "a client must not read peer traffic"
    );
    // A client cannot answer for a server.
    let forged = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-u", "client1", "-P", PASSWORD])
        .args([
            "-t",
            &format!("mqpaxos/{}/reply/client2/x", cluster.cluster),
            "-m",
            "x",
        ])
        .output()
        .expect("mosquitto_pub");
    let _ = forged;
    let replies = format!("mqpaxos/{}/reply/client2/#", cluster.cluster);
    let spy = std::thread::spawn({
        let port = broker.port;
        let replies = replies.clone();
        move || {
            Command::new("mosquitto_sub")
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args([
                    "-u", "client1", "-P", PASSWORD, "-t", &replies, "-C", "1", "-W", "3",
                ])
                .output()
                .expect("mosquitto_sub")
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let rt = load_runtime();
    let client = rt
        .block_on(mqpaxos::Client::connect(cluster.client_options("client2")))
        .expect("connect");
    for i in 0..5 {
        rt.block_on(client.put("secret", &i.to_string()))
            .expect("put");
    }
    rt.block_on(client.close());
    let spied = spy.join().expect("spy thread");
    assert!(spied.stdout.is_empty(), "client1 read client2's replies");
}

#[test]
fn mosquitto_3_servers_concurrent_clients() {
    concurrent_clients(Kind::Mosquitto, 3);
}

#[test]
fn mosquitto_5_servers_concurrent_clients() {
    concurrent_clients(Kind::Mosquitto, 5);
}

#[test]
fn mosquitto_3_servers_kill_the_leader() {
    kill_the_leader(Kind::Mosquitto, 3, &[]);
}

#[test]
fn mosquitto_5_servers_kill_the_leader() {
    kill_the_leader(Kind::Mosquitto, 5, &[]);
}

#[test]
fn mosquitto_broker_restart() {
    broker_restart(Kind::Mosquitto);
}

#[test]
fn mosquitto_acl_is_enforced() {
    acl_is_enforced(Kind::Mosquitto);
}

#[cfg(feature = "embedded-broker")]
mod embedded {
    use super::*;

    #[test]
    fn embedded_3_servers_concurrent_clients() {
        concurrent_clients(Kind::Embedded, 3);
    }

    #[test]
    fn embedded_5_servers_concurrent_clients() {
        concurrent_clients(Kind::Embedded, 5);
    }

    #[test]
    fn embedded_3_servers_kill_the_leader() {
        kill_the_leader(Kind::Embedded, 3, &[]);
    }

    #[test]
    fn embedded_5_servers_kill_the_leader() {
        kill_the_leader(Kind::Embedded, 5, &[]);
    }

    /// Servers on worker threads (`--threads 2`): the log syncs off the event loop's
    /// thread (block_in_place) instead of inline, a path the default of one thread skips.
    #[test]
    fn embedded_3_servers_on_worker_threads_kill_the_leader() {
        kill_the_leader(Kind::Embedded, 3, &["--threads", "2"]);
    }

    #[test]
    fn embedded_broker_restart() {
        broker_restart(Kind::Embedded);
    }

    #[test]
    fn embedded_pipelined_commands_run_once() {
        pipelined_commands_run_once(Kind::Embedded);
    }

    #[test]
    fn embedded_acl_is_enforced() {
        acl_is_enforced(Kind::Embedded);
    }
}
