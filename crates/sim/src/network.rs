//! The simulated network: loss, delay, duplication, reordering and partitions, all drawn from
//! the simulation's one seeded RNG so that a seed replays bit for bit.

use mqpaxos_core::NodeId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::time::Duration;

/// A node on the simulated network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Addr {
    Server(NodeId),
    /// A client, by index.
    Client(usize),
}

/// How the network misbehaves.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Every message takes `delay` plus a uniform extra in `0..=jitter`. A jitter larger than
    /// the gap between two sends reorders them.
    pub delay: Duration,
    pub jitter: Duration,
    /// Probability that a message is delivered twice (the copy gets its own delay).
    pub duplicate: f64,
    /// Probability that a message straggles: it is held up to `straggle_max` more, as a
    /// broker's queue or a TCP retransmission holds one now and then (a heavy tail). Old
    /// messages then arrive long after their sender crashed, lost its disk and rejoined.
    pub straggle: f64,
    pub straggle_max: Duration,
}

impl NetConfig {
    /// The background of the crash and partition scenarios: 5% loss, 2-4 ms delay.
    pub fn mildly_lossy() -> Self {
        NetConfig {
            loss: 0.05,
            delay: Duration::from_millis(2),
            jitter: Duration::from_millis(2),
            duplicate: 0.0,
            straggle: 0.0,
            straggle_max: Duration::ZERO,
        }
    }

    /// A healthy network: no loss, no duplicates, a small delay.
    pub fn healthy() -> Self {
        NetConfig {
            loss: 0.0,
            delay: Duration::from_millis(1),
            jitter: Duration::from_micros(500),
            duplicate: 0.0,
            straggle: 0.0,
            straggle_max: Duration::ZERO,
        }
    }
}

/// The network's current state.
#[derive(Clone, Debug)]
pub struct Network {
    pub cfg: NetConfig,
    /// When set, servers in different groups cannot talk. Clients reach every server, as in
    /// the reference experiment where only the servers were split.
    pub groups: Option<Vec<BTreeSet<NodeId>>>,
    /// One-way cuts: a message from the first to the second is dropped, while the other
    /// direction works (a half-broken connection, a broker dropping one subscriber's traffic).
    pub one_way: BTreeSet<(Addr, Addr)>,
}

impl Network {
    pub fn new(cfg: NetConfig) -> Self {
        Network {
            cfg,
            groups: None,
            one_way: BTreeSet::new(),
        }
    }

    /// Whether `a` and `b` are on the same side of the current partition.
    pub fn connected(&self, a: Addr, b: Addr) -> bool {
        if self.one_way.contains(&(a, b)) {
            return false;
        }
        let (Addr::Server(x), Addr::Server(y)) = (a, b) else {
            return true;
        };
        match &self.groups {
            None => true,
            Some(groups) => groups.iter().any(|g| g.contains(&x) && g.contains(&y)),
        }
    }

    /// The delays after which copies of one message arrive: none if it is lost or cut off.
    pub fn deliveries(&self, rng: &mut ChaCha8Rng, from: Addr, to: Addr) -> Vec<Duration> {
        if !self.connected(from, to) {
            return Vec::new();
        }
        let mut out = Vec::new();
        if self.cfg.loss <= 0.0 || !rng.gen_bool(self.cfg.loss.min(1.0)) {
            out.push(self.delay(rng));
        }
        if self.cfg.duplicate > 0.0 && rng.gen_bool(self.cfg.duplicate.min(1.0)) {
            out.push(self.delay(rng));
        }
        out
    }

    fn delay(&self, rng: &mut ChaCha8Rng) -> Duration {
        let j = self.cfg.jitter.as_nanos() as u64;
        let extra = if j == 0 { 0 } else { rng.gen_range(0..=j) };
        // Drawn only where configured, so scenarios without stragglers replay as before.
        let s = self.cfg.straggle_max.as_nanos() as u64;
        let tail = if self.cfg.straggle > 0.0 && s > 0 && rng.gen_bool(self.cfg.straggle) {
            rng.gen_range(0..=s)
        } else {
            0
        };
        self.cfg.delay + Duration::from_nanos(extra + tail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn partitions_cut_servers_but_not_clients() {
        let mut n = Network::new(NetConfig::healthy());
        n.groups = Some(vec![BTreeSet::from([1, 2]), BTreeSet::from([3])]);
        assert!(n.connected(Addr::Server(1), Addr::Server(2)));
        assert!(!n.connected(Addr::Server(1), Addr::Server(3)));
        assert!(n.connected(Addr::Client(0), Addr::Server(3)));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!(n
            .deliveries(&mut rng, Addr::Server(3), Addr::Server(1))
            .is_empty());
    }

    #[test]
    fn loss_rate_is_roughly_what_was_asked() {
        let mut cfg = NetConfig::healthy();
        cfg.loss = 0.2;
        let n = Network::new(cfg);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let delivered: usize = (0..10_000)
            .map(|_| {
                n.deliveries(&mut rng, Addr::Server(1), Addr::Server(2))
                    .len()
            })
            .sum();
        assert!((7_700..8_300).contains(&delivered), "{delivered}");
    }
}
