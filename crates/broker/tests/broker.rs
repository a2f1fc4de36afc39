//! The embedded broker end to end, driven by the rumqttc 3.1.1 client our nodes use: port 0,
//! password authentication, the example ACL, retained messages and last will, a QoS 1 burst,
//! and a shutdown that frees the port. No assertion depends on timing; every wait is bounded.

mod common;

use common::{
    acl_scenario, connect, example_acl, expect_next, loopback0, start, start_open, stop,
    try_connect, Opts, WAIT,
};
use mqpaxos_broker::{Broker, BrokerConfig, BrokerError};
use rumqttc::{ConnectReturnCode, LastWill, QoS, SubscribeReasonCode};

/// A broker with our password file (users of `common::USERS`) and `examples/acl.conf`.
async fn secured(dir: &tempfile::TempDir) -> Broker {
    start(BrokerConfig {
        listen: loopback0(),
        password_file: Some(common::write_password_file(dir.path(), common::USERS)),
        acl_file: Some(example_acl()),
        ..BrokerConfig::default()
    })
    .await
}

#[tokio::test]
async fn starts_on_port_zero_and_carries_qos0_and_qos1() {
    let broker = start_open().await;
    let addr = broker.local_addr();
    assert_ne!(addr.port(), 0);

    let mut sub = connect(addr, Opts::id("sub")).await;
    let publisher = connect(addr, Opts::id("pub")).await;
    sub.subscribe_ok("a/+", QoS::AtLeastOnce).await;
    publisher
        .publish("a/0", QoS::AtMostOnce, false, b"zero")
        .await;
    publisher
        .publish("a/1", QoS::AtLeastOnce, false, b"one")
        .await;
    // QoS 0 and QoS 1 travel separate lanes in this broker, so their relative order is not
    // kept (MQTT only promises order within one QoS level).
    let mut got = Vec::new();
    for _ in 0..2 {
        let p = sub.next_publish().await;
        got.push((p.topic.clone(), p.payload.to_vec(), p.qos));
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("a/0".to_string(), b"zero".to_vec(), QoS::AtMostOnce),
            ("a/1".to_string(), b"one".to_vec(), QoS::AtLeastOnce),
        ]
    );
    stop(broker).await;
}

/// Wildcard filters match as MQTT says (`+` one level, empty ones too; `#` any number,
/// its parent level included), through the engine's router and the vendored matcher
/// (vendor/mqtt5-protocol/PATCH.md). Each filter has a subscriber of its own; every topic is
/// published at QoS 1 from one client, then the end markers (each filter matches at least
/// one), so a subscriber holds exactly what it matched once its first end marker arrives.
#[tokio::test]
async fn wildcard_filters_match_levels_as_mqtt_says() {
    let broker = start_open().await;
    let addr = broker.local_addr();
    let cases: [(&str, &[&str]); 5] = [
        ("a/+/c", &["a/b/c", "a//c"]),
        ("a/#", &["a", "a/b", "a/b/c", "a/b/c/d", "a//c", "a/bc"]),
        ("+/+", &["a/b", "b/c", "a/bc"]),
        (
            "#",
            &["a", "a/b", "a/b/c", "a/b/c/d", "a//c", "b/c", "b", "a/bc"],
        ),
        ("a/b/+/d", &["a/b/c/d"]),
    ];
    let topics = ["a", "a/b", "a/b/c", "a/b/c/d", "a//c", "b/c", "b", "a/bc"];
    let mut subs = Vec::new();
    for (i, (filter, _)) in cases.iter().enumerate() {
        let mut c = connect(addr, Opts::id(&format!("sub{i}"))).await;
        c.subscribe_ok(filter, QoS::AtLeastOnce).await;
        subs.push(c);
    }
    let mut publisher = connect(addr, Opts::id("pub")).await;
    for t in topics {
        publisher.publish_acked(t, t.as_bytes()).await;
    }
    for end in ["a/end/c", "x/end", "a/b/end/d"] {
        publisher.publish_acked(end, b"end").await;
    }
    for ((filter, want), sub) in cases.iter().zip(subs.iter_mut()) {
        let mut got = Vec::new();
        loop {
            let p = sub.next_publish().await;
            if p.topic.contains("end") {
                break;
            }
            got.push(p.topic.clone());
        }
        assert_eq!(&got, want, "filter {filter}");
    }
    stop(broker).await;
}

