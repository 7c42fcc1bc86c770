//! Subcommand flags in Consul's style, for the `agent` command line and (in `tandem-smol`)
//! the client commands.
//!
//! Flags follow Go's `flag` package, as Consul's do: `-name value`, `-name=value`, and the
//! same with two dashes; `--` ends the flags. A flag the subcommand does not define is an
//! error (exit 1), `-h`/`-help` prints the subcommand's usage (exit 0). Each subcommand
//! declares its flags in one table ([`FlagSpec`]) that both the parser and the usage text
//! read, so a new subcommand is a table, a struct and an arm in the runtime's `main`.

use std::fmt;
use std::time::Duration;

/// One flag of a subcommand.
#[derive(Clone, Copy, Debug)]
pub struct FlagSpec {
    /// The name without dashes.
    pub name: &'static str,
    /// The placeholder of its value, or `None` for a boolean flag.
    pub value: Option<&'static str>,
    /// One line of help.
    pub help: &'static str,
}

/// Why a command line was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlagError {
    /// A flag the subcommand does not define (Go's wording).
    Unknown(String),
    /// A flag that takes a value came last.
    MissingValue(String),
    /// A flag's value does not parse.
    Invalid {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// Words after the flags that the subcommand does not take.
    ExtraArguments(Vec<String>),
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagError::Unknown(name) => write!(f, "flag provided but not defined: -{name}"),
            FlagError::MissingValue(name) => write!(f, "flag needs an argument: -{name}"),
            FlagError::Invalid {
                flag,
                value,
                reason,
            } => write!(f, "invalid value {value:?} for flag -{flag}: {reason}"),
            FlagError::ExtraArguments(words) => {
                write!(f, "unexpected extra arguments: {}", words.join(" "))
            }
        }
    }
}

impl std::error::Error for FlagError {}

/// What [`parse_flags`] found: each flag with its value, in order, and the words after them.
#[derive(Debug, Default)]
pub struct Parsed {
    /// `(name, value)`; a boolean flag has `None`.
    pub flags: Vec<(&'static str, Option<String>)>,
    /// Words after the flags.
    pub rest: Vec<String>,
    /// `-h`/`-help` was given.
    pub help: bool,
}

/// Splits `args` into flags (defined by `specs`) and the words after them.
pub fn parse_flags(specs: &[FlagSpec], args: &[String]) -> Result<Parsed, FlagError> {
    let mut parsed = Parsed::default();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        if arg == "--" {
            break;
        }
        let Some(body) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|b| !b.is_empty())
        else {
            // The first word that is not a flag ends the flags, as in Go.
            i -= 1;
            break;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name == "h" || name == "help" {
            parsed.help = true;
            continue;
        }
        let Some(spec) = specs.iter().find(|s| s.name == name) else {
            return Err(FlagError::Unknown(name.to_string()));
        };
        let value = match (spec.value, inline) {
            (None, v) => v,
            (Some(_), Some(v)) => Some(v),
            (Some(_), None) => {
                let v = args
                    .get(i)
                    .ok_or_else(|| FlagError::MissingValue(name.to_string()))?;
                i += 1;
                Some(v.clone())
            }
        };
        parsed.flags.push((spec.name, value));
    }
    parsed.rest = args.get(i..).unwrap_or(&[]).to_vec();
    Ok(parsed)
}

/// A subcommand's usage text: its synopsis and its flag table.
pub fn usage(synopsis: &str, specs: &[FlagSpec]) -> String {
    let mut out = format!("{synopsis}\n\nOptions:\n\n");
    for s in specs {
        let head = match s.value {
            Some(v) => format!("-{}={v}", s.name),
            None => format!("-{}", s.name),
        };
        out.push_str(&format!("  {head}\n      {}\n\n", s.help));
    }
    out
}

/// Parses a duration as Go's `time.ParseDuration` does: `300ms`, `1.5s`, `1h2m`, `0`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod go_duration_tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_does() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go_duration("0"), Some(ms(0)));
        assert_eq!(parse_go_duration("300ms"), Some(ms(300)));
        assert_eq!(parse_go_duration("1.5s"), Some(ms(1500)));
        assert_eq!(parse_go_duration("1m30s"), Some(ms(90_000)));
        assert_eq!(parse_go_duration("2h"), Some(ms(7_200_000)));
        for bad in ["", "5", "s", "1x", "-1s", "1..5s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }
}
