//! Phase 2: following a leader, accepting, proposing commands into slots, resending, and
//! learning the commit point.

use super::*;

#[derive(Debug)]
pub(super) struct Inflight {
    pub(super) value: Value,
    pub(super) acks: BTreeSet<NodeId>,
    pub(super) sent_at: Duration,
    /// How often it was sent again: each resend of a large slot waits twice as long as the
    /// last (up to [`MAX_RESEND_SHIFT`] doublings), so a follower that is slow rather than
    /// cut off is not buried under copies of megabytes it is still working through. Small
    /// slots keep the fixed interval: on a lossy network a lost Accept is the likelier cause,
    /// and waiting longer only delays the commit (the `paper` scenario's 4-of-7 majority,
    /// which needs every one of its acknowledgements, made no progress for 2 s at seed 236).
    pub(super) resends: u32,
    pub(super) bytes: usize,
}

/// At most `accept_resend` × 2^this between resends of one large slot.
const MAX_RESEND_SHIFT: u32 = 3;
/// A slot of this many bytes or more is large (see [`Inflight::resends`]).
const LARGE_SLOT: usize = 64 << 10;

impl Inflight {
    /// Just proposed by leader `me`, whose own acceptance counts at once.
    pub(super) fn proposed(value: Value, me: NodeId, now: Duration) -> Self {
        Inflight {
            bytes: crate::limits::value_size(&value),
            value,
            acks: BTreeSet::from([me]),
            sent_at: now,
            resends: 0,
        }
    }

    /// Whether it is due to be sent again.
    fn resend_due(&self, now: Duration, base: Duration) -> bool {
        let shift = if self.bytes >= LARGE_SLOT {
            self.resends.min(MAX_RESEND_SHIFT)
        } else {
            0
        };
        now.saturating_sub(self.sent_at) >= base * (1 << shift)
    }
}

impl Server {
    /// Accepts the authority of the leader of `ballot`, if that ballot is not below what was
    /// promised. Returns whether the message should be acted on.
    pub(super) fn follow(&mut self, now: Duration, from: NodeId, ballot: Ballot) -> bool {
        self.max_round = self.max_round.max(ballot.round);
        if ballot < self.promised || ballot.server != from {
            self.send_now(
                Dest::Server(from),
                Message::Nack {
                    ballot,
                    promised: self.promised,
                },
            );
            return false;
        }
        if ballot > self.promised {
            self.promised = ballot;
            self.persist(PersistOp::Promise(ballot));
        }
        if !matches!(self.role, Role::Follower) {
            // A leader of an equal or higher ballot exists; our own bid or reign is over.
            self.role = Role::Follower;
            self.arm_election_timer(self.cfg.election_timeout);
        }
        if self.leader_ballot != ballot {
            self.leader_ballot = ballot;
            self.leader_commit = 0;
        }
        self.leader = Some(from);
        self.last_leader_contact = Some(now);
        // A leader speaks: no election of its own, and no candidate to wait for.
        self.prevote = None;
        self.candidate_seen = None;
        true
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_accept(
        &mut self,
        now: Duration,
        from: NodeId,
        ballot: Ballot,
        first: Slot,
        values: Vec<Value>,
        commit: Slot,
    ) {
        if !self.follow(now, from, ballot) {
            return;
        }
        if self.rejoin.is_some() {
            // Not voting: only the commit point is of use, to re-learn chosen slots.
            self.learn_commit(commit);
            return;
        }
        let count = values.len() as u64;
        let limit = self.commit + self.cfg.max_log_span();
        if first.saturating_add(count) > limit {
            // Too far ahead of us: catch up first; the leader resends.
            self.learn_commit(commit);
            return;
        }
        for (i, value) in values.into_iter().enumerate() {
            let slot = first + i as Slot;
            if slot < self.commit {
                // Chosen and executed here already; the leader's value is the chosen one, so
                // acknowledging it is still true.
                continue;
            }
            self.store(slot, Entry { ballot, value });
        }
        if count > 0 {
            self.send_after(
                Dest::Server(from),
                Message::Accepted {
                    ballot,
                    first,
                    count,
                },
            );
        }
        self.learn_commit(commit);
    }

    pub(super) fn on_accepted(
        &mut self,
        now: Duration,
        from: NodeId,
        ballot: Ballot,
        first: Slot,
        count: u64,
    ) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if l.ballot != ballot {
            // An acknowledgement for another ballot never counts for this one.
            return;
        }
        let end = first.saturating_add(count);
        for (_, inf) in l.inflight.range_mut(first..end) {
            inf.acks.insert(from);
        }
        self.try_commit(now);
    }

