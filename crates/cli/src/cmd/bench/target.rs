//! What the bench talks to: an mqpaxos cluster through its broker, or (feature `compare`)
//! etcd or NATS JetStream KV. One connection per bench client; each runs one command at a
//! time.

use super::workload::OpKind;
use mqpaxos_node::{Client, ClientOptions};

/// Where connections go.
#[derive(Clone, Debug)]
pub enum Target {
    Mqpaxos(ClientOptions),
    #[cfg(feature = "compare")]
    Etcd(Vec<String>),
    #[cfg(feature = "compare")]
    Nats(super::compare::NatsTarget),
}

impl Target {
    pub fn name(&self) -> &'static str {
        match self {
            Target::Mqpaxos(_) => "mqpaxos",
            #[cfg(feature = "compare")]
            Target::Etcd(_) => "etcd",
            #[cfg(feature = "compare")]
            Target::Nats(_) => "nats",
        }
    }

    pub async fn connect(&self) -> Result<Conn, String> {
        match self {
            Target::Mqpaxos(opts) => Client::connect(opts.clone())
                .await
                .map(|c| Conn::Mqpaxos(Box::new(c)))
                .map_err(|e| e.to_string()),
            #[cfg(feature = "compare")]
            Target::Etcd(endpoints) => super::compare::connect_etcd(endpoints)
                .await
                .map(|c| Conn::Etcd(Box::new(c))),
            #[cfg(feature = "compare")]
            Target::Nats(t) => t.connect().await.map(|c| Conn::Nats(Box::new(c))),
        }
    }
}

/// One connection, one command at a time.
pub enum Conn {
    Mqpaxos(Box<Client>),
    #[cfg(feature = "compare")]
    Etcd(Box<super::compare::EtcdConn>),
    #[cfg(feature = "compare")]
    Nats(Box<super::compare::NatsConn>),
}

impl Conn {
    /// Runs one command. A cas that does not swap and a get of a missing key are answers,
    /// not errors. The bench's cas expects the value the puts write (one round trip where
    /// the system allows it).
    pub async fn run(&mut self, op: OpKind, key: &str, value: &str) -> Result<(), String> {
        match self {
            Conn::Mqpaxos(c) => match op {
                OpKind::Put => c.put(key, value).await,
                OpKind::Get => c.get(key).await.map(|_| ()),
                OpKind::Cas => c.cas(key, Some(value), value).await.map(|_| ()),
            }
            .map_err(|e| e.to_string()),
            #[cfg(feature = "compare")]
            Conn::Etcd(c) => c.run(op, key, value).await,
            #[cfg(feature = "compare")]
            Conn::Nats(c) => c.run(op, key, value).await,
        }
    }

    pub async fn close(self) {
        match self {
            Conn::Mqpaxos(c) => (*c).close().await,
            #[cfg(feature = "compare")]
            Conn::Etcd(_) => {}
            #[cfg(feature = "compare")]
            Conn::Nats(_) => {}
        }
    }
}
