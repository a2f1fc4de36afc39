//! Measures MQTT round-trip latency through the embedded broker, and through Mosquitto (when
//! installed) or any other broker given by address, with the rumqttc 0.25 client our nodes use.
//!
//! One client publishes a ping, a second client subscribed to it publishes it straight back,
//! and the first waits for that echo before sending the next: each sample is one
//! publish → broker → subscriber → publish → broker → subscriber trip, which is the shape of a
//! Paxos message and its reply. Both clients set TCP_NODELAY, as the nodes do.
//!
//! ```text
//! cargo run --release -p mqpaxos-broker --example latency -- [--rounds 2000] [--warmup 200]
//!     [--no-mosquitto] [--external NAME=HOST:PORT]...
//! ```
//!
//! This is a measurement, not a test: it prints numbers and asserts nothing about them.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mqpaxos_broker::{Broker, BrokerConfig};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Packet, QoS};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

struct Args {
    rounds: usize,
    warmup: usize,
    mosquitto: bool,
    external: Vec<(String, SocketAddr)>,
}

/// Why the command line was refused.
#[derive(Debug, thiserror::Error)]
enum ArgError {
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error("{0}")]
    Count(#[from] std::num::ParseIntError),
    #[error("--external takes NAME=HOST:PORT")]
    External,
    #[error("{addr}: {source}")]
    Address {
        addr: String,
        source: std::net::AddrParseError,
    },
    #[error("unknown argument {0}")]
    Unknown(String),
    #[error("--rounds must be at least 1")]
    NoRounds,
}

/// Why one broker's measurement stopped.
#[derive(Debug, thiserror::Error)]
enum MeasureError {
    #[error("{0}")]
    Client(#[from] rumqttc::ClientError),
    #[error("{label}: no SUBACK from {addr}")]
    NoSubAck { label: String, addr: SocketAddr },
    #[error("{label}: no echo for round {round} within {:?}", WAIT)]
    NoEcho { label: String, round: usize },
}

/// Why Mosquitto could not be started for the comparison (the run then skips it).
#[derive(Debug, thiserror::Error)]
enum MosquittoError {
    #[error("mosquitto is not installed (apt-get install -y mosquitto)")]
    NotInstalled,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{bin}: {source}")]
    Spawn {
        bin: &'static str,
        source: std::io::Error,
    },
    #[error("mosquitto did not start listening")]
    NotListening,
}

fn parse_args() -> Result<Args, ArgError> {
    let mut args = Args {
        rounds: 2000,
        warmup: 200,
        mosquitto: true,
        external: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &'static str| it.next().ok_or(ArgError::MissingValue(name));
        match arg.as_str() {
            "--rounds" => args.rounds = value("--rounds")?.parse()?,
            "--warmup" => args.warmup = value("--warmup")?.parse()?,
            "--no-mosquitto" => args.mosquitto = false,
            "--external" => {
                let v = value("--external")?;
                let (name, addr) = v.split_once('=').ok_or(ArgError::External)?;
                let addr = addr.parse().map_err(|source| ArgError::Address {
                    addr: addr.to_string(),
                    source,
                })?;
                args.external.push((name.to_string(), addr));
            }
            other => return Err(ArgError::Unknown(other.to_string())),
        }
    }
    if args.rounds == 0 {
        return Err(ArgError::NoRounds);
    }
    Ok(args)
}

enum Seen {
    SubAck,
    Publish(Vec<u8>),
}

/// A connected client whose event loop runs on its own task, forwarding what it sees.
fn client(name: &str, addr: SocketAddr) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(name, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    (client, eventloop)
}

fn spawn_poller(mut eventloop: EventLoop, echo: Option<AsyncClient>, tx: mpsc::Sender<Seen>) {
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = tx.send(Seen::SubAck).await;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => match &echo {
                    // try_publish: this task is the one polling, so awaiting room in the
                    // request channel here could wait on itself.
                    Some(c) => {
                        if let Err(e) = c.try_publish("lat/pong", p.qos, false, p.payload.to_vec())
                        {
                            eprintln!("echo failed: {e}");
                            return;
                        }
                    }
                    None => {
                        let _ = tx.send(Seen::Publish(p.payload.to_vec())).await;
                    }
                },
                Ok(_) => {}
                Err(e) => {
                    // After the measurement the receiver is gone and a closing connection
                    // is expected, not worth a line.
                    if !tx.is_closed() {
                        eprintln!("connection error: {e}");
                    }
                    return;
                }
            }
        }
    });
}

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
    mean: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let total: Duration = samples.iter().sum();
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        max: samples[samples.len() - 1],
        mean: total / samples.len() as u32,
    }
}

