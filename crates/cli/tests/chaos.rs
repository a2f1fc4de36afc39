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

/// Ctrl-C in the middle of a run without `--netns`: the run stops, kills its servers and
/// removes their data directories, as on an error, and exits with 130. (The default handler
/// used to end the process without running a guard, leaving the directories in `$TMPDIR`.)
#[cfg(feature = "embedded-broker")]
#[test]
fn an_interrupted_chaos_run_removes_its_data_directories() {
    use std::time::{Duration, Instant};

    /// A child killed if the test fails before it exits.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The processes whose command line mentions `path`.
    fn processes_using(path: &str) -> Vec<u32> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(path))
            })
            .collect()
    }

    // The run's own TMPDIR, so its data directory is easy to find and nothing else is there.
    let tmp = tempfile::tempdir().expect("temp dir");
    let log = tmp.path().join("stderr.log");
    let mut run = Killed(
        Command::new(BIN)
            .args([
                "chaos",
                "--servers",
                "3",
                "--groups",
                "2,1",
                "--clients",
                "2",
            ])
            .args(["--duration", "60s", "--partitions", "1", "--seed", "18"])
            .env("TMPDIR", tmp.path())
            .env("MQPAXOS_PASSWORD", PASSWORD)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("stderr log"))
            .spawn()
            .expect("start mqpaxos chaos"),
    );
    let data = tmp.path().join(format!("mqpaxos-chaos-18-{}", run.0.id()));
    // Interrupt once every server has made its data directory and written to it.
    let started = |id: u32| {
        std::fs::read_dir(data.join(format!("server{id}"))).is_ok_and(|mut d| d.next().is_some())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(1..=3).all(started) {
        assert!(
            run.0.try_wait().expect("poll the run").is_none(),
            "the run ended early"
        );
        assert!(
            Instant::now() < deadline,
            "the servers did not start within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: kill(2) on the child this test started. Only the runner gets the signal, so
    // its servers stop because it stops them.
    unsafe {
        libc::kill(run.0.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = run.0.try_wait().expect("poll the run") {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(130), "exit status {status:?}: {err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(!data.exists(), "left behind: {}", data.display());
    // No server of the run is left (each has its data directory on its command line).
    let needle = data.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive = processes_using(&needle);
        if alive.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "servers still running: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
