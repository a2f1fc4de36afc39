//! The runner's own connection to the broker, as the `operator`: it follows every server's
//! presence and status (and counts leader changes), and publishes the run's fault settings on
//! the chaos topic. It sends nothing to the servers but those settings.

use crate::cmd::{fail, Exit, Failure};
use mqpaxos_node::chaos::Faults;
use mqpaxos_node::topics::{server_id, Parsed, Topics};
use mqpaxos_node::transport::{BrokerOptions, Connection, Incoming, Session};
use mqpaxos_node::Status;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The latest presence and status of every server, by id.
type Observed = Mutex<BTreeMap<u32, (bool, Option<Status>)>>;

pub(super) struct Observer {
    connection: Connection,
    topics: Topics,
    observed: Arc<Observed>,
    leader_changes: Arc<AtomicU64>,
}

impl Observer {
    /// Connects and starts following the servers' presence and status.
    pub async fn start(
        broker: &BrokerOptions,
        topics: &Topics,
        seed: u64,
    ) -> Result<Self, Failure> {
        let mut connection = Connection::open(
            broker,
            Session {
                client_id: format!("mqpaxos-chaos-observer-{seed}"),
                subscriptions: vec![topics.all_status(), topics.all_presence()],
                on_connect: Vec::new(),
                will: None,
            },
            Some(Duration::from_secs(10)),
        )
        .await
        .map_err(|e| fail(Exit::Unavailable, e.to_string()))?;
        let incoming = connection.take_incoming();
        let observer = Observer {
            connection,
            topics: topics.clone(),
            observed: Arc::default(),
            leader_changes: Arc::new(AtomicU64::new(0)),
        };
        tokio::spawn(follow(
            incoming,
            topics.clone(),
            observer.observed.clone(),
            observer.leader_changes.clone(),
        ));
        Ok(observer)
    }

    /// Publishes the fault settings, retained, on the cluster's chaos topic.
    pub async fn set_faults(&self, f: Faults) -> Result<(), Failure> {
        // Never an empty retained message: that would clear the settings, not set them.
        let body = serde_json::to_vec(&f).map_err(|e| {
            fail(
                Exit::Failed,
                format!("cannot encode the fault settings: {e}"),
            )
        })?;
        self.connection
            .publish_retained(self.topics.chaos(), body)
            .await
            .map_err(|e| {
                fail(
                    Exit::Unavailable,
                    format!("cannot publish the fault settings: {e}"),
                )
            })
    }

    /// Waits until an online server reports itself leader.
    pub async fn wait_for_leader(&self, limit: Duration) -> Result<(), Failure> {
        let deadline = Instant::now() + limit;
        loop {
            let has_leader = self
                .observed
                .lock()
                .map(|o| {
                    o.values().any(|(on, s)| {
                        *on && s
                            .as_ref()
                            .is_some_and(|s| s.role == mqpaxos_core::RoleKind::Leader)
                    })
                })
                .unwrap_or(false);
            if has_leader {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(fail(Exit::Unavailable, "no leader was elected within 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether all `servers` are online and report the same commit point and state digest.
    pub fn replicas_agree(&self, servers: u32) -> bool {
        self.observed
            .lock()
            .map(|o| {
                let states: Vec<(u64, String)> = o
                    .values()
                    .filter(|(on, _)| *on)
                    .filter_map(|(_, s)| s.as_ref().map(|s| (s.commit, s.digest.clone())))
                    .collect();
                states.len() == servers as usize && states.windows(2).all(|w| w[0] == w[1])
            })
            .unwrap_or(false)
    }

    /// What each replica last reported, so a failed run shows who lagged.
    pub fn states(&self) -> String {
        self.observed
            .lock()
            .map(|o| {
                o.iter()
                    .map(|(id, (on, s))| match (on, s) {
                        (true, Some(s)) => format!("server{id} commit {}", s.commit),
                        (false, _) => format!("server{id} offline"),
                        (true, None) => format!("server{id} no status"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    }

    /// Leader changes seen so far (a new leader or a new ballot).
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes.load(Ordering::Relaxed)
    }

    pub async fn close(self) {
        self.connection.close().await;
    }
}

/// Keeps `observed` up to date from the presence and status messages until the connection
/// ends, counting every change of (ballot, leader) after the first.
async fn follow(
    mut incoming: tokio::sync::mpsc::Receiver<Incoming>,
    topics: Topics,
    observed: Arc<Observed>,
    leader_changes: Arc<AtomicU64>,
) {
    let mut last_leader: Option<(String, u32)> = None;
    while let Some(m) = incoming.recv().await {
        let Incoming::Publish { topic, payload, .. } = m else {
            continue;
        };
        let mut o = match observed.lock() {
            Ok(o) => o,
            Err(_) => return,
        };
        match topics.parse(&topic) {
            Some(Parsed::Presence { node }) => {
                if let Some(id) = server_id(&node) {
                    o.entry(id).or_default().0 = payload.as_slice() == b"online";
                }
            }
            Some(Parsed::Status { node }) => {
                if let (Some(id), Ok(s)) =
                    (server_id(&node), serde_json::from_slice::<Status>(&payload))
                {
                    if s.role == mqpaxos_core::RoleKind::Leader {
                        let now = (s.ballot.clone(), id);
                        if last_leader.as_ref() != Some(&now) {
                            if last_leader.is_some() {
                                leader_changes.fetch_add(1, Ordering::Relaxed);
                            }
                            last_leader = Some(now);
                        }
                    }
                    o.entry(id).or_default().1 = Some(s);
                }
            }
            _ => {}
        }
    }
}
