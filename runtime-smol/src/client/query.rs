//! `tandem query` and `tandem reachability`: Serf's `query` RPC, printed as Serf's CLI
//! prints it (`cmd/serf/command/query.go`, `reachability.go`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rmpv::Value;

use super::rpc::{Message, Reply, RpcClient, RpcError, body, field};
use super::{Command, Invocation, fail, out};
use crate::cli::FlagSpec;
use tandem_runtime::flags::parse_go_duration;

pub(super) const QUERY: Command = Command {
    name: "query",
    synopsis: "Sends a query to the cluster",
    usage: "\
Usage: tandem query [options] name [payload]

  Dispatches a query to the cluster through the agent, and prints the acks and
  responses as they arrive until the query's timeout ends it.",
    flags: &[
        FlagSpec {
            name: "format",
            value: Some("text"),
            help: "Output format: text (streamed as answers come) or json (at the end).",
        },
        FlagSpec {
            name: "no-ack",
            value: None,
            help: "Do not ask the nodes to acknowledge the query.",
        },
        FlagSpec {
            name: "node",
            value: Some("<name>"),
            help: "Only this node answers. May be given more than once.",
        },
        FlagSpec {
            name: "relay-factor",
            value: Some("0"),
            help: "Also relay acks and responses through this many other nodes (0-255).",
        },
        FlagSpec {
            name: "tag",
            value: Some("<key=regexp>"),
            help: "Only nodes whose tag matches the (unanchored) regular expression \
                   answer. May be given more than once.",
        },
        FlagSpec {
            name: "timeout",
            value: Some("<duration>"),
            help: "How long the query stays open (15s, 500ms, ...); default: the agent's, \
                   gossip interval × 16 × ceil(log10(N+1)).",
        },
    ],
    rpc: true,
    flags_after_first_arg: false,
    run: query,
};

pub(super) const REACHABILITY: Command = Command {
    name: "reachability",
    synopsis: "Tests the network reachability of the cluster",
    usage: "\
Usage: tandem reachability [options]

  Tests the network reachability of this node: every live member should ack an
  internal ping query.",
    flags: &[FlagSpec {
        name: "verbose",
        value: None,
        help: "Print each ack and the timings.",
    }],
    rpc: true,
    flags_after_first_arg: false,
    run: reachability,
};

const TOO_MANY_ACKS: &str =
    "This could mean Serf is detecting false-failures due to a misconfiguration or network issue.";
const TOO_FEW_ACKS: &str = "This could mean Serf gossip packets are being lost due to a misconfiguration or network issue.";
const DUPLICATE_RESPONSES: &str =
    "Duplicate responses means there is a misconfiguration. Verify that node names are unique.";
const TROUBLESHOOTING: &str = "
Troubleshooting tips:
* Ensure that the bind addr:port is accessible by all other nodes
* If an advertise address is set, ensure it routes to the bind address
* Check that no nodes are behind a NAT
* If nodes are behind firewalls or iptables, check that Serf traffic is permitted (UDP and TCP)
* Verify networking equipment is functional";

