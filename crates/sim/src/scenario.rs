//! The named scenarios: who runs, how the network misbehaves, and which faults strike when.

use crate::network::NetConfig;
use mqpaxos_core::Config;
use std::time::Duration;

/// Faults injected during the safety phase.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultPlan {
    /// Only the network's loss, delay and duplication.
    None,
    /// `count` times, at random moments, split the servers at random into groups of the given
    /// sizes; the split lasts until the next one, the last until the safety phase ends.
    RandomPartitions { count: usize, sizes: Vec<usize> },
    /// Again and again: crash whoever leads, restart it after a while.
    LeaderCrashes {
        every: Duration,
        down_min: Duration,
        down_max: Duration,
    },
    /// Every `every` (plus jitter): crash a random minority of servers (with probability
    /// `all_at_once`, every server), each restarting after a while. Half the crashes strike
    /// between a step's disk write and its sync. With probability `amnesia` a crashed server
    /// also loses synced state: its disk wiped (it restarts on an empty disk and must find
    /// out by itself that the cluster has a past), or rolled back to what it held when it
    /// last started (as a log cut at a group boundary would be, which storage notices: it
    /// restarts told to rejoin); at most one server at a time is in that state, the most the
    /// protocol can bear.
    RandomCrashes {
        every: Duration,
        down_min: Duration,
        down_max: Duration,
        all_at_once: f64,
        amnesia: f64,
    },
    /// `count` times: cut the current leader and `minority - 1` others off from the rest for
    /// `length`, then heal for `gap`. The minority side must not commit anything proposed
    /// during the split; the majority side must.
    MinorityPartition {
        count: usize,
        minority: usize,
        length: Duration,
        gap: Duration,
    },
    /// Every `every`: freeze whoever leads for `pause_min..pause_max` (a GC pause, a stopped
    /// VM): it handles nothing meanwhile, then wakes to everything that queued up, still
    /// believing it leads, while the others have elected someone else.
    LeaderPauses {
        every: Duration,
        pause_min: Duration,
        pause_max: Duration,
    },
    /// Every `every`, for `length`: one-way faults. Half the time the leader goes deaf
    /// (nothing reaches it, from servers or clients, while everything it sends arrives); the
    /// other half, random one-way server-to-server links and client-to-server links are cut.
    OneWay { every: Duration, length: Duration },
}

/// One kind of run. A seed turns it into exactly one run.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub servers: u32,
    pub clients: usize,
    /// Keys the clients work on: few, so that operations conflict.
    pub keys: usize,
    pub net: NetConfig,
    pub faults: FaultPlan,
    /// Faults are on for this long...
    pub safety: Duration,
    /// ...then healed, and within this much more virtual time every client must finish and
    /// every replica must hold the same state.
    pub liveness_bound: Duration,
    /// Operations each client does after the heal.
    pub liveness_ops: usize,
    /// Mean pause between a client's operations.
    pub think: Duration,
    /// Small, so that snapshots, truncation and snapshot transfer happen in every run.
    pub snapshot_interval: u64,
    /// Adjusts each server's configuration (the mutation tests break the protocol here).
    pub tweak: Option<fn(&mut Config)>,
    /// A broken runtime that sends acknowledgements before syncing (the page cache is
    /// written back only once a second): for the mutation test of the disk model.
    pub unsafe_disk: bool,
    /// Each server's clock runs at its own rate, up to this fraction off (0.1: 0.9x to 1.1x),
    /// from its own origin. The protocol must not need clocks to agree for safety.
    pub clock_drift: f64,
    /// After a server's first step since its last flush, up to this long passes before it
    /// flushes; whatever arrives meanwhile joins the group (the runtime's group commit).
    pub group_window: Duration,
    /// How long a sync takes at most; the server takes no input meanwhile.
    pub sync_time: Duration,
    /// The at-most-once table's size, if not the default.
    pub max_sessions: Option<usize>,
    /// Probability that a flush with writes dies between its early messages and its sync
    /// (the server restarts a moment later); a flush carrying a new promise (a server that
    /// just won an election) uses `promise_flush_crash` instead. Both only in the safety
    /// phase.
    pub flush_crash: f64,
    pub promise_flush_crash: f64,
    /// The servers' `message_budget` and `snapshot_chunk`: small by default, so that
    /// promises, accepts and catch-up come in several parts and snapshots in several pieces in
    /// every run, as they do in production once values and state are large.
    pub message_budget: usize,
    pub snapshot_chunk: usize,
    /// Values are padded to a random length up to this many bytes (0: short values).
    pub value_size: usize,
    /// The broker's last wills (`Input::PeerOffline`), if this scenario models them.
    pub wills: Option<Wills>,
    /// The store's quota (`Config::max_store_bytes`), if not the production one.
    pub max_store: Option<u64>,
}

