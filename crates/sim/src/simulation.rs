//! One simulated run: servers and clients driven by a virtual clock and one seeded RNG over a
//! simulated network. It drives the real protocol core and never touches a socket, a thread
//! or the wall clock, so one seed gives one run, bit for bit.
//!
//! A run has two phases. In the *safety* phase the scenario's faults are on. Then everything
//! heals (partitions lifted, loss and duplication off, crashed servers restarted) and in the
//! *liveness* phase every client must finish its remaining work and all replicas must reach
//! identical state within the scenario's bound; a run that stalls fails.

use crate::checker;
use crate::history;
use crate::network::{Addr, NetConfig, Network};
use crate::scenario::{FaultPlan, Scenario};
use mqpaxos_check::Event;
use mqpaxos_core::{
    Ballot, Client, ClientConfig, Dest, Driver, Durable, Flush, Input, Message, NodeId, Op,
    OpResult, Outgoing, PersistOp, RoleKind, Server, Slot,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

/// Messages sent and received by one node, by message type (index into `Message::KINDS`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Publishes: a message to all servers counts once, as it would on MQTT.
    pub sent: [u64; Message::KINDS.len()],
    /// Deliveries: what arrived.
    pub received: [u64; Message::KINDS.len()],
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        for i in 0..self.sent.len() {
            self.sent[i] += other.sent[i];
            self.received[i] += other.received[i];
        }
    }
}

pub fn kind_index_of(k: &str) -> usize {
    Message::KINDS.iter().position(|x| *x == k).unwrap_or(0)
}

pub(crate) fn kind_index(msg: &Message) -> usize {
    let k = msg.kind();
    Message::KINDS.iter().position(|x| *x == k).unwrap_or(0)
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub scenario: String,
    pub seed: u64,
    /// Empty when the run was correct.
    pub violations: Vec<String>,
    pub ops_completed: u64,
    /// Operations the servers refused (a limit, a full store), which changed nothing.
    pub rejected: u64,
    pub virtual_time: Duration,
    pub events: u64,
    pub elections_won: u64,
    pub crashes: u64,
    /// Restarts with synced state lost (the server then rejoined).
    pub amnesias: u64,
    /// Messages that carried a snapshot to a lagging replica or candidate.
    pub snapshots_sent: u64,
    /// Promises that did not fit one message (bounded in bytes) and came in parts.
    pub promise_parts: u64,
    /// Elections won with a ballot the same server had already won before a crash (its
    /// promise of it was lost with the unsynced page cache): the interleaving in which a
    /// message sent before its promise was durable can get two values chosen in one slot.
    pub ballots_reused: u64,
    /// Per server (index = id - 1).
    pub server_counts: Vec<Counts>,
    pub client_counts: Counts,
    /// Every client operation, plus a final read of each key from the converged replicas.
    pub history: Vec<Event>,
    /// A digest of everything observable, for checking that a seed replays exactly.
    pub fingerprint: u64,
}

impl RunReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

#[derive(Debug)]
enum Fault {
    Partition(Vec<BTreeSet<NodeId>>),
    CrashLeader,
    CrashRandom,
    Restart(NodeId),
    MinorityStart {
        minority: usize,
    },
    MinorityEnd,
    PauseLeader,
    OneWayStart,
    OneWayEnd,
    /// A will for the current leader, which is alive (see [`crate::scenario::Wills`]).
    StaleWill,
}

#[derive(Debug)]
enum Ev {
    /// The broker's will for server `about` reaches server `to`.
    Will {
        about: NodeId,
        to: NodeId,
    },
    Deliver {
        from: Addr,
        to: Addr,
        msg: Message,
    },
    /// Server `id`'s driver has a timer due (`gen` tells a superseded wake-up).
    Wake {
        id: NodeId,
        gen: u64,
    },
    /// Server `id` flushes what its steps since the last flush produced (group commit: every
    /// input that arrived meanwhile shares the flush).
    FlushServer {
        id: NodeId,
    },
    /// Server `id`'s sync of its flush returned: its writes are durable.
    Synced {
        id: NodeId,
        gen: u64,
    },
    ClientTimer {
        idx: usize,
        gen: u64,
    },
    ClientNext {
        idx: usize,
    },
    Fault(Fault),
    Heal,
    Probe,
    /// The page cache writes everything back (only matters with an unsafe disk).
    Flush,
}

