//! Rejoining after lost durable state: incarnations, and a new phase 1 that counts no
//! promise of a server's former self (docs/protocol.md, "Rejoining after lost state").

use super::*;

/// Where a rejoining server is in getting back to voting.
#[derive(Debug)]
pub(super) enum Rejoin {
    /// Asking the others which incarnation they know it by.
    Query { answers: BTreeMap<NodeId, u64> },
    /// Waiting for a leader whose phase 1 was run knowing its new incarnation, or for a
    /// majority of the others to have recorded that incarnation while still *pristine*
    /// (never promised, accepted or executed anything: a new cluster, where there is no
    /// leader to ask). Those acknowledgements are collected here.
    Announce { pristine: BTreeSet<NodeId> },
    /// Re-learning the chosen slots before `through`.
    CatchUp { through: Slot },
}

impl Server {
    pub(super) fn incarnation_of(&self, server: NodeId) -> u64 {
        self.incarnations.get(&server).copied().unwrap_or(0)
    }

    /// Merges what another server knows of incarnations into ours, durably.
    pub(super) fn learn_incarnations(&mut self, known: &Incarnations) {
        for (&server, &incarnation) in known {
            if server == 0
                || server > self.cfg.servers
                || incarnation <= self.incarnation_of(server)
            {
                continue;
            }
            if server == self.cfg.id && self.rejoin.is_none() {
                // Nobody can know of a later incarnation of us than we are; a peer claiming so
                // is confused, and believing it would make our own promises look stale.
                continue;
            }
            self.incarnations.insert(server, incarnation);
            self.persist(PersistOp::Incarnation {
                server,
                incarnation,
            });
        }
    }

    pub(super) fn on_rejoin_info(&mut self, from: NodeId, incarnation: u64) {
        let Some(Rejoin::Query { answers }) = &mut self.rejoin else {
            return;
        };
        answers.insert(from, incarnation);
        // A majority of the cluster not counting ourselves: it shares a member with every
        // majority that ever recorded an earlier incarnation of ours, so the next one is new.
        if !self.cfg.is_quorum(answers.len()) {
            return;
        }
        let known = answers.values().copied().max().unwrap_or(0);
        let incarnation = known.max(self.incarnation()) + 1;
        self.incarnations.insert(self.cfg.id, incarnation);
        self.persist(PersistOp::Incarnation {
            server: self.cfg.id,
            incarnation,
        });
        self.rejoin = Some(Rejoin::Announce {
            pristine: BTreeSet::new(),
        });
        self.send_after(Dest::AllServers, Message::Rejoin { incarnation });
    }

    pub(super) fn on_rejoin(&mut self, now: Duration, from: NodeId, incarnation: u64) {
        self.learn_incarnations(&Incarnations::from([(from, incarnation)]));
        if self.pristine() && self.incarnation_of(from) == incarnation {
            // Nothing was ever decided here, and every promise this server makes from now on
            // carries the new incarnation (recorded durably before this answer leaves), so
            // the rejoining server's forgotten votes can never be counted with ours.
            let msg = Message::Rejoined {
                incarnation,
                ballot: Ballot::ZERO,
                through: 0,
            };
            self.send_after(Dest::Server(from), msg);
            return;
        }
        let Role::Leader(l) = &self.role else {
            return;
        };
        if l.prepared_with.get(&from).copied().unwrap_or(0) >= incarnation {
            let msg = Message::Rejoined {
                incarnation,
                ballot: l.ballot,
                through: l.through,
            };
            // The incarnation we just learned must be durable before we vouch for it.
            self.send_after(Dest::Server(from), msg);
        } else {
            // Our phase 1 counted promises made before this incarnation was known: run it
            // again in a new ballot whose Prepare carries it.
            self.start_election_now(now);
        }
    }

    pub(super) fn on_rejoined(
        &mut self,
        now: Duration,
        from: NodeId,
        incarnation: u64,
        ballot: Ballot,
        through: Slot,
    ) {
        if !matches!(self.rejoin, Some(Rejoin::Announce { .. }))
            || incarnation != self.incarnation()
        {
            // Late, or meant for an earlier attempt of ours.
            return;
        }
        if ballot == Ballot::ZERO {
            // A pristine server recorded our incarnation. Once a majority of the others has,
            // every quorum a candidate can gather includes one of them, whose promise tells
            // the candidate to ignore our former self's; and none of them has accepted
            // anything, so no value was chosen that we could have forgotten.
            let Some(Rejoin::Announce { pristine }) = &mut self.rejoin else {
                return;
            };
            pristine.insert(from);
            if self.cfg.is_quorum(pristine.len()) {
                self.finish_rejoin();
            }
            return;
        }
        // The floor: every ballot below this one has lost a majority, so nothing we forgot
        // promising in one of them can be used against us.
        if !self.follow(now, from, ballot) {
            return;
        }
        self.rejoin = Some(Rejoin::CatchUp { through });
        self.learn_commit(self.leader_commit);
    }

    pub(super) fn finish_rejoin(&mut self) {
        self.rejoin = None;
        self.persist(PersistOp::Rejoining(false));
    }

    /// Whether this server has never promised, accepted or executed anything.
    pub(super) fn pristine(&self) -> bool {
        self.promised == Ballot::ZERO
            && self.commit == 0
            && self.log.start() == 0
            && self.log.is_empty()
    }
}
