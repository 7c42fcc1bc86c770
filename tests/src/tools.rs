//! The third-party tools the interop and end-to-end tests drive — Debian's `serf` CLI, a
//! Python interpreter with the `msgpack` package, `curl`, `strace`, Debian's `chromium` — provisioned by the tests
//! themselves, so that `cargo test` runs them on a fresh machine (Debian, Rust, Python 3):
//!
//! - **Python + `msgpack`**: a private virtual environment, `<target>/tandem-tools/pyenv`,
//!   with `msgpack` installed from PyPI by its own `pip` (a `python3` that already imports
//!   `msgpack` is used as it is);
//! - **`serf`, `curl`, `strace`, `chromium`**: `apt-get install -y PACKAGE` (after an `apt-get update` if the
//!   first attempt fails) when the tool is not on `PATH` and the tests run as root.
//!
//! Provisioning happens once per target directory: test binaries that run at the same time
//! take an exclusive `flock(2)` on `<target>/tandem-tools/lock` and look again before
//! installing anything, and within a process the outcome is kept. A half-built environment
//! (a run killed mid-install) fails the import check and is built again.
//!
//! When a tool still cannot be had, a test calling [`serf`], [`python_msgpack`] or [`curl`]
//! **fails** with the reason under `CI=true`; otherwise it is **skipped**: the call unwinds
//! with a [`Skip`] payload that [`run_trials`] (the `harness = false` runner of the interop
//! test binaries) reports as `ignored` with the reason, and the reason is printed to stderr.
//! `TANDEM_SKIP_SERF=1` / `TANDEM_SKIP_PYTHON=1` skip those tests on purpose, also reported
//! as `ignored`. Under libtest's own harness, which cannot ignore a test at run time, a
//! skip shows as a failure that names the reason — never as `ok`.

