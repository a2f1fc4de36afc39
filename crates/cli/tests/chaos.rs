//! A shortened seed experiment on real processes, on both brokers: faults through the chaos
//! topic, random splits, and the runner's own verdict.

mod common;

use common::*;
use std::process::Command;

fn short_run(broker: Option<&Broker>) {
    let out = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "chaos",
        "--servers",
        "5",
        "--groups",
        "3,2",
        "--clients",
        "3",
    ])
    .args(["--duration", "12s", "--partitions", "3", "--seed", "11"])
    .arg("--out")
    .arg(out.path())
    .env("MQPAXOS_PASSWORD", PASSWORD);
    if let Some(b) = broker {
        cmd.args(["--broker", &b.url()]);
    }
    let o = cmd.output().expect("run mqpaxos chaos");
    let text = stdout(&o);
    eprintln!("{text}");
    assert!(
        o.status.success(),
        "chaos run failed:\n{text}\n{}",
        stderr(&o)
    );
    assert!(text.contains("verdict: PASS"));
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join("summary.json")).expect("summary.json"),
    )
    .expect("summary is JSON");
    assert!(summary["ops_ok"].as_u64().unwrap_or(0) > 10, "{summary}");
    assert_eq!(
        summary["faults"].as_array().map(Vec::len),
        Some(5),
        "loss, 3 splits, heal"
    );
    assert_eq!(
        summary["messages_out"].as_object().map(|m| m.len()),
        Some(5)
    );
    let history = std::fs::read_to_string(out.path().join("history.jsonl")).expect("history");
    let events = mqpaxos_check::parse_jsonl(&history).expect("history parses");
    assert!(events.len() > 20);
}

#[cfg(feature = "embedded-broker")]
#[test]
fn short_chaos_run_on_the_embedded_broker() {
    short_run(None);
}

#[test]
fn short_chaos_run_on_mosquitto() {
    let b = Broker::start(Kind::Mosquitto);
    short_run(Some(&b));
}
