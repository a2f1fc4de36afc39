//! The wire codec: every MQTT payload a node receives goes through `codec::decode`, and a
//! payload is whatever a peer, a client or the broker hands over. It must give a message or
//! an error, never a panic or an unbounded allocation; and what decodes must encode back to
//! something no larger that decodes to the same message (a node forwards and re-sends what
//! it decoded, within the same limit).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqpaxos_node::codec::{decode, encode, DEFAULT_MAX_PAYLOAD};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = decode(data, DEFAULT_MAX_PAYLOAD) else {
        return;
    };
    let bytes =
        encode(&msg, DEFAULT_MAX_PAYLOAD).expect("a decoded message encodes within the limit");
    assert!(
        bytes.len() <= data.len(),
        "re-encoding grew the payload: {} > {}",
        bytes.len(),
        data.len()
    );
    let again = decode(&bytes, DEFAULT_MAX_PAYLOAD).expect("a re-encoded message decodes");
    assert_eq!(again, msg);
});
