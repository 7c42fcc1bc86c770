//! The built-in host commands, `sysinfo` and `dashboard`, apart from how a runtime runs them.
//!
//! Both runtimes list the same commands with the same summaries and usage lines, take the
//! same arguments and emit the same items; only the waiting differs (a task on a timer in
//! `tandem-smol`, a worker thread in `tandem-mio`). So this module owns the table, the
//! argument parsing and the items, and each runtime owns its loop around them.

use std::time::Duration;

use tandem_core::CommandInfo;

use crate::procfs;

/// One built-in host command as the agent lists it in `help`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Builtin {
    /// The command's name, the first word of its command line.
    pub name: &'static str,
    /// One line for `help`.
    pub summary: &'static str,
    /// The usage line, shown by `help NAME` and with a `-10` status on bad arguments.
    pub usage: &'static str,
}

impl Builtin {
    /// What the agent registers for this command.
    pub fn info(&self) -> CommandInfo {
        CommandInfo::new(self.name, self.summary, self.usage)
    }
}

/// `sysinfo`: one sample of the agent process.
pub const SYSINFO: Builtin = Builtin {
    name: "sysinfo",
    summary: "Show the agent process's memory, threads, open files, uptime and the system load",
    usage: "sysinfo",
};

/// `dashboard`: a sample every interval.
pub const DASHBOARD: Builtin = Builtin {
    name: "dashboard",
    summary: "Sample what sysinfo shows every interval, COUNT times or until interrupted",
    usage: "dashboard [-i MS] [-n COUNT]",
};

/// The built-in host commands, in the order they are registered.
pub const BUILTINS: [Builtin; 2] = [SYSINFO, DASHBOARD];

/// `dashboard`'s interval without `-i`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(1000);

/// Samples the agent process as one result item of the command `ty` (`"sysinfo"` or
/// `"dashboard"`). The error is the message the job fails with (status 1).
pub fn sample_item(ty: &str) -> Result<serde_json::Value, String> {
    procfs::sample()
        .map(|sample| sample.to_item(ty))
        .map_err(|e| format!("cannot read process information: {e}"))
}

/// `dashboard [-i MS] [-n COUNT]`: the interval (> 0) and the optional sample count (> 0).
/// `None` means a usage error.
pub fn parse_dashboard(args: &[String]) -> Option<(Duration, Option<u64>)> {
    let mut interval = DEFAULT_INTERVAL;
    let mut count = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next()?;
        match flag.as_str() {
            "-i" | "--interval" => {
                interval = Duration::from_millis(value.parse().ok().filter(|&ms| ms > 0)?);
            }
            "-n" | "--number-of-execution" => {
                count = Some(value.parse().ok().filter(|&n| n > 0)?);
            }
            _ => return None,
        }
    }
    Some((interval, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn dashboard_arguments() {
        let ms = Duration::from_millis;
        assert_eq!(parse_dashboard(&[]), Some((ms(1000), None)));
        assert_eq!(
            parse_dashboard(&words("-i 50 -n 3")),
            Some((ms(50), Some(3)))
        );
        assert_eq!(
            parse_dashboard(&words("--interval 20 --number-of-execution 1")),
            Some((ms(20), Some(1)))
        );
        for bad in ["-i", "-i 0", "-i x", "-n 0", "-n -1", "-x 1", "extra"] {
            assert_eq!(parse_dashboard(&words(bad)), None, "{bad}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_sample_item_names_its_command() {
        let item = sample_item("dashboard").unwrap();
        assert_eq!(item["type"], "dashboard");
        assert_eq!(item["pid"], std::process::id());
    }
}
