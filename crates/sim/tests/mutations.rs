//! A checker that cannot fail proves nothing: break the protocol on purpose and show that
//! the simulator notices within a bounded number of seeds.

use mqpaxos_core::{Config, Mutation};
use mqpaxos_sim::{run_seeds, scenario, Scenario};

fn half_quorum(c: &mut Config) {
    c.mutation = Some(Mutation::HalfQuorum);
}

fn skip_reproposal(c: &mut Config) {
    c.mutation = Some(Mutation::SkipReproposal);
}

fn trust_lost_state(c: &mut Config) {
    c.mutation = Some(Mutation::TrustLostState);
}

fn failures(mut sc: Scenario, tweak: fn(&mut Config), seeds: u64) -> Vec<(u64, String)> {
    sc.tweak = Some(tweak);
    let b = run_seeds(&sc, 0, seeds, 2);
    b.failures
        .into_iter()
        .map(|r| (r.seed, r.violations.join("; ")))
        .collect()
}

#[test]
fn a_half_quorum_is_caught_in_the_reference_experiment() {
    let f = failures(scenario::paper(), half_quorum, 50);
    eprintln!(
        "half quorum, seed scenario: {} of 50 seeds failed; first: {:?}",
        f.len(),
        f.first()
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
    let f = failures(scenario::minority(), half_quorum, 50);
    eprintln!(
        "half quorum, minority: {} of 50 seeds failed; first: {:?}",
        f.len(),
        f.first()
    );
    assert!(!f.is_empty());
}

#[test]
fn a_leader_that_skips_reproposal_is_caught() {
    let f = failures(scenario::leader_crash(), skip_reproposal, 50);
    eprintln!(
        "skip re-proposal, leader-crash: {} of 50 seeds failed; first: {:?}",
        f.len(),
        f.first()
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
    let b = run_seeds(&sc, 0, 100, 2);
    let f: Vec<(u64, String)> = b
        .failures
        .into_iter()
        .map(|r| (r.seed, r.violations.join("; ")))
        .collect();
    eprintln!(
        "unsafe disk, crash-restart: {} of 100 seeds failed; first: {:?}",
        f.len(),
        f.first()
    );
    assert!(!f.is_empty(), "a missing sync must be caught");
}

#[test]
fn a_server_that_votes_with_lost_state_is_caught() {
    let f = failures(scenario::amnesia(), trust_lost_state, 200);
    eprintln!(
        "trust lost state, amnesia: {} of 200 seeds failed; first: {:?}",
        f.len(),
        f.first()
    );
    assert!(!f.is_empty(), "voting from a wiped disk must be caught");
}

fn read_without_quorum(c: &mut Config) {
    c.mutation = Some(Mutation::ReadWithoutQuorum);
}

#[test]
fn a_leader_that_reads_without_confirming_it_leads_is_caught() {
    let f = failures(scenario::pause(), read_without_quorum, 100);
    eprintln!(
        "read without quorum, pause: {} of 100 seeds failed; first: {:?}",
        f.len(),
        f.first()
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

fn early_before_promise(c: &mut Config) {
    c.mutation = Some(Mutation::EarlyBeforePromise);
}

fn reply_before_sync(c: &mut Config) {
    c.mutation = Some(Mutation::ReplyBeforeSync);
}

/// The simulator checks every message against the sender's disk as it leaves, so a message
/// that vouches for an unsynced promise is caught at once, not only in the rare runs where a
/// crash turns it into two values in one slot.
#[test]
fn messages_sent_before_their_promise_is_durable_are_caught() {
    let f = failures(scenario::power(), early_before_promise, 20);
    eprintln!(
        "early before promise, power: {} of 20 seeds failed; first: {:?}",
        f.len(),
        f.first()
    );
    assert!(
        f.iter().any(|(_, v)| v.contains("promised on disk")),
        "{f:?}"
    );
}

#[test]
fn a_lone_server_replying_before_its_sync_is_caught() {
    let f = failures(scenario::single(), reply_before_sync, 20);
    eprintln!(
        "reply before sync, single: {} of 20 seeds failed; first: {:?}",
        f.len(),
        f.first()
    );
    assert!(f.iter().any(|(_, v)| v.contains("not on disk")), "{f:?}");
}
