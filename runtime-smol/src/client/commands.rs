//! The subcommands that speak the agent RPC: one command each on a fresh connection, with
//! Consul's messages (and Serf's for `event` and `tags`, which Consul's RPC lacks).

use rmpv::Value;

use super::format;
use super::interrupt::Interrupts;
use super::rpc::{Message, Reply, RpcClient, RpcError, body, field};
use super::{Command, Invocation, fail, out, stream_out};
use crate::cli::FlagSpec;

/// Connects as the invocation says, or prints Consul's connection error.
fn connect(inv: &Invocation) -> Result<RpcClient, i32> {
    RpcClient::connect(&inv.rpc_addr(), inv.rpc_auth().as_deref())
        .map_err(|e| fail(&format!("Error connecting to tandem agent: {e}")))
}

/// Prints a flag error and the command's usage; exit code 1.
fn usage_error(cmd: &Command, message: &str) -> i32 {
    fail(&format!("{message}\n{}", cmd.help_hint()))
}

/// Runs a command without a reply body; prints `done` on success or `what: error`.
fn simple(inv: &Invocation, command: &str, request: Option<Value>, what: &str, done: &str) -> i32 {
    let mut client = match connect(inv) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.call(command, request, Reply::Header) {
        Ok(_) => {
            if !done.is_empty() {
                out(done);
            }
            0
        }
        Err(e) => fail(&format!("{what}: {e}")),
    }
}

/// Why `pattern` is no regular expression, worded as Go's `regexp` words it
/// (`error parsing regexp: unclosed group: `(``): the parser's own reason for the user's
/// pattern, not the anchored one the client compiles (regex-automata's build error only
/// says `error parsing pattern 0`).
fn regexp_error(pattern: &str, built: &regex_automata::meta::BuildError) -> String {
    let kind = match regex_syntax::Parser::new().parse(pattern) {
        Err(regex_syntax::Error::Parse(e)) => e.kind().to_string(),
        Err(regex_syntax::Error::Translate(e)) => e.kind().to_string(),
        Err(e) => e.to_string(),
        // The pattern alone parses; the error is the anchored whole's (a size limit, or a
        // pattern like `a)|(b` that only parses inside the anchors).
        Ok(_) => return built.to_string(),
    };
    format!("error parsing regexp: {kind}: `{pattern}`")
}

/// Rejects arguments for commands that take none.
fn no_args(cmd: &Command, inv: &Invocation) -> Result<(), i32> {
    if inv.args.is_empty() {
        Ok(())
    } else {
        Err(usage_error(
            cmd,
            &format!("unexpected extra arguments: {}", inv.args.join(" ")),
        ))
    }
}

// ----- members ---------------------------------------------------------------------------

pub(super) const MEMBERS: Command = Command {
    name: "members",
    synopsis: "Lists the members of the cluster",
    usage: "\
Usage: tandem members [options]

  Outputs the members of a running tandem agent's pool (members-lan), or of the WAN
  pool with -wan (members-wan). Exits 2 when no member matches the filters.",
    flags: &[
        FlagSpec {
            name: "detailed",
            value: None,
            help: "Print every tag of each member instead of the Type, Build, Protocol and \
                   DC columns.",
        },
        FlagSpec {
            name: "format",
            value: Some("text"),
            help: "Output format: text (a table) or json (an array of members).",
        },
        FlagSpec {
            name: "name",
            value: Some("<regexp>"),
            help: "Only list members whose name matches this regular expression, anchored \
                   at both ends.",
        },
        FlagSpec {
            name: "status",
            value: Some("<regexp>"),
            help: "Only list members whose status matches this regular expression, \
                   anchored at both ends (alive, leaving, left, failed).",
        },
        FlagSpec {
            name: "tag",
            value: Some("<key=regexp>"),
            help: "Only list members whose tag matches the regular expression, anchored at \
                   both ends (a missing tag is \"\"). May be given more than once.",
        },
        FlagSpec {
            name: "wan",
            value: None,
            help: "List the WAN pool's members instead (empty unless the agent is a server).",
        },
    ],
    rpc: true,
    flags_after_first_arg: false,
    run: members,
};