/// How the simulated broker publishes wills. Each recipient gets its copy after its own
/// delay (mostly a few milliseconds, sometimes up to a second), so wills also arrive after
/// the server has restarted; stale wills name a leader that is alive and well (a broker
/// that dropped its connection while the process lives on, or a flapping link).
#[derive(Clone, Copy, Debug)]
pub struct Wills {
    /// Probability that a crash is followed by its will (otherwise the broker has not
    /// noticed: a power cut or a partition before its keepalive expires).
    pub on_crash: f64,
    /// About this often in the safety phase, a will for the current leader reaches a random
    /// set of the others.
    pub stale_every: Option<Duration>,
}

impl Scenario {
    fn base(name: &'static str, about: &'static str, servers: u32) -> Self {
        Scenario {
            name,
            about,
            servers,
            clients: 3,
            keys: 3,
            net: NetConfig::healthy(),
            faults: FaultPlan::None,
            safety: Duration::from_secs(10),
            liveness_bound: Duration::from_secs(30),
            liveness_ops: 3,
            think: Duration::from_millis(20),
            snapshot_interval: 40,
            tweak: None,
            unsafe_disk: false,
            clock_drift: 0.0,
            group_window: Duration::from_micros(500),
            sync_time: Duration::from_micros(800),
            max_sessions: None,
            flush_crash: 0.0,
            promise_flush_crash: 0.0,
            message_budget: 300,
            snapshot_chunk: 32,
            value_size: 0,
            wills: None,
            max_store: None,
        }
    }

    /// The server configuration this scenario runs with.
    pub fn server_config(&self, id: u32) -> Config {
        let mut cfg = Config::new(id, self.servers);
        cfg.snapshot_interval = self.snapshot_interval;
        cfg.trace_chosen = true;
        cfg.message_budget = self.message_budget;
        cfg.snapshot_chunk = self.snapshot_chunk;
        if let Some(n) = self.max_sessions {
            cfg.max_sessions = n;
        }
        if let Some(n) = self.max_store {
            cfg.max_store_bytes = n;
        }
        if let Some(tweak) = self.tweak {
            tweak(&mut cfg);
        }
        cfg
    }
}

/// Every scenario, by name.
pub fn all() -> Vec<Scenario> {
    vec![
        paper(),
        leader_crash(),
        failover(),
        crash_restart(),
        amnesia(),
        pause(),
        minority(),
        lossy(3),
        lossy(5),
        power(),
        power_lossy(),
        power_long_log(),
        one_way(),
        single(),
        sessions(),
        quota(),
        amnesia_fast(),
        amnesia_slow(),
        large(),
    ]
}

pub fn by_name(name: &str) -> Option<Scenario> {
    all().into_iter().find(|s| s.name == name)
}

/// The reference experiment: 7 servers, 5 clients, 20% loss, 10 ms delay, five random splits
/// into 4 and 3, then heal.
pub fn paper() -> Scenario {
    let mut s = Scenario::base(
        "paper",
        "7 servers, 5 clients, 20% loss, 10 ms delay, 5 random 4/3 partitions, then heal",
        7,
    );
    s.clients = 5;
    s.net = NetConfig {
        loss: 0.2,
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(2),
        duplicate: 0.0,
        straggle: 0.0,
        straggle_max: Duration::ZERO,
    };
    s.faults = FaultPlan::RandomPartitions {
        count: 5,
        sizes: vec![4, 3],
    };
    s.safety = Duration::from_secs(15);
    s
}

