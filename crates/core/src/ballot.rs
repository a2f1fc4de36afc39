//! Ballots: the totally ordered numbers that Paxos phases are fought with.
//!
//! A ballot is `(round, server)`: rounds are compared first and the server id breaks ties, so
//! two servers can never pick the same ballot. Pure data; no IO.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A server's id: servers are numbered `1..=N` as in the seed (server1, server2, ...).
pub type NodeId = u32;

/// A position in the replicated log.
pub type Slot = u64;

/// A Paxos ballot. The derived order compares `round` first, then `server`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    pub round: u64,
    pub server: NodeId,
}

impl Ballot {
    /// The ballot every acceptor starts out having promised: lower than any real ballot.
    pub const ZERO: Ballot = Ballot {
        round: 0,
        server: 0,
    };

    /// Marks a log entry that this replica learned as *chosen* (from a leader's catch-up or a
    /// snapshot) rather than accepted in some ballot. Reporting a chosen value with the highest
    /// possible ballot is safe: once a value is chosen, every higher ballot carries that value,
    /// so a candidate picking the highest-ballot entry picks it anyway.
    pub const CHOSEN: Ballot = Ballot {
        round: u64::MAX,
        server: NodeId::MAX,
    };

    /// The highest round a server accepts from a peer. Honest servers count rounds up from 1
    /// and never get near it; refusing anything above leaves room for every increment.
    pub const MAX_ROUND: u64 = u64::MAX / 4;

    pub fn new(round: u64, server: NodeId) -> Self {
        Ballot { round, server }
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Ballot::CHOSEN {
            write!(f, "chosen")
        } else {
            write!(f, "{}.{}", self.round, self.server)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_order_before_server_ids() {
        assert!(Ballot::new(2, 1) > Ballot::new(1, 7));
        assert!(Ballot::new(1, 2) > Ballot::new(1, 1));
        assert!(Ballot::ZERO < Ballot::new(0, 1));
        assert!(Ballot::CHOSEN > Ballot::new(u64::MAX - 1, 9));
    }
}
