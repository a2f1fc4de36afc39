//! The broker's ACL file (Mosquitto syntax): parsing any text gives the rules or an error
//! naming the line, never a panic; and the access decisions the broker asks on every
//! PUBLISH and SUBSCRIBE (topic matching, `%u`/`%c` substitution, filter coverage and
//! overlap) never panic on any user name, client id, topic or filter.
//!
//! Input: the file, then optionally NUL-separated: a user name, a client id, a topic (also
//! used as a subscription filter).
//!
//! Also checked: subscribing to a plain topic (no wildcard) is never granted where reading
//! that topic is refused, since the broker checks `read` only once, at SUBSCRIBE.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mqpaxos_broker::Acl;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (file, probe) = text.split_once('\0').unwrap_or((text, ""));
    let mut fields = probe.split('\0');
    let user = fields.next().unwrap_or("");
    let client = fields.next().unwrap_or("");
    let topic = fields.next().unwrap_or("");
    let Ok(acl) = Acl::parse(Path::new("fuzz"), file) else {
        return;
    };
    let plain = !topic.is_empty() && !topic.contains(['+', '#']) && !topic.starts_with("$share/");
    for username in [None, Some(user)] {
        let _ = acl.can_publish(username, client, topic);
        let read = acl.can_read(username, client, topic);
        let subscribe = acl.can_subscribe(username, client, topic);
        if plain && subscribe {
            assert!(read, "may subscribe to {topic:?} but not read it");
        }
    }
});
