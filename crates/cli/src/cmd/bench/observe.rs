//! What the bench observes besides latency: MQTT publishes per committed command (from the
//! servers' counters, read by [`crate::metrics`]) and, for processes on this machine, CPU time
//! and resident memory from `/proc`.

use crate::metrics::Counters;
use std::time::Duration;

/// Publishes per committed command between two scrapes: all servers' publishes over the
/// commands executed (the most any one replica executed, as every replica executes each
/// command once). `None` without complete scrapes or without commands.
pub fn publishes_per_command(
    before: &[Option<Counters>],
    after: &[Option<Counters>],
) -> Option<(f64, u64)> {
    if before.is_empty() || before.len() != after.len() {
        return None;
    }
    let mut out = 0.0;
    let mut committed: f64 = 0.0;
    for (b, a) in before.iter().zip(after) {
        let (b, a) = ((*b)?, (*a)?);
        out += a.messages_out - b.messages_out;
        committed = committed.max(a.executed - b.executed);
    }
    (committed >= 1.0).then(|| (out / committed, committed as u64))
}

/// The live data: the bytes of keys and values in the fullest replica's store, in MiB
/// (replicas differ only by what the slowest has yet to execute).
pub fn live_mib(after: &[Option<Counters>]) -> Option<f64> {
    after
        .iter()
        .filter_map(|c| c.as_ref()?.store_bytes)
        .reduce(f64::max)
        .map(|b| b / (1u64 << 20) as f64)
}

/// CPU time (user + system) of a process in seconds, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) / ticks)
}

/// Resident memory in MiB, from `VmRSS` in `/proc/<pid>/status`.
pub fn rss_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmRSS:")
}

/// The most resident memory the process has had since it started, in MiB (`VmHWM`): a
/// snapshot's write or a catch-up can peak between two samples of [`rss_mib`], and the peak
/// is what a container's memory limit must allow.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmHWM:")
}

fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field_mib(&status, field)
}

/// One field of a `/proc/PID/status` text, in MiB.
fn field_mib(status: &str, field: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU seconds of each process (`None` where unreadable).
pub fn cpu_all(pids: &[u32]) -> Vec<Option<f64>> {
    pids.iter().map(|p| cpu_seconds(*p)).collect()
}

/// Summed CPU use between two samples over `wall`, as percent of one core.
pub fn cpu_percent(before: &[Option<f64>], after: &[Option<f64>], wall: Duration) -> Option<f64> {
    if before.is_empty() || wall.is_zero() {
        return None;
    }
    let mut secs = 0.0;
    for (b, a) in before.iter().zip(after) {
        secs += (*a)? - (*b)?;
    }
    Some(secs / wall.as_secs_f64() * 100.0)
}

/// What the bench records about the machine it runs on.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, Default)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub kernel: String,
    pub memory_gib: f64,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        memory_gib,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::parse_counters;

    #[test]
    fn counters_from_prometheus_text() {
        let text = "# HELP mqpaxos_messages Protocol messages\n\
            mqpaxos_messages_total{direction=\"out\",kind=\"accept\",peer=\"all\"} 10\n\
            mqpaxos_messages_total{direction=\"in\",kind=\"accepted\",peer=\"server2\"} 7\n\
            mqpaxos_messages_total{direction=\"out\",kind=\"reply\",peer=\"client\"} 5\n\
            mqpaxos_executed_commands_total 5\n\
            mqpaxos_store_bytes 3145728\n";
        let c = parse_counters(text);
        assert_eq!(c.messages_out, 15.0);
        assert_eq!(c.executed, 5.0);
        assert_eq!(c.store_bytes, Some(3_145_728.0));
        let before = vec![Some(Counters::default()); 2];
        let after = vec![
            Some(c),
            Some(Counters {
                messages_out: 5.0,
                executed: 5.0,
                is_leader: false,
                leader: 0,
                store_bytes: Some(1_048_576.0),
            }),
        ];
        assert_eq!(publishes_per_command(&before, &after), Some((4.0, 5)));
        // The fullest replica's store is the live data.
        assert_eq!(live_mib(&after), Some(3.0));
        assert_eq!(live_mib(&[None, Some(Counters::default())]), None);
        assert_eq!(publishes_per_command(&before, &[Some(c), None]), None);
    }

    #[test]
    fn own_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_some());
        assert!(rss_mib(pid).is_some_and(|m| m > 0.0));
        assert!(peak_rss_mib(pid).is_some_and(|m| m > 0.0));
        // The peak is only sure to cover the current size when both come from one read:
        // the other tests allocate in parallel, so two reads may see the process grow.
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let (rss, peak) = (field_mib(&status, "VmRSS:"), field_mib(&status, "VmHWM:"));
        assert!(
            rss.is_some_and(|r| peak.is_some_and(|p| p >= r)),
            "{rss:?} {peak:?}"
        );
    }
}
