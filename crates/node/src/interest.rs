//! Which keys someone watches: the leader publishes a watch event only for a key under a
//! prefix that a watcher registered, so a store nobody watches pays no publish per change
//! (as an etcd member sends events only to watch streams that exist).
//!
//! A watcher registers with a retained message on `watching/<user>/<name>`
//! ([`crate::topics::Topics::watching`]): `{"prefix":"config/"}`; an empty payload (its last
//! will, or its goodbye) withdraws it. Every server subscribes, so a new leader already knows
//! them all, and a server that restarts or reconnects starts over from the broker's retained
//! store (so it also forgets those withdrawn while it was away).
//!
//! Events stay best-effort as before: a change that commits before the leader has seen a
//! registration goes unpublished, and the watcher finds the gap from `prev_store_revision`
//! or its quiet-second question and reads it from the history (`crate::watch`).
//!
//! Bounded: at most [`MAX_REGISTRATIONS`] registrations, each a prefix of at most a key's
//! length on a topic of at most [`MAX_TOPIC`] bytes. Past that the table stops telling keys apart and every change is published (as
//! with `--watch-all`) until the server restarts: a watcher is never left without events
//! because others registered too many.

use std::collections::{BTreeMap, HashMap};

/// Most registrations a server keeps.
pub const MAX_REGISTRATIONS: usize = 10_000;

/// Longest registration topic kept: MQTT allows 64 KiB, and 10,000 of those would pin
/// hundreds of megabytes.
pub const MAX_TOPIC: usize = 1024;

/// Largest registration payload accepted: the JSON around a key-sized prefix, escaped.
pub const MAX_PAYLOAD: usize = 8 * mqpaxos_core::limits::MAX_KEY;

/// Why a registration was not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("a watch registration of {0} bytes is over the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
    #[error("a watch registration must be JSON {{\"prefix\":\"...\"}} (an empty payload withdraws it): {0}")]
    Malformed(String),
    #[error("a watch registration topic of {0} bytes is over the {MAX_TOPIC}-byte limit")]
    TopicTooLong(usize),
    #[error("a watched prefix of {0} bytes is longer than a key may be")]
    PrefixTooLong(usize),
    #[error("over {MAX_REGISTRATIONS} watch registrations: every change is published from now on")]
    Full,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    prefix: String,
}

/// The registrations a server has seen, and a quick test of a key against them.
#[derive(Debug, Default)]
pub struct Interest {
    /// Registration topic → its prefix.
    by_topic: BTreeMap<String, String>,
    /// Prefix → how many registrations name it.
    prefixes: HashMap<String, usize>,
    /// Prefix length in bytes → how many registrations have a prefix that long: a key is
    /// tested only at the lengths some prefix has.
    lengths: BTreeMap<usize, usize>,
    /// The table overflowed: every key matches.
    everything: bool,
}

impl Interest {
    /// A registration's retained message arrived on `topic`: set it, or with an empty
    /// payload withdraw it. On a refusal the topic's earlier registration is withdrawn too,
    /// so a watcher that sends garbage is not followed on the strength of an old message.
    pub fn update(&mut self, topic: &str, payload: &[u8]) -> Result<(), Refused> {
        self.remove(topic);
        if payload.is_empty() {
            return Ok(());
        }
        if topic.len() > MAX_TOPIC {
            return Err(Refused::TopicTooLong(topic.len()));
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(Refused::TooLarge(payload.len()));
        }
        let r: Registration =
            serde_json::from_slice(payload).map_err(|e| Refused::Malformed(e.to_string()))?;
        if r.prefix.len() > mqpaxos_core::limits::MAX_KEY {
            return Err(Refused::PrefixTooLong(r.prefix.len()));
        }
        if self.by_topic.len() >= MAX_REGISTRATIONS {
            self.everything = true;
            return Err(Refused::Full);
        }
        *self.lengths.entry(r.prefix.len()).or_default() += 1;
        *self.prefixes.entry(r.prefix.clone()).or_default() += 1;
        self.by_topic.insert(topic.to_string(), r.prefix);
        Ok(())
    }

    fn remove(&mut self, topic: &str) {
        let Some(prefix) = self.by_topic.remove(topic) else {
            return;
        };
        if let Some(n) = self.lengths.get_mut(&prefix.len()) {
            *n -= 1;
            if *n == 0 {
                self.lengths.remove(&prefix.len());
            }
        }
        if let Some(n) = self.prefixes.get_mut(&prefix) {
            *n -= 1;
            if *n == 0 {
                self.prefixes.remove(&prefix);
            }
        }
    }

