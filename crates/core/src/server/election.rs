//! Phase 1: pre-vote, election, taking office (re-proposing what promises reported), and
//! stepping down (a higher ballot, or check-quorum).

use super::*;

#[derive(Debug)]
pub(super) struct Candidate {
    pub(super) ballot: Ballot,
    /// The incarnations this ballot's Prepare carries (fixed for the ballot, so every promise
    /// for it was made knowing them).
    pub(super) incarnations: Incarnations,
    /// What each server that promised reported as accepted, with the incarnation it promised
    /// in.
    pub(super) promises: BTreeMap<NodeId, (u64, Vec<(Slot, Entry)>)>,
    /// Promises still arriving in parts: what each server reported so far, and which ranges
    /// of slots the parts in so far cover (`from` → end; `None`: to the end of its log).
    pub(super) partial: BTreeMap<NodeId, Partial>,
    /// When the last part of a promise arrived: an election whose promises are still coming
    /// in is not abandoned at its timeout, or with large promises on a lossy network every
    /// ballot would start over before its parts were in.
    pub(super) progress: Option<Duration>,
}

/// A pre-vote under way ([`Message::PreVote`]).
#[derive(Debug)]
pub(super) struct PreVoteRound {
    pub(super) ballot: Ballot,
    pub(super) yes: BTreeSet<NodeId>,
}

/// One part of a promise as sent: the slot it starts at, the entries, where the next starts.
pub(super) type PromisePart = (Slot, Vec<(Slot, Entry)>, Option<Slot>);

/// A promise in parts, as far as it has arrived.
#[derive(Debug, Default)]
pub(super) struct Partial {
    pub(super) entries: BTreeMap<Slot, Entry>,
    pub(super) ranges: BTreeMap<Slot, Option<Slot>>,
}

impl Partial {
    /// How far the parts cover without a gap from `base` on: `None` if to the end (the
    /// promise is whole), else the first slot not covered.
    pub(super) fn reach(&self, base: Slot) -> Option<Slot> {
        let mut reach = base;
        for (from, end) in &self.ranges {
            if *from > reach {
                break;
            }
            match end {
                None => return None,
                Some(e) => reach = reach.max(*e),
            }
        }
        Some(reach)
    }
}

impl Server {
    pub(super) fn on_election_timer(&mut self, now: Duration) {
        if self.rejoin.is_some() {
            // It may not vote, so it may not lead either; look again later.
            self.arm_election_timer(self.cfg.election_timeout);
            return;
        }
        match &self.role {
            Role::Leader(_) => {}
            Role::Candidate(Candidate {
                progress: Some(t), ..
            }) if now < *t + self.cfg.election_timeout => {
                // Parts of promises are still arriving: give them time.
                let left = *t + self.cfg.election_timeout - now;
                self.arm_election_timer(left);
            }
            Role::Candidate(_) => self.start_prevote(now),
            Role::Follower => match self.last_leader_contact {
                Some(t) if now < t + self.cfg.election_timeout => {
                    let left = t + self.cfg.election_timeout - now;
                    self.arm_election_timer(left);
                }
                _ => self.start_prevote(now),
            },
        }
    }

    /// Asks the others whether they would promise before bidding: only a server that a
    /// majority can hear, and that knows of no live leader or candidate, raises ballots.
    /// Without it a server that can send but not hear (a deaf ex-leader, a one-way link)
    /// bids ever higher rounds that the others promise though it can never win, and every
    /// healthy candidate is refused (the `one-way` finding of docs/simulator.md); and a
    /// follower whose patience ran out started a duel with the candidate it had just
    /// promised (the `paper` finding). An election is always safe: this is liveness only.
    pub(super) fn start_prevote(&mut self, now: Duration) {
        if self.cfg.is_quorum(1) {
            // Nobody to ask: the only vote is its own.
            self.prevote = None;
            self.start_election_now(now);
            return;
        }
        #[cfg(feature = "mutations")]
        if self.cfg.mutation == Some(crate::config::Mutation::NoPreVote) {
            self.start_election_now(now);
            return;
        }
        if matches!(self.role, Role::Candidate(_)) {
            // This bid failed; the next one needs a majority's yes like any other.
            self.role = Role::Follower;
        }
        self.leader = None;
        let ballot = self.next_ballot();
        self.prevote = Some(PreVoteRound {
            ballot,
            yes: BTreeSet::new(),
        });
        self.send_now(Dest::AllServers, Message::PreVote { ballot });
        self.set_timer(
            TimerKind::PrepareResend,
            self.cfg.prepare_resend,
            Duration::ZERO,
        );
        // Not enough yeses by then (the others are busy with a leader or candidate of their
        // own, or cannot hear this server): ask again.
        self.arm_election_timer(self.cfg.election_timeout);
    }

