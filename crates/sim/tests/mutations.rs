//! A checker that cannot fail proves nothing: break the protocol on purpose and show that
//! the simulator notices within a bounded number of seeds.

use mqpaxos_core::Config;
use mqpaxos_sim::{run_seeds, scenario, Scenario};

mod common;
use common::*;

/// The seeds below `seeds` at which `sc` fails, each with its violations; `what` names the
/// bug and the scenario in the count printed.
fn failures_of(what: &str, sc: &Scenario, seeds: u64) -> Vec<(u64, String)> {
    let b = run_seeds(sc, 0, seeds, 2);
    let f: Vec<(u64, String)> = b
        .failures
        .into_iter()
        .map(|r| (r.seed, r.violations.join("; ")))
        .collect();
    eprintln!(
        "{what}: {} of {seeds} seeds failed; first: {:?}",
        f.len(),
        f.first()
    );
    f
}

/// [`failures_of`] with the bug switched on by `tweak`.
fn failures(
    what: &str,
    mut sc: Scenario,
    tweak: fn(&mut Config),
    seeds: u64,
) -> Vec<(u64, String)> {
    sc.tweak = Some(tweak);
    failures_of(what, &sc, seeds)
}

#[test]
fn a_half_quorum_is_caught_in_the_reference_experiment() {
    let f = failures(
        "half quorum, seed scenario",
        scenario::paper(),
        half_quorum,
        50,
    );
    assert!(!f.is_empty(), "a quorum of N/2 must be caught");
    // Both judges must see it: the replicas' slot-by-slot agreement, and the clients'
    // history on its own (the linearizability checker).
    assert!(f
        .iter()
        .any(|(_, v)| v.contains("executed a different value")));
    assert!(
        f.iter().any(|(_, v)| v.contains("not linearizable")),
        "{f:?}"
    );
}

#[test]
fn a_half_quorum_is_caught_in_the_minority_scenario() {
    let f = failures(
        "half quorum, minority",
        scenario::minority(),
        half_quorum,
        50,
    );
    assert!(!f.is_empty());
}

#[test]
fn a_leader_that_skips_reproposal_is_caught() {
    let f = failures(
        "skip re-proposal, leader-crash",
        scenario::leader_crash(),
        skip_reproposal,
        50,
    );
    assert!(!f.is_empty(), "losing accepted values must be caught");
    assert!(
        f.iter().any(|(_, v)| v.contains("not linearizable")),
        "{f:?}"
    );
}

#[test]
fn acknowledging_before_the_sync_is_caught() {
    let mut sc = scenario::crash_restart();
    sc.unsafe_disk = true;
    let f = failures_of("unsafe disk, crash-restart", &sc, 100);
    assert!(!f.is_empty(), "a missing sync must be caught");
}

#[test]
fn a_server_that_votes_with_lost_state_is_caught() {
    let f = failures(
        "trust lost state, amnesia",
        scenario::amnesia(),
        trust_lost_state,
        200,
    );
    assert!(!f.is_empty(), "voting from a wiped disk must be caught");
}

#[test]
fn a_leader_that_reads_without_confirming_it_leads_is_caught() {
    let f = failures(
        "read without quorum, pause",
        scenario::pause(),
        read_without_quorum,
        100,
    );
    assert!(
        !f.is_empty(),
        "a stale read from a deposed leader must be caught"
    );
    assert!(
        f.iter().any(|(_, v)| v.contains("not linearizable")),
        "{f:?}"
    );
}

/// The simulator checks every message against the sender's disk as it leaves, so a message
/// that vouches for an unsynced promise is caught at once, not only in the rare runs where a
/// crash turns it into two values in one slot.
#[test]
fn messages_sent_before_their_promise_is_durable_are_caught() {
    let f = failures(
        "early before promise, power",
        scenario::power(),
        early_before_promise,
        20,
    );
    assert!(
        f.iter().any(|(_, v)| v.contains("promised on disk")),
        "{f:?}"
    );
}

/// A reply vouches for its write on the leader's disk. A lone server replying before its
/// sync, and a leader replying ahead of the sync of the flush that proposed the command (only
/// commands proposed before an earlier flush may; a lone server executes in the step that
/// proposes), both show a write a crash can still erase.
#[test]
fn replies_before_their_sync_are_caught() {
    let bugs = [
        (
            "reply before sync, single",
            reply_before_sync as fn(&mut Config),
        ),
        ("reply before its flush, single", reply_before_its_flush),
    ];
    for (what, tweak) in bugs {
        let f = failures(what, scenario::single(), tweak, 20);
        assert!(
            f.iter().any(|(_, v)| v.contains("not on disk")),
            "{what}: {f:?}"
        );
    }
}
