//! The agent's state files as effects, on the virtual clock: which bytes the core asks the
//! runtime to write where (`Effect::Persist`), and what a failed write does (logged,
//! counted, the agent goes on).

#[path = "conformance_rpc_support/mod.rs"]
mod rpc_support;

use rpc_support::{V, handshake, map, req_with, strs};
use tandem_core::{
    Agent, Config, Effect, FileWrite, Instant, Listener, Output, StateFile, StateFiles,
};

fn rpc_tags(agent: &mut Agent, set: &[(&str, &str)], delete: &[&str], now: Instant) {
    let tags = V::M(
        set.iter()
            .map(|(k, v)| (V::from(*k), V::from(*v)))
            .collect(),
    );
    let body = map(&[("Tags", tags), ("DeleteTags", strs(delete))]);
    let mut bytes = handshake(0);
    bytes.extend(req_with("tags", 1, &body));
    let c = agent.accept(Listener::Rpc, None, now).unwrap();
    assert_eq!(agent.handle_stream(c, &bytes, now), bytes.len());
    agent.handle_reset(c, now);
}

/// The `Persist` effects drained from the agent, and its log lines.
fn drain(agent: &mut Agent) -> (Vec<(StateFile, FileWrite, String)>, Vec<String>) {
    let (mut writes, mut logs) = (Vec::new(), Vec::new());
    while let Some(out) = agent.poll_output() {
        match out {
            Output::Effect(Effect::Persist { file, write, bytes }) => {
                writes.push((file, write, String::from_utf8(bytes).unwrap()));
            }
            Output::Log(r) => logs.push(r.line.to_string()),
            _ => {}
        }
    }
    (writes, logs)
}

#[test]
fn tags_set_at_run_time_are_written_to_the_tags_file_without_the_built_in_ones() {
    let mut cfg = Config::default();
    cfg.tags.insert("team".into(), "infra".into());
    cfg.state_files = StateFiles {
        tags: true,
        ..StateFiles::default()
    };
    let now = Instant::from_millis(1);
    let mut agent = Agent::new(cfg, 1, Instant::ZERO);
    rpc_tags(&mut agent, &[("zone", "a")], &["team"], now);
    let (writes, _) = drain(&mut agent);
    assert_eq!(
        writes,
        [(
            StateFile::Tags,
            FileWrite::Replace,
            "{\n  \"zone\": \"a\"\n}\n".to_string()
        )]
    );
    // A write that failed: logged at ERR, counted; the agent goes on.
    agent.persisted(StateFile::Tags, Err("/x/tags.json: Permission denied"), now);
    let (_, logs) = drain(&mut agent);
    assert!(
        logs.iter().any(|l| l.ends_with(
            "[ERR] agent: failed to write the tags file: /x/tags.json: Permission denied"
        )),
        "{logs:?}"
    );
    assert_eq!(agent.persist_failures(), 1);
    rpc_tags(&mut agent, &[("zone", "b")], &[], now);
    assert_eq!(drain(&mut agent).0.len(), 1, "still writing");
}

#[test]
fn without_a_tags_file_nothing_is_written() {
    let now = Instant::from_millis(1);
    let mut agent = Agent::new(Config::default(), 1, Instant::ZERO);
    rpc_tags(&mut agent, &[("zone", "a")], &[], now);
    assert!(drain(&mut agent).0.is_empty());
}