/// Without TCP_NODELAY on the broker's side a round trip costs ~40 ms instead of ~0.05 ms
/// (see docs/broker.md). The broker runs in this process, so its accepted socket can be found
/// among our own file descriptors and the option read back from the kernel.
#[cfg(target_os = "linux")]
/// The vendored rumqttc writes every queued publish before one flush (vendor/rumqttc/
/// PATCH.md), within the same flow control as one at a time: a burst larger than the
/// in-flight window, QoS 0 and 1 interleaved, arrives whole and in order on each level.
#[tokio::test]
async fn a_burst_written_in_batches_arrives_whole_and_in_order() {
    let broker = start_open().await;
    let addr = broker.local_addr();
    let mut sub = connect(addr, Opts::id("batch-sub")).await;
    sub.subscribe_ok("b/#", QoS::AtLeastOnce).await;
    let mut opts = Opts::id("batch-pub");
    opts.batch = Some((64, 5));
    let publisher = connect(addr, opts).await;
    const EACH: usize = 300;
    for i in 0..EACH {
        for (topic, qos) in [("b/0", QoS::AtMostOnce), ("b/1", QoS::AtLeastOnce)] {
            publisher
                .client
                .publish(topic, qos, false, i.to_string().into_bytes())
                .await
                .unwrap();
        }
    }
    let mut got: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..2 * EACH {
        let p = sub.next_publish().await;
        let lane = usize::from(p.topic == "b/1");
        let n: usize = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
        got[lane].push(n);
    }
    let want: Vec<usize> = (0..EACH).collect();
    assert_eq!(got[0], want, "QoS 0");
    assert_eq!(got[1], want, "QoS 1");
    drop(publisher);
    drop(sub);
    stop(broker).await;
}

#[tokio::test]
async fn accepted_sockets_have_tcp_nodelay() {
    use std::os::fd::{BorrowedFd, RawFd};

    let broker = start_open().await;
    let addr = broker.local_addr();
    let _client = connect(addr, Opts::id("nodelay")).await;

    let mut accepted = 0;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let Ok(fd) = entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .parse::<RawFd>()
        else {
            continue;
        };
        // SAFETY: only getsockname/getpeername/getsockopt are called on it, which neither
        // change nor close it; a descriptor closed meanwhile just fails those calls.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&fd);
        let (Ok(local), Ok(_peer)) = (sock.local_addr(), sock.peer_addr()) else {
            continue;
        };
        // Connected, and on the broker's port: the broker's end of our client's connection.
        if local.as_socket() == Some(addr) {
            assert!(
                sock.tcp_nodelay().unwrap(),
                "accepted socket without TCP_NODELAY"
            );
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1, "expected exactly the one accepted connection");
    stop(broker).await;
}

#[tokio::test]
async fn password_file_accepts_the_right_password_only() {
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(&dir).await;
    let addr = broker.local_addr();

    connect(addr, Opts::user("client1")).await;
    assert_eq!(
        try_connect(addr, Opts::login("client1", "pw-client2"))
            .await
            .err(),
        Some(ConnectReturnCode::BadUserNamePassword),
        "wrong password"
    );
    assert_eq!(
        try_connect(addr, Opts::login("mallory", "pw-client1"))
            .await
            .err(),
        Some(ConnectReturnCode::BadUserNamePassword),
        "unknown user"
    );
    assert_eq!(
        try_connect(addr, Opts::login("client1", "")).await.err(),
        Some(ConnectReturnCode::BadUserNamePassword),
        "empty password"
    );
    assert_eq!(
        try_connect(addr, Opts::id("anonymous")).await.err(),
        Some(ConnectReturnCode::NotAuthorized),
        "anonymous, not allowed by default"
    );
    stop(broker).await;
}

#[tokio::test]
async fn anonymous_clients_may_be_allowed_beside_a_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(BrokerConfig {
        listen: loopback0(),
        password_file: Some(common::write_password_file(dir.path(), common::USERS)),
        allow_anonymous: true,
        ..BrokerConfig::default()
    })
    .await;
    let addr = broker.local_addr();
    connect(addr, Opts::id("anonymous")).await;
    // Allowing anonymous clients does not let a named one skip its password.
    assert_eq!(
        try_connect(addr, Opts::login("client1", "nope"))
            .await
            .err(),
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    stop(broker).await;
}

