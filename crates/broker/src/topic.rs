//! MQTT topic and topic-filter matching, as the ACL needs it.
//!
//! Besides the usual "does this filter match this topic" test, authorizing a *subscription*
//! needs two relations between filters: whether an ACL pattern covers every topic a
//! subscription filter can match, and whether the two can match at least one topic in common.
//! The broker checks read access once, when the client subscribes, so these relations are what
//! keep a subscription from ever delivering a topic the ACL does not grant.

/// Whether `filter` is a valid MQTT topic filter: `#` only as a whole last level, `+` only as
/// a whole level, not empty.
pub(crate) fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| {
        if level.contains('#') {
            *level == "#" && i == last
        } else if level.contains('+') {
            *level == "+"
        } else {
            true
        }
    })
}

/// Topics beginning with `$` (such as `$SYS/...`) are matched only by filters that also begin
/// with `$`: a leading wildcard never reaches them (MQTT 3.1.1 section 4.7.2).
fn dollar_compatible(filter: &str, topic: &str) -> bool {
    topic.starts_with('$') == filter.starts_with('$')
}

/// Whether the topic name `topic` (no wildcards) matches the topic filter `filter`.
pub(crate) fn matches(filter: &str, topic: &str) -> bool {
    if !dollar_compatible(filter, topic) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            // `a/#` matches `a` too: `#` also stands for "no further level".
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic that `filter` can match is also matched by `pattern`, both being topic
/// filters. Used to grant a subscription: read access on `pattern` then covers all it delivers.
pub(crate) fn covers(pattern: &str, filter: &str) -> bool {
    if !dollar_compatible(pattern, filter) {
        return false;
    }
    let mut p = pattern.split('/');
    let mut f = filter.split('/');
    loop {
        match (p.next(), f.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            // The filter has a wildcard where the pattern names one level: the filter reaches
            // topics the pattern does not (`a/+` is not covered by `a/b`).
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(pl), Some(fl)) if fl != "+" && pl == fl => {}
            _ => return false,
        }
    }
}

