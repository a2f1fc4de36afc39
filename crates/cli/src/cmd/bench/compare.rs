//! Feature `compare`: the same workload against etcd (v3 KV over gRPC) and NATS JetStream KV,
//! for docs/performance.md. One client connection per bench client, like mqpaxos's.
//!
//! The operations, per system:
//! - put: etcd `Put`; NATS `kv.put` (a publish acknowledged once the stream has it).
//! - get: etcd `Range` (linearizable, the default); NATS `kv.get` through the stream leader
//!   (the bench creates the bucket without direct gets, so any replica cannot answer stale).
//! - cas: etcd one `Txn` (value equal → put); NATS has no compare-by-value, so it reads the
//!   entry's revision and then `kv.update(key, value, revision)`: two round trips.

use super::workload::OpKind;
use async_nats::jetstream::context::{CreateStreamError, KeyValueError};
use async_nats::jetstream::{self, kv, stream};
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use std::time::Duration;

/// Why etcd or NATS could not be reached or did not run a command. Each names the system
/// first: the bench report shows them beside mqpaxos's own errors.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// Boxed: with tonic's status inside, etcd's error is larger than every other result of
    /// the bench's command loop.
    #[error("etcd: {0}")]
    Etcd(Box<etcd_client::Error>),
    /// An `--endpoints` entry that is not a NATS server address.
    #[error("nats: {addr}: {source}")]
    NatsAddress {
        addr: String,
        source: std::io::Error,
    },
    #[error("nats: {0}")]
    NatsConnect(#[from] async_nats::ConnectError),
    #[error("nats: open bucket {bucket}: {source}")]
    NatsOpenBucket {
        bucket: String,
        source: KeyValueError,
    },
    #[error("nats: create stream KV_{bucket}: {source}")]
    NatsCreateStream {
        bucket: String,
        source: CreateStreamError,
    },
    #[error("nats: {0}")]
    NatsPut(#[from] kv::PutError),
    #[error("nats: {0}")]
    NatsEntry(#[from] kv::EntryError),
    #[error("nats: {0}")]
    NatsUpdate(#[from] kv::UpdateError),
}

impl From<etcd_client::Error> for CompareError {
    fn from(e: etcd_client::Error) -> Self {
        CompareError::Etcd(Box::new(e))
    }
}

pub struct EtcdConn {
    kv: etcd_client::KvClient,
}

pub async fn connect_etcd(endpoints: &[String]) -> Result<EtcdConn, CompareError> {
    let client = etcd_client::Client::connect(endpoints, None).await?;
    Ok(EtcdConn {
        kv: client.kv_client(),
    })
}

impl EtcdConn {
    pub async fn run(&mut self, op: OpKind, key: &str, value: &str) -> Result<(), CompareError> {
        let r = match op {
            OpKind::Put => self.kv.put(key, value, None).await.map(|_| ()),
            OpKind::Get => self.kv.get(key, None).await.map(|_| ()),
            OpKind::Cas => {
                let txn = Txn::new()
                    .when([Compare::value(key, CompareOp::Equal, value)])
                    .and_then([TxnOp::put(key, value, None)]);
                self.kv.txn(txn).await.map(|_| ())
            }
        };
        r.map_err(CompareError::from)
    }
}

/// Where the NATS connections go and which bucket they use.
#[derive(Clone, Debug)]
pub struct NatsTarget {
    pub endpoints: Vec<String>,
    pub bucket: String,
    pub replicas: usize,
    pub timeout: Duration,
}

pub struct NatsConn {
    kv: kv::Store,
}

impl NatsTarget {
    pub async fn connect(&self) -> Result<NatsConn, CompareError> {
        let addrs: Vec<String> = self
            .endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("nats://{e}")
                }
            })
            .collect();
        let addrs: Vec<async_nats::ServerAddr> = addrs
            .iter()
            .map(|a| {
                a.parse().map_err(|source| CompareError::NatsAddress {
                    addr: a.clone(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        let client = async_nats::ConnectOptions::new()
            .request_timeout(Some(self.timeout))
            .connect(addrs)
            .await?;
        let js = jetstream::new(client);
        let kv = match js.get_key_value(&self.bucket).await {
            Ok(kv) => kv,
            Err(_) => {
                create_bucket(&js, &self.bucket, self.replicas).await?;
                js.get_key_value(&self.bucket).await.map_err(|source| {
                    CompareError::NatsOpenBucket {
                        bucket: self.bucket.clone(),
                        source,
                    }
                })?
            }
        };
        Ok(NatsConn { kv })
    }
}

/// Creates the bucket's backing stream directly, as `create_key_value` would: recent
/// clients' bucket creation sends options that nats-server 2.9 rejects.
async fn create_bucket(
    js: &jetstream::Context,
    bucket: &str,
    replicas: usize,
) -> Result<(), CompareError> {
    let config = stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: false,
        discard: stream::DiscardPolicy::New,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    match js.get_or_create_stream(config).await {
        Ok(_) => Ok(()),
        Err(source) => Err(CompareError::NatsCreateStream {
            bucket: bucket.to_string(),
            source,
        }),
    }
}

impl NatsConn {
    pub async fn run(&mut self, op: OpKind, key: &str, value: &str) -> Result<(), CompareError> {
        match op {
            OpKind::Put => {
                self.kv.put(key, value.to_string().into()).await?;
                Ok(())
            }
            OpKind::Get => {
                self.kv.get(key).await?;
                Ok(())
            }
            OpKind::Cas => {
                let entry = match self.kv.entry(key).await {
                    Ok(entry) => entry,
                    Err(e) if lost_race(&e) => return Ok(()),
                    Err(e) => return Err(e.into()),
                };
                let Some(e) = entry.filter(|e| e.value.as_ref() == value.as_bytes()) else {
                    return Ok(());
                };
                match self
                    .kv
                    .update(key, value.to_string().into(), e.revision)
                    .await
                {
                    Ok(_) => Ok(()),
                    // Lost the race to another writer: a cas that did not swap is an answer.
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(()),
                    Err(e) if lost_race(&e) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

/// The server's "wrong last sequence": a cas that lost a race, which async-nats sometimes
/// reports through another error kind (seen on `entry` right after a conflicting update).
fn lost_race(e: &impl std::fmt::Display) -> bool {
    e.to_string().contains("wrong last sequence")
}