    /// Whether some watcher follows `key`.
    pub fn matches(&self, key: &str) -> bool {
        if self.everything {
            return true;
        }
        self.lengths
            .range(..=key.len())
            .any(|(&len, _)| key.is_char_boundary(len) && self.prefixes.contains_key(&key[..len]))
    }

    /// How many registrations are held.
    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }

    /// Whether the table overflowed, so every change is published.
    pub fn overflowed(&self) -> bool {
        self.everything
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(prefix: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "prefix": prefix })).unwrap()
    }

    #[test]
    fn nobody_registered_nothing_matches() {
        let i = Interest::default();
        assert!(!i.matches("a"));
        assert!(!i.matches(""));
    }

    #[test]
    fn a_prefix_matches_the_keys_under_it_until_withdrawn() {
        let mut i = Interest::default();
        i.update("w/alice/1", &reg("config/")).unwrap();
        assert!(i.matches("config/a"));
        assert!(i.matches("config/"));
        assert!(!i.matches("config"));
        assert!(!i.matches("other"));
        i.update("w/bob/1", &reg("config/")).unwrap();
        i.update("w/alice/1", b"").unwrap();
        assert!(i.matches("config/a"), "bob still watches");
        i.update("w/bob/1", b"").unwrap();
        assert!(!i.matches("config/a"));
        assert!(i.is_empty());
        assert!(i.lengths.is_empty() && i.prefixes.is_empty());
    }

    #[test]
    fn the_empty_prefix_matches_every_key() {
        let mut i = Interest::default();
        i.update("w/a/1", &reg("")).unwrap();
        assert!(i.matches(""));
        assert!(i.matches("anything"));
    }

    #[test]
    fn a_new_registration_replaces_the_old_one_of_its_topic() {
        let mut i = Interest::default();
        i.update("w/a/1", &reg("x")).unwrap();
        i.update("w/a/1", &reg("y")).unwrap();
        assert!(!i.matches("x1"));
        assert!(i.matches("y1"));
        assert_eq!(i.len(), 1);
    }

    #[test]
    fn prefixes_are_bytes_and_never_split_a_character() {
        let mut i = Interest::default();
        i.update("w/a/1", &reg("é")).unwrap();
        assert!(i.matches("été"));
        assert!(!i.matches("e"));
        // A one-byte prefix tested against a key whose first character is two bytes.
        i.update("w/a/2", &reg("a")).unwrap();
        assert!(!i.matches("ü"));
    }

    #[test]
    fn garbage_is_refused_and_withdraws_what_the_topic_held() {
        let mut i = Interest::default();
        i.update("w/a/1", &reg("k")).unwrap();
        assert!(matches!(
            i.update("w/a/1", b"{\"prefix\":1}"),
            Err(Refused::Malformed(_))
        ));
        assert!(!i.matches("k"));
        assert!(matches!(
            i.update("w/a/1", b"{\"prefix\":\"k\",\"more\":1}"),
            Err(Refused::Malformed(_))
        ));
        assert_eq!(
            i.update("w/a/1", &vec![b' '; MAX_PAYLOAD + 1]),
            Err(Refused::TooLarge(MAX_PAYLOAD + 1))
        );
        let topic = format!("w/a/{}", "n".repeat(MAX_TOPIC));
        assert_eq!(
            i.update(&topic, &reg("k")),
            Err(Refused::TopicTooLong(topic.len()))
        );
        let long = "k".repeat(mqpaxos_core::limits::MAX_KEY + 1);
        assert_eq!(
            i.update("w/a/1", &reg(&long)),
            Err(Refused::PrefixTooLong(long.len()))
        );
        assert!(i.is_empty());
    }

    #[test]
    fn past_the_limit_every_change_is_published() {
        let mut i = Interest::default();
        for n in 0..MAX_REGISTRATIONS {
            i.update(&format!("w/a/{n}"), &reg(&format!("k{n}/")))
                .unwrap();
        }
        assert!(!i.matches("other"));
        assert_eq!(i.update("w/a/last", &reg("z")), Err(Refused::Full));
        assert!(i.overflowed());
        assert!(i.matches("other"));
        assert_eq!(i.len(), MAX_REGISTRATIONS);
    }
}
