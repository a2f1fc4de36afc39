//! Crash recovery with real processes: servers are killed with SIGKILL under a concurrent
//! write load (a minority at a time, and once all of them together) and restarted from their
//! data directories. At the end every acknowledged write must be readable and the clients'
//! whole history must be linearizable. Damaged data files must stop a server with a clear
//! error instead of letting it serve from wrong state.

mod common;

use common::*;
use mqpaxos_check::{check_events, CheckLimits, CheckOutcome};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn kill_9_loop_loses_no_acknowledged_write() {
    let broker = Broker::start(Kind::Mosquitto);
    let mut cluster = Cluster::start(&broker, 3);
    cluster.leader(Duration::from_secs(20));
    let history = History::new();
    let rt = load_runtime();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for c in 1..=3u32 {
        let mut opts = cluster.client_options(&format!("client{c}"));
        opts.timeout = Duration::from_secs(5);
        let history = history.clone();
        let stop = stop.clone();
        writers.push(rt.spawn(async move {
            let mut client = mqpaxos::Client::connect(opts.clone())
                .await
                .expect("connect");
            let name = format!("client{c}");
            // Bounded: at most 6000 writes per client, and the killer stops the loop. Paced,
            // so that the writes go on through every kill (unpaced, they can all be done
            // before the later kills on a quiet machine, and those would test nothing).
            for i in 0..6000u32 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                let key = format!("k{}", i % 4);
                let value = format!("{name}-{i}");
                if !history.put(&client, &name, &key, &value).await {
                    // A timed-out command may still execute: continue as a new client
                    // session so the history stays sequential per client id.
                    client.close().await;
                    client = mqpaxos::Client::connect(opts.clone())
                        .await
                        .expect("reconnect");
                }
            }
            client.close().await;
        }));
    }
    let mut cycles = 0;
    for round in 0..8u32 {
        std::thread::sleep(Duration::from_millis(700));
        if round == 4 {
            for id in 1..=3 {
                cluster.kill(id);
            }
            std::thread::sleep(Duration::from_millis(300));
            for id in 1..=3 {
                cluster.start_server(id);
            }
            cycles += 3;
        } else {
            let id = round % 3 + 1;
            cluster.kill(id);
            std::thread::sleep(Duration::from_millis(400));
            cluster.start_server(id);
            cycles += 1;
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        rt.block_on(w).expect("writer");
    }
    // Final reads, after everything settled: a lost acknowledged write shows up as a
    // non-linearizable history.
    let (events, _) = history.with_final_reads(&rt, &cluster, &["k0", "k1", "k2", "k3"]);
    let acked = acknowledged_puts(&events);
    eprintln!("{cycles} kill -9 cycles, {acked} acknowledged writes checked");
    assert!(acked > 20, "the load made progress: {acked}");
    let verdict = check_events(&events, CheckLimits::default()).expect("well-formed history");
    assert_eq!(verdict, CheckOutcome::Linearizable);
}

#[test]
fn a_corrupt_data_file_stops_the_server_with_a_clear_error() {
    let broker = Broker::start(Kind::Mosquitto);
    let mut cluster = Cluster::start(&broker, 3);
    cluster.leader(Duration::from_secs(20));
    for i in 0..20 {
        let o = cluster.cli(&["put", &format!("k{i}"), "v"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    cluster.kill(3);
    let wal = cluster.data.path().join("server3").join("wal");
    let mut bytes = std::fs::read(&wal).expect("read wal");
    assert!(bytes.len() > 64, "the wal holds records");
    bytes[20] ^= 0x55;
    std::fs::write(&wal, &bytes).expect("write wal");
    let out = cluster
        .server_command(3, "server3")
        .output()
        .expect("run server");
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(err.contains("wal") && err.contains("corrupt"), "{err}");
    // A data directory of another server is refused too.
    let out = cluster
        .server_command(2, "server1")
        .output()
        .expect("run server");
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("belongs to server 1"),
        "{}",
        stderr(&out)
    );
    // The other two carry on.
    let o = cluster.cli(&["get", "k19"]);
    assert_eq!(stdout(&o), "v");
}

/// Issue 12.7, the trace that lost every write at 9d6aa8a: three servers, server 3 down, 20
/// acknowledged puts on 1 and 2; all stopped; server 2's data directory deleted (a replaced
/// disk, a pod rescheduled onto an empty volume) and server 2 started, without `--rejoin`,
/// together with server 3. The two must not form a majority that has forgotten the writes:
/// server 2 rejoins, which needs server 1; once it is back every write is there.
#[test]
fn an_empty_data_directory_never_forms_a_majority_that_forgot_acknowledged_writes() {
    let broker = Broker::start(Kind::Mosquitto);
    let mut cluster = Cluster::start(&broker, 3);
    cluster.leader(Duration::from_secs(20));
    cluster.kill(3);
    for i in 0..20 {
        let o = cluster.cli(&["put", &format!("k{i}"), &format!("v{i}")]);
        assert!(o.status.success(), "put {i}: {}", stderr(&o));
    }
    cluster.kill(1);
    cluster.kill(2);
    std::fs::remove_dir_all(cluster.data.path().join("server2")).expect("wipe server 2");
    cluster.start_server(2);
    cluster.start_server(3);
    // Neither may write: server 2 does not vote until it has rejoined, and server 3 alone is
    // no majority.
    let o = cluster.cli(&["put", "late", "x", "--timeout", "4s"]);
    assert!(
        !o.status.success(),
        "a majority without the acknowledged writes accepted a new one"
    );
    cluster.start_server(1);
    cluster.leader(Duration::from_secs(30));
    for i in 0..20 {
        let o = cluster.cli(&["get", &format!("k{i}"), "--timeout", "20s"]);
        assert_eq!(stdout(&o), format!("v{i}"), "k{i}: {}", stderr(&o));
    }
}

/// Issue 12.8: a second process for a server that is already running is refused, whether it
/// points at the live data directory (locked) or at another one (noticed on the broker), and
/// the cluster goes on.
#[test]
fn a_second_process_for_a_running_server_is_refused() {
    let broker = Broker::start(Kind::Mosquitto);
    let cluster = Cluster::start(&broker, 3);
    cluster.leader(Duration::from_secs(20));
    let o = cluster.cli(&["put", "k", "v1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The same data directory: the lock says no at once.
    let out = cluster
        .server_command(1, "server1")
        .output()
        .expect("run server");
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));
    // Another data directory: the running server's reports give it away.
    let mut second = cluster
        .server_command(1, "elsewhere")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run server");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = second.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second server 1 kept running");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    use std::io::Read;
    let _ = second
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    assert!(!status.success());
    assert!(err.contains("already running"), "{err}");
    let o = cluster.cli(&["put", "k", "v2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&cluster.cli(&["get", "k"])), "v2");
}
