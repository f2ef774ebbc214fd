//! Resident memory and CPU time of a process and its descendants, from `/proc` (nginx runs
//! workers under a master; the harness counts them all).

use std::fs;
use std::time::Duration;

use anyhow::{Context, Result};

/// The sum of `VmRSS` (KiB) of `pid` and every process descended from it.
pub fn tree_rss_kib(pid: u32) -> Result<u64> {
    let mut total = rss_kib(pid).with_context(|| format!("reading the memory of process {pid}"))?;
    for child in descendants(pid) {
        // A worker that exits between the scan and the read no longer uses memory.
        total += rss_kib(child).unwrap_or(0);
    }
    Ok(total)
}

/// User plus system CPU time used so far by `pid` and every process descended from it.
pub fn tree_cpu(pid: u32) -> Result<Duration> {
    let mut ticks =
        cpu_ticks(pid).with_context(|| format!("reading the CPU time of process {pid}"))?;
    for child in descendants(pid) {
        ticks += cpu_ticks(child).unwrap_or(0);
    }
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second)
        .ok()
        .filter(|&t| t > 0)
        .unwrap_or(100);
    Ok(Duration::from_nanos(
        ticks.saturating_mul(1_000_000_000) / per_second,
    ))
}

/// utime + stime of one process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields = after_name(&stat).context("malformed /proc/PID/stat")?;
    let mut fields = fields.split_whitespace().skip(11);
    let mut next = || -> Result<u64> {
        fields
            .next()
            .and_then(|f| f.parse().ok())
            .context("malformed /proc/PID/stat")
    };
    Ok(next()? + next()?)
}

/// `VmRSS` of one process in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("no VmRSS line in /proc/PID/status")
}

/// Every process whose chain of parents leads to `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            Some((child, parent_of(&stat)?))
        })
        .collect();
    let mut found = vec![pid];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        next += 1;
    }
    found.remove(0);
    found
}

/// The parent pid from a `/proc/PID/stat` line (the field after the state, which follows the
/// parenthesised command name, which may itself contain spaces and parentheses).
fn parent_of(stat: &str) -> Option<u32> {
    after_name(stat)?.split_whitespace().nth(1)?.parse().ok()
}

/// The fields of a `/proc/PID/stat` line after the command name, from the state on.
fn after_name(stat: &str) -> Option<&str> {
    Some(&stat[stat.rfind(')')? + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_survives_odd_command_names() {
        assert_eq!(parent_of("42 (a b) c) S 7 42 42 0"), Some(7));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn own_memory_is_readable_and_children_are_counted() {
        let own = rss_kib(std::process::id()).unwrap();
        assert!(own > 0);
        // Burn CPU until the counter shows some: on a loaded machine 50 ms of wall time can
        // be less than one clock tick of CPU.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while tree_cpu(std::process::id()).unwrap() == Duration::ZERO {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no CPU time counted after 30 s of spinning"
            );
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let with_child = descendants(std::process::id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(with_child.contains(&child.id()), "{with_child:?}");
    }
}
