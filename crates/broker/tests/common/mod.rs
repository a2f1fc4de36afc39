//! Shared helpers for the broker's integration tests: a rumqttc 3.1.1 test client (the client
//! our nodes use) whose every wait is bounded, a password-file writer, and the ACL scenario
//! that must hold on the embedded broker and on Mosquitto alike.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mqpaxos_broker::{Broker, BrokerConfig};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, LastWill, MqttOptions, NetworkOptions,
    Packet, Publish, QoS, SubscribeReasonCode,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Upper bound on any single wait: a broken broker fails the test instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(10);

/// Port 0 on loopback: the kernel picks a free port.
pub fn loopback0() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Starts a broker, within [`WAIT`].
pub async fn start(cfg: BrokerConfig) -> Broker {
    tokio::time::timeout(WAIT, Broker::start(cfg))
        .await
        .expect("broker start timed out")
        .expect("broker start failed")
}

/// A broker with the default settings on a free loopback port: no passwords, no ACL.
pub async fn start_open() -> Broker {
    start(BrokerConfig {
        listen: loopback0(),
        ..BrokerConfig::default()
    })
    .await
}

/// Shuts a broker down, within [`WAIT`].
pub async fn stop(broker: Broker) {
    tokio::time::timeout(WAIT, broker.shutdown())
        .await
        .expect("broker shutdown timed out")
        .expect("broker shutdown failed");
}

/// The example ACL file shipped with the crate.
pub fn example_acl() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/acl.conf")
}

/// Writes a password file with `user:password` pairs hashed by our `hash_password`.
pub fn write_password_file(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("passwd");
    let text: String = users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", mqpaxos_broker::hash_password(p)))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// Every user of the ACL scenario, with its password.
pub const USERS: &[(&str, &str)] = &[
    ("server1", "pw-server1"),
    ("server2", "pw-server2"),
    ("client1", "pw-client1"),
    ("client2", "pw-client2"),
];

pub fn password_of(user: &str) -> &'static str {
    USERS
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, p)| *p)
        .unwrap()
}

enum Seen {
    Packet(Packet),
    Refused(ConnectReturnCode),
    Closed(String),
}

/// How to connect.
#[derive(Clone, Default)]
pub struct Opts {
    pub client_id: String,
    pub credentials: Option<(String, String)>,
    pub will: Option<LastWill>,
    /// rumqttc's `max_request_batch` (vendor/rumqttc/PATCH.md) and in-flight window, if set.
    pub batch: Option<(usize, u16)>,
}

impl Opts {
    pub fn id(client_id: &str) -> Self {
        Opts {
            client_id: client_id.to_string(),
            ..Opts::default()
        }
    }

    /// A client id derived from the user, and that user's password from [`USERS`].
    pub fn user(user: &str) -> Self {
        Self::login(user, password_of(user))
    }

    pub fn login(user: &str, password: &str) -> Self {
        Opts {
            client_id: format!("{user}-{}", std::process::id()),
            credentials: Some((user.to_string(), password.to_string())),
            will: None,
            batch: None,
        }
    }

    pub fn with_will(mut self, will: LastWill) -> Self {
        self.will = Some(will);
        self
    }
}

/// A rumqttc client whose event loop runs on its own task; incoming packets are queued here.
pub struct TestClient {
    pub client: AsyncClient,
    name: String,
    events: mpsc::UnboundedReceiver<Seen>,
    pending: VecDeque<Publish>,
    poller: JoinHandle<()>,
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// Connects and waits for the CONNACK: `Err` carries the refusal code.
pub async fn try_connect(addr: SocketAddr, opts: Opts) -> Result<TestClient, ConnectReturnCode> {
    let mut o = MqttOptions::new(&opts.client_id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(true);
    o.set_max_packet_size(1 << 20, 1 << 20);
    if let Some((u, p)) = &opts.credentials {
        o.set_credentials(u, p);
    }
    if let Some(w) = opts.will.clone() {
        o.set_last_will(w);
    }
    if let Some((batch, inflight)) = opts.batch {
        o.set_max_request_batch(batch);
        o.set_inflight(inflight);
    }
    let (client, mut eventloop) = AsyncClient::new(o, 100);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    let (tx, events) = mpsc::unbounded_channel();
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(p)) => {
                    if tx.send(Seen::Packet(p)).is_err() {
                        return;
                    }
                }
                Ok(Event::Outgoing(_)) => {}
                Err(ConnectionError::ConnectionRefused(code)) => {
                    let _ = tx.send(Seen::Refused(code));
                    return;
                }
                // Stop at the first error: polling again would make rumqttc reconnect.
                Err(e) => {
                    let _ = tx.send(Seen::Closed(e.to_string()));
                    return;
                }
            }
        }
    });
    let mut c = TestClient {
        client,
        name: opts.client_id.clone(),
        events,
        pending: VecDeque::new(),
        poller,
    };
    match c.next_event().await {
        Seen::Packet(Packet::ConnAck(_)) => Ok(c),
        Seen::Packet(other) => panic!("{}: expected CONNACK, got {other:?}", c.name),
        Seen::Refused(code) => Err(code),
        Seen::Closed(e) => panic!("{}: connection failed before CONNACK: {e}", c.name),
    }
}