/// Go's `encoding/json` escapes `<`, `>` and `&` inside strings (they only occur there).
fn go_json(text: &str) -> String {
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Starts a query; its Seq once the agent accepted it.
fn start_query(client: &mut RpcClient, request: Value) -> Result<u64, RpcError> {
    let seq = client.send("query", Some(request), Reply::Stream)?;
    client.wait(seq)?;
    Ok(seq)
}

/// Hands each record of the query `seq` (type, from, payload) to `each` until `done`.
fn query_records(
    client: &mut RpcClient,
    seq: u64,
    mut each: impl FnMut(&str, &str, &[u8]),
) -> Result<(), RpcError> {
    loop {
        match client.recv()? {
            Message::Record { seq: s, body } if s == seq => {
                let kind = field(&body, "Type").and_then(Value::as_str).unwrap_or("");
                let from = field(&body, "From").and_then(Value::as_str).unwrap_or("");
                let payload = match field(&body, "Payload") {
                    Some(Value::Binary(b)) => b.as_slice(),
                    Some(Value::String(s)) => s.as_bytes(),
                    _ => &[],
                };
                if kind == "done" {
                    return Ok(());
                }
                each(kind, from, payload);
            }
            Message::Record { .. } | Message::Reply { .. } => {}
        }
    }
}

fn connect(inv: &Invocation) -> Result<RpcClient, i32> {
    RpcClient::connect(&inv.rpc_addr(), inv.rpc_auth().as_deref())
        .map_err(|e| fail(&format!("Error connecting to tandem agent: {e}")))
}

fn query(inv: &Invocation) -> i32 {
    let cmd = &QUERY;
    let no_ack = match inv.bool("no-ack", false) {
        Ok(b) => b,
        Err(e) => return fail(&format!("{e}\n\n{}", cmd.help())),
    };
    let mut tags = BTreeMap::new();
    for tag in inv.values("tag") {
        match tag.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                tags.insert(k.to_string(), v.to_string());
            }
            _ => return fail(&format!("Error: Invalid tag: '{tag}'")),
        }
    }
    let (name, payload) = match inv.args.as_slice() {
        [] => {
            return fail(&format!(
                "A query name must be specified.\n\n{}",
                cmd.help()
            ));
        }
        [name] => (name.as_str(), None),
        [name, payload] => (name.as_str(), Some(payload.as_bytes())),
        _ => {
            return fail(&format!(
                "Too many command line arguments. Only a name and payload must be \
                 specified.\n\n{}",
                cmd.help()
            ));
        }
    };
    let relay = inv.value("relay-factor").unwrap_or("0");
    let relay: u8 = match relay.parse::<i64>() {
        Ok(n) if (0..=255).contains(&n) => n as u8,
        Ok(_) => return fail("Relay factor must be between 0 and 255"),
        Err(_) => {
            return fail(&format!(
                "invalid value \"{relay}\" for flag -relay-factor: parse error\n\n{}",
                cmd.help()
            ));
        }
    };
    let timeout = match inv.value("timeout") {
        None => Duration::ZERO,
        Some(t) => match parse_go_duration(t) {
            Some(d) => d,
            None => {
                return fail(&format!(
                    "invalid value \"{t}\" for flag -timeout: parse error\n\n{}",
                    cmd.help()
                ));
            }
        },
    };
    let json = match inv.value("format").unwrap_or("text") {
        "text" => false,
        "json" => true,
        other => return fail(&format!("Invalid format: {other}")),
    };
    let nodes = inv.values("node");
    let filter_nodes = if nodes.is_empty() {
        Value::Nil
    } else {
        Value::Array(nodes.iter().map(|n| Value::from(*n)).collect())
    };
    let filter_tags = Value::Map(
        tags.iter()
            .map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str())))
            .collect(),
    );
    let request = body([
        ("FilterNodes", filter_nodes),
        ("FilterTags", filter_tags),
        ("Name", name.into()),
        (
            "Payload",
            payload.map_or(Value::Nil, |p| Value::Binary(p.to_vec())),
        ),
        ("RelayFactor", relay.into()),
        ("RequestAck", (!no_ack).into()),
        (
            "Timeout",
            i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX).into(),
        ),
    ]);
    let mut client = match connect(inv) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let seq = match start_query(&mut client, request) {
        Ok(seq) => seq,
        Err(e) => return fail(&format!("Error sending query: {e}")),
    };
    if !json {
        out(&format!("Query '{name}' dispatched"));
    }
    let mut acks: Vec<String> = Vec::new();
    let mut responses: BTreeMap<String, String> = BTreeMap::new();
    let (mut num_acks, mut num_resp) = (0, 0);
    let result = query_records(&mut client, seq, |kind, from, payload| match kind {
        "ack" if json => acks.push(from.to_string()),
        "ack" => {
            num_acks += 1;
            out(&format!("Ack from '{from}'"));
        }
        "response" if json => {
            responses.insert(from.to_string(), String::from_utf8_lossy(payload).into());
        }
        "response" => {
            num_resp += 1;
            let p = payload.strip_suffix(b"\n").unwrap_or(payload);
            out(&format!(
                "Response from '{from}': {}",
                String::from_utf8_lossy(p)
            ));
        }
        _ => {}
    });
    if let Err(e) = result {
        return fail(&format!("Error reading the query: {e}"));
    }
    if json {
        let doc = serde_json::json!({
            "Acks": if acks.is_empty() { serde_json::Value::Null } else { acks.into() },
            "Responses": responses,
        });
        out(&go_json(
            &serde_json::to_string_pretty(&doc).unwrap_or_default(),
        ));
    } else {
        if !no_ack {
            out(&format!("Total Acks: {num_acks}"));
        }
        out(&format!("Total Responses: {num_resp}"));
    }
    0
}

