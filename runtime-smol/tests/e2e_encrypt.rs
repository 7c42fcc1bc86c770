//! End-to-end gossip encryption: `tandem keygen` makes a key, two `tandem agent -encrypt`
//! processes join over UDP on 127.0.0.1 and agree on the members, `tandem info` says
//! `encrypted = true`, a third agent without the key cannot join, and a bad key is a clear
//! startup error. Every port is ephemeral; every process is killed and reaped on drop.

mod client_support;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use client_support::{Out, tandem};
use serde_json::Value;
use support::RunningAgent;

const CONVERGE: Duration = Duration::from_secs(15);

fn cli(agent: &RunningAgent, cmd: &str, args: &[&str]) -> Out {
    let addr = format!("-rpc-addr=127.0.0.1:{}", agent.rpc_port);
    let mut all = vec![cmd, addr.as_str()];
    all.extend_from_slice(args);
    tandem(&all)
}

fn join(agent: &RunningAgent, to: &RunningAgent) -> Out {
    cli(agent, "join", &[&format!("127.0.0.1:{}", to.lan_port)])
}

/// Name → status, from `tandem members -format json`.
fn statuses(agent: &RunningAgent) -> BTreeMap<String, String> {
    let out = cli(agent, "members", &["-format=json"]);
    let v: Value = serde_json::from_str(out.ok()).expect("members JSON");
    v.as_array()
        .expect("an array")
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (s("Name"), s("Status"))
        })
        .collect()
}

fn alive(names: &[&str]) -> BTreeMap<String, String> {
    names
        .iter()
        .map(|n| (n.to_string(), "alive".to_string()))
        .collect()
}

fn wait_members(agent: &RunningAgent, want: &BTreeMap<String, String>) {
    let start = Instant::now();
    loop {
        let seen = statuses(agent);
        if &seen == want {
            return;
        }
        assert!(
            start.elapsed() < CONVERGE,
            "members now: {seen:?}, want {want:?}\nagent log:\n{}",
            agent.log_lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn agents_sharing_a_key_join_and_one_without_it_cannot() {
    let key = tandem(&["keygen"]).ok().trim().to_string();
    assert_eq!(key.len(), 44, "{key}");
    let a = RunningAgent::start(&["-node", "enc1", "-encrypt", &key]);
    let b = RunningAgent::start(&["-node", "enc2", "-encrypt", &key]);
    assert_eq!(
        join(&b, &a).ok(),
        "Successfully joined cluster by contacting 1 nodes.\n"
    );
    let both = alive(&["enc1", "enc2"]);
    wait_members(&a, &both);
    wait_members(&b, &both);
    let info = cli(&a, "info", &[]);
    assert!(
        info.ok().contains("\tencrypted = true\n"),
        "{}",
        info.stdout
    );

    let stranger = RunningAgent::start(&["-node", "plain3"]);
    let out = join(&stranger, &a);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("Error joining the cluster") && out.stderr.contains("Failed to join"),
        "{out:?}"
    );
    assert!(
        cli(&stranger, "info", &[])
            .ok()
            .contains("\tencrypted = false\n")
    );
    assert_eq!(statuses(&stranger), alive(&["plain3"]));
    assert_eq!(statuses(&a), both);
    assert_eq!(statuses(&b), both);
}

#[test]
fn a_bad_encrypt_key_is_a_startup_error() {
    for bad in ["AAAA", "not base64!"] {
        let out = tandem(&["agent", "-lan-port", "0", "-encrypt", bad]);
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(
            out.stderr
                .starts_with("invalid value \"<redacted>\" for flag -encrypt: the key"),
            "{out:?}"
        );
    }
}