    /// The ballot this server would bid next: above every round it has seen.
    pub(super) fn next_ballot(&self) -> Ballot {
        // Rounds above `MAX_ROUND` are refused on arrival, so this cannot overflow.
        let round = self.max_round.max(self.promised.round).saturating_add(1);
        Ballot::new(round, self.cfg.id)
    }

    pub(super) fn on_prevote(&mut self, now: Duration, from: NodeId, ballot: Ballot) {
        if ballot.server != from || self.rejoin.is_some() {
            // A rejoining server may not promise, so it may not say it would.
            return;
        }
        let window = self.cfg.election_timeout;
        let busy = match &self.role {
            // A leader is alive by definition; a candidate's own election is under way (a
            // failed one turns into a pre-vote at its timer).
            Role::Leader(_) | Role::Candidate(_) => true,
            Role::Follower => {
                self.leader_is_alive(now)
                    || self
                        .candidate_seen
                        .is_some_and(|(c, t)| c != from && now < t + window)
            }
        };
        if busy {
            // Silence rather than a refusal: the asker asks again until its timer, and a
            // yes later (the leader died meanwhile) still counts.
            return;
        }
        self.send_now(
            Dest::Server(from),
            Message::PreVoteAck {
                ballot,
                promised: self.promised,
            },
        );
    }

    pub(super) fn on_prevote_ack(
        &mut self,
        now: Duration,
        from: NodeId,
        ballot: Ballot,
        promised: Ballot,
    ) {
        self.max_round = self.max_round.max(promised.round);
        if !matches!(self.role, Role::Follower) || self.leader_is_alive(now) {
            self.prevote = None;
            return;
        }
        let Some(p) = &mut self.prevote else {
            return;
        };
        if p.ballot != ballot {
            // An answer to an earlier pre-vote.
            return;
        }
        p.yes.insert(from);
        if self.cfg.is_quorum(p.yes.len() + 1) {
            self.prevote = None;
            self.start_election_now(now);
        }
    }

    pub(super) fn start_election_now(&mut self, now: Duration) {
        let ballot = self.next_ballot();
        self.max_round = ballot.round;
        self.prevote = None;
        self.candidate_seen = None;
        let incarnations = self.incarnations.clone();
        self.role = Role::Candidate(Candidate {
            ballot,
            incarnations: incarnations.clone(),
            promises: BTreeMap::new(),
            partial: BTreeMap::new(),
            progress: None,
        });
        self.leader = None;
        if self.cfg.is_quorum(1) {
            self.become_leader(now);
            return;
        }
        self.send_now(
            Dest::AllServers,
            Message::Prepare {
                ballot,
                from: self.commit,
                incarnations,
            },
        );
        self.set_timer(
            TimerKind::PrepareResend,
            self.cfg.prepare_resend,
            Duration::ZERO,
        );
        self.arm_election_timer(self.cfg.election_timeout);
    }