/// Whether some topic is matched by both filters. Used for `deny` rules: a subscription that
/// could receive even one denied topic is refused.
pub(crate) fn overlaps(a: &str, b: &str) -> bool {
    if !dollar_compatible(a, b) {
        return false;
    }
    let mut x = a.split('/');
    let mut y = b.split('/');
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(xl), Some(yl)) if xl == yl => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_filters() {
        for f in [
            "a", "a/b", "+", "#", "a/+/c", "a/#", "+/+", "/", "a//b", "$SYS/#", "a b/c",
        ] {
            assert!(is_valid_filter(f), "{f}");
        }
        for f in ["", "a/#/b", "a#", "a/b+", "+a", "#/a", "a/##"] {
            assert!(!is_valid_filter(f), "{f}");
        }
    }

    #[test]
    fn topic_matching() {
        let yes = [
            ("a/b", "a/b"),
            ("a/+", "a/b"),
            ("+/b", "a/b"),
            ("a/#", "a/b/c"),
            ("a/#", "a"),
            ("#", "a/b/c"),
            ("+", "a"),
            ("+/+", "/x"),
            ("a/+/c", "a//c"),
            ("$SYS/#", "$SYS/broker"),
            ("mqpaxos/+/reply/client1/#", "mqpaxos/c/reply/client1/s1"),
        ];
        for (f, t) in yes {
            assert!(matches(f, t), "{f} should match {t}");
        }
        let no = [
            ("a/b", "a/c"),
            ("a/b", "a/b/c"),
            ("a/+", "a/b/c"),
            ("a/+", "a"),
            ("+", "a/b"),
            ("a", "a/b"),
            ("#", "$SYS/broker"),
            ("+/broker", "$SYS/broker"),
            ("mqpaxos/+/reply/client1/#", "mqpaxos/c/reply/client2/s1"),
            ("mqpaxos/+/reply/client1/#", "mqpaxos/c/reply/client10/s1"),
        ];
        for (f, t) in no {
            assert!(!matches(f, t), "{f} should not match {t}");
        }
    }

    #[test]
    fn coverage() {
        let yes = [
            ("#", "a/+/#"),
            ("a/#", "a"),
            ("a/#", "a/#"),
            ("a/#", "a/+/c"),
            ("a/+", "a/+"),
            ("a/+", "a/b"),
            ("a/b", "a/b"),
            ("+/+", "a/+"),
            ("mqpaxos/+/peer/all/+", "mqpaxos/c1/peer/all/+"),
            ("mqpaxos/+/reply/client1/#", "mqpaxos/c/reply/client1/#"),
            ("mqpaxos/+/reply/client1/#", "mqpaxos/c/reply/client1"),
        ];
        for (p, f) in yes {
            assert!(covers(p, f), "{p} should cover {f}");
        }
        let no = [
            ("a/b", "a/+"),
            ("a/+", "a/#"),
            ("a/+/#", "a/#"),
            ("a/+", "a"),
            ("a", "a/#"),
            ("a/b", "a/b/c"),
            ("#", "$SYS/#"),
            ("mqpaxos/+/reply/client1/#", "mqpaxos/+/reply/+/#"),
            ("mqpaxos/+/reply/client1/#", "mqpaxos/#"),
            ("mqpaxos/+/reply/client1/#", "#"),
        ];
        for (p, f) in no {
            assert!(!covers(p, f), "{p} should not cover {f}");
        }
    }

    #[test]
    fn overlap() {
        let yes = [
            ("a/#", "a"),
            ("a", "a/#"),
            ("a/+", "+/b"),
            ("#", "x/y"),
            ("a/b/c", "a/+/c"),
            ("a/+/#", "a/b"),
        ];
        for (a, b) in yes {
            assert!(overlaps(a, b), "{a} should overlap {b}");
            assert!(overlaps(b, a), "{b} should overlap {a}");
        }
        let no = [
            ("a/b", "a/c"),
            ("a/+", "a"),
            ("a/+", "a/b/c"),
            ("#", "$SYS/x"),
            ("a/+/c", "a/b/d"),
        ];
        for (a, b) in no {
            assert!(!overlaps(a, b), "{a} should not overlap {b}");
            assert!(!overlaps(b, a), "{b} should not overlap {a}");
        }
    }

    /// Brute force over a small topic universe: `covers` and `overlaps` must agree with
    /// `matches` on every topic of it.
    #[test]
    fn relations_agree_with_matching() {
        let levels = ["a", "b", ""];
        let mut topics: Vec<String> = Vec::new();
        for n in 1..=3 {
            let mut acc = vec![String::new()];
            for depth in 0..n {
                let mut next = Vec::new();
                for prefix in &acc {
                    for l in levels {
                        next.push(if depth == 0 {
                            l.to_string()
                        } else {
                            format!("{prefix}/{l}")
                        });
                    }
                }
                acc = next;
            }
            topics.extend(acc);
        }
        let filters = [
            "a", "b", "a/b", "a/+", "+/b", "+", "#", "a/#", "+/#", "a/b/#", "+/+", "a/+/b",
            "+/+/+", "b/#",
        ];
        for p in filters {
            for f in filters {
                let p_topics: Vec<&String> = topics.iter().filter(|t| matches(p, t)).collect();
                let f_topics: Vec<&String> = topics.iter().filter(|t| matches(f, t)).collect();
                let subset = f_topics.iter().all(|t| p_topics.contains(t));
                let common = f_topics.iter().any(|t| p_topics.contains(t));
                // The universe is finite, so a filter ending in `#` can look covered by one
                // that stops at depth 3; `covers` must never say yes when the universe says no.
                // (It may say no to `+/#` covering `#`: refusing is the safe side.)
                if covers(p, f) {
                    assert!(subset, "{p} covers {f} but not on the sample");
                }
                if !f.contains('#') {
                    assert_eq!(covers(p, f), subset, "covers({p}, {f})");
                }
                assert_eq!(overlaps(p, f), common, "overlaps({p}, {f})");
            }
        }
    }
}
