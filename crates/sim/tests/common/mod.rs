//! The deliberate bugs the simulator must catch, as scenario tweaks (`Scenario::tweak`).

#![allow(dead_code)] // each test binary uses a different subset

use mqpaxos_core::{Config, Mutation};

macro_rules! mutations {
    ($($name:ident => $m:ident),* $(,)?) => {
        $(
            pub fn $name(c: &mut Config) {
                c.mutation = Some(Mutation::$m);
            }
        )*
    };
}

mutations! {
    half_quorum => HalfQuorum,
    skip_reproposal => SkipReproposal,
    trust_lost_state => TrustLostState,
    read_without_quorum => ReadWithoutQuorum,
    no_check_quorum => NoCheckQuorum,
    trust_empty_disk => TrustEmptyDisk,
    learn_any_ballot => LearnAnyBallot,
    read_joins_running_round => ReadJoinsRunningRound,
    snapshot_without_sessions => SnapshotWithoutSessions,
    catch_up_unchosen => CatchUpUnchosen,
    early_before_promise => EarlyBeforePromise,
    reply_before_sync => ReplyBeforeSync,
    reply_before_its_flush => ReplyBeforeItsFlush,
    no_pre_vote => NoPreVote,
}