    pub(super) fn on_prepare(
        &mut self,
        now: Duration,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        incarnations: Incarnations,
    ) {
        if ballot.server != from {
            // A candidate bids only with its own ballots; anything else is forged or confused.
            return;
        }
        self.max_round = self.max_round.max(ballot.round);
        // Recorded durably before any promise below leaves, which is what makes a promise
        // from an older incarnation of a rejoined server detectable.
        self.learn_incarnations(&incarnations);
        if self.rejoin.is_some() {
            // It may have forgotten what it accepted or promised: a promise now could lie.
            return;
        }
        let own = match &self.role {
            Role::Candidate(c) => c.ballot.max(self.promised),
            _ => self.promised,
        };
        if ballot < own {
            self.send_now(
                Dest::Server(from),
                Message::Nack {
                    ballot,
                    promised: own,
                },
            );
            return;
        }
        if ballot > self.promised {
            if self.leader_is_alive(now) && self.leader != Some(from) {
                // A healthy leader is in charge; helping this candidate would only unseat it.
                return;
            }
            self.promised = ballot;
            self.persist(PersistOp::Promise(ballot));
            self.role = Role::Follower;
            self.leader = None;
            self.prevote = None;
            // Give the candidate an election timeout to finish before trying ourselves.
            self.last_leader_contact = Some(now);
            self.candidate_seen = Some((from, now));
            self.arm_election_timer(self.cfg.election_timeout);
        } else if matches!(self.role, Role::Follower) && self.leader.is_none() {
            // The candidate promised asks again: its election is alive, so wait for it (it
            // stops asking at its own timeout, so this patience is bounded).
            self.last_leader_contact = Some(now);
            self.candidate_seen = Some((from, now));
        }
        // ballot == promised: a first promise, a resent Prepare or one asking for the next
        // part; the answer is the same for the same `from`.
        if slot < self.log.start() {
            // Slots the candidate lacks were truncated here: it gets the state first, and
            // the promise when it asks again from its new commit point.
            self.send_snapshot(from, true);
            return;
        }
        // Every part at once (one round trip, not one per part); each names the range it
        // covers, so the candidate can tell when it has them all.
        for (first, accepted, more) in self.promise_parts(slot) {
            self.send_after(
                Dest::Server(from),
                Message::Promise {
                    ballot,
                    from: first,
                    accepted,
                    more,
                    incarnations: self.incarnations.clone(),
                },
            );
        }
    }

