//! The async client library: connect to a cluster through its broker and run key/value
//! commands. Each command goes to the server that last announced itself leader (retained,
//! on `reply/<user>/leader`), or to every server in one publish while none has; it is resent
//! to every server with the same sequence number until the leader's reply arrives, and so
//! executes at most once.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mqpaxos_client::ClientError> {
//! use mqpaxos_client::{Client, ClientOptions};
//! let client = Client::connect(ClientOptions::new("mqtt://127.0.0.1:1883", "client1")).await?;
//! client.put("greeting", "hello").await?;
//! assert_eq!(client.get("greeting").await?.as_deref(), Some("hello"));
//! let swapped = client.cas("greeting", Some("hello"), "bye").await?;
//! client.close().await;
//! # let _ = swapped; Ok(()) }
//! ```

use crate::codec;
use crate::topics::{valid_level, Parsed, Topics};
use crate::transport::{BrokerOptions, Connection, Incoming, Session, TransportError};
use mqpaxos_core::{Answer, ClientConfig, ClientReady, Dest, Message, Op, OpResult};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::Mutex;

/// The largest key accepted, in bytes (the servers enforce it too).
pub const MAX_KEY: usize = mqpaxos_core::limits::MAX_KEY;
/// The largest value accepted, in bytes (the servers enforce it too).
pub const MAX_VALUE: usize = mqpaxos_core::limits::MAX_VALUE;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(
        "no answer from the cluster within {0:?} (the command may or may not have taken effect)"
    )]
    Timeout(Duration),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("the server answered with a result of the wrong kind")]
    Unexpected,
    #[error("the session expired before the command ran (the servers forgot it: too many sessions); the command may or may not have taken effect earlier, and the next command opens a new session")]
    SessionExpired,
    /// The servers refused the command; it changed nothing. `code` is stable
    /// ([`mqpaxos_core::ErrorCode::name`]).
    #[error("refused by the cluster ({}): {message}", code.name())]
    Rejected {
        code: mqpaxos_core::ErrorCode,
        message: String,
    },
    /// The changes asked for are no longer held: only those after revision `floor` are.
    #[error("the changes asked for are compacted: the servers hold only those after revision {floor}; read the keys anew and watch from there")]
    Compacted { floor: u64 },
}

/// An answer to [`Client::changes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes {
    /// The store's revision when read: with `more` false, every change asked for up to it.
    pub revision: u64,
    pub changes: Vec<mqpaxos_core::Change>,
    /// Cut short: ask again from the last change's revision + 1.
    pub more: bool,
}

#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub broker: BrokerOptions,
    pub cluster: String,
    /// How long one command (or connecting) may take before giving up.
    pub timeout: Duration,
    /// How long to wait for a reply before resending.
    pub resend: Duration,
}

impl ClientOptions {
    /// Defaults: cluster `default`, 10 s timeout, resend after 200 ms, no password.
    pub fn new(url: &str, user: &str) -> Self {
        ClientOptions {
            broker: BrokerOptions {
                url: url.to_string(),
                user: user.to_string(),
                password: None,
                ca_file: None,
                keep_alive: Duration::from_secs(5),
            },
            cluster: "default".to_string(),
            timeout: Duration::from_secs(10),
            resend: Duration::from_millis(200),
        }
    }
}

struct Inner {
    conn: Connection,
    core: mqpaxos_core::Client,
    /// [`Client::pipeline`]'s lanes, made on first use and kept (with their sessions).
    lanes: Vec<mqpaxos_core::Client>,
}

/// The most commands [`Client::pipeline`] keeps in flight at once.
pub const MAX_PIPELINE: usize = 64;

/// Which of a client's sequential parts an answer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// The commands of [`Client::execute`].
    Main,
    /// Lane `k` of [`Client::pipeline`].
    Lane(usize),
}

/// One command in flight in a lane.
struct InFlight {
    index: usize,
    deadline: tokio::time::Instant,
    resend_at: tokio::time::Instant,
}

/// A connected client. Commands are sequential: concurrent calls on one `Client` wait their
/// turn; use several clients for concurrency.
pub struct Client {
    inner: Mutex<Inner>,
    topics: Topics,
    user: String,
    client_id: String,
    timeout: Duration,
    resend: Duration,
}