async fn measure(label: &str, addr: SocketAddr, args: &Args) -> Result<(), MeasureError> {
    let tag = format!("lat-{}-{}", std::process::id(), label.replace(' ', "-"));
    let (pinger, ping_loop) = client(&format!("{tag}-a"), addr);
    let (echoer, echo_loop) = client(&format!("{tag}-b"), addr);
    let (tx_a, mut rx_a) = mpsc::channel(16);
    let (tx_b, mut rx_b) = mpsc::channel(16);
    spawn_poller(ping_loop, None, tx_a);
    spawn_poller(echo_loop, Some(echoer.clone()), tx_b);

    echoer.subscribe("lat/ping", QoS::AtLeastOnce).await?;
    pinger.subscribe("lat/pong", QoS::AtLeastOnce).await?;
    for rx in [&mut rx_a, &mut rx_b] {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some(Seen::SubAck)) => {}
            _ => {
                return Err(MeasureError::NoSubAck {
                    label: label.to_string(),
                    addr,
                })
            }
        }
    }

    for qos in [QoS::AtLeastOnce, QoS::AtMostOnce] {
        let mut samples = Vec::with_capacity(args.rounds);
        for i in 0..args.warmup + args.rounds {
            let payload = (i as u64).to_be_bytes().to_vec();
            let t0 = Instant::now();
            pinger
                .publish("lat/ping", qos, false, payload.clone())
                .await?;
            loop {
                match tokio::time::timeout(WAIT, rx_a.recv()).await {
                    Ok(Some(Seen::Publish(p))) if p == payload => break,
                    // A late echo of an earlier round (cannot happen with one in flight, but
                    // harmless to skip).
                    Ok(Some(_)) => continue,
                    _ => {
                        return Err(MeasureError::NoEcho {
                            label: label.to_string(),
                            round: i,
                        })
                    }
                }
            }
            if i >= args.warmup {
                samples.push(t0.elapsed());
            }
        }
        let s = stats(samples);
        println!(
            "{label:<28} {:<6} n={:<6} p50={:>8.3} ms  p99={:>8.3} ms  max={:>8.3} ms  mean={:>8.3} ms",
            format!("{qos:?}").replace("AtLeastOnce", "QoS 1").replace("AtMostOnce", "QoS 0"),
            args.rounds,
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            ms(s.mean)
        );
    }
    drop((rx_a, rx_b));
    let _ = pinger.disconnect().await;
    let _ = echoer.disconnect().await;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts Debian's mosquitto on a free loopback port, tuned as the docs say (TCP_NODELAY,
/// no queue limit), or says why not.
async fn start_mosquitto(
    dir: &std::path::Path,
) -> Result<(tokio::process::Child, SocketAddr), MosquittoError> {
    let bin = [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .ok_or(MosquittoError::NotInstalled)?;
    let port = free_port()?;
    let conf = dir.join("mosquitto.conf");
    // `user root`: as root, mosquitto otherwise switches to the user `mosquitto`; as any other
    // user the line is ignored.
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n\
             max_queued_messages 0\nuser root\npersistence false\n"
        ),
    )?;
    let child = tokio::process::Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| MosquittoError::Spawn { bin, source })?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            return Err(MosquittoError::NotListening);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((child, addr))
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("latency: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "MQTT round trips (publish -> echo -> back), rumqttc 0.25 clients with TCP_NODELAY, \
         {} rounds after {} warm-up",
        args.rounds, args.warmup
    );

    let broker = match Broker::start(BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("a literal address"),
        ..BrokerConfig::default()
    })
    .await
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("latency: {e}");
            std::process::exit(1);
        }
    };
    let mut failed = false;
    if let Err(e) = measure("embedded (mqtt5)", broker.local_addr(), &args).await {
        eprintln!("{e}");
        failed = true;
    }
    if let Err(e) = broker.shutdown().await {
        eprintln!("shutdown: {e}");
    }

    if args.mosquitto {
        let dir = std::env::temp_dir().join(format!("mqpaxos-latency-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        match start_mosquitto(&dir).await {
            Ok((mut child, addr)) => {
                if let Err(e) = measure("mosquitto", addr, &args).await {
                    eprintln!("{e}");
                    failed = true;
                }
                let _ = child.kill().await;
            }
            Err(e) => println!("mosquitto: skipped: {e}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    for (name, addr) in &args.external {
        if let Err(e) = measure(name, *addr, &args).await {
            eprintln!("{e}");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}
