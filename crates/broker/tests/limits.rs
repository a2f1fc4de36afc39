//! What the broker refuses, so that no client can take the nodes off it: packets larger than
//! a node accepts, big retained messages, listening off loopback without passwords, an ACL
//! without passwords; and the TLS listener, end to end with a rumqttc client and a CA made
//! for the test (rcgen, no network). Every wait is bounded; nothing depends on timing.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{connect, expect_next, loopback0, start, start_open, Opts, WAIT};
use mqpaxos_broker::{Broker, BrokerConfig, BrokerError, TlsListener, MAX_PACKET_SIZE};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};

/// A raw client that may send and receive packets of up to 64 MiB: the attacker.
fn big_client(addr: SocketAddr, id: &str) -> (AsyncClient, rumqttc::EventLoop) {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_max_packet_size(64 << 20, 64 << 20);
    o.set_keep_alive(Duration::from_secs(30));
    AsyncClient::new(o, 10)
}

/// Polls until the broker closes the connection; returns whether it acknowledged the
/// publish first.
async fn until_closed(eventloop: &mut rumqttc::EventLoop) -> bool {
    let mut acked = false;
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked = true,
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return acked,
            Err(_) => panic!("the broker kept a connection that sent an oversized packet"),
        }
    }
}

#[test]
fn the_default_limit_is_the_nodes() {
    // mqpaxos-node's transport::MAX_PACKET_SIZE (a test in the mqpaxos crate compares the
    // two constants directly; this crate does not depend on the node).
    assert_eq!(MAX_PACKET_SIZE, 16 * 1024 * 1024 + 1024);
    assert_eq!(BrokerConfig::default().max_packet_size, MAX_PACKET_SIZE);
}

/// A 17 MiB retained publish (over what nodes accept) closes the sender's connection and
/// reaches nobody, now or on a later subscription.
#[tokio::test]
async fn an_oversized_packet_is_refused_and_never_retained() {
    let broker = start_open().await;
    let addr = broker.local_addr();
    let mut watcher = connect(addr, Opts::id("watcher")).await;
    watcher.subscribe_ok("mqpaxos/x/#", QoS::AtMostOnce).await;

    let (attacker, mut events) = big_client(addr, "attacker");
    attacker
        .publish(
            "mqpaxos/x/presence/client1",
            QoS::AtLeastOnce,
            true,
            vec![b'x'; 17 << 20],
        )
        .await
        .unwrap();
    assert!(
        !until_closed(&mut events).await,
        "the broker acknowledged it"
    );

    // The next message the watcher sees is the marker: the big one went nowhere.
    let honest = connect(addr, Opts::id("honest")).await;
    honest
        .publish("mqpaxos/x/marker", QoS::AtLeastOnce, false, b"after")
        .await;
    expect_next(&mut watcher, "mqpaxos/x/marker", b"after").await;
    // And nothing was retained: a new subscriber's first message is a fresh one.
    let mut late = connect(addr, Opts::id("late")).await;
    late.subscribe_ok("mqpaxos/x/presence/client1", QoS::AtMostOnce)
        .await;
    honest
        .publish(
            "mqpaxos/x/presence/client1",
            QoS::AtLeastOnce,
            false,
            b"fresh",
        )
        .await;
    expect_next(&mut late, "mqpaxos/x/presence/client1", b"fresh").await;
    broker.shutdown().await.unwrap();
}

/// A retained payload over the retained limit is refused whole (neither delivered nor
/// kept), so nobody can park a big message that every reconnecting node receives again.
#[tokio::test]
async fn a_big_retained_message_is_refused() {
    let broker = start_open().await;
    let addr = broker.local_addr();
    let mut watcher = connect(addr, Opts::id("watcher")).await;
    watcher.subscribe_ok("r/x", QoS::AtMostOnce).await;
    let mut publisher = connect(addr, Opts::id("pub")).await;
    let big = vec![b'y'; mqpaxos_broker::MAX_RETAINED_PAYLOAD + 1];
    publisher.publish_acked("r/x", &big).await;
    // (publish_acked sends it unretained; this is the retained one.)
    publisher.publish("r/x", QoS::AtLeastOnce, true, &big).await;
    let p = watcher.next_publish().await;
    assert_eq!(
        p.payload.len(),
        big.len(),
        "the unretained one is delivered"
    );
    publisher
        .publish("r/x", QoS::AtLeastOnce, false, b"marker")
        .await;
    expect_next(&mut watcher, "r/x", b"marker").await;
    let mut late = connect(addr, Opts::id("late")).await;
    late.subscribe_ok("r/x", QoS::AtMostOnce).await;
    publisher
        .publish("r/x", QoS::AtLeastOnce, false, b"fresh")
        .await;
    expect_next(&mut late, "r/x", b"fresh").await;
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn off_loopback_a_password_file_is_required() {
    let err = Broker::start(BrokerConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..BrokerConfig::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, BrokerError::Unprotected { .. }), "{err:?}");
    assert!(err.to_string().contains("--password-file"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let err = Broker::start(BrokerConfig {
        listen: loopback0(),
        acl_file: Some(common::example_acl()),
        ..BrokerConfig::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, BrokerError::AclWithoutPasswords), "{err:?}");

    // With a password file the same address is fine.
    let broker = start(BrokerConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        password_file: Some(common::write_password_file(dir.path(), common::USERS)),
        ..BrokerConfig::default()
    })
    .await;
    broker.shutdown().await.unwrap();
}

/// A CA, and a certificate it signed for localhost and 127.0.0.1, as PEM files in `dir`:
/// (ca.pem, cert.pem, key.pem).
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

fn tls_transport(ca: &Path) -> Transport {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(cfg)))
}

/// The TLS listener serves MQTT to a client that trusts the test CA, and refuses the
/// handshake of one that does not.
#[tokio::test]
async fn the_tls_listener_carries_mqtt() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(dir.path());
    let broker = start(BrokerConfig {
        listen: loopback0(),
        tls: Some(TlsListener {
            listen: loopback0(),
            cert_file: cert,
            key_file: key,
        }),
        ..BrokerConfig::default()
    })
    .await;
    let tls_addr = broker.tls_local_addr().expect("a TLS listener");
    assert_ne!(tls_addr.port(), 0);

    let mut o = MqttOptions::new("tls-client", "localhost", tls_addr.port());
    o.set_transport(tls_transport(&ca));
    let (client, mut events) = AsyncClient::new(o, 10);
    client.subscribe("s/t", QoS::AtLeastOnce).await.unwrap();
    client
        .publish("s/t", QoS::AtLeastOnce, false, b"over tls".to_vec())
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => return p.payload.to_vec(),
                Ok(_) => {}
                Err(e) => panic!("TLS connection failed: {e}"),
            }
        }
    })
    .await
    .expect("a message within the wait");
    assert_eq!(got, b"over tls");

    // A client that does not trust the CA fails the handshake.
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = make_certs(&other_dir);
    let mut o = MqttOptions::new("untrusting", "localhost", tls_addr.port());
    o.set_transport(tls_transport(&other.0));
    let (_c, mut events) = AsyncClient::new(o, 10);
    let err = tokio::time::timeout(WAIT, events.poll())
        .await
        .expect("an answer within the wait")
        .expect_err("the handshake must fail");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    broker.shutdown().await.unwrap();
}
