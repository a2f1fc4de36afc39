//! Notes: what an operator wants to read in a server's log (leader changes, elections won and
//! lost, rejoins, snapshot installs), handed out with the other effects of a step.
//!
//! The core writes no log itself (that would be IO, and a logger's timing must never steer
//! the protocol): it only reports that something happened, and whoever drives it decides
//! whether and how to write that down. Notes change nothing; dropping them all is safe, which
//! is what the simulator does.

use crate::ballot::{Ballot, NodeId, Slot};

/// Something that happened in one step, worth a line in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// This server stood for election with `ballot`.
    ElectionStarted { ballot: Ballot },
    /// A majority promised `ballot`: this server leads.
    ElectionWon { ballot: Ballot },
    /// The election for `ballot` ended without a win.
    ElectionLost { ballot: Ballot, why: LostWhy },
    /// This server led in `ballot` and no longer does.
    SteppedDown { ballot: Ballot, why: LostWhy },
    /// The server this one follows changed (`None`: it knows of no leader now).
    LeaderChanged {
        leader: Option<NodeId>,
        ballot: Ballot,
    },
    /// This server may have lost state it acknowledged and does not vote until the others
    /// have brought it up to date.
    RejoinStarted { incarnation: u64 },
    /// Up to date again: it votes from now on.
    RejoinFinished { incarnation: u64, commit: Slot },
    /// The state machine was replaced by a snapshot received from `from`.
    SnapshotInstalled { from: NodeId, next_slot: Slot },
}

/// Why an election or a leadership ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostWhy {
    /// Another server's ballot is higher (it leads, or is standing).
    HigherBallot,
    /// No majority answered within the election timeout.
    NoMajority,
}

impl LostWhy {
    pub fn text(self) -> &'static str {
        match self {
            LostWhy::HigherBallot => "another server's ballot is higher",
            LostWhy::NoMajority => "no majority heard within the election timeout",
        }
    }
}