/// The leader crashes and restarts again and again under load.
pub fn leader_crash() -> Scenario {
    let mut s = Scenario::base(
        "leader-crash",
        "5 servers, 3 clients, 5% loss: the leader is killed every 1.5 s and restarts later",
        5,
    );
    s.net = NetConfig::mildly_lossy();
    s.faults = FaultPlan::LeaderCrashes {
        every: Duration::from_millis(1500),
        down_min: Duration::from_millis(100),
        down_max: Duration::from_millis(2500),
    };
    s
}

/// Failover from the broker's last will: the leader dies every second and its will reaches
/// the others (mostly at once, sometimes late or never), and stale wills name a leader that
/// is alive. Elections they start must never break safety, and the cluster must keep
/// making progress however often a live leader is declared dead.
pub fn failover() -> Scenario {
    let mut s = Scenario::base(
        "failover",
        "5 servers, 3 clients, 5% loss: the leader is killed every second, wills (prompt, late, lost) and stale wills for a live leader",
        5,
    );
    s.net = NetConfig::mildly_lossy();
    s.faults = FaultPlan::LeaderCrashes {
        every: Duration::from_millis(1000),
        down_min: Duration::from_millis(50),
        down_max: Duration::from_millis(1500),
    };
    s.wills = Some(Wills {
        on_crash: 0.9,
        stale_every: Some(Duration::from_millis(400)),
    });
    s
}

/// Durable state under crashes: random servers die (sometimes all at once, sometimes
/// between a write and its sync) and restart from what reached the disk.
pub fn crash_restart() -> Scenario {
    let mut s = Scenario::base(
        "crash-restart",
        "5 servers, 3 clients, 5% loss: random minorities (sometimes all) crash, often mid-write, and restart",
        5,
    );
    s.net = NetConfig::mildly_lossy();
    s.faults = FaultPlan::RandomCrashes {
        every: Duration::from_millis(700),
        down_min: Duration::from_millis(50),
        down_max: Duration::from_millis(1500),
        all_at_once: 0.15,
        amnesia: 0.0,
    };
    s
}

/// Servers lose acknowledged state (a wiped or rolled-back disk) and rejoin: no acknowledged
/// write may be lost and no replica may diverge.
pub fn amnesia() -> Scenario {
    let mut s = Scenario::base(
        "amnesia",
        "5 servers, 3 clients, 5% loss: random crashes, half of them losing synced state (disk wiped or rolled back), then rejoining",
        5,
    );
    s.net = NetConfig::mildly_lossy();
    s.faults = FaultPlan::RandomCrashes {
        every: Duration::from_millis(700),
        down_min: Duration::from_millis(50),
        down_max: Duration::from_millis(1500),
        all_at_once: 0.1,
        amnesia: 0.5,
    };
    s
}

/// Deposed leaders that do not know it yet: the leader freezes for longer than an election
/// takes, on drifting clocks; reads it answers on waking must not be stale.
pub fn pause() -> Scenario {
    let mut s = Scenario::base(
        "pause",
        "5 servers, 3 clients, 5% loss, clocks off by up to 20%: the leader freezes for 0.5-2 s every 1.5 s",
        5,
    );
    s.net = NetConfig::mildly_lossy();
    s.clock_drift = 0.2;
    s.faults = FaultPlan::LeaderPauses {
        every: Duration::from_millis(1500),
        pause_min: Duration::from_millis(500),
        pause_max: Duration::from_millis(2000),
    };
    s
}

/// A minority side of a partition never commits; the majority side does.
pub fn minority() -> Scenario {
    let mut s = Scenario::base(
        "minority",
        "5 servers: the leader and one other are cut off for 3 s, three times",
        5,
    );
    s.net = NetConfig::mildly_lossy();
    s.faults = FaultPlan::MinorityPartition {
        count: 3,
        minority: 2,
        length: Duration::from_secs(3),
        gap: Duration::from_millis(1500),
    };
    s.safety = Duration::from_secs(14);
    s
}

