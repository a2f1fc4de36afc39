//! What the bench talks to: an mqpaxos cluster through its broker, or (feature `compare`)
//! etcd or NATS JetStream KV. One connection per bench client; each runs one command at a
//! time.

use super::workload::OpKind;
use mqpaxos_core::Op;
use mqpaxos_node::transport::TransportError;
use mqpaxos_node::{Client, ClientError, ClientOptions};
use std::time::Duration;

/// Why a bench connection could not be made or a command got no good answer. The bench
/// counts them and shows the first of each step, so each is one line.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The Rust client's own error (`--target mqpaxos`).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The JSON client's MQTT connection (`--target mqpaxos-json`).
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot encode the request: {0}")]
    Encode(serde_json::Error),
    /// The servers answered `open` without a session: they do not speak this JSON API.
    #[error("open returned no session: {0}")]
    NoSession(serde_json::Value),
    #[error("the broker connection closed")]
    ConnectionClosed,
    /// The servers answered `ok: false`; the value is their `error` field.
    #[error("refused: {0}")]
    Refused(serde_json::Value),
    #[error("no answer within {0:?}")]
    NoAnswer(Duration),
    /// `--pipeline` with a target other than mqpaxos's Rust client.
    #[error("only mqpaxos's Rust client keeps several commands in flight (--pipeline)")]
    NoPipeline,
    #[cfg(feature = "compare")]
    #[error(transparent)]
    Compare(#[from] super::compare::CompareError),
}

/// Where connections go.
#[derive(Clone, Debug)]
pub enum Target {
    Mqpaxos(ClientOptions),
    /// The same cluster through the JSON API, as a client that is not ours would use it.
    MqpaxosJson(ClientOptions),
    #[cfg(feature = "compare")]
    Etcd(Vec<String>),
    #[cfg(feature = "compare")]
    Nats(super::compare::NatsTarget),
}

impl Target {
    pub fn name(&self) -> &'static str {
        match self {
            Target::Mqpaxos(_) => "mqpaxos",
            Target::MqpaxosJson(_) => "mqpaxos-json",
            #[cfg(feature = "compare")]
            Target::Etcd(_) => "etcd",
            #[cfg(feature = "compare")]
            Target::Nats(_) => "nats",
        }
    }

    pub async fn connect(&self) -> Result<Conn, TargetError> {
        match self {
            Target::Mqpaxos(opts) => Ok(Conn::Mqpaxos(Box::new(
                Client::connect(opts.clone()).await?,
            ))),
            Target::MqpaxosJson(opts) => JsonConn::connect(opts)
                .await
                .map(|c| Conn::Json(Box::new(c))),
            #[cfg(feature = "compare")]
            Target::Etcd(endpoints) => Ok(Conn::Etcd(Box::new(
                super::compare::connect_etcd(endpoints).await?,
            ))),
            #[cfg(feature = "compare")]
            Target::Nats(t) => Ok(Conn::Nats(Box::new(t.connect().await?))),
        }
    }
}

/// One connection, one command at a time.
pub enum Conn {
    Mqpaxos(Box<Client>),
    Json(Box<JsonConn>),
    #[cfg(feature = "compare")]
    Etcd(Box<super::compare::EtcdConn>),
    #[cfg(feature = "compare")]
    Nats(Box<super::compare::NatsConn>),
}

impl Conn {
    /// Runs one command. A cas that does not swap and a get of a missing key are answers,
    /// not errors. The bench's cas expects the value the puts write (one round trip where
    /// the system allows it).
    pub async fn run(&mut self, op: OpKind, key: &str, value: &str) -> Result<(), TargetError> {
        match self {
            Conn::Mqpaxos(c) => Ok(match op {
                OpKind::Put => c.put(key, value).await,
                OpKind::Get => c.get(key).await.map(|_| ()),
                OpKind::Cas => c.cas(key, Some(value), value).await.map(|_| ()),
            }?),
            Conn::Json(c) => c.run(op, key, value).await,
            #[cfg(feature = "compare")]
            Conn::Etcd(c) => Ok(c.run(op, key, value).await?),
            #[cfg(feature = "compare")]
            Conn::Nats(c) => Ok(c.run(op, key, value).await?),
        }
    }