impl Client {
    pub async fn connect(opts: ClientOptions) -> Result<Client, ClientError> {
        if !valid_level(&opts.broker.user) {
            return Err(ClientError::Invalid(format!(
                "user name {:?} cannot be part of a topic",
                opts.broker.user
            )));
        }
        if !valid_level(&opts.cluster) {
            return Err(ClientError::Invalid(format!(
                "cluster name {:?} cannot be part of a topic",
                opts.cluster
            )));
        }
        // A fresh session id per connection: servers remember the last sequence number per
        // client id, and ours start again at 1.
        let session = format!("{:016x}", rand::random::<u64>());
        let client_id = format!("{}/{}", opts.broker.user, session);
        let topics = Topics::new(&opts.cluster);
        let s = Session {
            client_id: format!("mqpaxos-{}-{}", opts.broker.user, session),
            // Replies to its opens and to its sessions' commands all come to one topic; who
            // leads comes retained.
            subscriptions: vec![
                topics.reply(&client_id),
                topics.leader_for(&opts.broker.user),
            ],
            on_connect: Vec::new(),
            will: None,
        };
        let conn = Connection::open(&opts.broker, s, Some(opts.timeout)).await?;
        let core = mqpaxos_core::Client::new(
            client_id.clone(),
            ClientConfig {
                resend: opts.resend,
            },
        );
        Ok(Client {
            inner: Mutex::new(Inner {
                conn,
                core,
                lanes: Vec::new(),
            }),
            topics,
            user: opts.broker.user,
            client_id,
            timeout: opts.timeout,
            resend: opts.resend,
        })
    }

    /// This client's id on the wire (`<user>/<session>`).
    pub fn id(&self) -> &str {
        &self.client_id
    }

    pub async fn put(&self, key: &str, value: &str) -> Result<(), ClientError> {
        check(key, Some(value))?;
        self.done(Op::Put {
            key: key.into(),
            value: value.into(),
        })
        .await
    }

