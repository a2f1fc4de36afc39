//! The wire encoding: one version byte, then the message in postcard (a compact, stable,
//! serde-based binary format). Anything that fails to decode, carries an unknown version or
//! is too large is rejected with a typed error (and counted by the caller), never a panic: a
//! payload is whatever a peer or the broker hands us.

use mqpaxos_core::Message;
use thiserror::Error;

/// The only encoding this build speaks. A future change to `Message` that is not
/// wire-compatible must bump it, so old and new nodes reject rather than misread each other.
pub const VERSION: u8 = 3;

/// The largest payload accepted or produced by default: the core keeps every message it makes
/// below it whatever clients send and however large the state (see `mqpaxos_core::limits`;
/// snapshots travel in pieces).
pub const DEFAULT_MAX_PAYLOAD: usize = mqpaxos_core::limits::MAX_MESSAGE;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("empty payload")]
    Empty,
    #[error("unknown encoding version {0} (this build speaks {VERSION})")]
    Version(u8),
    #[error("payload of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed payload: {0}")]
    Malformed(String),
}

impl CodecError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            CodecError::Empty | CodecError::Malformed(_) => "malformed",
            CodecError::Version(_) => "version",
            CodecError::TooLarge { .. } => "too_large",
        }
    }
}

pub fn encode(msg: &Message, limit: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![VERSION];
    let body = postcard::to_allocvec(msg).map_err(|e| CodecError::Malformed(e.to_string()))?;
    out.extend_from_slice(&body);
    if out.len() > limit {
        return Err(CodecError::TooLarge {
            size: out.len(),
            limit,
        });
    }
    Ok(out)
}

pub fn decode(payload: &[u8], limit: usize) -> Result<Message, CodecError> {
    if payload.len() > limit {
        return Err(CodecError::TooLarge {
            size: payload.len(),
            limit,
        });
    }
    let (&version, body) = payload.split_first().ok_or(CodecError::Empty)?;
    if version != VERSION {
        return Err(CodecError::Version(version));
    }
    let (msg, rest) =
        postcard::take_from_bytes(body).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CodecError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqpaxos_core::{Ballot, Command, Entry, Op};
    use proptest::prelude::*;

    fn sample() -> Vec<Message> {
        let cmd = Command {
            client: "client1/abc".into(),
            seq: 7,
            op: Op::Cas {
                key: "k".into(),
                expected: None,
                new: "v".into(),
            },
        };
        vec![
            Message::Prepare {
                ballot: Ballot::new(3, 2),
                from: 10,
                incarnations: [(3, 1)].into(),
            },
            Message::Promise {
                ballot: Ballot::new(3, 2),
                accepted: vec![(
                    11,
                    Entry {
                        ballot: Ballot::new(2, 1),
                        value: vec![cmd.clone()],
                    },
                )],
                from: 10,
                more: Some(12),
                incarnations: Default::default(),
            },
            Message::SnapshotChunk {
                next_slot: 40,
                offset: 0,
                total: 3,
                data: vec![1, 2, 3],
            },
            Message::SnapshotFetch {
                next_slot: 40,
                offset: 3,
            },
            Message::Reply {
                client: "u/a/1".into(),
                seq: 2,
                result: mqpaxos_core::OpResult::Rejected {
                    code: mqpaxos_core::ErrorCode::Busy,
                    message: "busy".into(),
                },
            },
            Message::Accept {
                ballot: Ballot::new(3, 2),
                first: 12,
                values: vec![vec![cmd.clone()], vec![]],
                commit: 11,
            },
            Message::Request(cmd),
            Message::Heartbeat {
                ballot: Ballot::new(3, 2),
                commit: 14,
            },
            Message::RejoinQuery,
            Message::RejoinInfo { incarnation: 2 },
            Message::Rejoin { incarnation: 3 },
            Message::Rejoined {
                incarnation: 3,
                ballot: Ballot::new(4, 1),
                through: 99,
            },
            Message::ReadIndex {
                ballot: Ballot::new(3, 2),
                round: 5,
            },
            Message::ReadAck {
                ballot: Ballot::new(3, 2),
                round: 5,
            },
        ]
    }

    #[test]
    fn messages_round_trip() {
        for m in sample() {
            let bytes = encode(&m, DEFAULT_MAX_PAYLOAD).unwrap();
            assert_eq!(decode(&bytes, DEFAULT_MAX_PAYLOAD).unwrap(), m);
        }
    }

    #[test]
    fn bad_payloads_are_typed_errors() {
        assert_eq!(decode(&[], 100), Err(CodecError::Empty));
        assert_eq!(decode(&[9, 0], 100), Err(CodecError::Version(9)));
        assert!(matches!(
            decode(&[0; 200], 100),
            Err(CodecError::TooLarge { .. })
        ));
        assert!(matches!(
            decode(&[VERSION, 250], 100),
            Err(CodecError::Malformed(_))
        ));
        let mut ok = encode(&sample()[0], 100).unwrap();
        ok.push(0);
        assert!(matches!(decode(&ok, 100), Err(CodecError::Malformed(_))));
        assert!(matches!(
            encode(&sample()[2], 5),
            Err(CodecError::TooLarge { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes, DEFAULT_MAX_PAYLOAD);
            let mut v = vec![VERSION];
            v.extend_from_slice(&bytes);
            let _ = decode(&v, DEFAULT_MAX_PAYLOAD);
        }

        #[test]
        fn mutated_messages_never_panic(
            which in 0usize..5,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut bytes = encode(&sample()[which], DEFAULT_MAX_PAYLOAD).unwrap();
            for (i, b) in flips {
                let n = bytes.len();
                bytes[i % n] ^= b;
            }
            let keep = 1 + cut % bytes.len();
            let _ = decode(&bytes, DEFAULT_MAX_PAYLOAD);
            let _ = decode(&bytes[..keep], DEFAULT_MAX_PAYLOAD);
        }
    }
}
