//! Seeds that once failed stay here for good.
//!
//! The correct protocol has not failed a seed yet; when one does, add
//! `(scenario, seed)` to `FIXED` after the fix. The broken protocols' first failing seeds are
//! kept as well: they pin down that the simulator and checker go on catching those bugs at
//! exactly those seeds.

use mqpaxos_core::{Config, Mutation};
use mqpaxos_sim::{run_seed, scenario};

/// The first seed of the seed scenario at which the checker alone (the history) catches a
/// quorum of N/2.
const HALF_QUORUM_SEED: u64 = 2;

/// Seeds of the correct protocol that once failed and must now pass.
const FIXED: &[(&str, u64)] = &[];

#[test]
fn fixed_seeds_pass() {
    for (name, seed) in FIXED {
        let sc = scenario::by_name(name).expect("scenario exists");
        let r = run_seed(&sc, *seed);
        assert!(r.ok(), "{name} seed {seed}: {:?}", r.violations);
    }
}

fn half_quorum(c: &mut Config) {
    c.mutation = Some(Mutation::HalfQuorum);
}

fn skip_reproposal(c: &mut Config) {
    c.mutation = Some(Mutation::SkipReproposal);
}

fn trust_lost_state(c: &mut Config) {
    c.mutation = Some(Mutation::TrustLostState);
}

fn read_without_quorum(c: &mut Config) {
    c.mutation = Some(Mutation::ReadWithoutQuorum);
}

#[test]
fn known_bugs_are_caught_at_their_seeds() {
    let mut sc = scenario::seed();
    sc.tweak = Some(half_quorum);
    let r = run_seed(&sc, HALF_QUORUM_SEED);
    assert!(
        r.violations.iter().any(|v| v.contains("not linearizable")),
        "{:?}",
        r.violations
    );

    let mut sc = scenario::leader_crash();
    sc.tweak = Some(skip_reproposal);
    let r = run_seed(&sc, 1);
    assert!(!r.ok());

    let mut sc = scenario::crash_restart();
    sc.unsafe_disk = true;
    let r = run_seed(&sc, 0);
    assert!(!r.ok());

    let mut sc = scenario::amnesia();
    sc.tweak = Some(trust_lost_state);
    let r = run_seed(&sc, 81);
    assert!(!r.ok());

    let mut sc = scenario::pause();
    sc.tweak = Some(read_without_quorum);
    let r = run_seed(&sc, 4);
    assert!(
        r.violations.iter().any(|v| v.contains("not linearizable")),
        "{:?}",
        r.violations
    );
}