struct Queued {
    at: Duration,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// A server's slot in the simulation and its simulated disk.
struct SimServer {
    /// The same driver and core the runtime runs; `None` while crashed.
    driver: Option<Driver>,
    /// What is on disk: survives a crash.
    durable: Durable,
    /// The flush being written, not yet synced. A crash keeps all of it or none of it: the
    /// write-ahead log frames each flush as one checksummed group, and replay drops a torn
    /// last group whole, whatever subset of its pages reached the disk (`mqpaxos-node`'s
    /// storage tests check that property on real bytes). With `unsafe_disk`, unsynced flushes
    /// pile up here and a crash keeps a random prefix of them.
    cache: Vec<PersistOp>,
    /// The messages of the flush being synced: they leave when the sync returns.
    after_sync: Vec<Outgoing>,
    /// The commit point when the last flush was taken: what its messages vouch for (the
    /// server may step on before the sync returns, as at the instant a sync completes).
    flushed_commit: Slot,
    /// What the flush being synced executed: it counts once the sync returns.
    executed: Vec<(Slot, u64)>,
    /// The changes the flush being synced publishes for watchers (as leader), once synced.
    changes: Vec<mqpaxos_core::Change>,
    /// The revision of the last change it published since it started: each incarnation's
    /// stream must only go up.
    last_published: u64,
    /// Which sync is in progress, so a crash cancels its completion.
    sync_gen: u64,
    /// Busy syncing until then: what arrives waits, as the runtime's task is blocked.
    busy_until: Option<Duration>,
    /// A flush is scheduled.
    flush_scheduled: bool,
    /// Crash during the next flush: after its early messages left and its writes reached the
    /// page cache, before the sync.
    crash_mid_step: bool,
    /// Restart with synced state lost (see `FaultPlan::RandomCrashes::amnesia`).
    damaged: bool,
    /// What was on disk when it last started: a rollback target for a damaged restart.
    checkpoint: Durable,
    /// Every ballot it has won an election with, across crashes (the simulator's knowledge,
    /// not the server's).
    won: BTreeSet<Ballot>,
    /// Its clock: `origin + virtual time * rate`.
    rate: f64,
    origin: Duration,
    /// Frozen until then: what arrives for it waits.
    paused_until: Option<Duration>,
    /// The pending wake-up for the driver's next timer: its generation and server-clock time.
    wake_gen: u64,
    wake_at: Option<Duration>,
}

impl SimServer {
    fn server(&self) -> Option<&Server> {
        self.driver.as_ref().map(Driver::server)
    }
}

struct SimClient {
    name: String,
    client: Client,
    current: Option<Op>,
    timer_gen: u64,
    /// Set at the heal: how many more operations to start.
    remaining: Option<usize>,
    done: bool,
    counter: u64,
    /// The last value this client saw for each key, to make its cas attempts plausible.
    seen: BTreeMap<String, Option<String>>,
    /// The last value and revision a read returned for each key (0: absent), for cas on
    /// revisions.
    seen_revision: BTreeMap<String, (Option<String>, u64)>,
    /// The current op as the history records it (see `history::recorded`).
    recorded: Option<Op>,
}

/// A split in force, being watched for the scenario's checks.
struct Watch {
    start: Duration,
    majority: BTreeSet<NodeId>,
    minority: BTreeSet<NodeId>,
    /// The highest slot that existed anywhere when the split began.
    slots_at_start: Slot,
    majority_commit_at_start: Slot,
    strict_minority: bool,
    /// A server that hears nothing while what it sends arrives (the `one-way` scenario's deaf
    /// leader), and the ballots it bid meanwhile: it can never win, so with pre-vote it bids
    /// at most once (a pre-vote answered just before it went deaf); without, it outbid the
    /// healthy candidates every election timeout.
    deaf: Option<NodeId>,
    deaf_bids: BTreeSet<Ballot>,
}

pub struct Simulation {
    sc: Scenario,
    seed: u64,
    rng: ChaCha8Rng,
    now: Duration,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    events: u64,
    net: Network,
    servers: Vec<SimServer>,
    clients: Vec<SimClient>,
    client_index: BTreeMap<String, usize>,
    history: Vec<Event>,
    chosen: BTreeMap<Slot, u64>,
    /// Every change any leader published for watchers, by revision: a digest of what it says.
    published: BTreeMap<u64, u64>,
    violations: Vec<String>,
    server_counts: Vec<Counts>,
    client_counts: Counts,
    healed: bool,
    finished: bool,
    ops_completed: u64,
    rejected: u64,
    elections_won: u64,
    crashes: u64,
    amnesias: u64,
    snapshots_sent: u64,
    promise_parts: u64,
    ballots_reused: u64,
    watch: Option<Watch>,
    /// The first time a leader was elected, and how many commands had completed then: for
    /// message accounting.
    pub(crate) first_leader_at: Option<Duration>,
}

impl Simulation {
    pub fn new(sc: Scenario, seed: u64) -> Self {
        let servers = (1..=sc.servers)
            .map(|id| {
                let cfg = sc.server_config(id);
                SimServer {
                    driver: None,
                    durable: Durable::new(cfg.max_sessions),
                    cache: Vec::new(),
                    after_sync: Vec::new(),
                    flushed_commit: 0,
                    executed: Vec::new(),
                    changes: Vec::new(),
                    last_published: 0,
                    sync_gen: 0,
                    busy_until: None,
                    flush_scheduled: false,
                    crash_mid_step: false,
                    damaged: false,
                    checkpoint: Durable::new(cfg.max_sessions),
                    won: BTreeSet::new(),
                    rate: 1.0,
                    origin: Duration::ZERO,
                    paused_until: None,
                    wake_gen: 0,
                    wake_at: None,
                }
            })
            .collect();
        let clients: Vec<SimClient> = (0..sc.clients)
            .map(|i| {
                let name = format!("c{}", i + 1);
                SimClient {
                    client: Client::new(name.clone(), ClientConfig::default()),
                    name,
                    current: None,
                    timer_gen: 0,
                    remaining: None,
                    done: false,
                    counter: 0,
                    seen: BTreeMap::new(),
                    seen_revision: BTreeMap::new(),
                    recorded: None,
                }
            })
            .collect();
        let client_index = clients
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        Simulation {
            net: Network::new(sc.net.clone()),
            server_counts: vec![Counts::default(); sc.servers as usize],
            rng: ChaCha8Rng::seed_from_u64(seed),
            sc,
            seed,
            now: Duration::ZERO,
            queue: BinaryHeap::new(),
            seq: 0,
            events: 0,
            servers,
            clients,
            client_index,
            history: Vec::new(),
            chosen: BTreeMap::new(),
            published: BTreeMap::new(),
            violations: Vec::new(),
            client_counts: Counts::default(),
            healed: false,
            finished: false,
            ops_completed: 0,
            rejected: 0,
            elections_won: 0,
            crashes: 0,
            amnesias: 0,
            snapshots_sent: 0,
            promise_parts: 0,
            ballots_reused: 0,
            watch: None,
            first_leader_at: None,
        }
    }

    /// Runs to the end and checks the outcome.
    pub fn run(mut self) -> RunReport {
        self.start();
        let deadline = self.sc.safety + self.sc.liveness_bound;
        while let Some(Reverse(q)) = self.queue.pop() {
            if q.at > deadline || self.finished {
                break;
            }
            self.now = q.at;
            self.events += 1;
            self.handle(q.ev);
        }
        if !self.finished {
            self.report_not_converged();
        } else {
            self.final_reads();
            match checker::check_history(&self.history) {
                Ok(()) => {}
                Err(e) => self.violations.push(e.to_string()),
            }
        }
        let fingerprint = self.fingerprint();
        RunReport {
            scenario: self.sc.name.to_string(),
            seed: self.seed,
            violations: self.violations,
            ops_completed: self.ops_completed,
            rejected: self.rejected,
            virtual_time: self.now,
            events: self.events,
            elections_won: self.elections_won,
            crashes: self.crashes,
            amnesias: self.amnesias,
            snapshots_sent: self.snapshots_sent,
            promise_parts: self.promise_parts,
            ballots_reused: self.ballots_reused,
            server_counts: self.server_counts,
            client_counts: self.client_counts,
            history: self.history,
            fingerprint,
        }
    }

    /// Sets the clocks, boots the servers and schedules the clients' first steps, the
    /// faults and the heal. The random draws come in this order, which replays depend on.
    fn start(&mut self) {
        let drift = self.sc.clock_drift;
        if drift > 0.0 {
            // Drawn only when asked for, so scenarios without drift replay as before.
            for s in &mut self.servers {
                s.rate = self.rng.gen_range(1.0 - drift..=1.0 + drift);
                s.origin = Duration::from_millis(self.rng.gen_range(0..100_000));
            }
        }
        for id in 1..=self.sc.servers {
            self.boot(id);
        }
        for idx in 0..self.clients.len() {
            let d = self.rand_duration(self.sc.think * 2);
            self.schedule(d, Ev::ClientNext { idx });
        }
        self.plan_faults();
        if self.sc.unsafe_disk {
            self.schedule(Duration::from_secs(1), Ev::Flush);
        }
        self.schedule(self.sc.safety, Ev::Heal);
    }

