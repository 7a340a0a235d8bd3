//! What a process costs the machine, read from `/proc`: CPU seconds and memory.
//!
//! `VmRSS` counts every resident page the process maps, including the pages of the
//! `agora` binary itself, which a hundred processes running the same binary share (the
//! machine holds them once). So beside `VmRSS` and its peak `VmHWM` the figures carry
//! `RssAnon` (the process's own memory: heap, stacks) and [`pss_kib`] from `smaps_rollup`
//! (shared pages divided among the processes sharing them): what one more provider
//! really costs.

use std::path::Path;

/// Memory of one process, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Memory {
    /// Resident set size (`VmRSS`): private and shared pages.
    pub rss_kib: u64,
    /// Its peak since the process started (`VmHWM`).
    pub hwm_kib: u64,
    /// Resident anonymous memory (`RssAnon`): heap, stacks, private data.
    pub anon_kib: u64,
    /// Resident file-backed pages (`RssFile`), mostly the binary's code, shared.
    pub file_kib: u64,
}

/// The proportional set size of process `pid` (`Pss` of `smaps_rollup`: shared pages
/// divided among their sharers), if it runs and the kernel gives it. Slower to read than
/// [`memory`] (the kernel walks the page tables), so read at chosen moments only.
pub fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// The memory of process `pid` from `/proc/PID/status`, or `None` if it is gone.
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS")?,
        hwm_kib: field("VmHWM")?,
        anon_kib: field("RssAnon").unwrap_or(0),
        file_kib: field("RssFile").unwrap_or(0),
    })
}

/// User plus system CPU seconds process `pid` has used, or `None` if it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    cpu_seconds_of(&stat, clock_ticks_per_second())
}

/// `utime + stime` of a `/proc/PID/stat` line, in seconds. The command name is in
/// parentheses and may hold spaces, so fields are counted after its closing one.
fn cpu_seconds_of(stat: &str, ticks_per_second: f64) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the line; utime and stime are 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / ticks_per_second)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the running system and has no side effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Median, mean and extremes of a set of figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Spread {
    /// How many figures.
    pub n: usize,
    /// The smallest.
    pub min: f64,
    /// The median (nearest rank).
    pub median: f64,
    /// The mean.
    pub mean: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (all zero for none).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Spread {
        let mut values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        if values.is_empty() {
            return Spread::default();
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        Spread {
            n,
            min: values[0],
            median: values[(n - 1) / 2],
            mean: values.iter().sum::<f64>() / n as f64,
            max: values[n - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_a_name_with_spaces() {
        let line = "4242 (agora (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0";
        assert_eq!(cpu_seconds_of(line, 100.0), Some(3.0));
        assert_eq!(cpu_seconds_of("4242 (agora) S 1 2", 100.0), None);
    }

    #[test]
    fn this_process_has_memory_and_cpu() {
        let me = std::process::id();
        let memory = memory(me).expect("our own /proc entry");
        assert!(memory.rss_kib > 0 && memory.hwm_kib >= memory.rss_kib);
        assert!(pss_kib(me).is_some_and(|pss| pss > 0));
        assert!(cpu_seconds(me).is_some());
    }

    #[test]
    fn spread_takes_the_lower_median_and_skips_nan() {
        let s = Spread::of([4.0, 1.0, f64::NAN, 3.0, 2.0]);
        assert_eq!((s.n, s.min, s.median, s.max), (4, 1.0, 2.0, 4.0));
        assert_eq!(s.mean, 2.5);
        assert_eq!(Spread::of([]), Spread::default());
    }
}