fn reachability(inv: &Invocation) -> i32 {
    let verbose = match inv.bool("verbose", false) {
        Ok(v) => v,
        Err(e) => return fail(&format!("{e}\n\n{}", REACHABILITY.help())),
    };
    let mut client = match connect(inv) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let members = match client.call("members", None, Reply::Body) {
        Ok(b) => b.unwrap_or(Value::Nil),
        Err(e) => return fail(&format!("Error getting members: {e}")),
    };
    let members = match super::format::members(&members) {
        Ok(m) => m,
        Err(e) => return fail(&format!("Error getting members: {e}")),
    };
    let live: BTreeSet<String> = members
        .iter()
        .filter(|m| m.status == "alive")
        .map(|m| m.name.clone())
        .collect();
    out(&format!(
        "Total members: {}, live members: {}",
        members.len(),
        live.len()
    ));
    let request = body([
        ("FilterNodes", Value::Nil),
        ("FilterTags", Value::Nil),
        ("Name", "_serf_ping".into()),
        ("Payload", Value::Nil),
        ("RelayFactor", 0.into()),
        ("RequestAck", true.into()),
        ("Timeout", 0.into()),
    ]);
    let seq = match start_query(&mut client, request) {
        Ok(seq) => seq,
        Err(e) => return fail(&format!("Error sending query: {e}")),
    };
    out("Starting reachability test...");
    let start = Instant::now();
    let mut last = start;
    let mut acks: BTreeSet<String> = BTreeSet::new();
    let mut num_acks = 0usize;
    let mut dups = false;
    let result = query_records(&mut client, seq, |kind, from, _| {
        if kind != "ack" {
            return;
        }
        if verbose {
            out(&format!("\tAck from '{from}'"));
        }
        num_acks += 1;
        if !acks.insert(from.to_string()) {
            dups = true;
            out(&format!("Duplicate response from '{from}'"));
        }
        last = Instant::now();
    });
    if let Err(e) = result {
        return fail(&format!("Error reading the query: {e}"));
    }
    if verbose {
        out(&format!(
            "Query time: {:.2} sec, time to last response: {:.2} sec",
            start.elapsed().as_secs_f64(),
            (last - start).as_secs_f64()
        ));
    }
    let mut exit = 0;
    if dups {
        out(DUPLICATE_RESPONSES);
        exit = 1;
    }
    let n = live.len();
    if num_acks == n {
        out("Successfully contacted all live nodes");
    } else if num_acks > n {
        out("Received more acks than live nodes! Acks from non-live nodes:");
        for m in acks.iter().filter(|m| !live.contains(*m)) {
            out(&format!("\t{m}"));
        }
        out(TOO_MANY_ACKS);
        out(TROUBLESHOOTING);
        return 1;
    } else {
        out("Received less acks than live nodes! Missing acks from:");
        for m in live.iter().filter(|m| !acks.contains(*m)) {
            out(&format!("\t{m}"));
        }
        out(TOO_FEW_ACKS);
        out(TROUBLESHOOTING);
        return 1;
    }
    exit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_html_characters_as_go_does() {
        assert_eq!(go_json(r#"{"a":"<b>&"}"#), r#"{"a":"\u003cb\u003e\u0026"}"#);
    }
}
