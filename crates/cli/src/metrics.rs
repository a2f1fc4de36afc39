//! A server's Prometheus `/metrics`, read over HTTP by the commands that start servers and
//! watch them (`bench`, `failover`, `chaos`). It only reads: it never changes a server.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Counters read from one server's `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    /// Sum of `mqpaxos_messages_total{direction="out"}`: every publish the server made.
    pub messages_out: f64,
    /// `mqpaxos_executed_commands_total`.
    pub executed: f64,
    /// `mqpaxos_is_leader`: 1 while the server leads.
    pub is_leader: bool,
    /// `mqpaxos_leader`: the leader the server follows (0: none known).
    pub leader: u32,
    /// `mqpaxos_store_bytes`: bytes of keys and values in the server's store.
    pub store_bytes: Option<f64>,
}

/// Parses the Prometheus text format for the counters bench and failover need.
pub fn parse_counters(text: &str) -> Counters {
    let mut c = Counters::default();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        if name.starts_with("mqpaxos_messages_total{") && name.contains("direction=\"out\"") {
            c.messages_out += v;
        } else if name == "mqpaxos_executed_commands_total" {
            c.executed = v;
        } else if name == "mqpaxos_is_leader" {
            c.is_leader = v == 1.0;
        } else if name == "mqpaxos_leader" {
            c.leader = v as u32;
        } else if name == "mqpaxos_store_bytes" {
            c.store_bytes = Some(v);
        }
    }
    c
}

/// GET http://addr/metrics with a short deadline: the body, or `None` if the server does
/// not answer.
pub async fn fetch_metrics(addr: &str) -> Option<String> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.take(16 << 20).read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n")?;
        if !head.starts_with("HTTP/1.") || !head.contains(" 200") {
            return None;
        }
        Some(body.to_string())
    };
    tokio::time::timeout(Duration::from_secs(2), fetch)
        .await
        .ok()
        .flatten()
}

/// The counters of one server's `/metrics`; `None` if it does not answer.
pub async fn scrape(addr: &str) -> Option<Counters> {
    fetch_metrics(addr).await.map(|body| parse_counters(&body))
}

/// Scrapes every address; one entry per address.
pub async fn scrape_all(addrs: &[String]) -> Vec<Option<Counters>> {
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        out.push(scrape(a).await);
    }
    out
}
