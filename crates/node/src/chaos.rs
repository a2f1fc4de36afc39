//! Fault injection in the transport, off by default and switched at run time through the
//! cluster's `chaos` topic (retained JSON, so a server that restarts picks it up again).
//!
//! The actions mirror Chaos Mesh's NetworkChaos (loss, delay, duplicate, partition), applied
//! to what a server receives, so the real code path runs: a message is dropped with
//! probability `loss`, held back `delay` plus up to `jitter`, delivered twice with
//! probability `duplicate`, and peer messages from servers outside this server's partition
//! group are dropped (every server applies the same groups, so a cut is symmetric).

use mqpaxos_core::NodeId;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The faults in force. The default is none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability in 0..=1 that a received message is dropped.
    pub loss: f64,
    /// Fixed delay added to every received message, in milliseconds.
    pub delay_ms: u64,
    /// Uniform extra delay in 0..=jitter_ms.
    pub jitter_ms: u64,
    /// Probability in 0..=1 that a received message is delivered twice.
    pub duplicate: f64,
    /// Partition groups of server ids; servers in different groups cannot talk. Empty: none.
    pub partition: Vec<Vec<NodeId>>,
}

/// Why a chaos setting was ignored. The server logs it and keeps the faults it had: a bad
/// setting must not switch injection off (or on) by accident.
#[derive(Debug, thiserror::Error)]
pub enum FaultsError {
    /// Not JSON, or not the fields of [`Faults`].
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("{name} must be within 0..=1, not {value}")]
    NotAProbability { name: &'static str, value: f64 },
    /// A typo's worth of delay would stall the cluster for hours.
    #[error("delays above 60 s are refused")]
    DelayTooLong,
}

impl Faults {
    pub fn parse(payload: &[u8]) -> Result<Faults, FaultsError> {
        if payload.is_empty() {
            return Ok(Faults::default());
        }
        let f: Faults = serde_json::from_slice(payload)?;
        for (name, value) in [("loss", f.loss), ("duplicate", f.duplicate)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(FaultsError::NotAProbability { name, value });
            }
        }
        if f.delay_ms > 60_000 || f.jitter_ms > 60_000 {
            return Err(FaultsError::DelayTooLong);
        }
        Ok(f)
    }

    pub fn is_none(&self) -> bool {
        *self == Faults::default()
    }

    /// Whether servers `a` and `b` are on the same side of the partition.
    pub fn connected(&self, a: NodeId, b: NodeId) -> bool {
        self.partition.is_empty()
            || self
                .partition
                .iter()
                .any(|g| g.contains(&a) && g.contains(&b))
    }

    /// After which delays copies of one received message are delivered: none if it is lost.
    /// `from` is the sending server, if a server sent it.
    pub fn deliveries(
        &self,
        me: NodeId,
        from: Option<NodeId>,
        rng: &mut impl Rng,
    ) -> Vec<Duration> {
        if let Some(f) = from {
            if !self.connected(me, f) {
                return Vec::new();
            }
        }
        let mut out = Vec::new();
        let delay = |rng: &mut dyn rand::RngCore| {
            let extra = if self.jitter_ms == 0 {
                0
            } else {
                rng.gen_range(0..=self.jitter_ms * 1000)
            };
            Duration::from_micros(self.delay_ms * 1000 + extra)
        };
        if self.loss <= 0.0 || !rng.gen_bool(self.loss.min(1.0)) {
            out.push(delay(rng));
        }
        if self.duplicate > 0.0 && rng.gen_bool(self.duplicate.min(1.0)) {
            out.push(delay(rng));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parse_checks_its_input() {
        assert!(Faults::parse(b"").unwrap().is_none());
        let f = Faults::parse(br#"{"loss":0.2,"delay_ms":10,"partition":[[1,2,3,4],[5,6,7]]}"#)
            .unwrap();
        assert_eq!(f.loss, 0.2);
        assert!(f.connected(1, 4));
        assert!(!f.connected(4, 5));
        assert!(matches!(
            Faults::parse(br#"{"loss":2}"#),
            Err(FaultsError::NotAProbability { name: "loss", .. })
        ));
        assert!(matches!(
            Faults::parse(br#"{"los":0.1}"#),
            Err(FaultsError::Json(_))
        ));
        assert!(matches!(
            Faults::parse(b"nonsense"),
            Err(FaultsError::Json(_))
        ));
        assert!(matches!(
            Faults::parse(br#"{"delay_ms":60001}"#),
            Err(FaultsError::DelayTooLong)
        ));
    }

    #[test]
    fn loss_and_partition_drop_messages() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let f = Faults {
            loss: 0.2,
            delay_ms: 10,
            partition: vec![vec![1, 2], vec![3]],
            ..Faults::default()
        };
        assert!(f.deliveries(1, Some(3), &mut rng).is_empty());
        let n: usize = (0..10_000)
            .map(|_| f.deliveries(1, Some(2), &mut rng).len())
            .sum();
        assert!((7_700..8_300).contains(&n), "{n}");
        let d = f.deliveries(1, None, &mut rng);
        assert!(d.iter().all(|d| *d == Duration::from_millis(10)));
    }
}