pub async fn connect(addr: SocketAddr, opts: Opts) -> TestClient {
    let name = opts.client_id.clone();
    match try_connect(addr, opts).await {
        Ok(c) => c,
        Err(code) => panic!("{name}: connection refused: {code:?}"),
    }
}

impl TestClient {
    async fn next_event(&mut self) -> Seen {
        match tokio::time::timeout(WAIT, self.events.recv()).await {
            Ok(Some(seen)) => seen,
            Ok(None) => Seen::Closed("event loop task ended".into()),
            Err(_) => panic!("{}: nothing from the broker within {WAIT:?}", self.name),
        }
    }

    /// Subscribes and waits for the SUBACK; publishes arriving meanwhile (retained ones)
    /// are kept for [`TestClient::next_publish`].
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> SubscribeReasonCode {
        self.client.subscribe(filter, qos).await.unwrap();
        loop {
            match self.next_event().await {
                Seen::Packet(Packet::SubAck(ack)) => return ack.return_codes[0],
                Seen::Packet(Packet::Publish(p)) => self.pending.push_back(p),
                Seen::Packet(_) => {}
                Seen::Refused(code) => panic!("{}: refused: {code:?}", self.name),
                Seen::Closed(e) => panic!("{}: closed while subscribing: {e}", self.name),
            }
        }
    }

    /// Subscribes and insists the broker granted it.
    pub async fn subscribe_ok(&mut self, filter: &str, qos: QoS) {
        let code = self.subscribe(filter, qos).await;
        assert!(
            matches!(code, SubscribeReasonCode::Success(_)),
            "{}: subscription to {filter} refused",
            self.name
        );
    }

    pub async fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: &[u8]) {
        self.client
            .publish(topic, qos, retain, payload.to_vec())
            .await
            .unwrap();
    }

    /// Publishes at QoS 1 and waits until the broker is done with the message: its PUBACK,
    /// or the connection closing (Mosquitto 2.0 disconnects a client whose PUBLISH the ACL
    /// denies; the embedded broker acknowledges and drops it). Either way, had the broker
    /// routed the message, it would already sit in its subscribers' queues.
    pub async fn publish_acked(&mut self, topic: &str, payload: &[u8]) {
        self.publish(topic, QoS::AtLeastOnce, false, payload).await;
        loop {
            match self.next_event().await {
                Seen::Packet(Packet::PubAck(_)) | Seen::Closed(_) | Seen::Refused(_) => return,
                Seen::Packet(Packet::Publish(p)) => self.pending.push_back(p),
                Seen::Packet(_) => {}
            }
        }
    }

    /// The next message delivered to this client (within [`WAIT`]).
    pub async fn next_publish(&mut self) -> Publish {
        if let Some(p) = self.pending.pop_front() {
            return p;
        }
        loop {
            match self.next_event().await {
                Seen::Packet(Packet::Publish(p)) => return p,
                Seen::Packet(_) => {}
                Seen::Refused(code) => panic!("{}: refused: {code:?}", self.name),
                Seen::Closed(e) => panic!("{}: connection closed: {e}", self.name),
            }
        }
    }

    /// Waits until the connection is closed by the broker (within [`WAIT`]); messages still
    /// arriving first are ignored.
    pub async fn wait_closed(&mut self) {
        loop {
            match self.next_event().await {
                Seen::Closed(_) | Seen::Refused(_) => return,
                Seen::Packet(Packet::Disconnect) => {}
                Seen::Packet(_) => {}
            }
        }
    }

    /// Drops the TCP connection without an MQTT DISCONNECT, as a crashed process would.
    pub async fn kill(mut self) {
        self.poller.abort();
        // Once the task is gone, so is the event loop that owned the socket.
        let _ = (&mut self.poller).await;
    }
}