    pub(super) fn propose_queued(&mut self, now: Duration) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let ballot = l.ballot;
        let first = l.next_slot;
        let mut values = Vec::new();
        let mut inflight_bytes: usize = l.inflight.values().map(|i| i.bytes).sum();
        while l.inflight.len() < self.cfg.window
            && (l.inflight.is_empty() || inflight_bytes < self.cfg.window_bytes)
            && !(l.reproposals.is_empty() && l.queue.is_empty())
        {
            // What phase 1 found goes first, one slot each as it was: every new command
            // belongs after it.
            let (value, bytes) = match l.reproposals.pop_front() {
                Some(value) => {
                    let bytes = crate::limits::value_size(&value);
                    (value, bytes)
                }
                None => {
                    // At most `max_batch` commands and `MAX_SLOT` bytes, at least one command
                    // (which always fits: requests are checked against `MAX_COMMAND` on
                    // arrival).
                    let mut value: Value = Vec::new();
                    let mut bytes = 0;
                    while value.len() < self.cfg.max_batch {
                        let Some(next) = l.queue.front() else {
                            break;
                        };
                        let n = crate::limits::command_size(next);
                        if !value.is_empty() && bytes + n > crate::limits::MAX_SLOT {
                            break;
                        }
                        bytes += n;
                        if let Some(cmd) = l.queue.pop_front() {
                            value.push(cmd);
                        }
                    }
                    l.queued_bytes = l.queued_bytes.saturating_sub(bytes);
                    (value, bytes)
                }
            };
            inflight_bytes += bytes;
            let slot = l.next_slot;
            l.next_slot += 1;
            l.inflight
                .insert(slot, Inflight::proposed(value.clone(), self.cfg.id, now));
            values.push(value);
        }
        if values.is_empty() {
            return;
        }
        for (i, value) in values.iter().enumerate() {
            let slot = first + i as Slot;
            let entry = Entry {
                ballot,
                value: value.clone(),
            };
            self.store(slot, entry);
        }
        self.send_accepts(ballot, first, values);
        self.try_commit(now);
    }

    /// Sends Accepts for consecutive slots from `first`, at most `max_batch` slots and
    /// `message_budget` bytes a message.
    pub(super) fn send_accepts(&mut self, ballot: Ballot, first: Slot, values: Vec<Value>) {
        self.send_accepts_to(Dest::AllServers, ballot, first, values);
    }

    fn send_accepts_to(&mut self, to: Dest, ballot: Ballot, first: Slot, values: Vec<Value>) {
        let mut slot = first;
        let runs = crate::limits::chunk_by_size(
            values,
            self.cfg.message_budget,
            crate::limits::value_size,
        );
        for run in runs {
            let mut run = run.into_iter().peekable();
            while run.peek().is_some() {
                let chunk: Vec<Value> = run.by_ref().take(self.cfg.max_batch).collect();
                let n = chunk.len() as Slot;
                self.send_now(
                    to.clone(),
                    Message::Accept {
                        ballot,
                        first: slot,
                        values: chunk,
                        commit: self.commit,
                    },
                );
                slot += n;
            }
        }
    }

    pub(super) fn resend_accepts(&mut self, now: Duration) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let ballot = l.ballot;
        let base = self.cfg.accept_resend;
        let mut first = None;
        let mut values = Vec::new();
        let mut missing = BTreeSet::new();
        // The in-flight slots are consecutive; resend the run from the first one that is due,
        // to the servers that have not acknowledged all of it.
        for (slot, inf) in l.inflight.iter_mut() {
            if first.is_none() && !inf.resend_due(now, base) {
                continue;
            }
            first.get_or_insert(*slot);
            inf.sent_at = now;
            inf.resends += 1;
            values.push(inf.value.clone());
            missing.extend((1..=self.cfg.servers).filter(|q| !inf.acks.contains(q)));
        }
        let unconfirmed_round = (l.reads.confirmed < l.reads.round).then_some(l.reads.round);
        if let Some(first) = first {
            if missing.len() + 1 >= self.cfg.servers as usize {
                self.send_accepts(ballot, first, values);
            } else {
                // Not one publish to all: the others already hold it, and values can be large.
                for q in missing {
                    self.send_accepts_to(Dest::Server(q), ballot, first, values.clone());
                }
            }
        }
        if let Some(round) = unconfirmed_round {
            self.send_now(Dest::AllServers, Message::ReadIndex { ballot, round });
        }
        self.set_timer(
            TimerKind::AcceptResend,
            self.cfg.accept_resend,
            Duration::ZERO,
        );
    }

    /// Leader: executes every slot at the commit point that a majority has accepted.
    pub(super) fn try_commit(&mut self, now: Duration) {
        let mut advanced = false;
        loop {
            let Role::Leader(l) = &mut self.role else {
                return;
            };
            let Some(entry) = l.inflight.first_entry() else {
                break;
            };
            if *entry.key() != self.commit || !self.cfg.is_quorum(entry.get().acks.len()) {
                break;
            }
            let inf = entry.remove();
            let slot = self.commit;
            self.execute(slot, &inf.value);
            self.commit += 1;
            advanced = true;
        }
        if advanced {
            self.maybe_snapshot();
            self.serve_reads();
            self.propose_queued(now);
        }
    }

    /// Follower: the leader says every slot before `commit` is chosen. Those we hold in the
    /// leader's ballot carry the leader's (hence the chosen) value; for the others we must ask.
    pub(super) fn learn_commit(&mut self, commit: Slot) {
        self.leader_commit = self.leader_commit.max(commit);
        let mut advanced = false;
        while self.commit < self.leader_commit {
            let Some(e) = self.log.get(self.commit) else {
                break;
            };
            #[cfg(feature = "mutations")]
            let any = self.cfg.mutated(crate::config::Mutation::LearnAnyBallot);
            #[cfg(not(feature = "mutations"))]
            let any = false;
            if !any && e.ballot != self.leader_ballot && e.ballot != Ballot::CHOSEN {
                break;
            }
            let value = e.value.clone();
            self.execute(self.commit, &value);
            self.commit += 1;
            advanced = true;
        }
        if advanced {
            self.maybe_snapshot();
        }
        if self.commit < self.leader_commit {
            // Wait a moment before asking: the missing Accept may merely be late.
            self.arm_catchup();
        }
    }
}