fn members(inv: &Invocation) -> i32 {
    let cmd = &MEMBERS;
    let (wan, detailed) = match (inv.bool("wan", false), inv.bool("detailed", false)) {
        (Ok(w), Ok(d)) => (w, d),
        (Err(e), _) | (_, Err(e)) => return usage_error(cmd, &e.to_string()),
    };
    let json = match inv.value("format").unwrap_or("text") {
        "text" => false,
        "json" => true,
        other => return fail(&format!("Invalid output format: {other:?} (text or json)")),
    };
    if let Err(code) = no_args(cmd, inv) {
        return code;
    }
    let anchored = |what: &str, re: &str| {
        regex_automata::meta::Regex::new(&format!("^(?:{re})$")).map_err(|e| {
            let why = regexp_error(re, &e);
            fail(&format!("Failed to compile {what} regexp: {why}"))
        })
    };
    let status_re = match anchored("status", inv.value("status").unwrap_or(".*")) {
        Ok(re) => re,
        Err(code) => return code,
    };
    let name_re = match anchored("name", inv.value("name").unwrap_or(".*")) {
        Ok(re) => re,
        Err(code) => return code,
    };
    let mut tag_res = Vec::new();
    for tag in inv.values("tag") {
        let Some((k, re)) = tag.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return fail(&format!("Invalid tag: '{tag}'"));
        };
        match anchored("tag", re) {
            Ok(re) => tag_res.push((k.to_string(), re)),
            Err(code) => return code,
        }
    }
    let mut client = match connect(inv) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let command = if wan { "members-wan" } else { "members-lan" };
    let reply = match client.call(command, None, Reply::Body) {
        Ok(body) => body.unwrap_or(Value::Nil),
        Err(e) => return fail(&format!("Error retrieving members: {e}")),
    };
    let mut members = match format::members(&reply) {
        Ok(m) => m,
        Err(e) => return fail(&format!("Error retrieving members: {e}")),
    };
    members.retain(|m| {
        status_re.is_match(&m.status)
            && name_re.is_match(&m.name)
            && tag_res
                .iter()
                .all(|(k, re)| re.is_match(m.tags.get(k).map_or("", String::as_str)))
    });
    if members.is_empty() {
        return 2;
    }
    if json {
        let list: Vec<serde_json::Value> = members.iter().map(format::Member::to_json).collect();
        let text = serde_json::to_string_pretty(&list).unwrap_or_default();
        out(&text);
    } else if detailed {
        super::print_out(&format::members_detailed(&members));
    } else {
        super::print_out(&format::members_table(&members));
    }
    0
}

// ----- join ------------------------------------------------------------------------------

