//! The built-in broker's topic matching (`mqtt5::topic_matches_filter`, patched in
//! `vendor/mqtt5-protocol`: one pass over the bytes) against the plain definition below, on
//! every pair of topic and filter of up to four levels drawn from a set of levels that covers
//! the rules' corner cases: empty levels, `+`, `#` where it is valid and where it is not,
//! `$` topics, levels that are prefixes of one another, and a character of two bytes.

use mqtt5::topic_matches_filter;

/// The matcher the patch replaced (itself checked against upstream's on every pair of up to
/// four levels, vendor/mqtt5-protocol/PATCH.md), level by level as the MQTT 5 specification
/// states the rules (4.7): `+` is one level, `#` any number of levels including the parent,
/// and a topic starting with `$` is not matched by a filter starting with a wildcard.
fn reference(topic: &str, filter: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('#') || filter.starts_with('+')) {
        return false;
    }
    if filter == "#" {
        return true;
    }
    let mut topic_parts = topic.split('/');
    let mut filter_parts = filter.split('/');
    loop {
        match (topic_parts.next(), filter_parts.next()) {
            (Some(t), Some(f)) => {
                if f == "#" {
                    return true;
                }
                if f != "+" && f != t {
                    return false;
                }
            }
            (None, None) => return true,
            (None, Some(f)) => return f == "#" && filter_parts.next().is_none(),
            (Some(_), None) => return false,
        }
    }
}

fn join(levels: &[&str], pick: &[usize]) -> String {
    pick.iter()
        .map(|i| levels[*i])
        .collect::<Vec<_>>()
        .join("/")
}

/// Every sequence of 1 to `max` indexes below `n`.
fn sequences(n: usize, max: usize) -> Vec<Vec<usize>> {
    let mut all = Vec::new();
    let mut layer: Vec<Vec<usize>> = vec![Vec::new()];
    for _ in 0..max {
        let mut next = Vec::new();
        for s in &layer {
            for i in 0..n {
                let mut t = s.clone();
                t.push(i);
                next.push(t);
            }
        }
        all.extend(next.iter().cloned());
        layer = next;
    }
    all
}

#[test]
fn the_patched_matcher_agrees_with_the_rules_everywhere() {
    let topic_levels = ["a", "ab", "", "b", "$s", "é"];
    let filter_levels = ["a", "ab", "", "+", "#", "$s", "a+", "é"];
    let topics = sequences(topic_levels.len(), 4);
    let filters = sequences(filter_levels.len(), 4);
    let mut pairs = 0u64;
    let mut matched = 0u64;
    for t in &topics {
        let topic = join(&topic_levels, t);
        for f in &filters {
            let filter = join(&filter_levels, f);
            let want = reference(&topic, &filter);
            assert_eq!(
                topic_matches_filter(&topic, &filter),
                want,
                "topic {topic:?} filter {filter:?}"
            );
            pairs += 1;
            matched += u64::from(want);
        }
    }
    // Not vacuous: a real share of the pairs match, and most do not.
    assert!(pairs > 1_000_000, "{pairs}");
    assert!(
        matched > pairs / 100 && matched < pairs / 2,
        "{matched} of {pairs}"
    );
}

#[test]
fn the_usual_cases() {
    assert!(topic_matches_filter("sport/tennis/player1", "sport/#"));
    assert!(topic_matches_filter("sport", "sport/#"));
    assert!(topic_matches_filter("sport/", "sport/+"));
    assert!(!topic_matches_filter("sport", "sport/+"));
    assert!(!topic_matches_filter("sport/tennis/x", "sport/+"));
    assert!(topic_matches_filter("/finance", "+/+"));
    assert!(!topic_matches_filter("$SYS/x", "+/x"));
    assert!(!topic_matches_filter("$SYS/x", "#"));
    assert!(topic_matches_filter("$SYS/x", "$SYS/#"));
    assert!(topic_matches_filter(
        "mqpaxos/default/request/u1",
        "mqpaxos/default/request/+"
    ));
    assert!(!topic_matches_filter(
        "mqpaxos/default/request/u1/x",
        "mqpaxos/default/request/+"
    ));
    assert!(!topic_matches_filter(
        "mqpaxos/default/requests/u1",
        "mqpaxos/default/request/+"
    ));
}