    /// Records the liveness violation of a run that did not converge after the heal, with
    /// the clients still unfinished and each server's state.
    fn report_not_converged(&mut self) {
        let pending: Vec<&str> = self
            .clients
            .iter()
            .filter(|c| !c.done)
            .map(|c| c.name.as_str())
            .collect();
        let states: Vec<String> = self
            .servers
            .iter()
            .filter_map(|s| s.server())
            .map(|s| {
                format!(
                    "s{}:{}@{} commit {}",
                    s.id(),
                    s.role().name(),
                    s.ballot(),
                    s.commit()
                )
            })
            .collect();
        let violation = format!(
            "liveness: not converged {:?} after the heal (clients unfinished: {:?}; servers: {})",
            self.sc.liveness_bound,
            pending,
            states.join(", ")
        );
        self.violations.push(violation);
    }

    /// A digest of the history, the event count and the end time, for checking that a seed
    /// replays exactly.
    fn fingerprint(&self) -> u64 {
        let mut h = mqpaxos_core::Fnv::default();
        for e in &self.history {
            // Field by field: Debug-formatting values of up to 1 MiB took a tenth of a
            // `large` run.
            h.write(&e.t.to_le_bytes());
            h.write(format!("{:?} {:?} {:?}", e.ty, e.f, e.result).as_bytes());
            for text in [
                Some(&e.client),
                Some(&e.key),
                e.value.as_ref(),
                e.expected.as_ref(),
            ] {
                match text {
                    Some(t) => {
                        h.write(&(t.len() as u64).to_le_bytes());
                        h.write(t.as_bytes());
                    }
                    None => h.write(&u64::MAX.to_le_bytes()),
                }
            }
        }
        h.write(&self.events.to_le_bytes());
        h.write(&(self.now.as_nanos() as u64).to_le_bytes());
        h.finish()
    }