/// Small clusters on a bad network: 30% loss, duplicates, and enough jitter to reorder.
pub fn lossy(servers: u32) -> Scenario {
    let (name, about) = if servers == 3 {
        (
            "lossy-3",
            "3 servers, 3 clients, 30% loss, 10% duplicates, 1-30 ms delay (reordering)",
        )
    } else {
        (
            "lossy-5",
            "5 servers, 3 clients, 30% loss, 10% duplicates, 1-30 ms delay (reordering)",
        )
    };
    let mut s = Scenario::base(name, about, servers);
    s.net = NetConfig {
        loss: 0.3,
        delay: Duration::from_millis(1),
        jitter: Duration::from_millis(29),
        duplicate: 0.1,
        straggle: 0.0,
        straggle_max: Duration::ZERO,
    };
    s
}

/// Whole-cluster power loss: every server (often all at once) dies, half the time in the
/// middle of writing a group, which the disk then keeps whole or not at all (a torn group is
/// dropped at replay), and restarts on its own.
pub fn power() -> Scenario {
    let mut s = Scenario::base(
        "power",
        "3 servers, 3 clients, 5% loss: power cuts of the whole cluster (sometimes a majority), often mid-write",
        3,
    );
    s.net = NetConfig::mildly_lossy();
    s.faults = FaultPlan::RandomCrashes {
        every: Duration::from_millis(600),
        down_min: Duration::from_millis(20),
        down_max: Duration::from_millis(800),
        all_at_once: 0.7,
        amnesia: 0.0,
    };
    // New leaders die in the flush that carries their promise, now and then.
    s.promise_flush_crash = 0.3;
    s
}

/// Power cuts on a bad network: new leaders die in the flush that carries their promise, come
/// back at once and often win the same ballot again (their promise of it never reached the
/// disk), while loss, duplicates and reordering let the messages of the dead incarnation
/// race those of the new one. The interleaving in which anything sent before its promise is
/// durable gets two values chosen in one slot.
pub fn power_lossy() -> Scenario {
    let mut s = Scenario::base(
        "power-lossy",
        "3 servers, 5 clients, 25% loss, 10% duplicates, 1-30 ms delay: power cuts, new leaders dying mid-flush",
        3,
    );
    s.clients = 5;
    s.think = Duration::from_millis(5);
    s.net = NetConfig {
        loss: 0.25,
        delay: Duration::from_millis(1),
        jitter: Duration::from_millis(29),
        duplicate: 0.1,
        straggle: 0.0,
        straggle_max: Duration::ZERO,
    };
    s.faults = FaultPlan::RandomCrashes {
        every: Duration::from_millis(600),
        down_min: Duration::from_millis(1),
        down_max: Duration::from_millis(50),
        all_at_once: 0.3,
        amnesia: 0.0,
    };
    s.promise_flush_crash = 0.5;
    s
}

/// Power cuts of a cluster that snapshots rarely: the commit point is not stored, so after a
/// restart everything since the last snapshot is re-proposed by the new leader, here hundreds
/// of slots against a window of 8 (production: up to 10,000 against 64). A leader that
/// re-proposed its whole tail at once put it all in one flush and resent all of it every
/// `accept_resend`; on real machines that kept three servers busy for good (power.rs, cycle 4
/// at 9d8c796, log 5,484 slots); the core's invariant that a leader never has more than a
/// window in flight fails here at once on such a leader.
pub fn power_long_log() -> Scenario {
    let mut s = Scenario::base(
        "power-long-log",
        "3 servers, 5 clients, 5% loss, snapshots every 1000 slots, a window of 8: power cuts of the whole cluster, each new leader re-proposing hundreds of slots",
        3,
    );
    s.clients = 5;
    s.think = Duration::from_millis(5);
    s.net = NetConfig::mildly_lossy();
    s.faults = FaultPlan::RandomCrashes {
        every: Duration::from_millis(800),
        down_min: Duration::from_millis(20),
        down_max: Duration::from_millis(300),
        all_at_once: 0.8,
        amnesia: 0.0,
    };
    s.snapshot_interval = 1000;
    s.tweak = Some(|cfg| cfg.window = 8);
    s
}