#[tokio::test]
async fn example_acl_enforces_the_topic_layout() {
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(&dir).await;
    let addr = broker.local_addr();

    // Refused at SUBSCRIBE time here (Mosquitto would accept and then deliver nothing).
    let mut client1 = connect(addr, Opts::user("client1")).await;
    for filter in [
        "mqpaxos/x/reply/client2/#",
        "mqpaxos/x/reply/+/#",
        "mqpaxos/x/peer/all/+",
        "mqpaxos/x/request/+",
        "#",
    ] {
        assert_eq!(
            client1.subscribe(filter, QoS::AtLeastOnce).await,
            SubscribeReasonCode::Failure,
            "client1 subscribing to {filter}"
        );
    }
    client1
        .subscribe_ok("mqpaxos/x/reply/client1/#", QoS::AtLeastOnce)
        .await;
    client1
        .subscribe_ok("mqpaxos/+/presence/+", QoS::AtLeastOnce)
        .await;
    let mut server1 = connect(addr, Opts::user("server1")).await;
    server1
        .subscribe_ok("mqpaxos/x/peer/all/+", QoS::AtLeastOnce)
        .await;
    server1
        .subscribe_ok("mqpaxos/x/peer/server1/+", QoS::AtLeastOnce)
        .await;
    server1
        .subscribe_ok("mqpaxos/x/request/+", QoS::AtLeastOnce)
        .await;
    assert_eq!(
        server1
            .subscribe("mqpaxos/x/peer/server2/+", QoS::AtLeastOnce)
            .await,
        SubscribeReasonCode::Failure
    );
    drop((client1, server1));

    // And the delivery-level rules, the same scenario Mosquitto passes.
    acl_scenario(addr).await;
    stop(broker).await;
}

#[tokio::test]
async fn retained_presence_and_retained_last_will() {
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(&dir).await;
    let addr = broker.local_addr();
    let presence = "mqpaxos/x/presence/server1";

    let will = LastWill::new(presence, "offline", QoS::AtLeastOnce, true);
    let server1 = connect(addr, Opts::user("server1").with_will(will)).await;
    server1
        .publish(presence, QoS::AtLeastOnce, true, b"online")
        .await;

    // A later subscriber gets the retained "online"; the retained flag tells it apart from
    // a live change.
    let mut watcher = connect(addr, Opts::user("client1")).await;
    watcher
        .subscribe_ok("mqpaxos/x/presence/+", QoS::AtLeastOnce)
        .await;
    let p = watcher.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        (presence, &b"online"[..])
    );
    assert!(p.retain, "the retained presence is flagged retained");

    // The server dies without DISCONNECT: its will goes out, live to the watcher...
    server1.kill().await;
    expect_next(&mut watcher, presence, b"offline").await;

    // ...and stays retained for anyone who looks later.
    let mut late = connect(addr, Opts::user("client2")).await;
    late.subscribe_ok("mqpaxos/x/presence/+", QoS::AtLeastOnce)
        .await;
    let p = late.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        (presence, &b"offline"[..])
    );
    assert!(p.retain);
    stop(broker).await;
}

#[tokio::test]
async fn burst_of_5000_qos1_messages_all_arrive() {
    const N: u32 = 5000;
    let broker = start_open().await;
    let addr = broker.local_addr();
    let mut sub = connect(addr, Opts::id("burst-sub")).await;
    sub.subscribe_ok("burst", QoS::AtLeastOnce).await;
    let publisher = connect(addr, Opts::id("burst-pub")).await;

    let sender = tokio::spawn(async move {
        for i in 0..N {
            publisher
                .client
                .publish("burst", QoS::AtLeastOnce, false, i.to_be_bytes().to_vec())
                .await
                .unwrap();
        }
        publisher
    });
    let mut seen = vec![false; N as usize];
    for _ in 0..N {
        let p = sub.next_publish().await;
        let i = u32::from_be_bytes(p.payload[..].try_into().unwrap());
        assert!(!seen[i as usize], "message {i} delivered twice");
        seen[i as usize] = true;
    }
    assert!(seen.iter().all(|s| *s));
    let _publisher = tokio::time::timeout(WAIT, sender).await.unwrap().unwrap();
    stop(broker).await;
}

