//! Whole-cluster power loss with torn writes, with real processes (issue 12.2). Twenty
//! times, under a write load, all three servers die at once: two of them in the middle of
//! writing a WAL group (the fault-injection switch `MQPAXOS_FAULT_TEAR_WAL=1` + SIGUSR1 makes
//! a server write a random subset of its next group's 512-byte blocks, never sync, and abort,
//! as a power cut mid-write leaves a disk), the third by SIGKILL. Restarted with no flags and
//! no operator, the cluster must come back by itself every time, with no server left
//! rejoining; at the end the history must be linearizable and every acknowledged write
//! readable. At 9d6aa8a two torn logs wedged the cluster for good.

mod common;

use common::*;
use mqpaxos_check::{check_events, CheckLimits, CheckOutcome};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CYCLES: u32 = 20;

#[test]
fn power_loss_of_the_whole_cluster_with_two_torn_logs_recovers_by_itself() {
    // Inherited by every server this test starts (and only by them: one test per binary).
    std::env::set_var("MQPAXOS_FAULT_TEAR_WAL", "1");
    let broker = Broker::start(Kind::Embedded);
    let mut cluster = Cluster::start(&broker, 3);
    cluster.leader(Duration::from_secs(20));
    let history = History::new();
    let rt = load_runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for c in 1..=3u32 {
        let mut opts = cluster.client_options(&format!("client{c}"));
        opts.timeout = Duration::from_secs(3);
        let history = history.clone();
        let stop = stop.clone();
        writers.push(rt.spawn(async move {
            let name = format!("client{c}");
            let mut client = None;
            // Bounded: at most 20,000 writes per client, and the test stops the loop.
            for i in 0..20_000u32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if client.is_none() {
                    match mqpaxos::Client::connect(opts.clone()).await {
                        Ok(cl) => client = Some(cl),
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    }
                }
                let Some(cl) = client.as_ref() else { continue };
                let key = format!("k{}", i % 4);
                // 1-3 KB, so that a group spans several 512-byte blocks and can tear.
                let value = format!("{name}-{i}:{}", "x".repeat(1000 + (i as usize * 37) % 2000));
                if !history.put(cl, &name, &key, &value).await {
                    // Outcome unknown: go on as a new client id, so each id's history stays
                    // sequential.
                    if let Some(cl) = client.take() {
                        cl.close().await;
                    }
                }
            }
            if let Some(cl) = client {
                cl.close().await;
            }
        }));
    }

    let mut torn = 0;
    for cycle in 0..CYCLES {
        std::thread::sleep(Duration::from_millis(500));
        // Servers a and b tear their next write; c loses power as it stands.
        let c = cycle % 3 + 1;
        let (a, b) = match c {
            1 => (2, 3),
            2 => (1, 3),
            _ => (1, 2),
        };
        for id in [a, b] {
            let pid = cluster.pid(id).expect("server running");
            let ok = std::process::Command::new("kill")
                .args(["-USR1", &pid.to_string()])
                .status()
                .expect("run kill");
            assert!(ok.success());
        }
        cluster.kill(c);
        for id in [a, b] {
            // With c gone, a and b still form a majority and keep writing: each tears its
            // next group within moments. One that wrote nothing in time loses power whole.
            match cluster.wait_exit(id, Duration::from_secs(3)) {
                Some(st) if st.signal() == Some(6) => torn += 1,
                Some(st) => panic!("cycle {cycle}: server {id} ended with {st:?}"),
                None => cluster.kill(id),
            }
        }
        for id in 1..=3 {
            assert!(!cluster.is_running(id));
        }
        for id in 1..=3 {
            cluster.start_server(id);
        }
        wait_recovered(&mut cluster, cycle);
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        rt.block_on(w).expect("writer");
    }

    let (events, _) = history.with_final_reads(&rt, &cluster, &["k0", "k1", "k2", "k3"]);
    let acked = acknowledged_puts(&events);
    eprintln!(
        "{CYCLES} whole-cluster power cuts, {torn} logs torn mid-group, {acked} acknowledged \
         writes checked"
    );
    assert!(
        torn >= CYCLES,
        "the fault switch tore too few groups: {torn} of {}",
        2 * CYCLES
    );
    assert!(acked > 100, "the load made progress: {acked}");
    let verdict = check_events(&events, CheckLimits::default()).expect("well-formed history");
    assert_eq!(verdict, CheckOutcome::Linearizable);
}

/// Waits (bounded) until a leader commits a write and no server is left rejoining: torn
/// unsynced tails are cut off without a rejoin, so the cluster needs nobody's help.
fn wait_recovered(cluster: &mut Cluster, cycle: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for id in 1..=3 {
            assert!(
                cluster.is_running(id),
                "cycle {cycle}: server {id} exited on restart"
            );
        }
        let o = cluster.cli(&["put", "probe", &cycle.to_string(), "--timeout", "3s"]);
        let st = cluster.status();
        let rejoining = st.iter().any(|s| s["role"] == "rejoining");
        if o.status.success() && !rejoining && st.len() == 3 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "cycle {cycle}: not recovered within 30 s: put: {}; status: {st:?}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