/// One-way faults: a leader that can send but not receive must give way, and a majority
/// that can talk must go on committing.
pub fn one_way() -> Scenario {
    let mut s = Scenario::base(
        "one-way",
        "5 servers, 3 clients, 5% loss: for 3 s at a time the leader goes deaf, or random one-way links (server and client) are cut",
        5,
    );
    s.net = NetConfig::mildly_lossy();
    s.faults = FaultPlan::OneWay {
        every: Duration::from_millis(4000),
        length: Duration::from_millis(3000),
    };
    s.safety = Duration::from_secs(14);
    s
}

/// A one-server cluster: every answer must wait for its own sync, crashes included.
pub fn single() -> Scenario {
    let mut s = Scenario::base(
        "single",
        "1 server, 3 clients, 5% loss: it crashes every second and in 1 of 200 flushes (before the sync), and restarts",
        1,
    );
    s.net = NetConfig::mildly_lossy();
    s.faults = FaultPlan::RandomCrashes {
        every: Duration::from_millis(1000),
        down_min: Duration::from_millis(20),
        down_max: Duration::from_millis(300),
        all_at_once: 1.0,
        amnesia: 0.0,
    };
    s.flush_crash = 0.005;
    s
}

/// Values up to the client limit (1 MiB) with the production byte limits: slots, accepts,
/// promises and catch-up split by bytes, snapshots of several MiB travel in pieces, appends
/// past the limit are refused; every message is sized with the wire's encoding against its
/// limit. Crashes (some wiping a disk) force promises and snapshot transfers of large state.
pub fn large() -> Scenario {
    let mut s = Scenario::base(
        "large",
        "3 servers, 3 clients, 8 keys, values up to 1 MiB, 5% loss: crashes (some wiping a disk) every 700 ms",
        3,
    );
    s.keys = 8;
    s.net = NetConfig::mildly_lossy();
    s.faults = FaultPlan::RandomCrashes {
        every: Duration::from_millis(700),
        down_min: Duration::from_millis(50),
        down_max: Duration::from_millis(600),
        all_at_once: 0.1,
        amnesia: 0.3,
    };
    s.safety = Duration::from_secs(4);
    s.think = Duration::from_millis(30);
    s.snapshot_interval = 20;
    s.message_budget = mqpaxos_core::limits::MESSAGE_BUDGET;
    s.snapshot_chunk = mqpaxos_core::limits::SNAPSHOT_CHUNK;
    s.value_size = mqpaxos_core::limits::MAX_VALUE;
    s
}

/// A session table of two for five clients: sessions are evicted all the time, and a
/// retried command of an evicted session must never execute twice.
pub fn sessions() -> Scenario {
    let mut s = Scenario::base(
        "sessions",
        "3 servers, 5 clients, 6 keys, 20% loss, 10% duplicates, a session table of 2: eviction under retries",
        3,
    );
    s.clients = 5;
    // More keys than elsewhere: refused commands are indeterminate, and spreading them keeps
    // the linearizability search per key small.
    s.keys = 6;
    s.net = NetConfig {
        loss: 0.2,
        delay: Duration::from_millis(1),
        jitter: Duration::from_millis(20),
        duplicate: 0.1,
        straggle: 0.0,
        straggle_max: Duration::ZERO,
    };
    s.max_sessions = Some(2);
    s
}

/// A full store: a quota of 6 KiB against values of up to 2 KiB, so writes are refused with
/// `no_space` all the time, under loss, duplicates and crashes. Every replica must refuse
/// exactly the same writes (the quota counts the replicated state), or the replicas split.
pub fn quota() -> Scenario {
    let mut s = Scenario::base(
        "quota",
        "3 servers, 3 clients, 6 keys, values up to 2 KiB, a 6 KiB store quota, 10% loss, 10% duplicates, crashes: writes refused as the store fills",
        3,
    );
    s.keys = 6;
    s.value_size = 2048;
    s.max_store = Some(6 << 10);
    s.net = NetConfig {
        loss: 0.1,
        delay: Duration::from_millis(1),
        jitter: Duration::from_millis(10),
        duplicate: 0.1,
        straggle: 0.0,
        straggle_max: Duration::ZERO,
    };
    s.faults = FaultPlan::RandomCrashes {
        every: Duration::from_millis(900),
        down_min: Duration::from_millis(50),
        down_max: Duration::from_millis(800),
        all_at_once: 0.1,
        amnesia: 0.0,
    };
    s
}

