//! Reading this process's resource usage from Linux's /proc, for `sysinfo` and `dashboard`.
//!
//! The files are small and served from memory by the kernel, so they are read with plain
//! blocking calls; nothing here can stall on a disk or the network. (`tandem-smol` reads
//! them on its event loop, `tandem-mio` on the host job's worker thread.)

use std::io;

/// One sample of the agent process.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The process id.
    pub pid: u32,
    /// Resident set size in bytes.
    pub rss: u64,
    /// Threads in the process.
    pub threads: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Time since the process started, in milliseconds.
    pub uptime_ms: u64,
    /// System load averages over 1, 5 and 15 minutes.
    pub load: [f64; 3],
}

impl Sample {
    /// The result item: `{"type":ty,"pid":…,"rss":…,…}` (the agent adds `jobId` and sorts).
    pub fn to_item(&self, ty: &str) -> serde_json::Value {
        serde_json::json!({
            "type": ty,
            "pid": self.pid,
            "rss": self.rss,
            "threads": self.threads,
            "fds": self.fds,
            "uptime_ms": self.uptime_ms,
            "load": self.load,
        })
    }
}

/// Samples the process now.
pub fn sample() -> io::Result<Sample> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let (rss, threads) = parse_status(&status).ok_or_else(|| bad("/proc/self/status"))?;
    // The directory handle read_dir opens is itself listed; it is not the agent's.
    let fds = (std::fs::read_dir("/proc/self/fd")?.count() as u64).saturating_sub(1);
    let load = parse_loadavg(&std::fs::read_to_string("/proc/loadavg")?)
        .ok_or_else(|| bad("/proc/loadavg"))?;
    let start_ticks = parse_start_ticks(&std::fs::read_to_string("/proc/self/stat")?)
        .ok_or_else(|| bad("/proc/self/stat"))?;
    let system_uptime = parse_uptime_ms(&std::fs::read_to_string("/proc/uptime")?)
        .ok_or_else(|| bad("/proc/uptime"))?;
    Ok(Sample {
        pid: std::process::id(),
        rss,
        threads,
        fds,
        uptime_ms: system_uptime.saturating_sub(ticks_to_ms(start_ticks)),
        load,
    })
}

fn bad(path: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected format of {path}"),
    )
}

/// `VmRSS` (in bytes) and `Threads` from /proc/self/status.
fn parse_status(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?.saturating_mul(1024), field("Threads:")?))
}

fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(|w| w.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Field 22 of /proc/self/stat, `starttime`, in clock ticks since boot. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after the last `)`.
fn parse_start_ticks(text: &str) -> Option<u64> {
    let after_comm = text.get(text.rfind(')')? + 1..)?;
    // After the name come field 3 (state) onwards; starttime is field 22.
    after_comm.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// The first number of /proc/uptime (seconds since boot with two decimals), in
/// milliseconds. Parsed as text so no float rounding creeps in.
fn parse_uptime_ms(text: &str) -> Option<u64> {
    let word = text.split_whitespace().next()?;
    let (secs, frac) = word.split_once('.').unwrap_or((word, ""));
    let secs: u64 = secs.parse().ok()?;
    let mut ms = 0;
    for (digit, scale) in frac.chars().zip([100, 10, 1]) {
        ms += u64::from(digit.to_digit(10)?) * scale;
    }
    Some(secs.saturating_mul(1000).saturating_add(ms))
}

fn ticks_to_ms(ticks: u64) -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100);
    ticks.saturating_mul(1000) / hz
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_parse() {
        let text = "Name:\ttandem\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t2\n";
        assert_eq!(parse_status(text), Some((5120 * 1024, 2)));
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let mut fields = vec!["S".to_string()];
        fields.extend((4..=30).map(|i| i.to_string()));
        let text = format!("42 (a b) c) {}", fields.join(" "));
        assert_eq!(parse_start_ticks(&text), Some(22));
    }

    #[test]
    fn loadavg_and_uptime_parse() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 1/467 12345\n"),
            Some([0.52, 0.58, 0.59])
        );
        assert_eq!(parse_loadavg("0.52 x"), None);
        assert_eq!(parse_uptime_ms("350735.47 234388.90\n"), Some(350_735_470));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_can_be_sampled() {
        let s = sample().unwrap();
        assert_eq!(s.pid, std::process::id());
        assert!(s.rss > 0 && s.threads >= 1 && s.fds >= 3);
    }
}