#[tokio::test]
async fn shutdown_disconnects_clients_and_releases_the_port() {
    let broker = start_open().await;
    let addr = broker.local_addr();
    let mut client = connect(addr, Opts::id("c")).await;
    client.subscribe_ok("t", QoS::AtLeastOnce).await;
    stop(broker).await;
    client.wait_closed().await;

    // Free again: a plain bind works, and so does a new broker on the same port.
    drop(std::net::TcpListener::bind(addr).expect("port still taken after shutdown"));
    let again = start(BrokerConfig {
        listen: addr,
        ..BrokerConfig::default()
    })
    .await;
    assert_eq!(again.local_addr(), addr);
    connect(addr, Opts::id("c2")).await;
    stop(again).await;
}

#[tokio::test]
async fn a_taken_port_is_a_start_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Broker::start(BrokerConfig {
        listen: addr,
        ..BrokerConfig::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, BrokerError::Start { .. }), "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn bad_files_are_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("bad.passwd");
    std::fs::write(&pw, "# ok\nalice:plaintext\n").unwrap();
    let err = Broker::start(BrokerConfig {
        listen: loopback0(),
        password_file: Some(pw.clone()),
        ..BrokerConfig::default()
    })
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, BrokerError::PasswordFile { line: 2, .. }),
        "{text}"
    );
    assert!(text.contains(&pw.display().to_string()), "{text}");

    let good_pw = common::write_password_file(dir.path(), common::USERS);
    let acl = dir.path().join("bad.acl");
    std::fs::write(&acl, "user a\ntopic read ok/#\ntopic sometimes x\n").unwrap();
    let err = Broker::start(BrokerConfig {
        listen: loopback0(),
        password_file: Some(good_pw.clone()),
        acl_file: Some(acl.clone()),
        ..BrokerConfig::default()
    })
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, BrokerError::AclFile { line: 3, .. }),
        "{text}"
    );
    assert!(text.contains(&acl.display().to_string()), "{text}");

    let missing = dir.path().join("missing.acl");
    let err = Broker::start(BrokerConfig {
        listen: loopback0(),
        password_file: Some(good_pw),
        acl_file: Some(missing.clone()),
        ..BrokerConfig::default()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, BrokerError::ReadFile { kind: "ACL", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing.acl"), "{err}");
}

/// A client id belongs to the user connected under it: another user's CONNECT with that id
/// is refused instead of taking the session over (MQTT's default), while the same user may
/// take its own session over, and the id is free again once its holder has gone.
#[tokio::test]
async fn a_client_id_in_use_cannot_be_taken_over_by_another_user() {
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(&dir).await;
    let addr = broker.local_addr();
    let id = "mqpaxos-main-server1-0123456789abcdef";
    let login = |user: &str| Opts {
        client_id: id.to_string(),
        ..Opts::user(user)
    };
    let mut server = connect(addr, login("server1")).await;
    server
        .subscribe_ok("mqpaxos/main/peer/server1/+", QoS::AtLeastOnce)
        .await;
    // client1 knows the id (say, from a status report): refused, the server stays on.
    let refused = try_connect(addr, login("client1")).await.err();
    assert_eq!(refused, Some(ConnectReturnCode::NotAuthorized));
    let peer = connect(addr, Opts::user("server2")).await;
    peer.publish(
        "mqpaxos/main/peer/server1/server2",
        QoS::AtLeastOnce,
        false,
        b"still here",
    )
    .await;
    expect_next(
        &mut server,
        "mqpaxos/main/peer/server1/server2",
        b"still here",
    )
    .await;
    // The same user takes its own session over (a reconnect).
    let again = connect(addr, login("server1")).await;
    server.wait_closed().await;
    drop(again);
    // Once nobody holds the id, anyone may use it. (The broker notices the dropped socket
    // when its event loop ends; retry within the bounded wait.)
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match try_connect(addr, login("client1")).await {
            Ok(_) => break,
            Err(code) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still refused: {code:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    stop(broker).await;
}
