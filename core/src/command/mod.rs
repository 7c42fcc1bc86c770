//! The command registry: one table of commands that both protocols run. Built-in commands
//! need no I/O and run inside the core; host commands are registered by the runtime or the
//! embedding application and run through [`crate::Effect::StartJob`].

mod builtins;
pub(crate) use builtins::Stat;
pub(crate) mod split;

use alloc::string::String;
use alloc::vec::Vec;

/// A built-in command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Builtin {
    Help,
    Version,
    Session,
    Echo,
    Jobs,
    Kill,
    Stats,
    Members,
    Monitor,
    Join,
    ForceLeave,
    Leave,
    Events,
    Reload,
}

/// Name, one-line summary and usage of a command, as `help` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandInfo {
    /// What the first word of a command line must be.
    pub name: String,
    /// One line for `help`.
    pub summary: String,
    /// The usage line shown by `help NAME` and with a `-10` status on bad arguments.
    pub usage: String,
}

impl CommandInfo {
    /// A command description.
    pub fn new(name: &str, summary: &str, usage: &str) -> Self {
        CommandInfo {
            name: String::from(name),
            summary: String::from(summary),
            usage: String::from(usage),
        }
    }
}

const BUILTINS: &[(Builtin, &str, &str, &str)] = &[
    (
        Builtin::Echo,
        "echo",
        "Print its arguments",
        "echo [WORD]...",
    ),
    (
        Builtin::Events,
        "events",
        "Stream membership and user events until interrupted",
        "events [FILTER]",
    ),
    (
        Builtin::ForceLeave,
        "force-leave",
        "Force a failed member into the left state",
        "force-leave [-prune] NODE",
    ),
    (
        Builtin::Help,
        "help",
        "List commands, or show one command's usage",
        "help [COMMAND]",
    ),
    (
        Builtin::Jobs,
        "jobs",
        "List the jobs of this session",
        "jobs",
    ),
    (
        Builtin::Join,
        "join",
        "Join a cluster through these addresses",
        "join [-wan] ADDRESS...",
    ),
    (
        Builtin::Kill,
        "kill",
        "Stop a job of this session",
        "kill JOB_ID",
    ),
    (
        Builtin::Leave,
        "leave",
        "Leave the cluster gracefully and shut the agent down",
        "leave",
    ),
    (
        Builtin::Members,
        "members",
        "List the members of the cluster",
        "members [-wan]",
    ),
    (
        Builtin::Monitor,
        "monitor",
        "Stream the agent's log records until interrupted",
        "monitor [-l TRACE|DEBUG|INFO|WARN|ERR]",
    ),
    (
        Builtin::Reload,
        "reload",
        "Re-read the agent's configuration file",
        "reload",
    ),
    (Builtin::Session, "session", "Show this session", "session"),
    (
        Builtin::Stats,
        "stats",
        "Show the agent's counters",
        "stats",
    ),
    (
        Builtin::Version,
        "version",
        "Show the agent's version",
        "version",
    ),
];

/// What a command name resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    Builtin(Builtin),
    /// Index into the host command table.
    Host(usize),
}

/// Why a host command could not be registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// A command of that name exists already.
    Duplicate(String),
    /// The name is empty or contains whitespace.
    BadName,
}

impl core::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RegisterError::Duplicate(n) => write!(f, "command {n} is already registered"),
            RegisterError::BadName => f.write_str("a command name is one non-empty word"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for RegisterError {}

/// The registry.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    host: Vec<CommandInfo>,
}

impl Registry {
    pub(crate) fn register(&mut self, info: CommandInfo) -> Result<(), RegisterError> {
        if info.name.is_empty() || info.name.chars().any(char::is_whitespace) {
            return Err(RegisterError::BadName);
        }
        if self.resolve(&info.name).is_some() {
            return Err(RegisterError::Duplicate(info.name));
        }
        self.host.push(info);
        Ok(())
    }

    pub(crate) fn resolve(&self, name: &str) -> Option<Resolved> {
        if let Some(&(b, ..)) = BUILTINS.iter().find(|(_, n, ..)| *n == name) {
            return Some(Resolved::Builtin(b));
        }
        self.host
            .iter()
            .position(|c| c.name == name)
            .map(Resolved::Host)
    }

    /// Every command as (name, summary, usage), sorted by name.
    pub(crate) fn list(&self) -> Vec<(&str, &str, &str)> {
        let mut all: Vec<(&str, &str, &str)> = BUILTINS
            .iter()
            .map(|&(_, n, s, u)| (n, s, u))
            .chain(
                self.host
                    .iter()
                    .map(|c| (c.name.as_str(), c.summary.as_str(), c.usage.as_str())),
            )
            .collect();
        all.sort_unstable_by_key(|&(n, ..)| n);
        all
    }

    pub(crate) fn usage(&self, name: &str) -> Option<&str> {
        self.list()
            .into_iter()
            .find(|&(n, ..)| n == name)
            .map(|(_, _, u)| u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_commands_cannot_shadow_builtins_or_each_other() {
        let mut r = Registry::default();
        assert_eq!(
            r.register(CommandInfo::new("help", "", "")),
            Err(RegisterError::Duplicate(String::from("help")))
        );
        r.register(CommandInfo::new("sysinfo", "s", "sysinfo"))
            .unwrap();
        assert!(r.register(CommandInfo::new("sysinfo", "", "")).is_err());
        assert_eq!(
            r.register(CommandInfo::new("a b", "", "")),
            Err(RegisterError::BadName)
        );
        assert_eq!(r.resolve("sysinfo"), Some(Resolved::Host(0)));
        assert_eq!(
            r.resolve("version"),
            Some(Resolved::Builtin(Builtin::Version))
        );
        assert_eq!(r.resolve("nope"), None);
        let names: Vec<&str> = r.list().into_iter().map(|(n, ..)| n).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert_eq!(r.usage("sysinfo"), Some("sysinfo"));
    }
}