    /// What to report to a candidate that knows every slot before `from`: the accepted
    /// entries from there, in parts of at most `message_budget` bytes (at least one entry
    /// each), with the slot each part starts at and the slot the next one starts at.
    pub(super) fn promise_parts(&self, from: Slot) -> Vec<PromisePart> {
        let mut parts = Vec::new();
        let mut first = from;
        let mut accepted = Vec::new();
        let mut bytes = 0;
        for (slot, e) in self.log.iter_from(from) {
            let n = crate::limits::entry_size(e);
            if !accepted.is_empty() && bytes + n > self.cfg.message_budget {
                parts.push((first, std::mem::take(&mut accepted), Some(slot)));
                first = slot;
                bytes = 0;
            }
            bytes += n;
            accepted.push((slot, e.clone()));
        }
        parts.push((first, accepted, None));
        parts
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_promise(
        &mut self,
        now: Duration,
        from: NodeId,
        ballot: Ballot,
        first: Slot,
        accepted: Vec<(Slot, Entry)>,
        more: Option<Slot>,
        incarnations: Incarnations,
    ) {
        let Role::Candidate(c) = &self.role else {
            return;
        };
        if c.ballot != ballot || c.promises.contains_key(&from) {
            // A promise for another round, perhaps delayed from an earlier one: it was made
            // under different conditions and must never count for this round. (Or a copy of
            // one already counted.)
            return;
        }
        let promised_as = incarnations.get(&from).copied().unwrap_or(0);
        self.learn_incarnations(&incarnations);
        let commit = self.commit;
        let Role::Candidate(c) = &mut self.role else {
            return;
        };
        if more.is_some_and(|n| n <= first) {
            // A part that claims to end before it starts: not one we can count.
            return;
        }
        // The parts (sent all at once, arriving in any order, some perhaps lost and asked for
        // again on the resend timer) count once they join up without a gap from our commit
        // point to the end, or an accepted value could go unreported.
        let part = c.partial.entry(from).or_default();
        part.entries.extend(accepted);
        part.ranges.insert(first, more);
        c.progress = Some(now);
        if part.reach(commit).is_some() {
            return;
        }
        let Some(part) = c.partial.remove(&from) else {
            return;
        };
        c.promises
            .insert(from, (promised_as, part.entries.into_iter().collect()));
        let Role::Candidate(c) = &self.role else {
            return;
        };
        // The candidate's own vote makes the majority. A promise from an incarnation older
        // than one heard of since was given by a server that has forgotten it: it counts no
        // more than a promise that was never made.
        let current = c
            .promises
            .iter()
            .filter(|(p, (inc, _))| self.promise_counts(**p, *inc))
            .count();
        if self.cfg.is_quorum(current + 1) {
            self.become_leader(now);
        }
    }

    /// Whether a promise that `server` made as incarnation `incarnation` still counts: not
    /// if that server has rejoined since (it has forgotten making it).
    pub(super) fn promise_counts(&self, server: NodeId, incarnation: u64) -> bool {
        #[cfg(feature = "mutations")]
        if self
            .cfg
            .mutated(crate::config::Mutation::NoIncarnationFilter)
        {
            return true;
        }
        incarnation >= self.incarnation_of(server)
    }

    pub(super) fn become_leader(&mut self, now: Duration) {
        let Role::Candidate(c) = std::mem::replace(&mut self.role, Role::Follower) else {
            return;
        };
        let ballot = c.ballot;
        if self.promised > ballot {
            // We promised a higher ballot meanwhile, so we may not vote for our own.
            return;
        }
        if self.promised < ballot {
            self.promised = ballot;
            self.persist(PersistOp::Promise(ballot));
        }
        let own = self.log.iter_from(self.commit).map(|(s, e)| (s, e.clone()));
        let reproposes = {
            #[cfg(feature = "mutations")]
            {
                self.cfg.mutation != Some(crate::config::Mutation::SkipReproposal)
            }
            #[cfg(not(feature = "mutations"))]
            {
                true
            }
        };
        let reports: Vec<(Slot, Entry)> = if reproposes {
            c.promises
                .into_iter()
                .filter(|(p, (inc, _))| self.promise_counts(*p, *inc))
                .flat_map(|(_, (_, accepted))| accepted)
                .collect()
        } else {
            Vec::new()
        };
        let chosen = reproposals(self.commit, own, reports);
        let end = self.commit + chosen.len() as Slot;
        let mut leader = Leader {
            ballot,
            // Nothing in flight yet: the re-proposals go out a window at a time, below.
            next_slot: self.commit,
            inflight: BTreeMap::new(),
            reproposals: VecDeque::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            proposed: BTreeSet::new(),
            prepared_with: c.incarnations,
            through: end,
            reads: Reads::default(),
            since: now,
            judged_from: now,
            last_tick: now,
            heard: BTreeMap::new(),
            flushed_below: 0,
        };
        for value in chosen {
            for cmd in &value {
                leader.proposed.insert((cmd.client.clone(), cmd.seq));
            }
            leader.reproposals.push_back(value);
        }
        self.role = Role::Leader(leader);
        self.leader = Some(self.cfg.id);
        self.leader_ballot = ballot;
        // The first window of re-proposals (the rest follow as slots are chosen; commands
        // that arrive meanwhile queue behind them).
        self.propose_queued(now);
        self.send_now(
            Dest::AllServers,
            Message::Heartbeat {
                ballot,
                commit: self.commit,
            },
        );
        self.set_timer(TimerKind::Heartbeat, self.cfg.heartbeat, Duration::ZERO);
        self.set_timer(
            TimerKind::AcceptResend,
            self.cfg.accept_resend,
            Duration::ZERO,
        );
        // Requests that reached us while another led (or nobody did): a client of a dead
        // leader is still waiting for them. At most once holds as for any retry: the session
        // table answers one already executed with its result.
        for cmd in self.recent.take(now, self.cfg.election_timeout) {
            self.on_request(now, cmd);
        }
    }

    /// Leader: whether fewer than a majority (itself included) have been heard from within
    /// the last election timeout, after leading for at least that long.
    pub(super) fn lost_quorum(&self, now: Duration) -> bool {
        #[cfg(feature = "mutations")]
        if self.cfg.mutation == Some(crate::config::Mutation::NoCheckQuorum) {
            return false;
        }
        let Role::Leader(l) = &self.role else {
            return false;
        };
        let window = self.cfg.election_timeout;
        if now.saturating_sub(l.judged_from) < window {
            return false;
        }
        let heard = l
            .heard
            .values()
            .filter(|t| now.saturating_sub(**t) < window)
            .count();
        !self.cfg.is_quorum(heard + 1)
    }

    /// Stops leading; the election timer picks the next leader (perhaps this one again, once
    /// it hears a majority).
    pub(super) fn step_down(&mut self, now: Duration) {
        self.role = Role::Follower;
        self.leader = None;
        self.last_leader_contact = Some(now);
        self.arm_election_timer(self.cfg.election_timeout);
    }

    pub(super) fn on_nack(&mut self, now: Duration, ballot: Ballot, promised: Ballot) {
        self.max_round = self.max_round.max(promised.round);
        let mine = match &self.role {
            Role::Leader(l) => l.ballot,
            _ => return,
        };
        if ballot == mine && promised > mine {
            // Someone has moved on to a higher ballot: this leadership cannot decide anything
            // more. Stand down and let the election timer pick the next leader.
            self.step_down(now);
        }
    }
}

/// What a new leader re-proposes, slot by slot from `commit` on: for every slot, the value
/// with the highest ballot among its own log (`own`) and the majority's reports (the only
/// value that may have been chosen there), a no-op where nobody holds one, up to the highest
/// slot anyone holds. Reports below `commit` are of slots known chosen, so they are ignored.
/// Pure, so the rule that keeps chosen values chosen is tested on its own.
pub(super) fn reproposals(
    commit: Slot,
    own: impl IntoIterator<Item = (Slot, Entry)>,
    reports: impl IntoIterator<Item = (Slot, Entry)>,
) -> Vec<Value> {
    let mut best: BTreeMap<Slot, Entry> = BTreeMap::new();
    for (slot, entry) in own.into_iter().chain(reports) {
        if slot < commit {
            continue;
        }
        match best.get(&slot) {
            Some(b) if b.ballot >= entry.ballot => {}
            _ => {
                best.insert(slot, entry);
            }
        }
    }
    let end = best.last_key_value().map_or(commit, |(s, _)| *s + 1);
    (commit..end)
        .map(|slot| best.remove(&slot).map(|e| e.value).unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::reproposals;
    use crate::kv::{Command, Op};
    use crate::{Ballot, Entry};

    fn entry(round: u64, v: &str) -> Entry {
        Entry {
            ballot: Ballot::new(round, 1),
            value: vec![Command {
                client: "c".into(),
                seq: round,
                op: Op::Put {
                    key: "k".into(),
                    value: v.into(),
                },
            }],
        }
    }

    #[test]
    fn the_highest_ballot_wins_each_slot_wherever_it_was_reported() {
        let own = vec![(5, entry(2, "own")), (6, entry(4, "own-newer"))];
        let reports = vec![(5, entry(3, "report")), (6, entry(1, "report-older"))];
        let got = reproposals(5, own, reports);
        assert_eq!(
            got,
            vec![entry(3, "report").value, entry(4, "own-newer").value]
        );
    }

    #[test]
    fn gaps_become_no_ops_and_chosen_slots_are_left_out() {
        let reports = vec![(2, entry(9, "chosen already")), (7, entry(1, "late"))];
        let got = reproposals(4, Vec::new(), reports);
        assert_eq!(got.len(), 4, "slots 4 to 7");
        assert!(got[..3].iter().all(Vec::is_empty), "no-ops in 4, 5, 6");
        assert_eq!(got[3], entry(1, "late").value);
    }

    #[test]
    fn nothing_reported_nothing_reproposed() {
        assert!(reproposals(10, Vec::new(), Vec::new()).is_empty());
        // An equal ballot keeps the first seen (the same value: one ballot proposes one).
        let got = reproposals(0, vec![(0, entry(1, "a"))], vec![(0, entry(1, "a"))]);
        assert_eq!(got, vec![entry(1, "a").value]);
    }
}
