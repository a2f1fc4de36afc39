//! The fault schedule of a run: loss, delay and duplication from the start, `--partitions`
//! seeded random splits of the servers into `--groups`, one per slice of `--duration`, then
//! the heal. Faults go through the chaos topic, or with `--netns` through the kernel (the
//! transport then only delays and duplicates). Every change is logged for the report.

use super::netns::Lab;
use super::observer::Observer;
use super::Args;
use crate::cmd::{fail, Exit, Failure};
use mqpaxos_check::{Event, EventType};
use mqpaxos_node::chaos::Faults;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One change of the faults, at `at_s` seconds into the run.
#[derive(Serialize, Debug, Clone)]
pub(super) struct FaultRecord {
    pub at_s: f64,
    pub faults: Faults,
    /// With --netns: what the kernel does (the transport then adds only delay/duplicate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

/// A run's faults as they are applied.
pub(super) struct Schedule<'a> {
    a: &'a Args,
    lab: Option<&'a Lab>,
    observer: &'a Observer,
    /// Time 0 of the run.
    start: Instant,
    /// The loss, delay and duplication of the whole run, without a split.
    base: Faults,
    /// Every change so far.
    pub log: Vec<FaultRecord>,
}

impl<'a> Schedule<'a> {
    pub fn new(a: &'a Args, lab: Option<&'a Lab>, observer: &'a Observer, start: Instant) -> Self {
        Schedule {
            a,
            lab,
            observer,
            start,
            base: Faults {
                loss: a.loss,
                delay_ms: a.delay.as_millis() as u64,
                jitter_ms: 0,
                duplicate: a.duplicate,
                partition: Vec::new(),
            },
            log: Vec::new(),
        }
    }

    /// The fault phase: the loss and delay throughout, and a split at the end of every slice
    /// but the last, while `bar` shows the progress of `history`. Ends faulty: see [`heal`].
    ///
    /// [`heal`]: Schedule::heal
    pub async fn run(
        &mut self,
        rng: &mut StdRng,
        history: &Mutex<Vec<Event>>,
        bar: &indicatif::ProgressBar,
    ) -> Result<(), Failure> {
        let (a, lab) = (self.a, self.lab);
        // With --netns the kernel drops packets; the transport only delays and duplicates.
        let kernel = match lab {
            Some(l) => Some(
                l.set_loss(a.loss)
                    .map_err(|e| fail(Exit::Failed, e.to_string()))?,
            ),
            None => None,
        };
        let transport = Faults {
            loss: if lab.is_some() { 0.0 } else { a.loss },
            ..self.base.clone()
        };
        self.observer.set_faults(transport.clone()).await?;
        self.log.push(FaultRecord {
            at_s: 0.0,
            faults: self.base.clone(),
            kernel: kernel.clone(),
        });
        let slices = a.partitions + 1;
        for i in 1..=slices {
            let until = self.start + a.duration * i as u32 / slices as u32;
            self.wait_slice(i, slices, until, history, bar).await?;
            if i < slices {
                self.split(rng).await?;
            }
        }
        Ok(())
    }

    /// Waits out slice `i` of `slices` until `until`; with two brokers the bridge is restored
    /// for the second half of each split.
    async fn wait_slice(
        &mut self,
        i: usize,
        slices: usize,
        until: Instant,
        history: &Mutex<Vec<Event>>,
        bar: &indicatif::ProgressBar,
    ) -> Result<(), Failure> {
        let a = self.a;
        let mut midway = self.lab.filter(|l| i > 1 && l.heals_midway());
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(500)).await;
            progress(bar, self.start, history, &self.log);
            if let Some(l) =
                midway.filter(|_| until - Instant::now() < a.duration / (2 * slices as u32))
            {
                let kernel = l
                    .heal_cuts()
                    .map_err(|e| fail(Exit::Failed, e.to_string()))?;
                self.log.push(FaultRecord {
                    at_s: self.start.elapsed().as_secs_f64(),
                    faults: self.base.clone(),
                    kernel: Some(kernel),
                });
                midway = None;
            }
        }
        Ok(())
    }

    /// Splits the servers at random into groups of the `--groups` sizes.
    async fn split(&mut self, rng: &mut StdRng) -> Result<(), Failure> {
        let mut ids: Vec<u32> = (1..=self.a.servers).collect();
        ids.shuffle(rng);
        let mut groups = Vec::new();
        let mut it = ids.into_iter();
        for size in &self.a.groups {
            let mut g: Vec<u32> = it.by_ref().take(*size).collect();
            g.sort_unstable();
            groups.push(g);
        }
        let (groups, kernel) = match self.lab {
            Some(l) => {
                let (g, k) = l
                    .split(&groups)
                    .map_err(|e| fail(Exit::Failed, e.to_string()))?;
                (g, Some(k))
            }
            None => (groups, None),
        };
        let f = Faults {
            partition: groups,
            ..self.base.clone()
        };
        if self.lab.is_none() {
            self.observer.set_faults(f.clone()).await?;
        }
        self.log.push(FaultRecord {
            at_s: self.start.elapsed().as_secs_f64(),
            faults: f,
            kernel,
        });
        Ok(())
    }

    /// Removes every fault, in the kernel and on the chaos topic.
    pub async fn heal(&mut self) -> Result<(), Failure> {
        if let Some(l) = self.lab {
            l.heal().map_err(|e| fail(Exit::Failed, e.to_string()))?;
        }
        self.observer.set_faults(Faults::default()).await?;
        self.log.push(FaultRecord {
            at_s: self.start.elapsed().as_secs_f64(),
            faults: Faults::default(),
            kernel: self.lab.map(|_| "iptables: every rule removed".to_string()),
        });
        Ok(())
    }
}

/// A bar over the fault phase on stderr (indicatif draws nothing when stderr is not a
/// terminal, so logs and tests stay clean); its position is elapsed milliseconds.
pub(super) fn progress_bar(total: Duration) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("  {bar:20.cyan/blue} {wide_msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn progress(
    bar: &indicatif::ProgressBar,
    start: Instant,
    history: &Mutex<Vec<Event>>,
    faults: &[FaultRecord],
) {
    let ops = history
        .lock()
        .map(|h| h.iter().filter(|e| e.ty == EventType::Ok).count())
        .unwrap_or(0);
    let split = match faults.last().map(|f| &f.faults.partition) {
        Some(groups) if !groups.is_empty() => crate::charts::format_groups(groups),
        _ => "none".to_string(),
    };
    let elapsed = start.elapsed();
    bar.set_position(elapsed.as_millis() as u64);
    bar.set_message(format!(
        "{:.1}/{:.0} s | {ops} ops ok | partition {split}",
        elapsed.as_secs_f64(),
        Duration::from_millis(bar.length().unwrap_or(0)).as_secs_f64()
    ));
}
