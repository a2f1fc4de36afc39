//! A shortened `mqpaxos chaos --netns` on one broker and on two bridged brokers: kernel loss
//! and cuts (iptables in network namespaces), the runner's own verdict, and no namespace,
//! veth or rule of the run left behind. Each run has its own process, hence its own prefix
//! (`mqpx-<pid>-`) and its own /24, so the two tests run in parallel without colliding.
//! Where namespaces are not available (not root), each test skips with one line.

mod common;

use common::*;
use std::process::Command;

fn netns_run(brokers: &str) {
    let out = tempfile::tempdir().expect("temp dir");
    let o = Command::new(BIN)
        .args(["chaos", "--netns", "--brokers", brokers])
        .args(["--servers", "5", "--groups", "3,2", "--clients", "3"])
        .args(["--duration", "20s", "--partitions", "2", "--seed", "11"])
        .arg("--out")
        .arg(out.path())
        .env_remove("MQPAXOS_PASSWORD")
        .output()
        .expect("run mqpaxos chaos --netns");
    let (text, err) = (stdout(&o), stderr(&o));
    if !o.status.success() && err.contains("network namespaces are not available") {
        // CI runs as root with iptables installed: there a skip would hide a broken run.
        assert!(
            std::env::var_os("CI").is_none(),
            "chaos --netns must run in CI: {}",
            err.lines().last().unwrap_or("")
        );
        eprintln!("skipped: {}", err.lines().last().unwrap_or(""));
        return;
    }
    eprintln!("{text}");
    assert!(o.status.success(), "chaos --netns failed:\n{text}\n{err}");
    assert!(text.contains("verdict: PASS"));
    assert!(text.contains("kernel faults: network namespaces mqpx-"));
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join("summary.json")).expect("summary.json"),
    )
    .expect("summary is JSON");
    let faults = summary["faults"].as_array().expect("faults");
    // Loss, 2 splits, the heal; with two brokers each split's cut also heals midway.
    let expected = if brokers == "2" { 6 } else { 4 };
    assert_eq!(faults.len(), expected, "{faults:?}");
    assert!(faults.iter().all(|f| f["kernel"]
        .as_str()
        .is_some_and(|k| k.starts_with("iptables"))));

    // Nothing of this run is left: its prefix is in the report line.
    let prefix = text
        .split("network namespaces ")
        .nth(1)
        .and_then(|r| r.split('*').next())
        .expect("the run's prefix");
    let pid = prefix.trim_start_matches("mqpx-").trim_end_matches('-');
    let namespaces = run(&["ip", "netns", "list"]);
    assert!(!namespaces.contains(prefix), "left behind: {namespaces}");
    let links = run(&["ip", "-o", "link", "show"]);
    assert!(
        !links.contains(&format!("mqx{pid}:")) && !links.contains(&format!("mqx{pid}@")),
        "root veth left behind"
    );
    // Every rule lived in the run's namespaces; none may have leaked into the root one.
    let rules = run(&["iptables", "-w", "-S"]);
    assert!(!rules.contains("MQPX"), "rules left behind: {rules}");
}

fn run(cmd: &[&str]) -> String {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[test]
fn netns_chaos_run_on_one_broker() {
    netns_run("1");
}

#[test]
fn netns_chaos_run_on_two_bridged_brokers() {
    netns_run("2");
}
