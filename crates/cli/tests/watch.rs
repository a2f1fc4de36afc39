//! Watch under faults, on real processes: while 20% of messages (the servers' and the watch
//! events alike) are lost, the leader is killed and the servers are partitioned, writers race
//! each other with compare-and-swap on revisions, and `mqpaxos watch` must print every
//! committed change of the watched prefix, in revision order, with no gap left once the faults
//! end. The writers' history is checked for linearizability, and the retained view must end
//! equal to the store.

mod common;

use common::*;
use mqpaxos_check::{check_events, CheckLimits, Event, OpKind};
use mqpaxos_core::ChangeKind;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEYS: [&str; 3] = ["w/a", "w/b", "w/c/d"];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// One writer: reads a key, then swaps it on the revision it read (or puts, or deletes),
/// every value unique, so a cas on a revision is exactly a cas on the value read and the
/// history checker's value model applies.
async fn writer(
    opts: mqpaxos_node::ClientOptions,
    name: String,
    until: Instant,
    t0: Instant,
    events: Arc<Mutex<Vec<Event>>>,
    acked: Arc<Mutex<Vec<String>>>,
) {
    let client = mqpaxos_node::Client::connect(opts).await.expect("connect");
    let now = || t0.elapsed().as_nanos() as u64;
    let push = |e: Event| events.lock().expect("lock").push(e);
    let mut n = 0u64;
    while Instant::now() < until && n < 400 {
        n += 1;
        let key = KEYS[(n as usize + name.len()) % KEYS.len()];
        let value = format!("{name}-{n}");
        push(Event::invoke(now(), &name, OpKind::Get, key));
        let read = client.read(key).await;
        let (revision, current) = match read {
            Ok((_, entry)) => {
                let v = entry.as_ref().map(|r| r.value.clone());
                push(Event::ok(now(), &name, OpKind::Get, key).with_value(v.as_deref()));
                (entry.map_or(0, |r| r.modified), v)
            }
            Err(_) => {
                push(Event::fail(now(), &name, OpKind::Get, key));
                continue;
            }
        };
        match n % 10 {
            0 => {
                push(Event::invoke(now(), &name, OpKind::Delete, key));
                match client.delete(key).await {
                    Ok(_) => push(Event::ok(now(), &name, OpKind::Delete, key)),
                    Err(_) => push(Event::info(now(), &name, OpKind::Delete, key)),
                }
            }
            7 => {
                push(Event::invoke(now(), &name, OpKind::Put, key).with_value(Some(&value)));
                match client.put(key, &value).await {
                    Ok(()) => {
                        push(Event::ok(now(), &name, OpKind::Put, key).with_value(Some(&value)));
                        acked.lock().expect("lock").push(value);
                    }
                    Err(_) => push(Event::info(now(), &name, OpKind::Put, key)),
                }
            }
            _ => {
                let cas = |e: Event| e.with_value(Some(&value)).with_expected(current.as_deref());
                push(cas(Event::invoke(now(), &name, OpKind::Cas, key)));
                match client.cas_revision(key, revision, &value).await {
                    Ok(swapped) => {
                        push(cas(Event::ok(now(), &name, OpKind::Cas, key)).with_result(swapped));
                        if swapped {
                            acked.lock().expect("lock").push(value);
                        }
                    }
                    Err(_) => push(Event::info(now(), &name, OpKind::Cas, key)),
                }
            }
        }
    }
    client.close().await;
}