    /// Runs the commands `next` yields (`None`: stop) with `depth` in flight at once on the
    /// Rust client ([`Client::pipeline`]), handing each result to `done` with the command's
    /// index. Other targets run one command at a time and are refused by `bench` first.
    pub async fn pipeline(
        &mut self,
        depth: usize,
        mut next: impl FnMut() -> Option<(OpKind, String)>,
        value: &str,
        mut done: impl FnMut(usize, Result<(), TargetError>),
    ) -> Result<(), TargetError> {
        let Conn::Mqpaxos(c) = self else {
            return Err(TargetError::NoPipeline);
        };
        let ops = std::iter::from_fn(|| {
            let (op, key) = next()?;
            Some(match op {
                OpKind::Put => Op::Put {
                    key,
                    value: value.into(),
                },
                OpKind::Get => Op::Get { key },
                OpKind::Cas => Op::Cas {
                    key,
                    expected: Some(value.into()),
                    new: value.into(),
                },
            })
        });
        c.pipeline(ops, depth, |i, r| {
            done(i, r.map(|_| ()).map_err(Into::into))
        })
        .await?;
        Ok(())
    }

    pub async fn close(self) {
        match self {
            Conn::Mqpaxos(c) => (*c).close().await,
            Conn::Json(c) => c.conn.close().await,
            #[cfg(feature = "compare")]
            Conn::Etcd(_) => {}
            #[cfg(feature = "compare")]
            Conn::Nats(_) => {}
        }
    }
}

/// A JSON API client made of nothing but an MQTT connection, as `mosquitto_pub` or paho
/// would be: one JSON request per command on `json/request/<user>`, the answer awaited on its
/// own reply topic, resent with the same id until answered (the servers run an id once).
pub struct JsonConn {
    conn: mqpaxos_node::transport::Connection,
    request: String,
    reply_to: String,
    prefix: String,
    next: u64,
    session: Option<String>,
    timeout: Duration,
    resend: Duration,
}

impl JsonConn {
    async fn connect(opts: &ClientOptions) -> Result<JsonConn, TargetError> {
        use mqpaxos_node::topics::Topics;
        let user = &opts.broker.user;
        let me = format!("{:016x}", rand::random::<u64>());
        let topics = Topics::new(&opts.cluster);
        let reply_to = format!("{}{user}/{me}", topics.json_reply_prefix());
        let session = mqpaxos_node::transport::Session {
            client_id: format!("bench-json-{user}-{me}"),
            subscriptions: vec![reply_to.clone()],
            on_connect: Vec::new(),
            will: None,
        };
        let conn =
            mqpaxos_node::transport::Connection::open(&opts.broker, session, Some(opts.timeout))
                .await?;
        let mut c = JsonConn {
            conn,
            request: topics.json_request(user),
            reply_to,
            prefix: me,
            next: 0,
            session: None,
            timeout: opts.timeout,
            resend: opts.resend,
        };
        // A session, as the Rust client has: each write is then at most once by its number,
        // and the servers keep one entry for this connection instead of one per request id.
        let opened = c.call(serde_json::json!({"op": "open"})).await?;
        c.session = opened["session"].as_str().map(str::to_string);
        if c.session.is_none() {
            return Err(TargetError::NoSession(opened));
        }
        Ok(c)
    }

    async fn run(&mut self, op: OpKind, key: &str, value: &str) -> Result<(), TargetError> {
        let body = match op {
            OpKind::Put => serde_json::json!({"op": "put", "key": key, "value": value}),
            OpKind::Get => serde_json::json!({"op": "get", "key": key}),
            OpKind::Cas => {
                serde_json::json!({"op": "cas", "key": key, "expected": value, "value": value})
            }
        };
        self.call(body).await.map(|_| ())
    }

    /// Sends `body` (an object) with an id, the reply topic and the session's next number,
    /// and waits for its answer.
    async fn call(
        &mut self,
        mut body: serde_json::Value,
    ) -> Result<serde_json::Value, TargetError> {
        use mqpaxos_node::transport::Incoming;
        self.next += 1;
        let id = format!("{}-{}", self.prefix, self.next);
        body["id"] = id.clone().into();
        body["reply_to"] = self.reply_to.clone().into();
        if let Some(s) = &self.session {
            body["session"] = s.clone().into();
            body["seq"] = self.next.into();
        }
        let body = serde_json::to_vec(&body).map_err(TargetError::Encode)?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            self.conn
                .publish(self.request.clone(), body.clone())
                .await?;
            let resend_at = (tokio::time::Instant::now() + self.resend).min(deadline);
            loop {
                let m = tokio::select! {
                    _ = tokio::time::sleep_until(resend_at) => break,
                    m = self.conn.recv() => m,
                };
                let Some(Incoming::Publish { payload, .. }) = m else {
                    if m.is_none() {
                        return Err(TargetError::ConnectionClosed);
                    }
                    continue;
                };
                let Ok(answer) = serde_json::from_slice::<serde_json::Value>(&payload) else {
                    continue;
                };
                if answer["id"] != id.as_str() {
                    continue;
                }
                return if answer["ok"] == true {
                    Ok(answer)
                } else {
                    Err(TargetError::Refused(answer["error"].clone()))
                };
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(TargetError::NoAnswer(self.timeout));
            }
        }
    }
}
