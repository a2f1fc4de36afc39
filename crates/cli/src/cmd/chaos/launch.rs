//! What a chaos run starts before its clients: the network namespaces (with `--netns`), the
//! broker, and the server processes (through the shared launcher, [`crate::launch`]). It
//! starts things and says where they are; it injects no fault and judges nothing.

use super::netns::{self, Lab};
use super::Args;
use crate::cmd::{fail, Exit, Failure};
use crate::launch::{free_local_addr, ServerCommand, Servers};
use mqpaxos_node::transport::BrokerOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// With `--netns`: the run's namespaces, links and brokers; dropping the lab removes them. On
/// Ctrl-C or SIGTERM they go too, and so does `data`.
pub(super) fn lab(a: &Args, seed: u64, data: &DataDir) -> Result<Option<Lab>, Failure> {
    if !a.netns {
        return Ok(None);
    }
    let lab = Lab::create(&netns::Plan {
        servers: a.servers,
        clients: a.clients,
        brokers: a.brokers,
        groups: a.groups.clone(),
        seed,
    })
    .map_err(|e| fail(Exit::Failed, e.to_string()))?;
    netns::cleanup_on_signal(lab.names(), data.path().to_path_buf());
    Ok(Some(lab))
}

/// The broker the runner (observer, clients, final reader) connects to, and the password
/// every user of the run has.
pub(super) struct Broker {
    pub url: String,
    pub password: Option<String>,
    /// The built-in broker, when this process runs it.
    #[cfg(feature = "embedded-broker")]
    pub embedded: Option<mqpaxos_broker::Broker>,
}

impl Broker {
    /// The lab's broker A with `--netns`, `--broker` if given, else the built-in one on a free
    /// loopback port.
    pub async fn start(a: &Args, lab: Option<&Lab>) -> Result<Broker, Failure> {
        let password = match lab {
            Some(l) => Some(l.password().to_string()),
            None => std::env::var("MQPAXOS_PASSWORD").ok(),
        };
        #[cfg(feature = "embedded-broker")]
        let mut embedded = None;
        let url = match (&a.broker, lab) {
            (_, Some(l)) => l.runner_url(),
            (Some(u), None) => u.clone(),
            (None, None) => {
                #[cfg(feature = "embedded-broker")]
                {
                    let b = mqpaxos_broker::Broker::start(mqpaxos_broker::BrokerConfig {
                        listen: "127.0.0.1:0"
                            .parse()
                            .map_err(|_| fail(Exit::Failed, "bad address"))?,
                        ..mqpaxos_broker::BrokerConfig::default()
                    })
                    .await
                    .map_err(|e| fail(Exit::Failed, e.to_string()))?;
                    let u = format!("mqtt://{}", b.local_addr());
                    embedded = Some(b);
                    u
                }
                #[cfg(not(feature = "embedded-broker"))]
                return Err(fail(
                    Exit::Usage,
                    "built without the embedded broker: pass --broker",
                ));
            }
        };
        Ok(Broker {
            url,
            password,
            #[cfg(feature = "embedded-broker")]
            embedded,
        })
    }

    /// How `user` connects to it.
    pub fn options(&self, user: &str) -> BrokerOptions {
        BrokerOptions {
            url: self.url.clone(),
            user: user.to_string(),
            password: self.password.clone(),
            ca_file: None,
            keep_alive: Duration::from_secs(5),
        }
    }

    /// Stops the built-in broker, if this process runs one.
    pub async fn shutdown(self) {
        #[cfg(feature = "embedded-broker")]
        if let Some(b) = self.embedded {
            let _ = b.shutdown().await;
        }
    }
}

/// The parent of the servers' data directories (`$TMPDIR/mqpaxos-chaos-<seed>-<pid>`),
/// removed when dropped: at the end of a run, on an error, on a panic. Declared before the
/// servers, so that they are killed before it goes.
pub(super) struct DataDir(PathBuf);

impl DataDir {
    pub fn new(seed: u64) -> DataDir {
        DataDir(std::env::temp_dir().join(format!("mqpaxos-chaos-{seed}-{}", std::process::id())))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        // A server killed a moment ago may still create a file while the tree goes: retry,
        // a bounded number of times.
        for _ in 0..5 {
            if std::fs::remove_dir_all(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Starts the servers, each with its own data directory and metrics port, obeying the chaos
/// topic. Returns them and their metrics addresses, by id.
pub(super) fn servers(
    a: &Args,
    cluster: &str,
    lab: Option<&Lab>,
    broker: &Broker,
    data: &DataDir,
) -> Result<(Servers, Vec<SocketAddr>), Failure> {
    let mut servers = Servers::new()?;
    let mut metrics = Vec::new();
    for id in 1..=a.servers {
        // A plain process, or one in the server's own namespace.
        let (wrapper, server_url, addr) = match lab {
            Some(l) => (l.server_wrapper(id), l.server_url(id), l.metrics_addr(id)),
            None => (Vec::new(), broker.url.clone(), free_local_addr()?),
        };
        servers.start(&ServerCommand {
            id,
            servers: a.servers,
            broker: server_url,
            cluster: cluster.to_string(),
            data_dir: data.path().join(format!("server{id}")),
            metrics: Some(addr),
            sync: None,
            password_file: None,
            password: broker.password.clone(),
            // The run's faults come through the chaos topic, which servers ignore without it.
            args: vec!["--allow-fault-injection".to_string()],
            output: crate::launch::Output::Null,
            wrapper,
        })?;
        metrics.push(addr);
    }
    Ok((servers, metrics))
}
