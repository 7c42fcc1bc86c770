//! Every command of README.md runs as written, so an example cannot rot.
//!
//! Each ```` ```sh ```` block of the README follows a marker line
//! `<!-- readme-test: NAME -->` (invisible when rendered), and [`BLOCKS`] says what this
//! test does with each NAME: run it (and what its output must show), start it as the agent
//! later blocks talk to, or — for the few that cannot run in a test — why not. A block
//! without a marker, or with a NAME this file does not know, fails the test: a new example
//! must be added here.
//!
//! **How a block runs.** In `bash -eo pipefail`, in its own process group (killed at the
//! end, so agents a block starts with `&` do not outlive it), with `PATH` starting at a
//! directory that holds a `tandem` shim. The README uses the agent's default addresses;
//! here they move to ephemeral ports, in this one place:
//!
//! - the shim runs the `tandem` binary cargo built for these tests, and gives `tandem agent`
//!   `-http-addr`, `-rpc-addr`, `-lan-port` and `-wan-port` on this scene's ports before the
//!   block's own flags (which win, being later);
//! - `TANDEM_HTTP_ADDR` / `TANDEM_RPC_ADDR` point the CLI's defaults at the same ports;
//! - every port number the README writes ([`README_PORTS`]) is replaced in the block's
//!   text by a port of the scene (`8563` → the scene's HTTP port, and so on).
//!
//! A scene is a group of blocks sharing one set of ports: the agent block, then the
//! blocks that drive it.
//!
//! The configuration file example (the README's one `json` block under "Configuration
//! file") is checked too: an agent started with it runs and logs no complaint.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tandem_tests::driver::process::{Runtime, binary};

const README: &str = include_str!("../../README.md");

/// What the test does with a block.
enum Use {
    /// Not run, for this reason.
    NotRun(&'static str),
    /// Started in the background as the scene's agent; the scene's later blocks talk to it.
    Agent,
    /// Run to its end; for each `(start, parts)`, some line of its stdout must start with
    /// `start` and contain every one of `parts`.
    Run(&'static [(&'static str, &'static [&'static str])]),
}

