//! The run's clients: each a session issuing a seeded mix of get (40 %), put (40 %) and cas
//! (20 %) on a few keys, so that operations conflict, recording every invocation and outcome
//! in the history the verdict checks, and every latency in the time series the charts draw.
//! A client that gets no answer records the outcome as unknown and starts a new session.

use super::launch::Broker;
use super::netns::Lab;
use super::Args;
use crate::charts::{OpSample, Timeseries};
use mqpaxos_check::{Event, OpKind};
use mqpaxos_node::{Client, ClientError, ClientOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::task::JoinHandle;

/// The running clients and what they record.
pub(super) struct Clients {
    /// When the clients started: time 0 of the history, the series and the fault log.
    pub start: Instant,
    pub history: Arc<Mutex<Vec<Event>>>,
    pub series: Arc<Mutex<Timeseries>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

/// What every client writes to, and the flag that stops it.
#[derive(Clone)]
struct Record {
    start: Instant,
    history: Arc<Mutex<Vec<Event>>>,
    series: Arc<Mutex<Timeseries>>,
    stop: Arc<AtomicBool>,
}

impl Clients {
    /// Starts `--clients` clients (`client1`, ...), each with a seed drawn from `rng`; with
    /// `--netns` they use broker A or B in turn.
    pub fn start(
        a: &Args,
        cluster: &str,
        broker: &Broker,
        lab: Option<&Lab>,
        rng: &mut StdRng,
    ) -> Clients {
        let record = Record {
            start: Instant::now(),
            history: Arc::default(),
            series: Arc::default(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let mut tasks = Vec::new();
        for c in 1..=a.clients {
            let user = format!("client{c}");
            let mut opts = ClientOptions::new(&broker.url, &user);
            opts.broker = broker.options(&user);
            if let Some(l) = lab {
                opts.broker.url = l.client_url(c);
            }
            opts.cluster = cluster.to_string();
            opts.timeout = a.op_timeout;
            let record = record.clone();
            let keys = a.keys;
            let client_seed = rng.gen::<u64>();
            tasks.push(tokio::spawn(async move {
                client_loop(opts, keys, client_seed, record).await
            }));
        }
        Clients {
            start: record.start,
            history: record.history,
            series: record.series,
            stop: record.stop,
            tasks,
        }
    }

    /// Stops every client after its operation in flight, and waits for them.
    pub async fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

/// One client: random operations on `keys` keys until the stop flag, each recorded in the
/// history (invoke, then ok or info) and in the time series.
async fn client_loop(opts: ClientOptions, keys: usize, seed: u64, record: Record) {
    let Record {
        start,
        history,
        series,
        stop,
    } = record;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let name = opts.broker.user.clone();
    let mut client = match Client::connect(opts.clone()).await {
        Ok(c) => c,
        Err(_) => return,
    };
    let now = || start.elapsed().as_nanos() as u64;
    let push = |e: Event| {
        if let Ok(mut h) = history.lock() {
            h.push(e);
        }
    };
    let mut n = 0u64;
    let mut last_seen: BTreeMap<String, Option<String>> = BTreeMap::new();
    // Bounded by the stop flag and a hard cap on operations.
    while !stop.load(Ordering::Relaxed) && n < 1_000_000 {
        n += 1;
        let key = format!("k{}", rng.gen_range(0..keys));
        let value = format!("{name}-{n}");
        let roll = rng.gen_range(0..100);
        let t0 = Instant::now();
        let (kind, invoke) = if roll < 40 {
            (OpKind::Get, Event::invoke(now(), &name, OpKind::Get, &key))
        } else if roll < 80 {
            (
                OpKind::Put,
                Event::invoke(now(), &name, OpKind::Put, &key).with_value(Some(&value)),
            )
        } else {
            let expected = last_seen.get(&key).cloned().flatten();
            (
                OpKind::Cas,
                Event::invoke(now(), &name, OpKind::Cas, &key)
                    .with_value(Some(&value))
                    .with_expected(expected.as_deref()),
            )
        };
        let expected = invoke.expected.clone();
        push(invoke);
        let result: Result<Event, ClientError> = match kind {
            OpKind::Get => client.get(&key).await.map(|v| {
                last_seen.insert(key.clone(), v.clone());
                Event::ok(now(), &name, OpKind::Get, &key).with_value(v.as_deref())
            }),
            OpKind::Put => client.put(&key, &value).await.map(|()| {
                last_seen.insert(key.clone(), Some(value.clone()));
                Event::ok(now(), &name, OpKind::Put, &key).with_value(Some(&value))
            }),
            _ => client
                .cas(&key, expected.as_deref(), &value)
                .await
                .map(|swapped| {
                    if swapped {
                        last_seen.insert(key.clone(), Some(value.clone()));
                    }
                    Event::ok(now(), &name, OpKind::Cas, &key)
                        .with_value(Some(&value))
                        .with_expected(expected.as_deref())
                        .with_result(swapped)
                }),
        };
        if let Ok(mut s) = series.lock() {
            s.record_op(OpSample {
                at_s: t0.duration_since(start).as_secs_f64(),
                latency_ms: t0.elapsed().as_secs_f64() * 1000.0,
                kind,
                ok: result.is_ok(),
            });
        }
        match result {
            Ok(e) => push(e),
            Err(_) => {
                push(Event::info(now(), &name, kind, &key));
                // The abandoned command may still execute; a new session keeps this client's
                // history sequential.
                client.close().await;
                match Client::connect(opts.clone()).await {
                    Ok(c) => client = c,
                    Err(_) => return,
                }
            }
        }
    }
    client.close().await;
}
