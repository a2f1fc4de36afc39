//! What an operator sees: a refused login ends a server with one line, logs without colour
//! off a terminal, an unknown log level refused, and health that follows the quorum
//! (`/health`, the gauges, `mqpaxos status` and `mqpaxos health`).

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn status_code(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Polls `/health` until its status is `want`, and returns the last response.
fn wait_health(port: u16, want: u16, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let r = http_get(port, "/health");
        if status_code(&r) == want || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_refused_login_ends_the_server_with_one_line() {
    let broker = Broker::start(Kind::Embedded);
    let mut cluster = Cluster::start(&broker, 0);
    cluster.n = 3;
    cluster.resize(3);
    let started = Instant::now();
    let o = cluster
        .server_command(1, "server1")
        .env("MQPAXOS_PASSWORD", "not-the-password")
        .env_remove("MQPAXOS_LOG")
        .output()
        .expect("run mqpaxos server");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "expected one line, got: {e}");
    assert!(
        e.contains("refused") && e.contains(&broker.url()),
        "the line names the refusal and the broker: {e}"
    );
    assert!(
        e.contains("bad user name or password") || e.contains("not authorized"),
        "{e}"
    );
    assert!(!e.contains("running"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn logs_have_no_colour_off_a_terminal_and_unknown_levels_are_refused() {
    let port = free_port(); // nothing listens there
    let mut child = Command::new(BIN)
        .args(["server", "--id", "1", "--servers", "3", "--in-memory"])
        .args(["--broker", &format!("mqtt://127.0.0.1:{port}")])
        .env("MQPAXOS_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mqpaxos server");
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let o = child.wait_with_output().expect("server output");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("cannot connect to the broker"),
        "each failed attempt is logged: {e}"
    );
    assert!(!e.contains('\x1b'), "colour codes in a pipe: {e:?}");
    assert!(
        !e.contains("running"),
        "running before the broker accepted it: {e}"
    );

    let o = Command::new(BIN)
        .args(["server", "--id", "1", "--servers", "3", "--in-memory"])
        .env("MQPAXOS_LOG", "verbose")
        .stdin(Stdio::null())
        .output()
        .expect("run mqpaxos");
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("unknown level \"verbose\""), "{e}");
}

fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// With a majority down, the survivor is not ready, does not claim to lead, and `status`
/// fails; with all up again, all is well.
#[test]
fn health_follows_the_quorum() {
    let broker = Broker::start(Kind::Mosquitto);
    let mut cluster = Cluster::start(&broker, 0);
    cluster.n = 3;
    cluster.resize(3);
    let metrics = free_port();
    cluster.start_server_with(1, &["--metrics", &format!("127.0.0.1:{metrics}")]);
    cluster.start_server(2);
    cluster.start_server(3);
    cluster.leader(Duration::from_secs(20));
    let o = cluster.cli(&["put", "k", "v"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let r = wait_health(metrics, 200, Duration::from_secs(10));
    assert_eq!(status_code(&r), 200, "{r}");
    assert!(r.contains("ready: "), "{r}");
    let body = http_get(metrics, "/metrics");
    for (name, want) in [
        ("mqpaxos_quorum", 1.0),
        ("mqpaxos_rejoining", 0.0),
        ("mqpaxos_broker_connected", 1.0),
    ] {
        assert_eq!(metric(&body, name), Some(want), "{name}:\n{body}");
    }
    assert!(metric(&body, "mqpaxos_last_commit_age_seconds").is_some());

    let o = cluster.cli(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(
        table.contains("VERSION") && table.contains(env!("CARGO_PKG_VERSION")),
        "{table}"
    );
    let st = cluster.status();
    assert!(st.iter().all(|s| s["answered"] == true), "{st:?}");
    // Followers learn the commit point with the leader's next message; the leader has it.
    assert!(
        st.iter().any(|s| s["keys"] == 1 && s["bytes"] == 2),
        "{st:?}"
    );
    let o = cluster.cli(&["health"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("healthy: linearizable read in"),
        "{}",
        stdout(&o)
    );

    cluster.kill(2);
    cluster.kill(3);
    let r = wait_health(metrics, 503, Duration::from_secs(10));
    assert_eq!(status_code(&r), 503, "{r}");
    assert!(r.contains("not ready"), "{r}");
    // A leader that lost its majority steps down (check-quorum); give it a heartbeat.
    std::thread::sleep(Duration::from_millis(500));
    let body = http_get(metrics, "/metrics");
    assert_eq!(metric(&body, "mqpaxos_is_leader"), Some(0.0), "{body}");
    assert_eq!(metric(&body, "mqpaxos_quorum"), Some(0.0), "{body}");
    let o = cluster.cli(&["status"]);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("only 1 of 3 servers answered"),
        "{}",
        stderr(&o)
    );
    let o = cluster.cli(&["health", "--timeout", "2s"]);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    assert!(stderr(&o).contains("unhealthy"), "{}", stderr(&o));

    cluster.start_server(2);
    cluster.start_server(3);
    let r = wait_health(metrics, 200, Duration::from_secs(30));
    assert_eq!(status_code(&r), 200, "{r}");
    let o = cluster.cli(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