/// Asserts that `client`'s next message is `topic`/`payload`: a marker sent after messages
/// that must not arrive, so their absence is observed without any timing.
pub async fn expect_next(client: &mut TestClient, topic: &str, payload: &[u8]) {
    let p = client.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        (topic, payload),
        "expected {topic} {:?} first, got {} {:?}",
        String::from_utf8_lossy(payload),
        p.topic,
        String::from_utf8_lossy(&p.payload)
    );
}

/// Tries a PUBLISH the ACL must refuse, on a connection of its own (Mosquitto closes it).
async fn forge(addr: SocketAddr, user: &str, topic: &str) {
    let mut opts = Opts::user(user);
    opts.client_id = format!("{user}-forger-{}", topic.replace('/', "_"));
    let mut forger = connect(addr, opts).await;
    forger.publish_acked(topic, b"forged").await;
}

/// The topic-layout rules of `examples/acl.conf`, observed through message delivery only, so
/// the same scenario runs against Mosquitto (which accepts every SUBSCRIBE and filters at
/// delivery, and disconnects a client whose PUBLISH it denies) and the embedded broker (which
/// refuses the SUBSCRIBE itself and drops a denied PUBLISH after acknowledging it).
///
/// Refused publishes are all made first; each is finished at the broker before the allowed
/// "marker" messages go out, so a leaked message would reach its subscriber before the
/// marker, and checking that the marker comes first checks the leak without any timing.
pub async fn acl_scenario(addr: SocketAddr) {
    let t = |rest: &str| format!("mqpaxos/test/{rest}");
    let q = QoS::AtLeastOnce;

    let mut server1 = connect(addr, Opts::user("server1")).await;
    let mut server2 = connect(addr, Opts::user("server2")).await;
    let mut client1 = connect(addr, Opts::user("client1")).await;
    let mut client2 = connect(addr, Opts::user("client2")).await;

    server1.subscribe(&t("request/+"), q).await;
    server1.subscribe(&t("peer/all/+"), q).await;
    server1.subscribe(&t("peer/server1/+"), q).await;
    client1.subscribe(&t("reply/client1/#"), q).await;
    client2.subscribe(&t("reply/client2/#"), q).await;
    client2.subscribe(&t("presence/+"), q).await;
    client2.subscribe(&t("status/+"), q).await;
    // Attempts to read what is not client1's: refused (embedded) or never delivered (Mosquitto).
    client1.subscribe(&t("reply/client2/#"), q).await;
    client1.subscribe(&t("peer/all/+"), q).await;
    client1.subscribe(&t("request/+"), q).await;

    for (user, topic) in [
        // Clients may not speak on peer topics, nor as another user.
        ("client1", "peer/all/client1"),
        ("client1", "peer/all/server2"),
        ("client1", "peer/server1/server2"),
        ("client1", "request/client2"),
        ("client1", "presence/server1"),
        // Clients write no retained topic that servers read, not even under their own name.
        ("client1", "presence/client1"),
        ("client1", "status/client1"),
        ("client2", "status/client2"),
        // Clients do not write replies, not even to themselves.
        ("client1", "reply/client2/s1"),
        ("client2", "reply/client2/s1"),
        // A server may not speak as another server.
        ("server2", "peer/all/server1"),
        ("server2", "peer/server1/server1"),
    ] {
        forge(addr, user, &t(topic)).await;
    }

    // Allowed traffic arrives, and first: nothing forged came before it.
    client1
        .publish_acked(&t("request/client1"), b"put x 1")
        .await;
    expect_next(&mut server1, &t("request/client1"), b"put x 1").await;
    server2
        .publish_acked(&t("peer/all/server2"), b"prepare")
        .await;
    expect_next(&mut server1, &t("peer/all/server2"), b"prepare").await;
    server2
        .publish_acked(&t("peer/server1/server2"), b"promise")
        .await;
    expect_next(&mut server1, &t("peer/server1/server2"), b"promise").await;

    // Replies: each client reads only its own. client1 would see client2's reply (or the
    // request and peer traffic above) first if the ACL leaked it.
    server1
        .publish_acked(&t("reply/client2/s1"), b"for client2")
        .await;
    server1
        .publish_acked(&t("reply/client1/s1"), b"for client1")
        .await;
    expect_next(&mut client1, &t("reply/client1/s1"), b"for client1").await;
    expect_next(&mut client2, &t("reply/client2/s1"), b"for client2").await;

    // Each server writes its own status and presence, and listed users read them.
    server1.publish_acked(&t("status/server1"), b"ok").await;
    expect_next(&mut client2, &t("status/server1"), b"ok").await;
    server1
        .publish_acked(&t("presence/server1"), b"online")
        .await;
    expect_next(&mut client2, &t("presence/server1"), b"online").await;
}