pub(super) const JOIN: Command = Command {
    name: "join",
    synopsis: "Tells the agent to join a cluster",
    usage: "\
Usage: tandem join [options] address ...

  Tells a running tandem agent (with \"tandem agent\") to join the cluster by
  specifying at least one existing member.",
    flags: &[
        FlagSpec {
            name: "wan",
            value: None,
            help: "Join the WAN pool (servers only).",
        },
        FlagSpec {
            name: "replay",
            value: None,
            help: "Replay past user events (those the members still hold) to this agent.",
        },
    ],
    rpc: true,
    flags_after_first_arg: false,
    run: join,
};

fn join(inv: &Invocation) -> i32 {
    let wan = match inv.bool("wan", false) {
        Ok(w) => w,
        Err(e) => return usage_error(&JOIN, &e.to_string()),
    };
    let replay = match inv.bool("replay", false) {
        Ok(r) => r,
        Err(e) => return usage_error(&JOIN, &e.to_string()),
    };
    if inv.args.is_empty() {
        return usage_error(&JOIN, "At least one address to join must be specified.");
    }
    let mut client = match connect(inv) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let existing = Value::Array(inv.args.iter().map(|a| a.as_str().into()).collect());
    let request = body([
        ("Existing", existing),
        ("WAN", wan.into()),
        ("Replay", replay.into()),
    ]);
    match client.call("join", Some(request), Reply::Body) {
        Ok(reply) => {
            let n = reply
                .as_ref()
                .and_then(|b| field(b, "Num"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            out(&format!(
                "Successfully joined cluster by contacting {n} nodes."
            ));
            0
        }
        Err(e) => fail(&format!("Error joining the cluster: {e}")),
    }
}

// ----- force-leave, leave, reload ---------------------------------------------------------

pub(super) const FORCE_LEAVE: Command = Command {
    name: "force-leave",
    synopsis: "Forces a member of the cluster to enter the \"left\" state",
    usage: "\
Usage: tandem force-leave [options] name

  Forces a member of the cluster to enter the \"left\" state. Note that if the
  member is still actually alive, it will eventually rejoin the cluster. This
  command is most useful for cleaning out \"failed\" nodes that are never
  coming back.",
    flags: &[FlagSpec {
        name: "prune",
        value: None,
        help: "Also remove the node from the member list at once.",
    }],
    rpc: true,
    flags_after_first_arg: false,
    run: force_leave,
};

fn force_leave(inv: &Invocation) -> i32 {
    let prune = match inv.bool("prune", false) {
        Ok(p) => p,
        Err(e) => return usage_error(&FORCE_LEAVE, &e.to_string()),
    };
    let [node] = inv.args.as_slice() else {
        return usage_error(
            &FORCE_LEAVE,
            "A node name must be specified to force leave.",
        );
    };
    let request = body([("Node", node.as_str().into()), ("Prune", prune.into())]);
    simple(inv, "force-leave", Some(request), "Error force leaving", "")
}

pub(super) const LEAVE: Command = Command {
    name: "leave",
    synopsis: "Gracefully leaves the cluster and shuts down",
    usage: "\
Usage: tandem leave [options]

  Causes the agent to gracefully leave the cluster and shut down.",
    flags: &[],
    rpc: true,
    flags_after_first_arg: false,
    run: leave,
};

fn leave(inv: &Invocation) -> i32 {
    if let Err(code) = no_args(&LEAVE, inv) {
        return code;
    }
    simple(
        inv,
        "leave",
        None,
        "Error leaving",
        "Graceful leave complete",
    )
}

pub(super) const RELOAD: Command = Command {
    name: "reload",
    synopsis: "Triggers the agent to reload configuration files",
    usage: "\
Usage: tandem reload [options]

  Causes the agent to reload its configuration file (as SIGHUP does) and waits
  for the outcome: a file that does not read or parse is printed and exits 1
  (the agent keeps its running configuration).",
    flags: &[],
    rpc: true,
    flags_after_first_arg: false,
    run: reload,
};

fn reload(inv: &Invocation) -> i32 {
    if let Err(code) = no_args(&RELOAD, inv) {
        return code;
    }
    simple(
        inv,
        "reload",
        None,
        "Error reloading",
        "Configuration reload triggered",
    )
}

// ----- info ------------------------------------------------------------------------------

pub(super) const INFO: Command = Command {
    name: "info",
    synopsis: "Provides debugging information for operators",
    usage: "\
Usage: tandem info [options]

  Provides debugging information for operators: the agent's stats, section by
  section, sorted.",
    flags: &[FlagSpec {
        name: "format",
        value: Some("text"),
        help: "Output format: text (sections of key = value lines) or json (one object \
               of sections, as `serf info -format json` prints it).",
    }],
    rpc: true,
    flags_after_first_arg: false,
    run: info,
};

fn info(inv: &Invocation) -> i32 {
    if let Err(code) = no_args(&INFO, inv) {
        return code;
    }
    let json = match inv.value("format").unwrap_or("text") {
        "text" => false,
        "json" => true,
        other => return fail(&format!("Invalid format: {other}")),
    };
    let mut client = match connect(inv) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let stats = match client.call("stats", None, Reply::Body) {
        Ok(body) => body.unwrap_or(Value::Nil),
        Err(e) => return fail(&format!("Error querying agent: {e}")),
    };
    let text = if json {
        format::info_json(&stats)
    } else {
        format::info(&stats)
    };
    match text {
        Ok(text) => {
            super::print_out(&text);
            0
        }
        Err(e) => fail(&format!("Error querying agent: {e}")),
    }
}

// ----- monitor ---------------------------------------------------------------------------

pub(super) const MONITOR: Command = Command {
    name: "monitor",
    synopsis: "Streams logs from a tandem agent",
    usage: "\
Usage: tandem monitor [options]

  Shows recent log messages of a tandem agent, and attaches to the agent,
  outputting log messages as they occur in real time. The monitor lets you
  listen for log levels that may be filtered out of the agent's own output.
  Ctrl-C (SIGINT) or SIGTERM stops the monitor (it sends `stop`) and exits 0.",
    flags: &[FlagSpec {
        name: "log-level",
        value: Some("info"),
        help: "Log level of the messages to show: trace, debug, info, warn or err.",
    }],
    rpc: true,
    flags_after_first_arg: false,
    run: monitor,
};

fn monitor(inv: &Invocation) -> i32 {
    if let Err(code) = no_args(&MONITOR, inv) {
        return code;
    }
    // Before connecting: a Ctrl-C from here on is handled, never the default kill.
    let interrupts = match Interrupts::install() {
        Ok(i) => i,
        Err(e) => return fail(&format!("Error handling signals: {e}")),
    };
    let mut client = match connect(inv) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let level = inv.value("log-level").unwrap_or("INFO");
    let request = body([("LogLevel", level.into())]);
    let started = client
        .send("monitor", Some(request), Reply::Stream)
        .and_then(|seq| client.wait(seq).map(|_| seq));
    let seq = match started {
        Ok(seq) => seq,
        Err(e) => return fail(&format!("Error starting monitor: {e}")),
    };
    let (stop_seq, stop) =
        client.prepare("stop", Some(body([("Stop", seq.into())])), Reply::Header);
    match client.writer() {
        Ok(mut writer) => interrupts.on_interrupt(move || {
            // If this fails the connection is gone, and the reader sees that itself.
            let _ = std::io::Write::write_all(&mut writer, &stop);
        }),
        Err(e) => return fail(&format!("Error starting monitor: {e}")),
    }
    loop {
        match client.recv() {
            Ok(Message::Record { body, .. }) => {
                let line = field(&body, "Log").and_then(Value::as_str);
                if line.is_some_and(|l| stream_out(l).is_err()) {
                    // Nobody reads stdout any more; the agent drops the monitor with the
                    // connection.
                    return 1;
                }
            }
            Ok(Message::Reply { seq, .. }) if seq == stop_seq => return 0,
            Ok(Message::Reply { .. }) => {}
            Err(RpcError::Closed) => {
                return fail(
                    "Remote side ended the monitor! This usually means that the\n\
                     remote side has exited or crashed.",
                );
            }
            Err(e) => return fail(&format!("Error reading the monitor: {e}")),
        }
    }
}

// ----- event, tags (Serf's) --------------------------------------------------------------

pub(super) const EVENT: Command = Command {
    name: "event",
    synopsis: "Sends a custom user event",
    usage: "\
Usage: tandem event [options] name [payload]

  Dispatches a custom user event to the cluster through the agent. The name and
  payload together may take at most 512 bytes.",
    flags: &[FlagSpec {
        name: "coalesce",
        value: None,
        help: "Whether events of the same name may be coalesced (default true; \
               -coalesce=false to turn off).",
    }],
    rpc: true,
    flags_after_first_arg: false,
    run: event,
};

fn event(inv: &Invocation) -> i32 {
    let coalesce = match inv.bool("coalesce", true) {
        Ok(c) => c,
        Err(e) => return usage_error(&EVENT, &e.to_string()),
    };
    let (name, payload) = match inv.args.as_slice() {
        [] => return usage_error(&EVENT, "An event name must be specified."),
        [name] => (name, ""),
        [name, payload] => (name, payload.as_str()),
        _ => {
            return usage_error(
                &EVENT,
                "Too many command line arguments. Only a name and payload must be specified.",
            );
        }
    };
    let request = body([
        ("Coalesce", coalesce.into()),
        ("Name", name.as_str().into()),
        ("Payload", Value::Binary(payload.as_bytes().to_vec())),
    ]);
    let done = format!("Event '{name}' dispatched! Coalescing enabled: {coalesce}");
    simple(inv, "event", Some(request), "Error sending event", &done)
}

pub(super) const TAGS: Command = Command {
    name: "tags",
    synopsis: "Modifies the tags of a running agent",
    usage: "\
Usage: tandem tags [options] ...

  Modifies the tags of a running tandem agent: deletes first, then sets. The
  tags show in `tandem members -detailed`.",
    flags: &[
        FlagSpec {
            name: "delete",
            value: Some("<name>"),
            help: "Remove a tag, if it exists. May be given more than once.",
        },
        FlagSpec {
            name: "set",
            value: Some("<key=value>"),
            help: "Create or update a tag. May be given more than once.",
        },
    ],
    rpc: true,
    flags_after_first_arg: false,
    run: tags,
};

fn tags(inv: &Invocation) -> i32 {
    if let Err(code) = no_args(&TAGS, inv) {
        return code;
    }
    let set = inv.values("set");
    let delete = inv.values("delete");
    if set.is_empty() && delete.is_empty() {
        return fail(&TAGS.help());
    }
    let mut pairs = Vec::new();
    for tag in set {
        let Some((k, v)) = tag.split_once('=') else {
            return fail(&format!("Invalid tag '{tag}' provided"));
        };
        pairs.push((Value::from(k), Value::from(v)));
    }
    let request = body([
        (
            "DeleteTags",
            Value::Array(delete.into_iter().map(Value::from).collect()),
        ),
        ("Tags", Value::Map(pairs)),
    ]);
    simple(
        inv,
        "tags",
        Some(request),
        "Error setting tags",
        "Successfully updated agent tags",
    )
}