use std::fs::{self, File};
use std::os::fd::AsRawFd as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The unwind payload of a test skipped because its tool cannot be had (or was skipped on
/// purpose); [`run_trials`] reports it as `ignored` with this reason.
#[derive(Debug)]
pub struct Skip(pub String);

/// Whether [`run_trials`] runs this process's tests, and so reports a [`Skip`]'s reason.
static REPORTS_SKIPS: AtomicBool = AtomicBool::new(false);

/// Why a tool is not available.
type Provisioned = Result<PathBuf, String>;

/// The `serf` executable, installed with apt when missing (see the module docs).
pub fn serf() -> PathBuf {
    static SERF: OnceLock<Provisioned> = OnceLock::new();
    if skip_requested("TANDEM_SKIP_SERF") {
        skip("serf", "TANDEM_SKIP_SERF=1 is set");
    }
    let found = SERF.get_or_init(|| apt_tool("serf", "serf"));
    available("serf", found, under_ci())
}

/// A Python interpreter that imports `msgpack` (see the module docs).
pub fn python_msgpack() -> PathBuf {
    static PYTHON: OnceLock<Provisioned> = OnceLock::new();
    if skip_requested("TANDEM_SKIP_PYTHON") {
        skip("python3 with msgpack", "TANDEM_SKIP_PYTHON=1 is set");
    }
    let found = PYTHON.get_or_init(provision_python);
    available("python3 with msgpack", found, under_ci())
}

/// The `curl` executable, installed with apt when missing.
pub fn curl() -> PathBuf {
    static CURL: OnceLock<Provisioned> = OnceLock::new();
    let found = CURL.get_or_init(|| apt_tool("curl", "curl"));
    available("curl", found, under_ci())
}

/// `strace`, installed with apt when missing (the system-call counts of the end-to-end
/// tests). A `strace` that cannot trace (no `ptrace(2)` in this container) also counts as
/// missing (checked by tracing `true` once).
pub fn strace() -> PathBuf {
    static STRACE: OnceLock<Provisioned> = OnceLock::new();
    let found = STRACE.get_or_init(|| apt_tool("strace", "strace").and_then(strace_usable));
    available("strace", found, under_ci())
}

/// `strace` itself if it can trace a child here (`strace -qq true`).
fn strace_usable(strace: PathBuf) -> Provisioned {
    let out = Command::new(&strace)
        .args(["-qq", "-e", "trace=none", "true"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", strace.display()))?;
    if out.status.success() {
        Ok(strace)
    } else {
        Err(format!(
            "`strace true` failed (ptrace not permitted?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The headless browser of the web console's test: Debian's `chromium`, installed with apt
/// when missing. `TANDEM_SKIP_CHROMIUM=1` skips those tests.
pub fn chromium() -> PathBuf {
    static CHROMIUM: OnceLock<Provisioned> = OnceLock::new();
    if skip_requested("TANDEM_SKIP_CHROMIUM") {
        skip("chromium", "TANDEM_SKIP_CHROMIUM=1 is set");
    }
    let found = CHROMIUM.get_or_init(|| apt_tool("chromium", "chromium"));
    available("chromium", found, under_ci())
}

/// A test of a `harness = false` test binary: its name and body. A body that unwinds with
/// [`Skip`] is reported as `ignored`; any other panic fails it.
pub struct Test {
    name: String,
    body: Box<dyn FnOnce() + Send + panic::UnwindSafe>,
}

impl Test {
    /// A test named `name` running `body`.
    pub fn new(name: impl Into<String>, body: impl FnOnce() + Send + 'static) -> Test {
        Test {
            name: name.into(),
            body: Box::new(AssertUnwindSafe(body)),
        }
    }
}

/// The `main` of a `harness = false` test binary: runs `tests` with libtest's command line
/// and output (through `libtest-mimic`), a [`Skip`] shown as `ignored` with its reason, and
/// exits with libtest's status.
pub fn run_trials(tests: Vec<Test>) -> ! {
    REPORTS_SKIPS.store(true, Ordering::Relaxed);
    let args = libtest_mimic::Arguments::from_args();
    let trials = tests
        .into_iter()
        .map(|t| {
            let body = t.body;
            libtest_mimic::Trial::ignorable_test(t.name, move || match panic::catch_unwind(body) {
                Ok(()) => Ok(libtest_mimic::Completion::Completed),
                Err(payload) => match payload.downcast::<Skip>() {
                    Ok(skip) => Ok(libtest_mimic::Completion::ignored_with(skip.0)),
                    Err(payload) => Err(panic_message(payload.as_ref()).into()),
                },
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit()
}

/// The text of a panic payload, for the failure report.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "the test panicked".to_string()
    }
}

fn skip_requested(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The tool's path, or the end of the test: a failure under CI, a [`Skip`] otherwise.
fn available(tool: &str, found: &Provisioned, ci: bool) -> PathBuf {
    match found {
        Ok(path) => path.clone(),
        Err(why) => {
            assert!(
                !ci,
                "{tool} is required under CI=true but could not be provisioned: {why}"
            );
            skip(tool, why)
        }
    }
}

/// Unwinds with a [`Skip`] (no panic hook runs). Outside [`run_trials`] (libtest's own
/// harness, where the test then fails) the reason is printed, since nothing else says it.
fn skip(tool: &str, why: &str) -> ! {
    let reason = format!("skipped: needs {tool}: {why}");
    if !REPORTS_SKIPS.load(Ordering::Relaxed) {
        eprintln!("{reason}");
    }
    panic::resume_unwind(Box::new(Skip(reason)))
}

/// `<target>/tandem-tools`, beside the profile directories (`<target>/debug/deps/<test>`
/// is the running test binary); the system's temporary directory if that cannot be found.
fn tools_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(std::env::temp_dir)
        .join("tandem-tools")
}

/// Runs `work` holding the exclusive lock that serializes provisioning between the test
/// binaries cargo runs at the same time (released when the file is closed, also by a
/// process that dies).
fn locked<T>(work: impl FnOnce(&Path) -> Result<T, String>) -> Result<T, String> {
    let dir = tools_dir();
    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let lock_path = dir.join("lock");
    let lock = File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    // SAFETY: flock(2) on a descriptor this function owns for the whole call.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(format!(
            "flock {}: {}",
            lock_path.display(),
            std::io::Error::last_os_error()
        ));
    }
    work(&dir)
}

/// Where `name` is on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Runs `cmd` to its end; its combined output on failure.
fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let tail: Vec<&str> = text.lines().rev().take(8).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "{cmd:?} failed ({}):\n{}",
        out.status,
        tail.join("\n")
    ))
}

/// `name` from `PATH`, or installed from Debian's `package` when running as root.
fn apt_tool(name: &str, package: &str) -> Provisioned {
    if let Some(path) = on_path(name) {
        return Ok(path);
    }
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!(
            "`{name}` is not installed and the tests do not run as root: \
             install it with `apt-get install -y {package}`"
        ));
    }
    if on_path("apt-get").is_none() {
        return Err(format!("`{name}` is not installed and there is no apt-get"));
    }
    locked(|_| {
        if let Some(path) = on_path(name) {
            return Ok(path); // another test binary installed it meanwhile
        }
        eprintln!("tandem-tests: installing {package} with apt-get (once)");
        let install = || {
            run(Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "-q",
                    "-o",
                    "DPkg::Lock::Timeout=300",
                    package,
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"))
        };
        install()
            .or_else(|_| {
                run(Command::new("apt-get")
                    .args(["update", "-q", "-o", "DPkg::Lock::Timeout=300"])
                    .env("DEBIAN_FRONTEND", "noninteractive"))
                .and_then(|()| install())
            })
            .map_err(|e| format!("`apt-get install -y {package}` failed: {e}"))?;
        on_path(name).ok_or_else(|| format!("apt-get installed {package} but no `{name}` on PATH"))
    })
}

/// Whether `python` imports `msgpack`.
fn imports_msgpack(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import msgpack"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A python that imports `msgpack`: the private environment's, the system's, or a new
/// private environment's.
fn provision_python() -> Provisioned {
    let venv_python = tools_dir().join("pyenv/bin/python");
    if imports_msgpack(&venv_python) {
        return Ok(venv_python);
    }
    let Some(system) = on_path("python3") else {
        return Err("there is no `python3` on PATH".to_string());
    };
    if imports_msgpack(&system) {
        return Ok(system);
    }
    locked(|dir| {
        let venv = dir.join("pyenv");
        let python = venv.join("bin/python");
        if imports_msgpack(&python) {
            return Ok(python); // another test binary built it meanwhile
        }
        eprintln!(
            "tandem-tests: making {} with msgpack from PyPI (once)",
            venv.display()
        );
        if venv.exists() {
            fs::remove_dir_all(&venv).map_err(|e| format!("remove {}: {e}", venv.display()))?;
        }
        run(Command::new(&system).arg("-m").arg("venv").arg(&venv)).map_err(|e| {
            format!("`python3 -m venv` failed (Debian: apt-get install python3-venv): {e}")
        })?;
        run(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "msgpack",
        ]))
        .map_err(|e| format!("`pip install msgpack` failed: {e}"))?;
        if imports_msgpack(&python) {
            Ok(python)
        } else {
            Err(format!("{} still cannot import msgpack", python.display()))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable(ci: bool) -> Box<dyn std::any::Any + Send> {
        let missing: Provisioned = Err("not installed".to_string());
        panic::catch_unwind(|| available("frob", &missing, ci)).expect_err("no tool, no path")
    }

    #[test]
    fn a_missing_tool_fails_the_test_under_ci() {
        let payload = unavailable(true);
        assert!(payload.downcast_ref::<Skip>().is_none(), "a skip under CI");
        assert_eq!(
            panic_message(payload.as_ref()),
            "frob is required under CI=true but could not be provisioned: not installed"
        );
    }

    #[test]
    fn a_missing_tool_skips_the_test_elsewhere() {
        let payload = unavailable(false);
        let skip = payload.downcast::<Skip>().expect("a Skip payload");
        assert_eq!(skip.0, "skipped: needs frob: not installed");
    }

    #[test]
    fn a_present_tool_is_its_path() {
        let found: Provisioned = Ok(PathBuf::from("/usr/bin/frob"));
        assert_eq!(available("frob", &found, true), Path::new("/usr/bin/frob"));
    }
}
