//! `mqpaxos bench`: a short run on its own local cluster writes the results as JSON, and its
//! flags refuse bad values with one line and exit 2. Behaviour only: no speed assertions.

mod common;

use common::BIN;
use std::process::{Command, Stdio};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("MQPAXOS_CONFIG")
        .env_remove("MQPAXOS_BROKER")
        .stdin(Stdio::null())
        .output()
        .expect("run mqpaxos")
}

/// Runs a one-second bench on its own cluster with `args`, its data and JSON in a new
/// temporary directory (returned, with the JSON read back); fails unless it succeeds.
fn bench_json(args: &[&str]) -> (tempfile::TempDir, serde_json::Value) {
    let d = tempfile::tempdir().expect("temp dir");
    let json = d.path().join("bench.json");
    let data = d.path().join("data");
    let mut all = vec!["bench", "--duration", "1s", "--warmup", "0s"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--data-dir",
        data.to_str().expect("utf-8 temp path"),
        "--json",
        json.to_str().expect("utf-8 temp path"),
    ]);
    let o = run(&all);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "bench failed: {stderr}");
    let text = std::fs::read_to_string(&json).expect("the JSON file");
    let v = serde_json::from_str(&text).expect("valid JSON");
    (d, v)
}

#[test]
fn bench_on_its_own_cluster_writes_json() {
    let (d, v) = bench_json(&[
        "--clients",
        "1,4",
        "--mix",
        "put=80,get=10,cas=10",
        "--keys",
        "50",
    ]);
    let data = d.path().join("data");
    assert_eq!(v["target"], "mqpaxos");
    assert_eq!(v["params"]["mix"], "put=80,get=10,cas=10");
    assert_eq!(v["params"]["servers"], 3);
    assert_eq!(v["params"]["sync"], "always");
    assert!(v["machine"]["nproc"].as_u64().is_some_and(|n| n > 0));
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2);
    for (s, clients) in steps.iter().zip([1, 4]) {
        assert_eq!(s["clients"], clients);
        assert!(s["ops"].as_u64().is_some_and(|n| n > 0), "no ops: {s}");
        for field in [
            "ops_per_sec",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
        ] {
            assert!(s[field].as_f64().is_some_and(|x| x > 0.0), "{field}: {s}");
        }
        // Own cluster: the servers' metrics and processes are observed.
        assert!(
            s["publishes_per_command"].as_f64().is_some_and(|x| x > 0.0),
            "publishes per command: {s}"
        );
        assert!(s["committed"].as_u64().is_some_and(|n| n > 0), "{s}");
        assert!(s["cpu_percent"].as_f64().is_some(), "{s}");
        assert!(s["rss_mib"].as_f64().is_some_and(|x| x > 0.0), "{s}");
        assert!(
            s["peak_rss_mib"].as_f64() >= s["rss_mib"].as_f64(),
            "a peak below the current: {s}"
        );
    }
    // The servers are gone: nothing holds the data directory's files open. The stop is
    // checked by the cluster having been stopped before bench exited successfully.
    assert!(data.join("default").join("server1").exists());
}

/// `--pipeline`: each client keeps several commands in flight, and every one is counted.
#[test]
fn a_pipelined_bench_runs_and_says_so() {
    let (_d, v) = bench_json(&["--clients", "4", "--pipeline", "4"]);
    assert_eq!(v["params"]["pipeline"], 4);
    let s = &v["steps"][0];
    assert_eq!(s["errors"], 0, "{s}");
    assert!(s["ops"].as_u64().is_some_and(|n| n > 0), "no ops: {s}");
    assert!(s["committed"].as_u64().is_some_and(|n| n > 0), "{s}");
}

#[test]
fn bench_flags_refuse_bad_values() {
    for args in [
        &["bench", "--mix", "put=80,scan=20"][..],
        &["bench", "--mix", "put=0"],
        &["bench", "--clients", "0"],
        &["bench", "--clients", "many"],
        &["bench", "--rate", "-5"],
        &["bench", "--keys", "0"],
        &["bench", "--value-size", "0"],
        &["bench", "--duration", "soon"],
        &["bench", "--warmup", "-1s"],
        &["bench", "--sync", "sometimes"],
        &["bench", "--pipeline", "0"],
        &["bench", "--pipeline", "65"],
        &["bench", "--pipeline", "4", "--rate", "100"],
        &["bench", "--pipeline", "4", "--api", "json"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(e.lines().count(), 1, "{args:?}: {e}");
    }
}

/// Servers that cannot start (here: a flag they refuse) fail the bench at once, and the error
/// says which exited and quotes their own words from their logs, which the bench keeps off the
/// terminal.
#[test]
fn a_cluster_that_cannot_start_says_why() {
    let d = tempfile::tempdir().expect("temp dir");
    let data = d.path().join("data");
    let started = std::time::Instant::now();
    let o = run(&[
        "bench",
        "--duration",
        "1s",
        "--server-arg=--no-such-flag",
        "--data-dir",
        data.to_str().expect("utf-8 temp path"),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("servers exited"), "{stderr}");
    // Which ones: at least the majority that ended the wait (the third may still be starting).
    assert!(stderr.matches(" has exited (").count() >= 2, "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
    // Not the 30 s a cluster gets to elect a leader: nothing can come of waiting.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "{stderr}"
    );
}

/// `mqpaxos failover` on the disk it is told to use: its JSON (what bench/compare's report
/// reads) holds every kill, and it leaves nothing behind in that directory.
#[test]
fn failover_writes_json_and_cleans_up_its_data_dir() {
    let d = tempfile::tempdir().expect("temp dir");
    let data = d.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let json = d.path().join("failover.json");
    let o = run(&[
        "failover",
        "--kills",
        "2",
        "--settle",
        "200ms",
        "--data-dir",
        data.to_str().expect("utf-8 temp path"),
        "--json",
        json.to_str().expect("utf-8 temp path"),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "failover failed: {stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON")).expect("JSON");
    assert_eq!(v["kills"], 2);
    assert_eq!(v["failover_ms"].as_array().map(Vec::len), Some(2), "{v}");
    assert!(v["p99_ms"].as_f64().is_some_and(|p| p > 0.0), "{v}");
    let left: Vec<_> = std::fs::read_dir(&data).expect("read dir").collect();
    assert!(left.is_empty(), "{left:?}");
}
