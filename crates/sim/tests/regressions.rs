//! Seeds that once failed stay here for good.
//!
//! The correct protocol has not failed a seed yet; when one does, add
//! `(scenario, seed)` to `FIXED` after the fix. The broken protocols' first failing seeds are
//! kept as well: they pin down that the simulator and checker go on catching those bugs at
//! exactly those seeds.

use mqpaxos_core::Config;
use mqpaxos_sim::{run_seed, scenario};

mod common;
use common::*;

/// Seeds of the correct protocol that once failed and must now pass: the `sessions`
/// scenario failed at 298 and 299 with 9d6aa8a's session table (a retry from an evicted
/// session executed twice, issue 12.6); `single` 9316 was a false alarm of the simulator's
/// own check (a reply judged by the commit point the server had reached when it left, not
/// by the one of the flush that made it).
const FIXED: &[(&str, u64)] = &[
    ("sessions", 298),
    ("sessions", 299),
    ("single", 9316),
    // A resend backoff for every slot (not only large ones) stalled the 4-of-7 majority.
    ("paper", 236),
    // A new leader put its whole re-proposed tail in flight at once (the invariant "at most
    // a window in flight" failed; on real processes the cluster stayed busy resending it).
    ("power-long-log", 0),
];

#[test]
fn fixed_seeds_pass() {
    for (name, seed) in FIXED {
        let sc = scenario::by_name(name).expect("scenario exists");
        let r = run_seed(&sc, *seed);
        assert!(r.ok(), "{name} seed {seed}: {:?}", r.violations);
    }
}

/// What a bug is, how to switch it on, the scenario and the seed that catches it.
type Case = (&'static str, fn(&mut Config), &'static str, u64);

/// Each deliberate bug with the scenario and the first seed (of the survey in
/// docs/simulator.md) at which the simulator caught it.
#[test]
fn known_bugs_are_caught_at_their_seeds() {
    let cases: &[Case] = &[
        ("half quorum", half_quorum, "paper", 0),
        ("skip re-proposal", skip_reproposal, "leader-crash", 0),
        ("trust lost state", trust_lost_state, "amnesia", 4),
        ("read without quorum", read_without_quorum, "pause", 1),
        ("no check-quorum", no_check_quorum, "one-way", 9),
        ("trust an empty disk", trust_empty_disk, "amnesia-fast", 49),
        ("learn any ballot", learn_any_ballot, "minority", 0),
        (
            "read joins a running round",
            read_joins_running_round,
            "pause",
            10,
        ),
        (
            "snapshot without sessions",
            snapshot_without_sessions,
            "sessions",
            0,
        ),
        (
            "catch-up of unchosen values",
            catch_up_unchosen,
            "minority",
            0,
        ),
        (
            "early messages before the promise",
            early_before_promise,
            "power",
            0,
        ),
        ("replies before the sync", reply_before_sync, "single", 0),
        (
            "a reply before its own flush",
            reply_before_its_flush,
            "single",
            0,
        ),
        ("no pre-vote", no_pre_vote, "one-way", 0),
    ];
    for (what, tweak, name, seed) in cases {
        let mut sc = scenario::by_name(name).expect("scenario exists");
        sc.tweak = Some(*tweak);
        let r = run_seed(&sc, *seed);
        assert!(!r.ok(), "{what}: {name} seed {seed} no longer fails");
    }
    let mut sc = scenario::crash_restart();
    sc.unsafe_disk = true;
    let r = run_seed(&sc, 0);
    assert!(!r.ok(), "acknowledging before the sync");
}
