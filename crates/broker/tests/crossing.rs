//! Large publishes crossing on one connection. A client that publishes a large message while
//! the broker is delivering a large one to it (a server sending its promise as a peer's
//! arrives) writes and does not read until its write is done; rumqttc, which every node
//! uses, behaves so. A broker that in turn does not read while it writes to that client
//! waits on the client as the client waits on it, until its write timeout drops the client:
//! at 52ca23d after a whole-cluster restart with 100 KB values this dropped the servers
//! every 6.25 s for good (docs/broker.md). Here a raw MQTT 3.1.1 client does exactly that
//! with two 12 MB publishes and must get both back.

mod common;

use common::{start_open, stop};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// MQTT's variable-length "remaining length".
fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![kind];
    remaining_length(body.len(), &mut p);
    p.extend_from_slice(body);
    p
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Reads one packet: its first byte and its body.
fn read_packet(sock: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut first = [0u8; 1];
    sock.read_exact(&mut first)?;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let mut b = [0u8; 1];
        sock.read_exact(&mut b)?;
        len |= usize::from(b[0] & 0x7f) << shift;
        shift += 7;
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body)?;
    Ok((first[0], body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_publishes_crossing_on_one_connection_both_arrive() {
    let broker = start_open().await;
    let addr = broker.local_addr();
    let got = tokio::task::spawn_blocking(move || -> Result<Vec<usize>, String> {
        let mut sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        // Bounded: a stalled exchange fails the test instead of hanging it.
        sock.set_read_timeout(Some(Duration::from_secs(20))).ok();
        sock.set_write_timeout(Some(Duration::from_secs(20))).ok();
        let mut connect = Vec::new();
        string("MQTT", &mut connect);
        // Level 4, clean session, keep-alive 5 s (the nodes' own; the broker's write
        // timeout follows from it).
        connect.extend_from_slice(&[4, 0x02, 0, 5]);
        string("crossing", &mut connect);
        sock.write_all(&packet(0x10, &connect))
            .map_err(|e| e.to_string())?;
        let (kind, _) = read_packet(&mut sock).map_err(|e| e.to_string())?;
        assert_eq!(kind, 0x20, "CONNACK");
        let mut subscribe = vec![0, 1];
        string("big", &mut subscribe);
        subscribe.push(0);
        sock.write_all(&packet(0x82, &subscribe))
            .map_err(|e| e.to_string())?;
        let (kind, _) = read_packet(&mut sock).map_err(|e| e.to_string())?;
        assert_eq!(kind, 0x90, "SUBACK");
        // Two 12 MB publishes to our own subscription, the second written while the broker
        // delivers the first, and nothing read until both are written.
        for fill in [b'a', b'b'] {
            let mut publish = Vec::new();
            string("big", &mut publish);
            publish.extend(std::iter::repeat_n(fill, 12 << 20));
            sock.write_all(&packet(0x30, &publish))
                .map_err(|e| format!("writing publish {}: {e}", fill as char))?;
        }
        let mut sizes = Vec::new();
        for _ in 0..2 {
            let (kind, body) = read_packet(&mut sock).map_err(|e| format!("reading: {e}"))?;
            assert_eq!(kind & 0xf0, 0x30, "PUBLISH");
            sizes.push(body.len() - 5);
        }
        Ok(sizes)
    })
    .await
    .expect("client thread");
    assert_eq!(got, Ok(vec![12 << 20, 12 << 20]));
    stop(broker).await;
}

/// The other half: a rumqttc event loop writes a whole batch of queued publishes before it
/// reads again, and the broker reads ahead only one packet's worth while its own write to
/// that client waits. Five 12 MB publishes to the client's own subscription, queued at once:
/// the broker delivers the first while the client still writes the rest. With
/// `set_read_ahead` (what every mqpaxos node sets, `mqpaxos_client::transport::READ_AHEAD`)
/// the client reads while it writes and all five come back on the first connection; with
/// `read_ahead` 0 (upstream rumqttc), the broker's write timeout drops the client, which the
/// second half of this test checks, so that the first half cannot pass for another reason.
async fn five_crossing(read_ahead: usize) -> Result<usize, String> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let broker = start_open().await;
    let addr = broker.local_addr();
    let mut mo = MqttOptions::new(
        format!("crossing-{read_ahead}"),
        addr.ip().to_string(),
        addr.port(),
    );
    mo.set_keep_alive(Duration::from_secs(5));
    mo.set_max_packet_size(16 << 20, 16 << 20);
    mo.set_max_request_batch(64);
    mo.set_read_ahead(read_ahead);
    let (client, mut eventloop) = AsyncClient::new(mo, 64);
    client
        .subscribe("big", QoS::AtLeastOnce)
        .await
        .map_err(|e| e.to_string())?;
    let mut subscribed = false;
    let mut received = 0;
    // Bounded: 30 s in all, well past the broker's 6.25 s write timeout.
    let result = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) if !subscribed => {
                    subscribed = true;
                    for fill in b'a'..b'f' {
                        client
                            .try_publish("big", QoS::AtLeastOnce, false, vec![fill; 12 << 20])
                            .map_err(|e| e.to_string())?;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    assert_eq!(p.payload.len(), 12 << 20);
                    received += 1;
                    if received == 5 {
                        return Ok(received);
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(format!("connection lost after {received}: {e}")),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("only {received} of 5 within 30 s")));
    stop(broker).await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rumqttc_client_reads_while_it_writes_a_large_batch() {
    assert_eq!(
        five_crossing(mqpaxos_client::transport::READ_AHEAD).await,
        Ok(5)
    );
    let upstream = five_crossing(0).await;
    assert!(
        upstream.is_err(),
        "without reading ahead the crossing should stall: {upstream:?}"
    );
}