/// Deliberate bugs by name, for `mqpaxos-sim --mutation NAME` (feature `mutations`).
#[cfg(feature = "mutations")]
pub mod mutations {
    use mqpaxos_core::{Config, Mutation};

    macro_rules! table {
        ($($name:literal => $m:ident),* $(,)?) => {
            /// Every mutation's name and the tweak that switches it on.
            pub fn all() -> Vec<(&'static str, fn(&mut Config))> {
                vec![$(($name, {
                    fn tweak(c: &mut Config) {
                        c.mutation = Some(Mutation::$m);
                    }
                    tweak as fn(&mut Config)
                })),*]
            }
        };
    }

    table! {
        "half-quorum" => HalfQuorum,
        "skip-reproposal" => SkipReproposal,
        "trust-lost-state" => TrustLostState,
        "read-without-quorum" => ReadWithoutQuorum,
        "no-check-quorum" => NoCheckQuorum,
        "trust-empty-disk" => TrustEmptyDisk,
        "reply-before-sync" => ReplyBeforeSync,
        "reply-before-its-flush" => ReplyBeforeItsFlush,
        "learn-any-ballot" => LearnAnyBallot,
        "read-joins-running-round" => ReadJoinsRunningRound,
        "no-incarnation-filter" => NoIncarnationFilter,
        "snapshot-without-sessions" => SnapshotWithoutSessions,
        "catch-up-unchosen" => CatchUpUnchosen,
        "early-before-promise" => EarlyBeforePromise,
        "no-pre-vote" => NoPreVote,
    }

    pub fn by_name(name: &str) -> Option<fn(&mut Config)> {
        all().into_iter().find(|(n, _)| *n == name).map(|(_, f)| f)
    }
}

/// Lost disks with very old messages about: as `amnesia-fast`, but one message in 20 is held
/// up to 1.5 s more (a heavy tail), so a promise or an accept made by a server's former self
/// can arrive after it lost its disk, rejoined and voted again in its new incarnation.
pub fn amnesia_slow() -> Scenario {
    let mut s = amnesia_fast();
    s.name = "amnesia-slow";
    s.about = "3 servers, 3 clients, 10% loss, 1-30 ms delay, 5% of messages up to 1.5 s late: quick crashes, most losing the disk";
    s.net = NetConfig {
        loss: 0.1,
        delay: Duration::from_millis(1),
        jitter: Duration::from_millis(30),
        duplicate: 0.1,
        straggle: 0.05,
        straggle_max: Duration::from_millis(1500),
    };
    s
}

/// Lost disks with old messages still about: servers crash and come back within
/// milliseconds, most of them wiped, while the network delays, reorders and duplicates
/// heavily, so a promise or an accept of a server's former self can arrive after it rejoined.
pub fn amnesia_fast() -> Scenario {
    let mut s = Scenario::base(
        "amnesia-fast",
        "3 servers, 3 clients, 10% loss, 20% duplicates, 1-80 ms delay: quick crashes, most losing the disk, old messages still in flight",
        3,
    );
    s.net = NetConfig {
        loss: 0.1,
        delay: Duration::from_millis(1),
        jitter: Duration::from_millis(80),
        duplicate: 0.2,
        straggle: 0.0,
        straggle_max: Duration::ZERO,
    };
    s.faults = FaultPlan::RandomCrashes {
        every: Duration::from_millis(400),
        down_min: Duration::from_millis(5),
        down_max: Duration::from_millis(60),
        all_at_once: 0.0,
        amnesia: 0.8,
    };
    s
}
