//! [`MioAgent`] inside an application's own `mio::Poll`, in this process: the application
//! keeps its own socket on a token below the agent's range, adds a host command of its own,
//! and learns of the agent's requests (`reload`) through `poll_request`; and two agents
//! with gossip sockets, driven in one thread, forming a cluster.

mod support;

use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use serde_json::json;
use support::{mp_get, mp_map, post_api, rpc_request, take_responses};
use tandem_core::{CommandInfo, Config, Listener};
use tandem_mio::{AgentRequest, Finished, HostCommand, HostJob, MioAgent, Stopped};

const APP: Token = Token(0);
const AGENT_BASE: Token = Token(1 << 8);

/// The application's own host command: `greet NAME` emits one greeting.
fn greet(job: &HostJob, args: &[String]) -> Result<Finished, Stopped> {
    let [name] = args else {
        return Ok(Finished::usage("greet NAME"));
    };
    job.emit(json!({"type": "greeting", "text": format!("hello {name}")}))?;
    Ok(Finished::ok())
}

/// What the client thread saw.
struct Seen {
    greeting: serde_json::Value,
    reload_reply: rmpv::Value,
}

#[test]
fn an_application_poll_serves_the_agent_beside_its_own_socket() {
    let mut poll = Poll::new().unwrap();
    let mut own = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let own_addr = own.local_addr().unwrap();
    poll.registry()
        .register(&mut own, APP, Interest::READABLE)
        .unwrap();

    let mut agent = MioAgent::new(Config::default()).unwrap();
    agent
        .register_host_command(HostCommand {
            info: CommandInfo::new("greet", "Say hello", "greet NAME"),
            run: Arc::new(greet),
        })
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let printed = Arc::clone(&lines);
    agent.set_log_printer(move |record| printed.lock().unwrap().push(record.line.to_string()));
    let http = agent
        .listen(Listener::Http, "127.0.0.1:0".parse().unwrap())
        .unwrap();
    agent.register(poll.registry(), AGENT_BASE).unwrap();
    // Listening after registering works too.
    let rpc = agent
        .listen(Listener::Rpc, "127.0.0.1:0".parse().unwrap())
        .unwrap();
    assert_eq!(agent.local_addr(Listener::Rpc), Some(rpc));

    let done = Arc::new(AtomicBool::new(false));
    let client = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            // The application's own socket: the agent must leave its events alone.
            drop(std::net::TcpStream::connect(own_addr).unwrap());
            let mut s = std::net::TcpStream::connect(http).unwrap();
            s.write_all(&post_api(r#"{"action":"exec","command":"greet world"}"#))
                .unwrap();
            let mut buf = Vec::new();
            let greeting = loop {
                if let Some(r) = take_responses(&mut buf).into_iter().next() {
                    break r.json();
                }
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).unwrap();
                assert!(n > 0);
                buf.extend_from_slice(&chunk[..n]);
            };
            let mut r = std::net::TcpStream::connect(rpc).unwrap();
            let mut req = rpc_request("handshake", 0, Some(mp_map(&[("Version", 1.into())])));
            req.extend(rpc_request("reload", 1, None));
            r.write_all(&req).unwrap();
            let _handshake = rmpv::decode::read_value(&mut r).unwrap();
            let reload_reply = rmpv::decode::read_value(&mut r).unwrap();
            done.store(true, Ordering::SeqCst);
            Seen {
                greeting,
                reload_reply,
            }
        })
    };

    let mut events = Events::with_capacity(64);
    let mut own_accepted = 0;
    let mut requests = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the client never finished");
        let cap = Duration::from_millis(20);
        let timeout = agent.poll_timeout().map_or(cap, |t| t.min(cap));
        match poll.poll(&mut events, Some(timeout)) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.unwrap(),
        }
        for event in events.iter() {
            if agent.handle_event(event) {
                continue;
            }
            assert_eq!(event.token(), APP, "only the application's token is left");
            while own.accept().is_ok() {
                own_accepted += 1;
            }
        }
        agent.handle_timeout();
        while let Some(request) = agent.poll_request() {
            if request == AgentRequest::Reload {
                agent.input(|a, now| a.reload_finished(Ok(Config::default()), now));
            }
            requests.push(request);
        }
    }
    let seen = client.join().unwrap();

    assert_eq!(own_accepted, 1);
    let items = seen.greeting["body"]["results"].as_array().unwrap().clone();
    assert_eq!(items[0]["type"], "greeting");
    assert_eq!(items[0]["text"], "hello world");
    assert_eq!(items[1]["statusCode"], 0);
    assert_eq!(mp_get(&seen.reload_reply, "Error").as_str(), Some(""));
    assert_eq!(requests, [AgentRequest::Reload]);
    // `help` lists the application's command beside the built-in ones.
    let names: Vec<String> = agent
        .agent()
        .commands()
        .into_iter()
        .map(|c| c.name)
        .collect();
    for name in ["greet", "sysinfo", "dashboard", "version"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    assert!(
        lines.lock().unwrap().iter().all(|l| !l.contains("[DEBUG]")),
        "the printer gets records at the configured level only"
    );
    agent.close_all();
    assert_eq!(agent.connection_count(), 0);
    assert_eq!(agent.agent().connection_count(Listener::Http), 0);
}

/// Two agents in one thread, each in its own `Poll` (mio allows one `Waker` per `Poll`),
/// gossiping with each other over their UDP sockets: the embedder's side of `with_gossip`
/// and `Agent::join`.
#[test]
fn two_embedded_agents_gossip_into_one_cluster() {
    use tandem_core::Pool;

    let mut nodes: Vec<(Poll, MioAgent)> = ["e1", "e2"]
        .iter()
        .map(|name| {
            let poll = Poll::new().unwrap();
            let config = Config {
                node_name: (*name).into(),
                lan_addr: "127.0.0.1:0".parse().unwrap(),
                ..Config::default()
            };
            let mut agent = MioAgent::with_gossip(config).unwrap();
            agent.register(poll.registry(), AGENT_BASE).unwrap();
            (poll, agent)
        })
        .collect();
    let first = nodes[0].1.gossip_addr(Pool::Lan).unwrap().to_string();
    nodes[1]
        .1
        .input(|agent, now| agent.join(&[first.as_str()], false, now));

    let mut events = Events::with_capacity(256);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes
        .iter()
        .all(|(_, a)| a.agent().cluster().active_members(Pool::Lan) == 2)
    {
        assert!(Instant::now() < deadline, "the two agents never met");
        for (poll, agent) in &mut nodes {
            // Short waits, so neither agent starves the other.
            let timeout = agent.poll_timeout().map_or(Duration::from_millis(5), |t| {
                t.min(Duration::from_millis(5))
            });
            match poll.poll(&mut events, Some(timeout)) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => r.unwrap(),
            }
            for event in events.iter() {
                assert!(agent.handle_event(event), "{event:?}");
            }
            agent.handle_timeout();
        }
    }
    for (_, agent) in &nodes {
        assert_eq!(agent.datagrams_dropped(), 0);
    }
}
