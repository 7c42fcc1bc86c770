//! End-to-end state files of both runtimes' binaries: what survives a restart (`-tags-file`).
//!
//! Waits poll with a deadline. Every process is killed and reaped on drop.

#[path = "conformance_rpc_support/mod.rs"]
mod rpc_support;
#[macro_use]
mod e2e_support;

use e2e_support::{Agent, Runtime, TempDir};
use serde_json::Value;

runtimes! {
    tags_set_at_run_time_survive_a_restart_with_the_tags_file;
}

fn own_tags(agent: &Agent) -> Value {
    let out = agent.cli("members", &["-format=json"]);
    let v: Value = serde_json::from_str(out.ok()).unwrap();
    v[0]["Tags"].clone()
}

fn tags_set_at_run_time_survive_a_restart_with_the_tags_file(rt: Runtime) {
    let dir = TempDir::new(rt.name());
    let file = dir.0.join("tags.json");
    let path = file.to_str().unwrap();
    let mut a = Agent::start(rt, &["-node", "t1", "-tags-file", path]);
    assert!(!file.exists(), "nothing to write yet");
    assert_eq!(
        a.cli("tags", &["-set", "zone=a", "-set", "rack=7"]).code,
        Some(0)
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "{\n  \"rack\": \"7\",\n  \"zone\": \"a\"\n}\n"
    );
    assert_eq!(a.cli("tags", &["-delete", "rack"]).code, Some(0));
    a.kill9();
    let b = Agent::start(rt, &["-node", "t1", "-tags-file", path]);
    let tags = own_tags(&b);
    assert_eq!(tags["zone"], "a", "{tags}");
    assert_eq!(tags["rack"], Value::Null, "{tags}");
    assert_eq!(tags["role"], "node", "{tags}");
    // -tag and -tags-file together are refused, as in Serf.
    let out = e2e_support::run(rt, &["agent", "-tags-file", path, "-tag", "x=1"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr
            .contains("Tags config not allowed while using tag files"),
        "{out:#?}"
    );
}
