//! A shortened reference experiment on real processes, on both brokers: faults through the chaos
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
    charts_are_drawn(out.path(), 5);
}

/// The report's charts: each a PNG of the expected size and an SVG, the message charts with
/// one line and one legend entry per server, and their time series beside them.
fn charts_are_drawn(dir: &std::path::Path, servers: usize) {
    for name in ["messages_in", "messages_out", "latency"] {
        let png = std::fs::read(dir.join(format!("{name}.png"))).expect("chart png");
        assert!(png.len() > 1000, "{name}.png is {} bytes", png.len());
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}.png signature");
        assert_eq!(&png[12..16], b"IHDR");
        let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
        let height = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
        assert_eq!((width, height), (1200, 600), "{name}.png size");
        let svg = std::fs::read_to_string(dir.join(format!("{name}.svg"))).expect("chart svg");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        if name.starts_with("messages") {
            // Each server's line is the only polyline drawn 2 px wide (axes are 1, legend 3).
            let lines = svg
                .lines()
                .filter(|l| l.starts_with("<polyline") && l.contains("stroke-width=\"2\""))
                .count();
            assert_eq!(lines, servers, "{name}.svg: one line per server");
            for i in 1..=servers {
                assert!(
                    svg.contains(&format!("\nserver{i}\n</text>")),
                    "{name}.svg: legend entry for server{i}"
                );
            }
        } else {
            assert!(svg.contains("get ok") && svg.contains("unknown (timed out)"));
        }
    }
    let series: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("timeseries.json")).expect("timeseries.json"),
    )
    .expect("timeseries is JSON");
    assert!(
        series["samples"].as_array().map_or(0, Vec::len) > 2,
        "message samples"
    );
    assert!(
        series["ops"].as_array().map_or(0, Vec::len) > 10,
        "op latencies"
    );
    assert_eq!(series["partitions"].as_array().map(Vec::len), Some(3));
}

#[cfg(feature = "embedded-broker")]
#[test]
fn short_chaos_run_on_the_embedded_broker() {
    short_run(None);
}

#[test]
fn short_chaos_run_on_mosquitto() {
    // `mqpaxos chaos --seed 11` names its cluster chaos11.
    let b = Broker::start_for(Kind::Mosquitto, "chaos11");
    short_run(Some(&b));
}
