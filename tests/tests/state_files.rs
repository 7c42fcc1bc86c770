//! The agent's state files as effects, on the virtual clock: which bytes the core asks the
//! runtime to write where (`Effect::Persist`), and what a failed write does (logged,
//! counted, the agent goes on).

use tandem_core::{
    Agent, Config, Effect, FileWrite, Instant, Listener, Output, StateFile, StateFiles,
};

fn rpc_tags(agent: &mut Agent, set: &[(&str, &str)], delete: &[&str], now: Instant) {
    let mut req = Vec::new();
    let header = |v: &mut Vec<u8>, cmd: &str, seq: u64| {
        rmp::encode::write_map_len(v, 2).unwrap();
        rmp::encode::write_str(v, "Command").unwrap();
        rmp::encode::write_str(v, cmd).unwrap();
        rmp::encode::write_str(v, "Seq").unwrap();
        rmp::encode::write_uint(v, seq).unwrap();
    };
    header(&mut req, "handshake", 0);
    rmp::encode::write_map_len(&mut req, 1).unwrap();
    rmp::encode::write_str(&mut req, "Version").unwrap();
    rmp::encode::write_uint(&mut req, 1).unwrap();
    header(&mut req, "tags", 1);
    rmp::encode::write_map_len(&mut req, 2).unwrap();
    rmp::encode::write_str(&mut req, "Tags").unwrap();
    rmp::encode::write_map_len(&mut req, set.len() as u32).unwrap();
    for (k, v) in set {
        rmp::encode::write_str(&mut req, k).unwrap();
        rmp::encode::write_str(&mut req, v).unwrap();
    }
    rmp::encode::write_str(&mut req, "DeleteTags").unwrap();
    rmp::encode::write_array_len(&mut req, delete.len() as u32).unwrap();
    for k in delete {
        rmp::encode::write_str(&mut req, k).unwrap();
    }
    let c = agent.accept(Listener::Rpc, None, now).unwrap();
    assert_eq!(agent.handle_stream(c, &req, now), req.len());
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
