//! `tandem keys`: Serf's keyring RPCs (`install-key`, `use-key`, `remove-key`,
//! `list-keys`), printed as `serf keys` prints them (`cmd/serf/command/keys.go`).

use rmpv::Value;

use super::format::columnize;
use super::rpc::{Message, Reply, RpcClient, field};
use super::{Command, Invocation, fail, out};
use crate::cli::FlagSpec;

pub(super) const KEYS: Command = Command {
    name: "keys",
    synopsis: "Manipulate the internal encryption keyring used by the cluster",
    usage: "\
Usage: tandem keys [options]...

  Manage the gossip encryption keyring. Modifications made by this command are
  sent to all members of the cluster and applied on each of them. Operations of
  this command are idempotent.

  To rotate keys, several keys may be installed at once. Only one key, the
  \"primary\" key, encrypts messages; all the others are used for decryption
  only.

  All variations of this command return 0 if all nodes reply and report no
  errors. If any node fails to respond or reports failure, they return 1.",
    flags: &[
        FlagSpec {
            name: "install",
            value: Some("<key>"),
            help: "Install a new key onto every member's keyring: it decrypts at once, and \
                   encrypts only once it is made primary (-use).",
        },
        FlagSpec {
            name: "list",
            value: None,
            help: "List every key installed in the cluster, with how many members hold it.",
        },
        FlagSpec {
            name: "remove",
            value: Some("<key>"),
            help: "Remove a key from every member's keyring. It may not be the primary key.",
        },
        FlagSpec {
            name: "use",
            value: Some("<key>"),
            help: "Make an installed key the primary key (the one that encrypts) on every \
                   member.",
        },
    ],
    rpc: true,
    flags_after_first_arg: false,
    run: keys,
};

/// Serf's `Ui.Info`: `==> ` and the text, on stdout.
fn info(text: &str) {
    out(&format!("==> {text}"));
}

/// The reply to a key command: its header error and body.
fn key_call(
    client: &mut RpcClient,
    cmd: &str,
    key: Option<&str>,
) -> Result<(String, Value), String> {
    let request = key.map(|k| super::rpc::body([("Key", k.into())]));
    let seq = client
        .send(cmd, request, Reply::Body)
        .map_err(|e| e.to_string())?;
    loop {
        match client.recv().map_err(|e| e.to_string())? {
            Message::Reply {
                seq: s,
                error,
                body,
            } if s == seq => return Ok((error, body.unwrap_or(Value::Nil))),
            Message::Reply { .. } | Message::Record { .. } => {}
        }
    }
}

fn int(body: &Value, key: &str) -> u64 {
    field(body, key).and_then(Value::as_u64).unwrap_or(0)
}

/// `failed: | node | message` per failing node, columnized, as Serf prints them.
fn failures(body: &Value) -> Option<String> {
    let rows: Vec<Vec<String>> = field(body, "Messages")
        .and_then(Value::as_map)?
        .iter()
        .map(|(node, text)| {
            vec![
                "failed:".to_string(),
                node.as_str().unwrap_or_default().to_string(),
                text.as_str().unwrap_or_default().to_string(),
            ]
        })
        .collect();
    (!rows.is_empty()).then(|| columnize(&rows))
}

/// Prints Serf's failure report (stderr) and returns exit code 1.
fn failed(body: &Value, what: &str, error: &str) -> i32 {
    if let Some(table) = failures(body) {
        fail(&table);
    }
    fail("");
    fail(&format!("{what}: {error}"))
}

fn keys(inv: &Invocation) -> i32 {
    let cmd = &KEYS;
    let list = match inv.bool("list", false) {
        Ok(b) => b,
        Err(e) => return fail(&format!("{e}\n\n{}", cmd.help())),
    };
    let actions = [
        ("install", inv.value("install").unwrap_or_default()),
        ("use", inv.value("use").unwrap_or_default()),
        ("remove", inv.value("remove").unwrap_or_default()),
    ];
    // Only one action, as Serf checks it.
    let mut found = list;
    for (_, key) in &actions {
        if found && !key.is_empty() {
            return fail("Only one of -install, -use, -remove, or -list allowed");
        }
        found = found || !key.is_empty();
    }
    if !found {
        return fail(&cmd.help());
    }
    let mut client = match RpcClient::connect(&inv.rpc_addr(), inv.rpc_auth().as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(&format!("Error connecting to tandem agent: {e}")),
    };
    if list {
        info("Asking all members for installed keys...");
        let (error, body) = match key_call(&mut client, "list-keys", None) {
            Ok(r) => r,
            Err(e) => return fail(&format!("\nFailed to gather member keys: {e}")),
        };
        if !error.is_empty() {
            return failed(&body, "Failed to gather member keys", &error);
        }
        info("Keys gathered, listing cluster keys...");
        out("");
        let total = int(&body, "NumNodes");
        let rows: Vec<Vec<String>> = field(&body, "Keys")
            .and_then(Value::as_map)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|(key, n)| {
                vec![
                    key.as_str().unwrap_or_default().to_string(),
                    format!("[{}/{total}]", n.as_u64().unwrap_or(0)),
                ]
            })
            .collect();
        super::print_out(&columnize(&rows));
        return 0;
    }
    let (rpc, key, doing, what, done) = match actions {
        [(_, k), _, _] if !k.is_empty() => (
            "install-key",
            k,
            "Installing key on all members...",
            "Error installing key",
            "Successfully installed key!",
        ),
        [_, (_, k), _] if !k.is_empty() => (
            "use-key",
            k,
            "Changing primary key on all members...",
            "Error changing primary key",
            "Successfully changed primary key!",
        ),
        [_, _, (_, k)] => (
            "remove-key",
            k,
            "Removing key on all members...",
            "Error removing key",
            "Successfully removed key!",
        ),
    };
    info(doing);
    match key_call(&mut client, rpc, Some(key)) {
        Ok((error, _)) if error.is_empty() => {
            info(done);
            0
        }
        Ok((error, body)) => failed(&body, what, &error),
        Err(e) => {
            fail("");
            fail(&format!("{what}: {e}"))
        }
    }
}