/// Every marked block of the README, by name: how it is used, and its scene.
const BLOCKS: &[(&str, &str, Use)] = &[
    (
        "install",
        "-",
        Use::NotRun(
            "`cargo install` builds in release and writes to ~/.cargo/bin; the other blocks \
             run the binaries cargo built for this test instead",
        ),
    ),
    (
        "cargo-test",
        "-",
        Use::NotRun("it is the command that runs this test"),
    ),
    ("agent", "tutorial", Use::Agent),
    (
        "curl-tutorial",
        "tutorial",
        Use::Run(&[(
            "",
            &[
                "Welcome to tandem!",
                r#""type":"welcome""#,
                r#""state":"SCHEDULED""#,
                r#""type":"dashboard""#,
                r#""interrupted":true"#,
                r#""type":"sysinfo""#,
            ],
        )]),
    ),
    (
        "cli",
        "tutorial",
        Use::Run(&[
            ("tandem ", &["alive"]),
            ("", &[r#""message":"hello""#]),
            ("build:", &[]),
        ]),
    ),
    (
        "cluster-exec",
        "tutorial",
        Use::Run(&[(
            "",
            &[
                r#""node":"tandem","#,
                r#""type":"sysinfo""#,
                r#""answered":["tandem"]"#,
                r#""jobStatus":"TERMINATED""#,
            ],
        )]),
    ),
    (
        "cluster-exec-cli",
        "tutorial",
        Use::Run(&[
            ("tandem: ", &[r#""type":"sysinfo""#]),
            ("tandem: ", &[r#""node":"tandem""#, r#""type":"status""#]),
            ("", &[r#""answered":["tandem"]"#, r#""type":"summary""#]),
        ]),
    ),
    (
        "encryption",
        "encryption",
        Use::Run(&[
            ("Successfully joined cluster by contacting 1 node", &[]),
            ("a ", &[" alive "]),
            ("b ", &[" alive "]),
        ]),
    ),
];

/// The port numbers the README writes, and which of a scene's ports each becomes: the
/// defaults (HTTP, RPC, LAN, WAN) and the second agent's of the encryption example.
const README_PORTS: &[(&str, usize)] = &[
    ("8563", 0),
    ("8400", 1),
    ("8301", 2),
    ("8302", 3),
    ("8564", 4),
    ("8401", 5),
    ("8311", 6),
];

/// A marked `sh` block: its name and its text.
struct Block {
    name: String,
    text: String,
}

/// The `sh` blocks of the README; an unmarked one is an error.
fn blocks() -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = README.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_start().starts_with("```sh") {
            let marker = i
                .checked_sub(1)
                .and_then(|p| lines[p].trim().strip_prefix("<!-- readme-test:"))
                .and_then(|m| m.strip_suffix("-->"))
                .map(str::trim);
            let Some(name) = marker else {
                return Err(format!(
                    "README.md line {}: a ```sh block without a `<!-- readme-test: NAME -->` \
                     line before it",
                    i + 1
                ));
            };
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].trim_start().starts_with("```"))
                .ok_or_else(|| format!("README.md line {}: unterminated block", i + 1))?;
            found.push(Block {
                name: name.to_string(),
                text: lines[i + 1..end].join("\n") + "\n",
            });
            i = end;
        }
        i += 1;
    }
    Ok(found)
}

fn block_use(name: &str) -> Option<(&'static str, &'static Use)> {
    BLOCKS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, scene, u)| (*scene, u))
}

#[test]
fn every_sh_block_of_the_readme_is_known_to_this_test() {
    let blocks = blocks().unwrap_or_else(|e| panic!("{e}"));
    for b in &blocks {
        if let Some((_, Use::NotRun(why))) = block_use(&b.name) {
            assert!(
                !why.is_empty(),
                "say why README block `{}` is not run",
                b.name
            );
            eprintln!("README block `{}` is not run: {why}", b.name);
        }
        assert!(
            block_use(&b.name).is_some(),
            "README.md's sh block `{}` is not in readme_commands.rs's BLOCKS: add it there \
             (run it, with what its output must show, or say why it cannot run)",
            b.name
        );
    }
    for (name, _, _) in BLOCKS {
        assert_eq!(
            blocks.iter().filter(|b| b.name == *name).count(),
            1,
            "BLOCKS names `{name}`, which README.md must have exactly once"
        );
    }
}

#[test]
fn the_tutorial_runs_as_written() {
    run_scene("tutorial");
}

#[test]
fn the_gossip_encryption_example_runs_as_written() {
    run_scene("encryption");
}

/// A scene's ports: one free port per [`README_PORTS`] slot (TCP and UDP alike).
fn free_ports() -> Vec<u16> {
    let mut held = Vec::new();
    let ports = (0..7)
        .map(|_| {
            loop {
                let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
                let port = tcp.local_addr().expect("local addr").port();
                if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
                    held.push((tcp, udp)); // held until all are chosen, so none repeats
                    break port;
                }
            }
        })
        .collect();
    drop(held);
    ports
}

/// A block's text with the README's port numbers replaced by the scene's.
fn with_ports(text: &str, ports: &[u16]) -> String {
    let mut out = text.to_string();
    for (readme, slot) in README_PORTS {
        out = out.replace(readme, &ports[*slot].to_string());
    }
    out
}

/// A directory holding the `tandem` shim of a scene (see the module docs).
fn shim_dir(scene: &str, ports: &[u16]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-readme-{}-{scene}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the shim directory");
    let real = binary(Runtime::Smol);
    let shim = format!(
        "#!/bin/sh\n\
         # readme_commands: the README's `tandem`, its agent on this scene's ports\n\
         if [ \"$1\" = agent ]; then\n\
         \x20 shift\n\
         \x20 exec '{real}' agent -http-addr 127.0.0.1:{http} -rpc-addr 127.0.0.1:{rpc} \
         -lan-port {lan} -wan-port {wan} \"$@\"\n\
         fi\n\
         exec '{real}' \"$@\"\n",
        real = real.display(),
        http = ports[0],
        rpc = ports[1],
        lan = ports[2],
        wan = ports[3],
    );
    let path = dir.join("tandem");
    std::fs::write(&path, shim).expect("write the shim");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// `bash -eo pipefail -c TEXT` in its own process group, in the scene's environment.
fn bash(text: &str, shim: &Path, ports: &[u16]) -> Command {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![shim.to_path_buf()];
    paths.extend(std::env::split_paths(&path));
    let mut cmd = Command::new("bash");
    cmd.args(["-eo", "pipefail", "-c", text])
        .env("PATH", std::env::join_paths(paths).expect("PATH"))
        .env("TANDEM_HTTP_ADDR", format!("127.0.0.1:{}", ports[0]))
        .env("TANDEM_RPC_ADDR", format!("127.0.0.1:{}", ports[1]))
        .env_remove("TANDEM_RPC_AUTH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    cmd
}

/// A process group the test started; killed (all of it) and reaped on drop.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.0.id()) {
            // SAFETY: kill(2) on the process group this test created (its leader is our
            // unreaped child, so the id is not reused).
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.0.wait();
    }
}

/// How long a block may run.
const BLOCK_DEADLINE: Duration = Duration::from_secs(60);

/// Runs a block to its end; its stdout, or a failure with both outputs.
fn run_block(name: &str, text: &str, shim: &Path, ports: &[u16]) -> String {
    let mut group = Group(bash(text, shim, ports).spawn().expect("spawn bash"));
    let mut stdout = group.0.stdout.take().expect("stdout");
    let mut stderr = group.0.stderr.take().expect("stderr");
    // Agents the block leaves running in the background keep the pipes open: read them
    // on threads and stop waiting once bash itself is done.
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + BLOCK_DEADLINE;
    let status = loop {
        if let Some(status) = group.0.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(group); // ends the background agents, so the pipes close
    let out = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let err = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    match status {
        Some(s) if s.success() => out,
        Some(s) => {
            panic!("README block `{name}` failed ({s}):\n{text}\nstdout:\n{out}\nstderr:\n{err}")
        }
        None => panic!(
            "README block `{name}` still running after {BLOCK_DEADLINE:?}:\n{text}\n\
             stdout:\n{out}\nstderr:\n{err}"
        ),
    }
}

/// Starts the scene's agent block and waits until its HTTP port answers.
fn start_agent(name: &str, text: &str, shim: &Path, ports: &[u16]) -> Group {
    let mut cmd = bash(text, shim, ports);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut group = Group(cmd.spawn().expect("spawn the agent block"));
    let deadline = Instant::now() + BLOCK_DEADLINE;
    while TcpStream::connect(("127.0.0.1", ports[0])).is_err() {
        if let Ok(Some(status)) = group.0.try_wait() {
            panic!("README block `{name}` exited ({status}) instead of serving:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "README block `{name}` does not listen on the HTTP port:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    group
}

/// Runs every block of `scene`, in README order.
fn run_scene(scene: &str) {
    tandem_tests::tools::curl();
    let blocks = blocks().unwrap_or_else(|e| panic!("{e}"));
    let ports = free_ports();
    let shim = shim_dir(scene, &ports);
    let mut agents = Vec::new();
    let mut ran = BTreeMap::new();
    for b in &blocks {
        let Some((s, how)) = block_use(&b.name) else {
            continue; // every_sh_block_of_the_readme_is_known_to_this_test fails for it
        };
        if s != scene {
            continue;
        }
        let text = with_ports(&b.text, &ports);
        match how {
            Use::NotRun(_) => {}
            Use::Agent => agents.push(start_agent(&b.name, &text, &shim, &ports)),
            Use::Run(wanted) => {
                let out = run_block(&b.name, &text, &shim, &ports);
                for (start, parts) in *wanted {
                    assert!(
                        out.lines()
                            .any(|l| l.starts_with(start) && parts.iter().all(|p| l.contains(p))),
                        "README block `{}` printed no line starting with {start:?} and \
                         containing {parts:?}:\n{text}\nstdout:\n{out}",
                        b.name
                    );
                }
                ran.insert(b.name.clone(), out);
            }
        }
    }
    assert!(!ran.is_empty(), "scene {scene} ran no block");
    drop(agents);
    let _ = std::fs::remove_dir_all(&shim);
}

/// The README's configuration file example: the one ```` ```json ```` block of its
/// "Configuration file" section.
fn config_example() -> &'static str {
    let section = README
        .split_once("\n## Configuration file\n")
        .map(|(_, rest)| rest)
        .expect("README.md has a `## Configuration file` section");
    let start = section.find("```json\n").expect("a ```json block in it") + "```json\n".len();
    let len = section[start..].find("```").expect("the block ends");
    &section[start..start + len]
}

#[test]
fn the_configuration_file_example_is_accepted_as_written() {
    let text = config_example();
    let parsed: serde_json::Value = serde_json::from_str(text).expect("the example is JSON");
    assert!(parsed.is_object());
    let path = std::env::temp_dir().join(format!("tandem-readme-{}.json", std::process::id()));
    std::fs::write(&path, text).expect("write the example");
    // Started like every test agent (ephemeral ports win over the file's addresses); a
    // refused file ends the agent, and the start fails with its log.
    let agent = tandem_tests::driver::process::Process::start_flags(
        Runtime::Smol,
        &["-config-file", path.to_str().expect("a UTF-8 path")],
    );
    let log = agent.log_lines().join("\n");
    let _ = std::fs::remove_file(&path);
    assert!(
        log.contains(r#"node "web-1""#),
        "the file's node_name applies:\n{log}"
    );
    for line in log.lines() {
        assert!(
            !line.contains("[WARN]") && !line.contains("[ERR]"),
            "the example draws a complaint:\n{log}"
        );
    }
}
