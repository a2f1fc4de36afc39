//! Reads without the log (read index): a get is answered once a majority confirms, after it
//! arrived, that this server still leads, and once everything chosen before it is executed.

use super::*;

/// A leader's gets in waiting. Each needs (1) a majority to confirm, in a round that started
/// after the get arrived, that this leader still leads, and (2) execution up to the commit
/// point it saw on arrival; then it is answered from the state machine.
#[derive(Debug, Default)]
pub(super) struct Reads {
    pub(super) waiting: Vec<Read>,
    /// The latest round started, and who has confirmed it (the leader itself included).
    pub(super) round: u64,
    pub(super) acks: BTreeSet<NodeId>,
    /// The latest round a majority confirmed.
    pub(super) confirmed: u64,
}

#[derive(Debug)]
pub(super) struct Read {
    pub(super) cmd: Command,
    /// Everything chosen before the get arrived lies before this slot.
    pub(super) index: Slot,
    /// The first round that started after it arrived.
    pub(super) round: u64,
}

impl Server {
    pub(super) fn start_read_round(&mut self) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        l.reads.round += 1;
        l.reads.acks = BTreeSet::from([self.cfg.id]);
        let msg = Message::ReadIndex {
            ballot: l.ballot,
            round: l.reads.round,
        };
        self.send_now(Dest::AllServers, msg);
        self.confirm_reads(self.cfg.id);
    }

    pub(super) fn on_read_index(
        &mut self,
        now: Duration,
        from: NodeId,
        ballot: Ballot,
        round: u64,
    ) {
        // A rejoining server may have forgotten a higher promise, so its word is worthless.
        if self.rejoin.is_some() || !self.follow(now, from, ballot) {
            return;
        }
        // After any promise `follow` made durable.
        self.send_after(Dest::Server(from), Message::ReadAck { ballot, round });
    }

    /// Counts `from`'s confirmation of the current read round.
    pub(super) fn confirm_reads(&mut self, from: NodeId) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        l.reads.acks.insert(from);
        if !self.cfg.is_quorum(l.reads.acks.len()) || l.reads.confirmed == l.reads.round {
            return;
        }
        l.reads.confirmed = l.reads.round;
        let more = l.reads.waiting.iter().any(|r| r.round > l.reads.confirmed);
        self.serve_reads();
        if more {
            self.start_read_round();
        }
    }

    pub(super) fn on_read_ack(&mut self, from: NodeId, ballot: Ballot, round: u64) {
        match &self.role {
            Role::Leader(l) if l.ballot == ballot && l.reads.round == round => {}
            // For another ballot or an earlier round: it proves nothing about this one.
            _ => return,
        }
        self.confirm_reads(from);
    }

    /// Answers every get whose round is confirmed and whose index is executed.
    pub(super) fn serve_reads(&mut self) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if l.reads.waiting.is_empty() {
            // Called on every commit: nothing to sort through without gets waiting.
            return;
        }
        #[cfg(feature = "mutations")]
        let unconfirmed = self.cfg.mutation == Some(crate::config::Mutation::ReadWithoutQuorum);
        #[cfg(not(feature = "mutations"))]
        let unconfirmed = false;
        let (confirmed, commit) = (l.reads.confirmed, self.commit);
        let (ready, waiting): (Vec<Read>, Vec<Read>) = std::mem::take(&mut l.reads.waiting)
            .into_iter()
            .partition(|r| unconfirmed || (r.round <= confirmed && r.index <= commit));
        l.reads.waiting = waiting;
        for r in &ready {
            l.proposed.remove(&(r.cmd.client.clone(), r.cmd.seq));
            l.queued_bytes = l
                .queued_bytes
                .saturating_sub(crate::limits::command_size(&r.cmd));
        }
        for r in ready {
            let result = match &r.cmd.op {
                crate::kv::Op::SnapshotPiece { at, offset } => self.backup_piece(*at, *offset),
                crate::kv::Op::Changes { key, prefix, from } => {
                    self.changes_since(key, *prefix, *from)
                }
                op => match self.kv.read(op) {
                    Some(result) => result,
                    None => continue,
                },
            };
            let msg = Message::Reply {
                client: r.cmd.client.clone(),
                seq: r.cmd.seq,
                result,
            };
            // After the sync: the state read may include writes this group committed, which
            // with a quorum of one are durable nowhere until then.
            self.send_reply(Dest::Client(r.cmd.client), msg);
        }
    }
}