    fn schedule(&mut self, after: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at: self.now + after,
            seq: self.seq,
            ev,
        }));
    }

    fn rand_duration(&mut self, max: Duration) -> Duration {
        let n = max.as_nanos() as u64;
        if n == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.rng.gen_range(0..=n))
        }
    }

    // ----- faults -----

    fn plan_faults(&mut self) {
        if let Some(every) = self.sc.wills.and_then(|w| w.stale_every) {
            let mut t = every;
            while t < self.sc.safety {
                let jitter = self.rand_duration(every);
                self.schedule(t + jitter, Ev::Fault(Fault::StaleWill));
                t += every;
            }
        }
        match self.sc.faults.clone() {
            FaultPlan::None => {}
            FaultPlan::RandomPartitions { count, sizes } => {
                // The first split comes once the cluster has formed: servers start on empty
                // disks and rejoin (a new cluster cannot tell itself from lost disks), which
                // needs more than a bare majority; in a split at birth it could not finish.
                let warmup = Duration::from_secs(1).min(self.sc.safety / 4);
                let span = (self.sc.safety - warmup) / count.max(1) as u32;
                for i in 0..count {
                    let offset = self.rand_duration(span / 5);
                    let mut ids: Vec<NodeId> = (1..=self.sc.servers).collect();
                    ids.shuffle(&mut self.rng);
                    let mut groups = Vec::new();
                    let mut it = ids.into_iter();
                    for size in &sizes {
                        groups.push(it.by_ref().take(*size).collect::<BTreeSet<_>>());
                    }
                    let rest: BTreeSet<NodeId> = it.collect();
                    if !rest.is_empty() {
                        groups.push(rest);
                    }
                    self.schedule(
                        warmup + span * i as u32 + offset,
                        Ev::Fault(Fault::Partition(groups)),
                    );
                }
            }
            FaultPlan::LeaderCrashes { every, .. } => {
                let mut t = every;
                while t < self.sc.safety {
                    self.schedule(t, Ev::Fault(Fault::CrashLeader));
                    t += every;
                }
            }
            FaultPlan::RandomCrashes { every, .. } => {
                let mut t = every;
                while t < self.sc.safety {
                    let jitter = self.rand_duration(every / 2);
                    self.schedule(t + jitter, Ev::Fault(Fault::CrashRandom));
                    t += every;
                }
            }
            FaultPlan::LeaderPauses { every, .. } => {
                let mut t = every;
                while t < self.sc.safety {
                    self.schedule(t, Ev::Fault(Fault::PauseLeader));
                    t += every;
                }
            }
            FaultPlan::OneWay { every, length } => {
                let mut t = every;
                while t + length < self.sc.safety {
                    self.schedule(t, Ev::Fault(Fault::OneWayStart));
                    self.schedule(t + length, Ev::Fault(Fault::OneWayEnd));
                    t += every.max(length);
                }
            }
            FaultPlan::MinorityPartition {
                count,
                minority,
                length,
                gap,
            } => {
                let mut t = gap;
                for _ in 0..count {
                    if t + length > self.sc.safety {
                        break;
                    }
                    self.schedule(t, Ev::Fault(Fault::MinorityStart { minority }));
                    self.schedule(t + length, Ev::Fault(Fault::MinorityEnd));
                    t += length + gap;
                }
            }
        }
    }

    fn fault(&mut self, f: Fault) {
        match f {
            Fault::Partition(groups) => self.partition(groups),
            Fault::StaleWill => self.stale_will(),
            Fault::CrashLeader => self.crash_leader(),
            Fault::CrashRandom => self.crash_random(),
            Fault::Restart(id) => self.boot(id),
            Fault::PauseLeader => self.pause_leader(),
            Fault::MinorityStart { minority } => self.minority_start(minority),
            Fault::MinorityEnd => {
                self.end_watch();
                self.net.groups = None;
            }
            Fault::OneWayStart => self.one_way_start(),
            Fault::OneWayEnd => {
                self.end_watch();
                self.net.one_way.clear();
            }
        }
    }

    /// Splits the network into `groups`, watching the majority group (if any) for progress.
    fn partition(&mut self, groups: Vec<BTreeSet<NodeId>>) {
        self.end_watch();
        let majority = groups
            .iter()
            .find(|g| g.len() as u32 * 2 > self.sc.servers)
            .cloned()
            .unwrap_or_default();
        let minority = (1..=self.sc.servers)
            .filter(|id| !majority.contains(id))
            .collect();
        self.net.groups = Some(groups);
        self.begin_watch(majority, minority, false);
    }

    /// Delivers a false will of the current leader to a random set of the others.
    fn stale_will(&mut self) {
        if let Some(leader) = self.current_leader() {
            // To a random set of the others: some hear it, some do not.
            for to in (1..=self.sc.servers).filter(|to| *to != leader) {
                if self.rng.gen_bool(0.6) {
                    let delay = self.rand_duration(Duration::from_millis(20));
                    self.schedule(delay, Ev::Will { about: leader, to });
                }
            }
        }
    }

    /// Crashes the current leader and schedules its restart.
    fn crash_leader(&mut self) {
        if let Some(id) = self.current_leader() {
            self.crash(id);
            let FaultPlan::LeaderCrashes {
                down_min, down_max, ..
            } = self.sc.faults
            else {
                return;
            };
            let d = down_min + self.rand_duration(down_max.saturating_sub(down_min));
            self.schedule(d, Ev::Fault(Fault::Restart(id)));
        }
    }

    /// Crashes all the servers up or a random minority of them (some mid-step, some losing
    /// their synced state) and schedules their restarts.
    fn crash_random(&mut self) {
        let FaultPlan::RandomCrashes {
            down_min,
            down_max,
            all_at_once,
            amnesia,
            ..
        } = self.sc.faults
        else {
            return;
        };
        let up: Vec<NodeId> = (1..=self.sc.servers)
            .filter(|id| self.servers[*id as usize - 1].driver.is_some())
            .collect();
        let victims: Vec<NodeId> = if self.rng.gen_bool(all_at_once) {
            up
        } else {
            // A minority at a time, counting those already down.
            let down = self.sc.servers as usize - up.len();
            let room = ((self.sc.servers as usize - 1) / 2).saturating_sub(down);
            let k = if room == 0 {
                0
            } else {
                self.rng.gen_range(1..=room)
            };
            up.choose_multiple(&mut self.rng, k).copied().collect()
        };
        for id in victims {
            let others_damaged = self.servers.iter().enumerate().any(|(i, s)| {
                i + 1 != id as usize
                    && (s.damaged
                        || s.durable.rejoining
                        || s.server().is_some_and(Server::rejoining))
            });
            if !others_damaged && self.rng.gen_bool(amnesia) {
                self.servers[id as usize - 1].damaged = true;
            }
            if self.rng.gen_bool(0.5) {
                self.servers[id as usize - 1].crash_mid_step = true;
            } else {
                self.crash(id);
            }
            let d = down_min + self.rand_duration(down_max.saturating_sub(down_min));
            self.schedule(d, Ev::Fault(Fault::Restart(id)));
        }
    }

    /// Pauses the current leader for a random while.
    fn pause_leader(&mut self) {
        let FaultPlan::LeaderPauses {
            pause_min,
            pause_max,
            ..
        } = self.sc.faults
        else {
            return;
        };
        if let Some(id) = self.current_leader() {
            let d = pause_min + self.rand_duration(pause_max.saturating_sub(pause_min));
            self.servers[id as usize - 1].paused_until = Some(self.now + d);
        }
    }

    /// Cuts off a random minority of `minority` servers, the leader first among them, and
    /// watches the rest for progress.
    fn minority_start(&mut self, minority: usize) {
        let mut ids: Vec<NodeId> = (1..=self.sc.servers).collect();
        ids.shuffle(&mut self.rng);
        if let Some(l) = self.current_leader() {
            ids.retain(|x| *x != l);
            ids.insert(0, l);
        }
        let small: BTreeSet<NodeId> = ids.iter().take(minority).copied().collect();
        let big: BTreeSet<NodeId> = ids.iter().skip(minority).copied().collect();
        self.net.groups = Some(vec![small.clone(), big.clone()]);
        self.begin_watch(big, small, true);
    }

    /// Half the time (when there is a leader) makes the leader deaf; otherwise cuts random
    /// one-way links.
    fn one_way_start(&mut self) {
        let servers: Vec<Addr> = (1..=self.sc.servers).map(Addr::Server).collect();
        let clients: Vec<Addr> = (0..self.clients.len()).map(Addr::Client).collect();
        let leader = self.current_leader();
        if let (Some(l), true) = (leader, self.rng.gen_bool(0.5)) {
            // The leader goes deaf: nothing reaches it, what it sends arrives.
            for a in servers.iter().chain(&clients) {
                if *a != Addr::Server(l) {
                    self.net.one_way.insert((*a, Addr::Server(l)));
                }
            }
            let others = (1..=self.sc.servers).filter(|x| *x != l).collect();
            self.begin_watch(others, BTreeSet::from([l]), false);
            if let Some(w) = &mut self.watch {
                w.deaf = Some(l);
            }
        } else {
            // Random one-way links, each cut with probability 1/4: progress is not
            // promised, only safety.
            for a in servers.iter().chain(&clients) {
                for b in &servers {
                    if a != b && self.rng.gen_bool(0.25) {
                        self.net.one_way.insert((*a, *b));
                    }
                }
            }
        }
    }

    fn begin_watch(
        &mut self,
        majority: BTreeSet<NodeId>,
        minority: BTreeSet<NodeId>,
        strict: bool,
    ) {
        let slots_at_start = self
            .servers
            .iter()
            .filter_map(|s| s.server())
            .map(|s| s.log().end().max(s.commit()))
            .max()
            .unwrap_or(0);
        let majority_commit_at_start = self.max_commit(&majority);
        self.watch = Some(Watch {
            start: self.now,
            majority,
            minority,
            slots_at_start,
            majority_commit_at_start,
            strict_minority: strict,
            deaf: None,
            deaf_bids: BTreeSet::new(),
        });
    }

    /// Checks what the split in force allowed: the minority decided nothing new, and the
    /// majority made progress if it had long enough.
    fn end_watch(&mut self) {
        let Some(w) = self.watch.take() else {
            return;
        };
        let window = self.now - w.start;
        for id in &w.minority {
            if let Some(s) = self.servers[*id as usize - 1].server() {
                if w.strict_minority && s.commit() > w.slots_at_start {
                    self.violations.push(format!(
                        "minority server {id} committed up to slot {} during a split that began at {:?} with {} slots in existence",
                        s.commit(),
                        w.start,
                        w.slots_at_start
                    ));
                }
            }
        }
        if let (Some(id), true) = (w.deaf, w.deaf_bids.len() > 1) {
            self.violations.push(format!(
                "liveness: server {id}, which heard nothing from {:?} for {window:?}, bid {} ballots it could never win ({:?}), each outbidding the healthy candidates",
                w.start,
                w.deaf_bids.len(),
                w.deaf_bids
            ));
        }
        let busy = self.clients.iter().any(|c| c.current.is_some());
        let after = self.max_commit(&w.majority);
        if !w.majority.is_empty()
            && window >= Duration::from_secs(2)
            && busy
            && after <= w.majority_commit_at_start
        {
            self.violations.push(format!(
                "liveness: the majority {:?} made no progress in {:?} of split from {:?}",
                w.majority, window, w.start
            ));
        }
    }

    fn max_commit(&self, ids: &BTreeSet<NodeId>) -> Slot {
        ids.iter()
            .filter_map(|id| self.servers[*id as usize - 1].server())
            .map(|s| s.commit())
            .max()
            .unwrap_or(0)
    }

    fn current_leader(&self) -> Option<NodeId> {
        self.servers
            .iter()
            .filter_map(|s| s.server())
            .filter(|s| s.role() == RoleKind::Leader)
            .max_by_key(|s| s.ballot())
            .map(|s| s.id())
    }

    fn crash(&mut self, id: NodeId) {
        let unsafe_disk = self.sc.unsafe_disk;
        let n = self.servers[id as usize - 1].cache.len();
        // A torn group is dropped whole at replay; without syncs, any prefix of the page
        // cache may have been written back.
        let survive = if n == 0 {
            0
        } else if unsafe_disk {
            self.rng.gen_range(0..=n)
        } else if self.rng.gen_bool(0.5) {
            n
        } else {
            0
        };
        let s = &mut self.servers[id as usize - 1];
        s.crash_mid_step = false;
        for op in s.cache.drain(..).take(survive) {
            s.durable.apply(op);
        }
        s.after_sync.clear();
        s.executed.clear();
        s.changes.clear();
        s.last_published = 0;
        s.sync_gen += 1;
        s.busy_until = None;
        s.flush_scheduled = false;
        s.wake_gen += 1;
        s.wake_at = None;
        if s.driver.take().is_some() {
            self.crashes += 1;
            if let Some(w) = self.sc.wills {
                if self.rng.gen_bool(w.on_crash) {
                    self.publish_will(id);
                }
            }
        }
        self.update_online();
    }

    /// The broker publishes `about`'s will: every other server gets it after its own delay
    /// (QoS 1: late, never lost), whatever it has done meanwhile.
    fn publish_will(&mut self, about: NodeId) {
        for to in (1..=self.sc.servers).filter(|to| *to != about) {
            let delay = if self.rng.gen_bool(0.1) {
                self.rand_duration(Duration::from_secs(1))
            } else {
                Duration::from_millis(1) + self.rand_duration(Duration::from_millis(20))
            };
            self.schedule(delay, Ev::Will { about, to });
        }
    }

    /// What the broker's presence topics would say: every running server is online.
    fn update_online(&mut self) {
        let up = self.servers.iter().filter(|s| s.driver.is_some()).count();
        for s in &mut self.servers {
            if let Some(d) = s.driver.as_mut() {
                d.set_online(up);
            }
        }
    }

    fn boot(&mut self, id: NodeId) {
        let i = id as usize - 1;
        if self.servers[i].driver.is_some() {
            return;
        }
        let cfg = self.sc.server_config(id);
        if self.servers[i].damaged {
            self.servers[i].damaged = false;
            self.amnesias += 1;
            let lost = if self.rng.gen_bool(0.5) {
                // A wiped or replaced disk: nothing on it says the server must rejoin; it
                // must find out from the others that the cluster has a past (bootstrap).
                Durable::new(cfg.max_sessions)
            } else {
                // Rolled back (a log cut at a group boundary, an old backup): storage
                // notices the cut and says so.
                let mut d = self.servers[i].checkpoint.clone();
                d.rejoining = true;
                d
            };
            self.servers[i].durable = lost;
        }
        self.servers[i].checkpoint = self.servers[i].durable.clone();
        let mut durable = self.servers[i].durable.clone();
        // As the runtime does with an empty data directory (a new cluster, or a lost disk:
        // it cannot tell which): rejoin before voting.
        if !cfg.trust_empty_disk() && durable == Durable::new(cfg.max_sessions) {
            durable.rejoining = true;
        }
        match Server::recover(cfg, durable) {
            Ok(server) => {
                let mut driver = Driver::new(server, self.rng.gen());
                let before = driver.server().progress();
                driver.start(self.clock(id));
                self.servers[i].driver = Some(driver);
                self.check_invariants(id, before);
                self.update_online();
                self.after_driver(id);
            }
            Err(e) => self
                .violations
                .push(format!("server {id} cannot start: {e}")),
        }
    }

    fn heal(&mut self) {
        self.end_watch();
        self.healed = true;
        self.net.groups = None;
        self.net.one_way.clear();
        self.net.cfg = NetConfig::healthy();
        for id in 1..=self.sc.servers {
            self.servers[id as usize - 1].crash_mid_step = false;
            self.servers[id as usize - 1].paused_until = None;
            self.boot(id);
        }
        for c in &mut self.clients {
            c.remaining = Some(self.sc.liveness_ops);
        }
        self.schedule(Duration::from_millis(100), Ev::Probe);
    }

    /// After the heal: done once every client has finished and all replicas agree.
    fn probe(&mut self) {
        let clients_done = self.clients.iter().all(|c| c.done);
        let mut states = self
            .servers
            .iter()
            .map(|s| s.server().map(|s| (s.commit(), s.kv().digest())));
        let first = states.next().flatten();
        let converged = first.is_some() && states.all(|s| s == first);
        if clients_done && converged {
            self.finished = true;
        } else {
            self.schedule(Duration::from_millis(100), Ev::Probe);
        }
    }

    /// Appends a read of every key, from the converged replicas, to the history: a lost
    /// acknowledged write then shows up as a non-linearizable history.
    fn final_reads(&mut self) {
        let Some(server) = self.servers.iter().find_map(|s| s.server()) else {
            return;
        };
        let t = self.now + Duration::from_millis(1);
        let mut events = Vec::new();
        for k in 0..self.sc.keys {
            let key = format!("k{k}");
            let op = Op::Get { key: key.clone() };
            let value = server.kv().get(&key).map(str::to_string);
            events.push(history::invoke(t, "final", &op));
            events.push(history::ok(t, "final", &op, &OpResult::Value(value)));
        }
        self.history.extend(events);
    }

    // ----- the event loop -----

    /// Server `id`'s clock now.
    fn clock(&self, id: NodeId) -> Duration {
        let s = &self.servers[id as usize - 1];
        s.origin + self.now.mul_f64(s.rate)
    }

    fn handle(&mut self, ev: Ev) {
        let frozen = match &ev {
            Ev::Deliver {
                to: Addr::Server(id),
                ..
            }
            | Ev::Wake { id, .. } => {
                let s = &self.servers[*id as usize - 1];
                s.paused_until.max(s.busy_until).filter(|t| *t > self.now)
            }
            Ev::FlushServer { id } => self.servers[*id as usize - 1]
                .paused_until
                .filter(|t| *t > self.now),
            _ => None,
        };
        if let Some(until) = frozen {
            // It runs again at `until`, and finds this waiting.
            self.schedule(until - self.now, ev);
            return;
        }
        match ev {
            Ev::Deliver { from, to, msg } => self.deliver(from, to, msg),
            Ev::Wake { id, gen } => {
                if self.servers[id as usize - 1].wake_gen == gen {
                    self.servers[id as usize - 1].wake_at = None;
                    let clock = self.clock(id);
                    let was_leader = self.is_leader(id);
                    if let Some(d) = self.servers[id as usize - 1].driver.as_mut() {
                        let before = d.server().progress();
                        d.fire_due(clock);
                        self.check_invariants(id, before);
                    }
                    self.count_election(id, was_leader);
                    self.after_driver(id);
                }
            }
            Ev::FlushServer { id } => self.flush_server(id),
            Ev::Synced { id, gen } => self.synced(id, gen),
            Ev::Will { about, to } => self.step_server(to, Input::PeerOffline(about)),
            Ev::ClientTimer { idx, gen } => {
                if self.clients[idx].timer_gen == gen {
                    let r = self.clients[idx].client.on_timer();
                    self.apply_client(idx, r.send, r.timer);
                }
            }
            Ev::ClientNext { idx } => self.client_next(idx),
            Ev::Fault(f) => {
                if !self.healed {
                    self.fault(f);
                }
            }
            Ev::Heal => self.heal(),
            Ev::Probe => self.probe(),
            Ev::Flush => {
                for s in &mut self.servers {
                    for op in s.cache.drain(..) {
                        s.durable.apply(op);
                    }
                }
                self.schedule(Duration::from_secs(1), Ev::Flush);
            }
        }
    }

    fn deliver(&mut self, from: Addr, to: Addr, msg: Message) {
        match to {
            Addr::Server(id) => {
                if self.servers[id as usize - 1].driver.is_none() {
                    return;
                }
                self.server_counts[id as usize - 1].received[kind_index(&msg)] += 1;
                let input = match (from, msg) {
                    (Addr::Client(_), Message::Request(cmd)) => Input::Request(cmd),
                    (Addr::Server(f), msg) => Input::Message { from: f, msg },
                    _ => return,
                };
                self.step_server(id, input);
            }
            Addr::Client(idx) => {
                self.client_counts.received[kind_index(&msg)] += 1;
                if let Message::Reply { seq, result, .. } = msg {
                    let r = self.clients[idx].client.on_reply(seq, result);
                    if let Some((_, result)) = r.done {
                        self.client_done(idx, result);
                    } else if r.send.is_some() {
                        // The session is open: the command itself goes out now.
                        self.apply_client(idx, r.send, r.timer);
                    }
                }
            }
        }
    }

    fn is_leader(&self, id: NodeId) -> bool {
        self.servers[id as usize - 1]
            .server()
            .is_some_and(|s| s.role() == RoleKind::Leader)
    }

    fn count_election(&mut self, id: NodeId, was_leader: bool) {
        if !was_leader && self.is_leader(id) {
            self.elections_won += 1;
            let s = &mut self.servers[id as usize - 1];
            if let Some(ballot) = s.server().map(Server::ballot) {
                if !s.won.insert(ballot) {
                    self.ballots_reused += 1;
                }
            }
            self.first_leader_at.get_or_insert(self.now);
        }
    }

    fn step_server(&mut self, id: NodeId, input: Input) {
        let clock = self.clock(id);
        let was_leader = self.is_leader(id);
        let Some(driver) = self.servers[id as usize - 1].driver.as_mut() else {
            return;
        };
        let before = driver.server().progress();
        driver.step(clock, input);
        self.check_invariants(id, before);
        self.count_election(id, was_leader);
        self.after_driver(id);
    }

    /// The core's invariants across steps ([`mqpaxos_core::Server::check_progress`]), after
    /// every step the simulation makes.
    fn check_invariants(&mut self, id: NodeId, before: mqpaxos_core::Progress) {
        let Some(driver) = self.servers[id as usize - 1].driver.as_ref() else {
            return;
        };
        if let Some(broken) = driver.server().check_progress(before) {
            self.violations
                .push(format!("invariant: server {id}: {broken}"));
        }
        // A lone server commits as it accepts, before its sync; nothing of it leaves until
        // then, which `check_vouches` checks on its replies instead.
        if driver.server().role() == RoleKind::Leader && self.amnesias == 0 && self.sc.servers > 1 {
            let to = driver.server().commit();
            self.check_durably_chosen(id, before.commit, to);
        }
    }

    /// A leader commits a slot only once a majority holds it on disk: otherwise a reply can
    /// report a write that crashes then lose. Checked at the moment of commit, on the
    /// simulator's knowledge of every disk, so a commit counted too early shows at once, not
    /// only when crashes happen to expose it. Not after a server lost its disk (amnesia):
    /// then fewer copies are the expected loss. A leader's own copy counts from its proposal
    /// on: what it proposes is in the flush whose sync ends before any acknowledgement of it
    /// can arrive.
    fn check_durably_chosen(&mut self, id: NodeId, from: Slot, to: Slot) {
        let Some(server) = self.servers[id as usize - 1].server() else {
            return;
        };
        let quorum = server.config().quorum();
        for slot in from..to {
            let mine = server.log().get(slot).map(|e| &e.value);
            let holders = self
                .servers
                .iter()
                .filter(|s| {
                    let d = &s.durable;
                    d.snapshot.next_slot > slot
                        || d.log
                            .get(slot)
                            .is_some_and(|e| mine.is_none_or(|v| *v == e.value))
                })
                .count();
            if holders < quorum {
                self.violations.push(format!(
                    "safety: server {id} committed slot {slot} held on {holders} disks, fewer than a majority"
                ));
                return;
            }
        }
    }

    /// After the driver took input: check what it executed, schedule its flush (soon, so
    /// that whatever else arrives meanwhile joins the group, as in the runtime) and its next
    /// timer.
    fn after_driver(&mut self, id: NodeId) {
        let i = id as usize - 1;
        let Some(driver) = self.servers[i].driver.as_mut() else {
            return;
        };
        let pending = driver.has_pending();
        let due = driver.flush_due();
        let deadline = driver.next_deadline();
        if pending && !self.servers[i].flush_scheduled {
            self.servers[i].flush_scheduled = true;
            let window = if due {
                Duration::ZERO
            } else {
                self.rand_duration(self.sc.group_window)
            };
            self.schedule(window, Ev::FlushServer { id });
        }
        if deadline != self.servers[i].wake_at {
            self.servers[i].wake_gen += 1;
            self.servers[i].wake_at = deadline;
            if let Some(at) = deadline {
                let gen = self.servers[i].wake_gen;
                let s = &self.servers[i];
                // The deadline is on the server's clock; turn it into virtual time (a hair
                // late rather than early, so the timer is due when the wake-up comes).
                let left = at.saturating_sub(self.clock(id));
                let after = left.div_f64(s.rate) + Duration::from_micros(1);
                self.schedule(after, Ev::Wake { id, gen });
            }
        }
    }

    /// The runtime's flush: early messages out, the group written, and after the sync (a
    /// moment later, during which the server takes no input) the messages that depend on it.
    fn flush_server(&mut self, id: NodeId) {
        let i = id as usize - 1;
        self.servers[i].flush_scheduled = false;
        let Some(driver) = self.servers[i].driver.as_mut() else {
            return;
        };
        let Flush {
            send_early,
            persist,
            send_durable,
            executed,
            changes,
            ..
        } = driver.flush();
        self.servers[i].flushed_commit = self.servers[i].server().map_or(0, Server::commit);
        let bytes: usize = persist.iter().map(mqpaxos_core::limits::persist_size).sum();
        if bytes > mqpaxos_core::limits::MAX_FLUSH {
            // The real storage refuses such a group, and its server stops.
            self.violations.push(format!(
                "liveness: server {id} flushed {bytes} bytes, more than storage takes at once"
            ));
        }
        for o in send_early {
            self.send(Addr::Server(id), o);
        }
        let promise = persist.iter().any(|op| matches!(op, PersistOp::Promise(_)));
        let p = if promise {
            self.sc.promise_flush_crash
        } else {
            self.sc.flush_crash
        };
        if !self.healed && !persist.is_empty() && p > 0.0 && self.rng.gen_bool(p) {
            self.servers[i].crash_mid_step = true;
            let d = Duration::from_millis(5) + self.rand_duration(Duration::from_millis(200));
            self.schedule(d, Ev::Fault(Fault::Restart(id)));
        }
        let s = &mut self.servers[i];
        s.cache.extend(persist);
        s.after_sync.extend(send_durable);
        s.executed.extend(executed);
        s.changes.extend(changes);
        if s.crash_mid_step {
            // The process dies between the write and the sync: what depends on the write
            // never leaves.
            self.crash(id);
            return;
        }
        s.sync_gen += 1;
        let gen = s.sync_gen;
        // Now and then a sync stalls (a busy or failing disk, a full write-back queue): the
        // server takes no input meanwhile, and its peers' timers run on.
        let took = if self.rng.gen_bool(0.05) {
            self.rand_duration(self.sc.sync_time * 20)
        } else {
            self.rand_duration(self.sc.sync_time)
        };
        self.servers[i].busy_until = Some(self.now + took);
        self.schedule(took, Ev::Synced { id, gen });
    }

    fn synced(&mut self, id: NodeId, gen: u64) {
        let i = id as usize - 1;
        let s = &mut self.servers[i];
        if s.sync_gen != gen || s.driver.is_none() {
            return;
        }
        s.busy_until = None;
        if !self.sc.unsafe_disk {
            for op in s.cache.drain(..) {
                s.durable.apply(op);
            }
        }
        for o in std::mem::take(&mut self.servers[i].after_sync) {
            self.send(Addr::Server(id), o);
        }
        for (slot, digest) in std::mem::take(&mut self.servers[i].executed) {
            match self.chosen.get(&slot) {
                Some(d) if *d != digest => self.violations.push(format!(
                    "safety: server {id} executed a different value in slot {slot} than another replica"
                )),
                Some(_) => {}
                None => {
                    self.chosen.insert(slot, digest);
                }
            }
        }
        self.check_published(id);
        // Input that waited for the sync may have left effects to flush.
        self.after_driver(id);
    }

    fn send(&mut self, from: Addr, o: Outgoing) {
        let k = kind_index(&o.msg);
        if matches!(o.msg, Message::SnapshotChunk { offset: 0, .. }) {
            self.snapshots_sent += 1;
        }
        if matches!(o.msg, Message::Promise { more: Some(_), .. }) {
            self.promise_parts += 1;
        }
        // The wire's limit, measured with the wire's encoding: a message over it would be
        // dropped by every runtime, forever (issue 12.3), so here it is a failure.
        if carries_data(&o.msg) {
            match postcard::to_allocvec(&o.msg) {
                Ok(bytes) if bytes.len() < mqpaxos_core::limits::MAX_MESSAGE => {}
                Ok(bytes) => self.violations.push(format!(
                    "liveness: a {} message of {} bytes exceeds the wire's limit of {}",
                    o.msg.kind(),
                    bytes.len(),
                    mqpaxos_core::limits::MAX_MESSAGE
                )),
                Err(e) => self
                    .violations
                    .push(format!("a {} message does not encode: {e}", o.msg.kind())),
            }
        }
        if let Addr::Server(id) = from {
            self.check_vouches(id, &o.msg);
            if let (Some(w), Message::Prepare { ballot, .. }) = (&mut self.watch, &o.msg) {
                if w.deaf == Some(id) {
                    w.deaf_bids.insert(*ballot);
                }
            }
        }
        match from {
            Addr::Server(id) => self.server_counts[id as usize - 1].sent[k] += 1,
            Addr::Client(_) => self.client_counts.sent[k] += 1,
        }
        let targets: Vec<Addr> = match &o.to {
            Dest::Server(id) if *id >= 1 && *id <= self.sc.servers => vec![Addr::Server(*id)],
            Dest::Server(_) => Vec::new(),
            Dest::AllServers => (1..=self.sc.servers)
                .map(Addr::Server)
                .filter(|a| *a != from)
                .collect(),
            // A session's replies go to the client that opened it (`<client>/<slot>`), as the
            // reply topics of a client's sessions lie below its own.
            Dest::Client(name) => self
                .client_index
                .get(name)
                .or_else(|| {
                    name.rsplit_once('/')
                        .and_then(|(base, _)| self.client_index.get(base))
                })
                .map(|i| vec![Addr::Client(*i)])
                .unwrap_or_default(),
        };
        for to in targets {
            for delay in self.net.deliveries(&mut self.rng, from, to) {
                self.schedule(
                    delay,
                    Ev::Deliver {
                        from,
                        to,
                        msg: o.msg.clone(),
                    },
                );
            }
        }
    }

    /// What watchers are told must be the truth: a change published for a revision says the
    /// same whoever publishes it, comes from a slot that was chosen, and each server's stream
    /// only goes up (the runtime publishes exactly the flush's changes, after its sync).
    fn check_published(&mut self, id: NodeId) {
        let i = id as usize - 1;
        for c in std::mem::take(&mut self.servers[i].changes) {
            let mut h = mqpaxos_core::Fnv::default();
            h.write(c.key.as_bytes());
            h.write(&[0xff]);
            match &c.kind {
                mqpaxos_core::ChangeKind::Put {
                    value,
                    create,
                    version,
                } => {
                    h.write(value.as_bytes());
                    h.write(&create.to_le_bytes());
                    h.write(&version.to_le_bytes());
                }
                mqpaxos_core::ChangeKind::Delete => h.write(&[0xfe]),
            }
            h.write(&c.prev_revision.to_le_bytes());
            h.write(&c.prev_store_revision.to_le_bytes());
            let digest = h.finish();
            if *self.published.entry(c.revision).or_insert(digest) != digest {
                self.violations.push(format!(
                    "safety: server {id} published change {} differently from another leader",
                    c.revision
                ));
            }
            let slot = mqpaxos_core::kv::slot_of_revision(c.revision);
            if !self.chosen.contains_key(&slot) {
                self.violations.push(format!(
                    "safety: server {id} published change {} of slot {slot}, which no replica executed",
                    c.revision
                ));
            }
            let s = &mut self.servers[i];
            if c.revision <= s.last_published {
                self.violations.push(format!(
                    "watch: server {id} published change {} after {}",
                    c.revision, s.last_published
                ));
            }
            s.last_published = c.revision;
        }
    }

    /// What a message vouches for must be on the sender's disk when it leaves: a crash may
    /// come the next moment, and the world must not have heard of anything the restarted
    /// server will not know. Checked on every message, so that a bug in what leaves before a
    /// sync shows at once, not only in the rare runs where a crash then turns it into a
    /// divergence or a lost write.
    /// - A leader's Accept, Heartbeat and ReadIndex, and a voter's Promise and Accepted, are
    ///   sent under a ballot: the sender's durable promise must have reached it (otherwise a
    ///   crash can make it reuse the ballot with other values).
    /// - A lone server's reply reports state up to its commit point: every slot before it
    ///   must be durable (with one server there is no other copy).
    fn check_vouches(&mut self, id: NodeId, msg: &Message) {
        let s = &self.servers[id as usize - 1];
        if s.server().is_none() {
            return;
        }
        let under = match msg {
            Message::Accept { ballot, .. }
            | Message::Heartbeat { ballot, .. }
            | Message::ReadIndex { ballot, .. }
                if ballot.server == id =>
            {
                Some(*ballot)
            }
            Message::Promise { ballot, .. } | Message::Accepted { ballot, .. } => Some(*ballot),
            _ => None,
        };
        if let Some(ballot) = under {
            if s.durable.promised < ballot {
                self.violations.push(format!(
                    "safety: server {id} sent a {} under ballot {ballot:?} with only {:?} promised on disk",
                    msg.kind(),
                    s.durable.promised
                ));
            }
        }
        if self.sc.servers == 1 && matches!(msg, Message::Reply { .. }) {
            // Seed 9316 of `single` once stepped a command in at the instant its previous
            // flush's sync returned, before that flush's replies left: the reply vouches for
            // the commit point of its flush, not for the one the server has reached since.
            let commit = s.flushed_commit;
            let d = &s.durable;
            let first = d.snapshot.next_slot;
            if let Some(slot) = (first..commit).find(|slot| d.log.get(*slot).is_none()) {
                self.violations.push(format!(
                    "safety: the lone server replied at commit {commit} with slot {slot} not on disk"
                ));
            }
        }
    }

    // ----- clients -----

    fn client_next(&mut self, idx: usize) {
        let c = &mut self.clients[idx];
        if c.done || c.current.is_some() {
            return;
        }
        if let Some(left) = c.remaining {
            if left == 0 {
                c.done = true;
                return;
            }
            c.remaining = Some(left - 1);
        }
        let op = self.random_op(idx);
        let c = &mut self.clients[idx];
        let Ok(r) = c.client.invoke(op.clone()) else {
            return;
        };
        let seen = match &op {
            Op::CasRevision { key, .. } => c.seen_revision.get(key).map(|(v, _)| v),
            _ => None,
        };
        let recorded = history::recorded(&op, seen);
        self.history
            .push(history::invoke(self.now, &c.name, &recorded));
        c.recorded = Some(recorded);
        c.current = Some(op);
        self.apply_client(idx, r.send, r.timer);
    }

    fn random_op(&mut self, idx: usize) -> Op {
        let key = format!("k{}", self.rng.gen_range(0..self.sc.keys));
        let c = &mut self.clients[idx];
        c.counter += 1;
        let mut value = format!("{}-{}", c.name, c.counter);
        if self.sc.value_size > 0 {
            // Large values: unique prefix (the checker tells writes apart by value), then
            // filler up to a random length; half of them near the limit.
            let len = if self.rng.gen_bool(0.5) {
                self.rng.gen_range(0..=self.sc.value_size)
            } else {
                self.rng
                    .gen_range(self.sc.value_size / 2..=self.sc.value_size)
            };
            let pad = len.saturating_sub(value.len() + 1);
            value.push(':');
            value.push_str(&"x".repeat(pad));
        }
        let value: std::sync::Arc<str> = value.into();
        let roll: u32 = self.rng.gen_range(0..100);
        let seen_revision = self.clients[idx].seen_revision.get(&key).map(|(_, r)| *r);
        match roll {
            0..=24 => Op::Get { key },
            25..=34 => Op::Read { key },
            35..=59 => Op::Put { key, value },
            60..=69 => Op::Append { key, value },
            70..=79 if seen_revision.is_some() => Op::CasRevision {
                key,
                revision: seen_revision.unwrap_or(0),
                new: value,
            },
            70..=89 => {
                let seen = self.clients[idx].seen.get(&key).cloned().unwrap_or(None);
                let expected = if self.rng.gen_bool(0.8) { seen } else { None };
                Op::Cas {
                    key,
                    expected,
                    new: value,
                }
            }
            _ => Op::Delete { key },
        }
    }

    fn client_done(&mut self, idx: usize, result: OpResult) {
        let c = &mut self.clients[idx];
        let Some(real) = c.current.take() else {
            return;
        };
        if let (Op::Read { key }, OpResult::Entry { entry, .. }) = (&real, &result) {
            let seen = entry
                .as_ref()
                .map(|r| (Some(r.value.to_string()), r.modified));
            c.seen_revision
                .insert(key.clone(), seen.unwrap_or((None, 0)));
        }
        let op = c.recorded.take().unwrap_or_else(|| real.clone());
        let result = history::recorded_result(&result);
        if result == OpResult::SessionExpired {
            // Refused, and whether an earlier copy ran is unknown: indeterminate.
            self.history.push(history::info(self.now, &c.name, &op));
        } else if matches!(result, OpResult::Rejected { .. }) {
            // Refused by the servers, which promise it changed nothing.
            self.history.push(history::fail(self.now, &c.name, &op));
            self.rejected += 1;
        } else {
            self.history
                .push(history::ok(self.now, &c.name, &op, &result));
        }
        self.ops_completed += 1;
        let key = op.key().to_string();
        match (&op, &result) {
            (Op::Get { .. }, OpResult::Value(v)) => {
                c.seen.insert(key, v.clone());
            }
            (Op::Put { value, .. }, _) => {
                c.seen.insert(key, Some(value.to_string()));
            }
            (Op::Cas { new, .. }, OpResult::Swapped(true)) => {
                c.seen.insert(key, Some(new.to_string()));
            }
            (Op::Delete { .. }, _) => {
                c.seen.insert(key, None);
            }
            _ => {}
        }
        c.timer_gen += 1;
        let think = self.rand_duration(self.sc.think * 2);
        self.schedule(think, Ev::ClientNext { idx });
    }

    fn apply_client(&mut self, idx: usize, send: Option<Outgoing>, timer: Option<Duration>) {
        if let Some(o) = send {
            self.send(Addr::Client(idx), o);
        }
        if let Some(after) = timer {
            let c = &mut self.clients[idx];
            c.timer_gen += 1;
            let gen = c.timer_gen;
            self.schedule(after, Ev::ClientTimer { idx, gen });
        }
    }
}

/// Messages whose size depends on what clients wrote (the others are a few bytes).
fn carries_data(msg: &Message) -> bool {
    matches!(
        msg,
        Message::Promise { .. }
            | Message::Accept { .. }
            | Message::Chosen { .. }
            | Message::SnapshotChunk { .. }
            | Message::Request(_)
            | Message::Reply { .. }
            | Message::Replies(_)
    )
}