    /// The value of `key`, or `None` if it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<String>, ClientError> {
        check(key, None)?;
        match self.execute(Op::Get { key: key.into() }).await? {
            OpResult::Value(v) => Ok(v),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Appends to the value (a missing key counts as empty).
    pub async fn append(&self, key: &str, value: &str) -> Result<(), ClientError> {
        check(key, Some(value))?;
        self.done(Op::Append {
            key: key.into(),
            value: value.into(),
        })
        .await
    }

    /// Runs a write whose only answer is `Done`.
    async fn done(&self, op: Op) -> Result<(), ClientError> {
        match self.execute(op).await? {
            OpResult::Done => Ok(()),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Deletes `key`; returns whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, ClientError> {
        check(key, None)?;
        match self.execute(Op::Delete { key: key.into() }).await? {
            OpResult::Deleted(existed) => Ok(existed),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Sets `key` to `new` if its value is `expected` (`None`: if it does not exist);
    /// returns whether it did.
    pub async fn cas(
        &self,
        key: &str,
        expected: Option<&str>,
        new: &str,
    ) -> Result<bool, ClientError> {
        check(key, Some(new))?;
        if let Some(e) = expected {
            check(key, Some(e))?;
        }
        let op = Op::Cas {
            key: key.into(),
            expected: expected.map(Into::into),
            new: new.into(),
        };
        match self.execute(op).await? {
            OpResult::Swapped(s) => Ok(s),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// `key`'s value with its revisions (`None`: no such key), and the store's revision when
    /// it was read. Linearizable, as `get` is.
    pub async fn read(
        &self,
        key: &str,
    ) -> Result<(u64, Option<mqpaxos_core::kv::Record>), ClientError> {
        check(key, None)?;
        match self.execute(Op::Read { key: key.into() }).await? {
            OpResult::Entry { revision, entry } => Ok((revision, entry)),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// Sets `key` to `new` if its last change has revision `revision` (0: if it does not
    /// exist); returns whether it did.
    pub async fn cas_revision(
        &self,
        key: &str,
        revision: u64,
        new: &str,
    ) -> Result<bool, ClientError> {
        check(key, Some(new))?;
        let op = Op::CasRevision {
            key: key.into(),
            revision,
            new: new.into(),
        };
        match self.execute(op).await? {
            OpResult::Swapped(s) => Ok(s),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// The changes of `key` (with `prefix`: of every key starting with it; an empty prefix is
    /// every key) from revision `from` on, from the leader's recent history.
    pub async fn changes(
        &self,
        key: &str,
        prefix: bool,
        from: u64,
    ) -> Result<Changes, ClientError> {
        if !(prefix && key.is_empty()) {
            check(key, None)?;
        }
        let op = Op::Changes {
            key: key.into(),
            prefix,
            from,
        };
        match self.execute(op).await? {
            OpResult::Changes {
                revision,
                changes,
                more,
            } => Ok(Changes {
                revision,
                changes,
                more,
            }),
            OpResult::Compacted { floor } => Err(ClientError::Compacted { floor }),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// The store's revision now (linearizable).
    pub async fn revision(&self) -> Result<u64, ClientError> {
        match self.execute(Op::Read { key: String::new() }).await? {
            OpResult::Entry { revision, .. } => Ok(revision),
            _ => Err(ClientError::Unexpected),
        }
    }

    /// A linearizable point-in-time copy of the whole state: the slot it was taken before
    /// and the encoded snapshot (`mqpaxos_core::decode_snapshot` reads it). It comes in
    /// pieces, each within this client's timeout; if the leader changes (or another backup
    /// replaces the copy) mid-way, the copy starts over at a newer point, at most 5 times.
    pub async fn snapshot(&self) -> Result<(u64, Vec<u8>), ClientError> {
        let mut restarts = 0;
        let mut at: Option<u64> = None;
        let mut data: Vec<u8> = Vec::new();
        loop {
            let op = Op::SnapshotPiece {
                at,
                offset: data.len() as u64,
            };
            let OpResult::SnapshotPiece {
                next_slot,
                offset,
                total,
                data: piece,
            } = self.execute(op).await?
            else {
                return Err(ClientError::Unexpected);
            };
            if at != Some(next_slot) || offset != data.len() as u64 {
                if offset != 0 {
                    return Err(ClientError::Unexpected);
                }
                if at.is_some() {
                    restarts += 1;
                    if restarts > 5 {
                        return Err(ClientError::Invalid(
                            "the cluster's copy kept changing (leader changes, or other \
                             backups running at the same time); try again"
                                .into(),
                        ));
                    }
                }
                at = Some(next_slot);
                data.clear();
            }
            if piece.is_empty() && (data.len() as u64) < total {
                return Err(ClientError::Unexpected);
            }
            data.extend_from_slice(&piece);
            if data.len() as u64 >= total {
                return Ok((next_slot, data));
            }
        }
    }

    pub async fn execute(&self, op: Op) -> Result<OpResult, ClientError> {
        let mut inner = self.inner.lock().await;
        let Inner { conn, core, lanes } = &mut *inner;
        // A command abandoned by an earlier timeout must not block this one.
        core.abandon();
        self.catch_up_on_leaders(conn, core, lanes);
        let ready = core
            .invoke(op)
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        if let Some(o) = ready.send {
            publish(conn, &self.request_topic(&o.to), &o.msg).await?;
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut resend_at = tokio::time::Instant::now() + self.resend;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    core.abandon();
                    return Err(ClientError::Timeout(self.timeout));
                }
                _ = tokio::time::sleep_until(resend_at) => {
                    let r = core.on_timer();
                    if let Some(o) = r.send {
                        // While the broker is away the publish fails; keep trying until the
                        // deadline.
                        let _ = publish(conn, &self.request_topic(&o.to), &o.msg).await;
                    }
                    resend_at = tokio::time::Instant::now() + self.resend;
                }
                m = conn.recv() => {
                    let Some(m) = m else {
                        return Err(TransportError::Closed.into());
                    };
                    let Incoming::Publish { topic, payload, .. } = m else { continue };
                    match self.topics.parse(&topic) {
                        Some(Parsed::Reply { .. }) => {}
                        Some(Parsed::Leader { .. }) => {
                            // A new leader gets the pending command at once.
                            if let Some(o) = self.on_leader(core, &payload).send {
                                let _ = publish(conn, &self.request_topic(&o.to), &o.msg).await;
                                resend_at = tokio::time::Instant::now() + self.resend;
                            }
                            continue;
                        }
                        _ => continue,
                    }
                    for Answer { client, seq, result } in answers(&payload) {
                        if route(&self.client_id, &client) != Some(Route::Main) {
                            continue;
                        }
                        let r = core.on_reply(seq, result);
                        if let Some((_, result)) = r.done {
                            return outcome(result);
                        }
                        if let Some(o) = r.send {
                            // The session is open: now the command itself.
                            let _ = publish(conn, &self.request_topic(&o.to), &o.msg).await;
                            resend_at = tokio::time::Instant::now() + self.resend;
                        }
                    }
                }
            }
        }
    }

    /// Runs the commands `ops` yields with up to `depth` of them in flight at once (at most
    /// [`MAX_PIPELINE`]), handing each result to `done` with the command's index in `ops`, in
    /// the order they complete. `ops` is asked for the next command when a lane is free, so
    /// it may be endless and decide when to stop.
    ///
    /// Each command in flight has a lane: a sequential client of its own with its own
    /// session (`<id>/p<lane>`), in which commands run one at a time, in sequence-number
    /// order and at most once, exactly as those of [`Client::execute`]. Commands in
    /// different lanes are concurrent, so the cluster orders them as it receives them; a
    /// command that must follow another is started after the other's result arrived. The
    /// leader answers all of one flush's results for this connection in one publish.
    ///
    /// Each command has this client's timeout; one that times out or is refused is reported
    /// to `done` and the others go on. The whole call fails only if the connection closes.
    pub async fn pipeline<I, F>(&self, ops: I, depth: usize, mut done: F) -> Result<(), ClientError>
    where
        I: IntoIterator<Item = Op>,
        F: FnMut(usize, Result<OpResult, ClientError>),
    {
        let depth = depth.clamp(1, MAX_PIPELINE);
        let mut inner = self.inner.lock().await;
        let Inner { conn, core, lanes } = &mut *inner;
        while lanes.len() < depth {
            let id = format!("{}/p{}", self.client_id, lanes.len());
            let cfg = ClientConfig {
                resend: self.resend,
            };
            let mut lane = mqpaxos_core::Client::new(id, cfg);
            if let Some(l) = core.leader() {
                lane.on_leader(l);
            }
            lanes.push(lane);
        }
        self.catch_up_on_leaders(conn, core, lanes);
        let mut busy: Vec<Option<InFlight>> = (0..depth).map(|_| None).collect();
        let mut ops = ops.into_iter().enumerate();
        let mut more = true;
        loop {
            // Every free lane takes the next command.
            for (k, slot) in busy.iter_mut().enumerate() {
                while more && slot.is_none() {
                    let Some((index, op)) = ops.next() else {
                        more = false;
                        break;
                    };
                    match self.start(conn, &mut lanes[k], index, op).await {
                        Ok(f) => *slot = Some(f),
                        Err(e) => done(index, Err(e)),
                    }
                }
            }
            let Some(wake) = busy
                .iter()
                .flatten()
                .map(|f| f.deadline.min(f.resend_at))
                .min()
            else {
                return Ok(());
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {
                    self.on_lane_timers(conn, lanes, &mut busy, &mut done).await;
                }
                m = conn.recv() => {
                    let Some(m) = m else {
                        return Err(TransportError::Closed.into());
                    };
                    if let Incoming::Publish { topic, payload, .. } = m {
                        self.on_lane_message(conn, core, lanes, &mut busy, &topic, &payload, &mut done)
                            .await;
                    }
                }
            }
        }
    }

    /// Starts `op`, the `index`th of the caller's list, in `lane` (which is free): its first
    /// send, and its deadlines. A command
    /// abandoned by an earlier call must not block this one.
    async fn start(
        &self,
        conn: &Connection,
        lane: &mut mqpaxos_core::Client,
        index: usize,
        op: Op,
    ) -> Result<InFlight, ClientError> {
        lane.abandon();
        let sent = match lane.invoke(op) {
            Ok(r) => match r.send {
                Some(o) => publish(conn, &self.request_topic(&o.to), &o.msg).await,
                None => Ok(()),
            },
            Err(e) => Err(ClientError::Invalid(e.to_string())),
        };
        if let Err(e) = sent {
            lane.abandon();
            return Err(e);
        }
        let now = tokio::time::Instant::now();
        Ok(InFlight {
            index,
            deadline: now + self.timeout,
            resend_at: now + self.resend,
        })
    }

    /// A lane's deadline or resend time came: gives up on commands past their deadline,
    /// resends the others that are due (to every server).
    async fn on_lane_timers(
        &self,
        conn: &Connection,
        lanes: &mut [mqpaxos_core::Client],
        busy: &mut [Option<InFlight>],
        done: &mut impl FnMut(usize, Result<OpResult, ClientError>),
    ) {
        let now = tokio::time::Instant::now();
        for (k, slot) in busy.iter_mut().enumerate() {
            let Some(f) = slot else { continue };
            if now >= f.deadline {
                lanes[k].abandon();
                done(f.index, Err(ClientError::Timeout(self.timeout)));
                *slot = None;
            } else if now >= f.resend_at {
                if let Some(o) = lanes[k].on_timer().send {
                    let _ = publish(conn, &self.request_topic(&o.to), &o.msg).await;
                }
                f.resend_at = now + self.resend;
            }
        }
    }

    /// A publish while lanes have commands in flight: a leader announcement (every pending
    /// command goes to the new leader at once) or answers, each for the lane it names.
    #[allow(clippy::too_many_arguments)]
    async fn on_lane_message(
        &self,
        conn: &Connection,
        core: &mut mqpaxos_core::Client,
        lanes: &mut [mqpaxos_core::Client],
        busy: &mut [Option<InFlight>],
        topic: &str,
        payload: &[u8],
        done: &mut impl FnMut(usize, Result<OpResult, ClientError>),
    ) {
        match self.topics.parse(topic) {
            Some(Parsed::Reply { .. }) => {}
            Some(Parsed::Leader { .. }) => {
                let Some(server) = announced(payload) else {
                    return;
                };
                core.on_leader(server);
                for (lane, slot) in lanes.iter_mut().zip(busy.iter_mut()) {
                    if let Some(o) = lane.on_leader(server).send {
                        let _ = publish(conn, &self.request_topic(&o.to), &o.msg).await;
                        if let Some(f) = slot {
                            f.resend_at = tokio::time::Instant::now() + self.resend;
                        }
                    }
                }
                return;
            }
            _ => return,
        }
        for Answer {
            client,
            seq,
            result,
        } in answers(payload)
        {
            let Some(Route::Lane(k)) = route(&self.client_id, &client) else {
                continue;
            };
            let (Some(lane), Some(slot)) = (lanes.get_mut(k), busy.get_mut(k)) else {
                continue;
            };
            let r = lane.on_reply(seq, result);
            if let Some((_, result)) = r.done {
                if let Some(f) = slot.take() {
                    done(f.index, outcome(result));
                }
            } else if let Some(o) = r.send {
                // The lane's session is open: now the command itself.
                let _ = publish(conn, &self.request_topic(&o.to), &o.msg).await;
                if let Some(f) = slot {
                    f.resend_at = tokio::time::Instant::now() + self.resend;
                }
            }
        }
    }

    /// Takes in the leader announcements that came while no command ran, so the next
    /// command goes to today's leader.
    fn catch_up_on_leaders(
        &self,
        conn: &mut Connection,
        core: &mut mqpaxos_core::Client,
        lanes: &mut [mqpaxos_core::Client],
    ) {
        while let Some(m) = conn.try_recv() {
            if let Incoming::Publish { topic, payload, .. } = m {
                if let Some(Parsed::Leader { .. }) = self.topics.parse(&topic) {
                    if let Some(server) = announced(&payload) {
                        core.on_leader(server);
                        for lane in lanes.iter_mut() {
                            lane.on_leader(server);
                        }
                    }
                }
            }
        }
    }

    /// Where a command goes: the announced leader's own topic, or every server's.
    fn request_topic(&self, to: &Dest) -> String {
        match to {
            Dest::Server(id) => self.topics.request_to(&self.user, *id),
            _ => self.topics.request(&self.user),
        }
    }

    /// A retained leader announcement; one that does not parse is ignored (the commands
    /// then keep their last destination, and resends reach everyone anyway).
    fn on_leader(&self, core: &mut mqpaxos_core::Client, payload: &[u8]) -> ClientReady {
        match announced(payload) {
            Some(server) => core.on_leader(server),
            None => ClientReady::default(),
        }
    }

    /// The server this client sends its commands to first, once a leader announced itself.
    pub async fn leader(&self) -> Option<mqpaxos_core::NodeId> {
        self.inner.lock().await.core.leader()
    }

    /// The cluster's topic names.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Disconnects cleanly.
    pub async fn close(self) {
        self.inner.into_inner().conn.close().await;
    }
}

async fn publish(conn: &Connection, topic: &str, msg: &Message) -> Result<(), ClientError> {
    let payload = codec::encode(msg, codec::DEFAULT_MAX_PAYLOAD)
        .map_err(|e| ClientError::Invalid(e.to_string()))?;
    conn.publish(topic.to_string(), payload).await?;
    Ok(())
}

/// Which part of the client whose id is `own` an answer for `client` is for: its own
/// commands (`own`, or one of its sessions `own/<slot>`) or lane `k`'s (`own/p<k>`,
/// `own/p<k>/<slot>`). `None`: another client's. Each part counts its own sequence numbers,
/// so an answer handed to the wrong part could match a command it is not for.
fn route(own: &str, client: &str) -> Option<Route> {
    let rest = client.strip_prefix(own)?;
    if rest.is_empty() {
        return Some(Route::Main);
    }
    let rest = rest.strip_prefix('/')?;
    let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(k) = first.strip_prefix('p') {
        if !number(k) || !(tail.is_empty() || number(tail)) {
            return None;
        }
        return k.parse().ok().map(Route::Lane);
    }
    (tail.is_empty() && number(first)).then_some(Route::Main)
}

/// The server a retained leader announcement names; `None` if it does not parse.
fn announced(payload: &[u8]) -> Option<mqpaxos_core::NodeId> {
    serde_json::from_slice::<crate::topics::LeaderAnnouncement>(payload)
        .ok()
        .map(|a| a.server)
}

/// The answers a reply payload carries: one ([`Message::Reply`]) or several
/// ([`Message::Replies`]); none if it is neither.
fn answers(payload: &[u8]) -> Vec<Answer> {
    match codec::decode(payload, codec::DEFAULT_MAX_PAYLOAD) {
        Ok(Message::Reply {
            client,
            seq,
            result,
        }) => vec![Answer {
            client,
            seq,
            result,
        }],
        Ok(Message::Replies(answers)) => answers,
        _ => Vec::new(),
    }
}

/// A completed command's result as the caller sees it: refusals are errors.
fn outcome(result: OpResult) -> Result<OpResult, ClientError> {
    match result {
        OpResult::SessionExpired => Err(ClientError::SessionExpired),
        OpResult::Rejected { code, message } => Err(ClientError::Rejected { code, message }),
        result => Ok(result),
    }
}

fn check(key: &str, value: Option<&str>) -> Result<(), ClientError> {
    if key.is_empty() {
        return Err(ClientError::Invalid("the key is empty".into()));
    }
    if key.len() > MAX_KEY {
        return Err(ClientError::Invalid(format!(
            "the key is {} bytes; at most {MAX_KEY} are allowed",
            key.len()
        )));
    }
    if let Some(v) = value {
        if v.len() > MAX_VALUE {
            return Err(ClientError::Invalid(format!(
                "the value is {} bytes; at most {MAX_VALUE} are allowed",
                v.len()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_go_to_the_part_whose_commands_they_are() {
        let own = "alice/0123abcd";
        assert_eq!(route(own, own), Some(Route::Main));
        assert_eq!(route(own, "alice/0123abcd/42"), Some(Route::Main));
        assert_eq!(route(own, "alice/0123abcd/p3"), Some(Route::Lane(3)));
        assert_eq!(route(own, "alice/0123abcd/p3/42"), Some(Route::Lane(3)));
        // Another client whose id merely starts the same, and malformed ids.
        assert_eq!(route(own, "alice/0123abcdef"), None);
        assert_eq!(route(own, "alice/0123abcdef/p3"), None);
        assert_eq!(route(own, "bob/0123abcd"), None);
        assert_eq!(route(own, "alice/0123abcd/p"), None);
        assert_eq!(route(own, "alice/0123abcd/px/1"), None);
        assert_eq!(route(own, "alice/0123abcd/p1/x"), None);
        assert_eq!(route(own, "alice/0123abcd/x"), None);
        assert_eq!(route(own, "alice/0123abcd/1/2"), None);
        assert_eq!(route(own, "alice/0123abcd/p1/2/3"), None);
    }

    #[test]
    fn a_reply_or_several_replies_decode_to_answers() {
        let one = Answer {
            client: "a/b".into(),
            seq: 1,
            result: OpResult::Done,
        };
        let two = Answer {
            client: "a/b/p1/9".into(),
            seq: 4,
            result: OpResult::Deleted(true),
        };
        let enc = |m: &Message| codec::encode(m, codec::DEFAULT_MAX_PAYLOAD).unwrap();
        let reply = Message::Reply {
            client: one.client.clone(),
            seq: one.seq,
            result: one.result.clone(),
        };
        assert_eq!(answers(&enc(&reply)), vec![one.clone()]);
        let both = Message::Replies(vec![one.clone(), two.clone()]);
        assert_eq!(answers(&enc(&both)), vec![one, two]);
        assert!(answers(&enc(&Message::RejoinQuery)).is_empty());
        assert!(answers(b"garbage").is_empty());
    }
}