#[test]
fn a_watcher_gets_every_change_in_order_through_loss_failover_and_partition() {
    let broker = Broker::start(Kind::Embedded);
    let mut cluster = Cluster::start_with(
        &broker,
        3,
        &["--allow-fault-injection", "--view-prefix", "w/"],
    );
    cluster.leader(Duration::from_secs(30));
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("watch.out");
    let out = std::fs::File::create(&out_path).expect("create");
    let mut watcher = Command::new(BIN)
        .args(["watch", "w/", "--prefix", "--from", "1", "-o", "json"])
        .args(["--broker", &cluster.url, "--cluster", &cluster.cluster])
        .args(["--user", "client1", "--timeout", "3s"])
        .env("MQPAXOS_PASSWORD", PASSWORD)
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("mqpaxos watch");
    let c = cluster.cluster.clone();
    set_faults(&broker, &c, r#"{"loss":0.2}"#);

    let rt = runtime();
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(14);
    let events = Arc::new(Mutex::new(Vec::new()));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (2..=4)
        .map(|i| {
            let mut opts = cluster.client_options(&format!("client{i}"));
            opts.timeout = Duration::from_secs(3);
            rt.spawn(writer(
                opts,
                format!("client{i}"),
                until,
                t0,
                events.clone(),
                acked.clone(),
            ))
        })
        .collect();
    // The faults, while the writers run: loss throughout, a killed leader, a partition that
    // leaves the old leader alone.
    std::thread::sleep(Duration::from_secs(3));
    let leader = cluster.leader(Duration::from_secs(30));
    cluster.kill(leader);
    std::thread::sleep(Duration::from_secs(3));
    cluster.start_server_with(leader, &["--allow-fault-injection", "--view-prefix", "w/"]);
    std::thread::sleep(Duration::from_secs(2));
    let leader = cluster.leader(Duration::from_secs(30));
    let others: Vec<u32> = (1..=3).filter(|i| *i != leader).collect();
    set_faults(
        &broker,
        &c,
        &format!(r#"{{"loss":0.2,"partition":[[{leader}],{others:?}]}}"#),
    );
    std::thread::sleep(Duration::from_secs(3));
    set_faults(&broker, &c, "{}");
    for w in writers {
        rt.block_on(w).expect("writer");
    }

    // The truth: every change of the prefix, from the leader's history.
    let truth = rt.block_on(async {
        let client = mqpaxos_node::Client::connect(cluster.client_options("client1"))
            .await
            .expect("connect");
        let mut all = Vec::new();
        let mut from = 1;
        loop {
            let a = client.changes("w/", true, from).await.expect("changes");
            from = a.changes.last().map_or(from, |c| c.revision + 1);
            all.extend(a.changes);
            if !a.more {
                break;
            }
        }
        client.close().await;
        all
    });
    assert!(truth.len() > 30, "only {} changes", truth.len());

    // The watcher catches up once the faults are gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    let printed = loop {
        let text = std::fs::read_to_string(&out_path).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("the watcher prints JSON lines"))
            .collect();
        if lines.len() >= truth.len() || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = watcher.kill();
    let _ = watcher.wait();
    let want: Vec<serde_json::Value> = truth.iter().map(mqpaxos_node::json::event).collect();
    assert_eq!(
        printed.len(),
        want.len(),
        "the watcher printed {} of {} changes",
        printed.len(),
        want.len()
    );
    for (i, (p, w)) in printed.iter().zip(&want).enumerate() {
        assert_eq!(p, w, "change {i} differs");
    }
    // In order, and each key's changes chain: nothing in between was skipped.
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    let mut revision = 0;
    for c in &truth {
        assert!(c.revision > revision);
        revision = c.revision;
        let before = last.get(c.key.as_str()).copied().unwrap_or(0);
        assert_eq!(c.prev_revision, before, "{c:?}");
        let now = match c.kind {
            ChangeKind::Put { .. } => c.revision,
            ChangeKind::Delete => 0,
        };
        last.insert(&c.key, now);
    }
    // Every acknowledged write is among the changes.
    let written: std::collections::BTreeSet<&str> = truth
        .iter()
        .filter_map(|c| match &c.kind {
            ChangeKind::Put { value, .. } => Some(&**value),
            ChangeKind::Delete => None,
        })
        .collect();
    for v in acked.lock().expect("lock").iter() {
        assert!(written.contains(v.as_str()), "acknowledged {v} is missing");
    }
    // The racing compare-and-swaps stayed linearizable.
    let history = events.lock().expect("lock").clone();
    let outcome = check_events(&history, CheckLimits::default()).expect("a well-formed history");
    assert!(outcome.is_linearizable(), "{outcome:?}");

    // The retained view ends equal to the store.
    let o = Command::new("mosquitto_sub")
        .args([
            "-p",
            &broker.port.to_string(),
            "-u",
            "client1",
            "-P",
            PASSWORD,
        ])
        .args([
            "-t",
            &format!("mqpaxos/{c}/view/w/#"),
            "-v",
            "--retained-only",
        ])
        .args(["-W", "2"])
        .output()
        .expect("mosquitto_sub");
    let mut view = BTreeMap::new();
    let mut contract = String::new();
    for line in stdout(&o).lines() {
        let (topic, body) = line.split_once(' ').unwrap_or((line, ""));
        let v: serde_json::Value = serde_json::from_str(body).expect("a view message");
        let key = topic.split_once("/view/").expect("a view topic").1;
        view.insert(key.to_string(), v["value"].as_str().map(str::to_string));
        contract.push_str(&format!("view {body}\n"));
    }
    // The views and the events, against the JSON Schemas of docs/asyncapi/.
    for e in &printed {
        contract.push_str(&format!("event {e}\n"));
    }
    check_api(dir.path(), &contract, contract.lines().count());
    let mut store = BTreeMap::new();
    for c in &truth {
        let v = match &c.kind {
            ChangeKind::Put { value, .. } => Some(value.to_string()),
            ChangeKind::Delete => None,
        };
        store.insert(c.key.clone(), v);
    }
    store.retain(|_, v| v.is_some());
    assert_eq!(view, store, "the retained view");
}

/// Which changes the leader publishes: by default those of keys a watcher registered for (and
/// none once the registration is withdrawn), with `--watch-all` every change. The
/// registration goes through the production ACL: client1 is a named watch reader.
#[test]
fn the_leader_publishes_what_watchers_registered_for_or_everything_with_watch_all() {
    use mqpaxos_node::topics::Topics;
    use mqpaxos_node::transport::{Connection, Incoming, Session};
    let rt = runtime();
    for watch_all in [false, true] {
        let broker = Broker::start(Kind::Embedded);
        let extra: &[&str] = if watch_all { &["--watch-all"] } else { &[] };
        let cluster = Cluster::start_with(&broker, 3, extra);
        cluster.leader(Duration::from_secs(30));
        let opts = cluster.client_options("client1");
        let topics = Topics::new(&broker.cluster);
        let registration = topics.watching("client1", "t");
        let seen = rt.block_on(async {
            let session = Session {
                client_id: format!("watch-test-{}", free_port()),
                subscriptions: vec![topics.watch_filter("", true)],
                on_connect: vec![(registration.clone(), br#"{"prefix":"reg/"}"#.to_vec())],
                will: None,
            };
            let mut sub = Connection::open(&opts.broker, session, Some(Duration::from_secs(10)))
                .await
                .expect("subscribe");
            let client = mqpaxos_node::Client::connect(opts.clone())
                .await
                .expect("connect");
            // The servers see the retained registration through their own subscription.
            tokio::time::sleep(Duration::from_secs(1)).await;
            client.put("reg/a", "1").await.expect("put");
            client.put("other/b", "2").await.expect("put");
            sub.publish_retained(registration.clone(), Vec::new())
                .await
                .expect("withdraw");
            tokio::time::sleep(Duration::from_secs(1)).await;
            client.put("reg/c", "3").await.expect("put");
            let mut seen = Vec::new();
            let until = Instant::now() + Duration::from_secs(2);
            while let Ok(Some(m)) = tokio::time::timeout_at(until.into(), sub.recv()).await {
                if let Incoming::Publish { payload, .. } = m {
                    let e: serde_json::Value = serde_json::from_slice(&payload).expect("event");
                    seen.push(e["key"].as_str().unwrap_or_default().to_string());
                }
            }
            client.close().await;
            sub.close().await;
            seen
        });
        if watch_all {
            assert_eq!(seen, ["reg/a", "other/b", "reg/c"], "--watch-all");
        } else {
            assert_eq!(seen, ["reg/a"], "registered for reg/, then withdrawn");
        }
    }
}
