//! What the CLI prints: members as Consul's `members` prints them (a columnized table, or
//! JSON), and `stats` as Consul's `info` does. Pure functions over decoded replies, so the
//! layouts are pinned by unit tests.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use rmpv::Value;

use super::rpc::field;

/// One member of a `members-lan`/`members-wan` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) addr: IpAddr,
    pub(crate) port: u16,
    pub(crate) status: String,
    pub(crate) tags: BTreeMap<String, String>,
    /// min, max, cur.
    pub(crate) protocol: [u64; 3],
    /// min, max, cur.
    pub(crate) delegate: [u64; 3],
}

impl Member {
    /// Decodes a Member map as Go's client does: missing fields are zero values, `Addr` is
    /// bin (4 or 16 bytes) or a string.
    pub(crate) fn decode(v: &Value) -> Result<Member, String> {
        let text = |k: &str| {
            field(v, k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let num = |k: &str| field(v, k).and_then(Value::as_u64).unwrap_or(0);
        let addr = match field(v, "Addr") {
            Some(Value::Binary(b)) => ip_from_bytes(b)?,
            Some(Value::String(s)) => match s.as_str() {
                Some(s) => s.parse().map_err(|_| format!("bad Addr {s:?}"))?,
                None => ip_from_bytes(s.as_bytes())?,
            },
            Some(Value::Nil) | None => IpAddr::from([0, 0, 0, 0]),
            Some(other) => return Err(format!("bad Addr {other}")),
        };
        let mut tags = BTreeMap::new();
        if let Some(map) = field(v, "Tags").and_then(Value::as_map) {
            for (k, val) in map {
                if let (Some(k), Some(val)) = (k.as_str(), val.as_str()) {
                    tags.insert(k.to_string(), val.to_string());
                }
            }
        }
        Ok(Member {
            name: text("Name"),
            addr,
            port: u16::try_from(num("Port")).map_err(|_| "Port out of range".to_string())?,
            status: text("Status"),
            tags,
            protocol: [num("ProtocolMin"), num("ProtocolMax"), num("ProtocolCur")],
            delegate: [num("DelegateMin"), num("DelegateMax"), num("DelegateCur")],
        })
    }

    /// `ip:port`, IPv6 in brackets, as Go's `net.TCPAddr` prints it.
    fn address(&self) -> String {
        SocketAddr::new(self.addr, self.port).to_string()
    }

    /// The member as JSON, with the field names of the wire (and of Consul's HTTP API).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let [pmin, pmax, pcur] = self.protocol;
        let [dmin, dmax, dcur] = self.delegate;
        serde_json::json!({
            "Addr": self.addr.to_string(),
            "DelegateCur": dcur,
            "DelegateMax": dmax,
            "DelegateMin": dmin,
            "Name": self.name,
            "Port": self.port,
            "ProtocolCur": pcur,
            "ProtocolMax": pmax,
            "ProtocolMin": pmin,
            "Status": self.status,
            "Tags": self.tags,
        })
    }
}

fn ip_from_bytes(b: &[u8]) -> Result<IpAddr, String> {
    if let Ok(v4) = <[u8; 4]>::try_from(b) {
        return Ok(IpAddr::from(v4));
    }
    if let Ok(v6) = <[u8; 16]>::try_from(b) {
        return Ok(IpAddr::from(v6));
    }
    Err(format!("Addr of {} bytes", b.len()))
}

/// The members of a `{"Members": [...]}` body, sorted by name as Consul's CLI sorts them.
pub(crate) fn members(body: &Value) -> Result<Vec<Member>, String> {
    let list = match field(body, "Members") {
        Some(Value::Array(list)) => list.as_slice(),
        Some(Value::Nil) | None => &[],
        Some(other) => return Err(format!("Members is not a list: {other}")),
    };
    let mut out = list
        .iter()
        .map(Member::decode)
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Consul's table: Node, Address, Status, Type, Build, Protocol, DC.
pub(crate) fn members_table(members: &[Member]) -> String {
    let mut rows = vec![
        [
            "Node", "Address", "Status", "Type", "Build", "Protocol", "DC",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for m in members {
        let tag = |k: &str| m.tags.get(k).cloned().unwrap_or_default();
        let kind = match tag("role").as_str() {
            "node" => Some("client"),
            "consul" => Some("server"),
            _ => None,
        };
        let mut row = vec![m.name.clone(), m.address(), m.status.clone()];
        match kind {
            Some(kind) => {
                let build = match m.tags.get("build") {
                    None => "< 0.3".to_string(),
                    Some(b) => b.split(':').next().unwrap_or_default().to_string(),
                };
                row.extend([kind.to_string(), build, tag("vsn"), tag("dc")]);
            }
            None => row.extend(["unknown", "", "", ""].map(String::from)),
        }
        rows.push(row);
    }
    columnize(&rows)
}

/// Consul's `-detailed` table: Node, Address, Status, and every tag as `k=v,…`, sorted.
pub(crate) fn members_detailed(members: &[Member]) -> String {
    let mut rows = vec![
        ["Node", "Address", "Status", "Tags"]
            .map(String::from)
            .to_vec(),
    ];
    for m in members {
        let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(vec![
            m.name.clone(),
            m.address(),
            m.status.clone(),
            tags.join(","),
        ]);
    }
    columnize(&rows)
}

/// Columns padded to their widest cell and glued with two spaces; the last column is not
/// padded (ryanuber/columnize, which Consul's CLI uses).
pub(crate) fn columnize(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[c].saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `stats` as Consul's `info` prints it: each section as `name:`, then its entries as
/// `\tkey = value`, both sorted.
pub(crate) fn info(stats: &Value) -> Result<String, String> {
    let mut out = String::new();
    for (name, entries) in stats_sections(stats)? {
        out.push_str(&name);
        out.push_str(":\n");
        for (k, v) in entries {
            out.push_str(&format!("\t{k} = {v}\n"));
        }
    }
    Ok(out)
}

/// `stats` as Serf's `info -format json` prints it: the sections as one JSON object,
/// keys sorted, two-space indents, and a newline.
pub(crate) fn info_json(stats: &Value) -> Result<String, String> {
    let sorted = stats_sections(stats)?;
    let mut text = serde_json::to_string_pretty(&sorted).map_err(|e| e.to_string())?;
    text.push('\n');
    Ok(text)
}

/// The sections of a `stats` reply, sorted.
fn stats_sections(stats: &Value) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
    let Some(sections) = stats.as_map() else {
        return Err(format!("stats is not a map: {stats}"));
    };
    let mut sorted: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (name, entries) in sections {
        let name = name.as_str().unwrap_or_default().to_string();
        let section = sorted.entry(name).or_default();
        for (k, v) in entries.as_map().map(Vec::as_slice).unwrap_or_default() {
            // Every value is a string on the wire; anything else is shown as it decodes.
            let v = v.as_str().map_or_else(|| v.to_string(), String::from);
            section.insert(k.as_str().unwrap_or_default().to_string(), v);
        }
    }
    Ok(sorted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::rpc::body;

    fn member(name: &str, addr: Value, tags: &[(&str, &str)]) -> Value {
        body([
            ("Addr", addr),
            ("DelegateCur", 4.into()),
            ("DelegateMax", 5.into()),
            ("DelegateMin", 2.into()),
            ("Name", name.into()),
            ("Port", 8301.into()),
            ("ProtocolCur", 2.into()),
            ("ProtocolMax", 5.into()),
            ("ProtocolMin", 1.into()),
            ("Status", "alive".into()),
            (
                "Tags",
                Value::Map(tags.iter().map(|&(k, v)| (k.into(), v.into())).collect()),
            ),
        ])
    }

    fn sample() -> Vec<Member> {
        let reply = body([(
            "Members",
            Value::Array(vec![
                member(
                    "web-2",
                    Value::Binary(vec![0; 15].into_iter().chain([1]).collect()),
                    &[
                        ("role", "consul"),
                        ("build", "0.7.5:21e8c"),
                        ("vsn", "2"),
                        ("dc", "eu"),
                    ],
                ),
                member(
                    "a",
                    Value::Binary(vec![10, 0, 0, 7]),
                    &[
                        ("role", "node"),
                        ("build", "0.1.0"),
                        ("vsn", "2"),
                        ("dc", "dc1"),
                    ],
                ),
                member("odd", "192.0.2.1".into(), &[("x", "y")]),
            ]),
        )]);
        members(&reply).unwrap()
    }

    #[test]
    fn the_table_is_consuls() {
        assert_eq!(
            members_table(&sample()),
            "\
Node   Address         Status  Type     Build  Protocol  DC
a      10.0.0.7:8301   alive   client   0.1.0  2         dc1
odd    192.0.2.1:8301  alive   unknown
web-2  [::1]:8301      alive   server   0.7.5  2         eu
"
        );
    }

    #[test]
    fn detailed_shows_every_tag_sorted() {
        let sample = sample();
        assert_eq!(
            members_detailed(&[sample[0].clone(), sample[2].clone()]),
            "\
Node   Address        Status  Tags
a      10.0.0.7:8301  alive   build=0.1.0,dc=dc1,role=node,vsn=2
web-2  [::1]:8301     alive   build=0.7.5:21e8c,dc=eu,role=consul,vsn=2
"
        );
    }

    #[test]
    fn json_uses_the_wire_names() {
        let json = sample()[0].to_json();
        assert_eq!(json["Addr"], "10.0.0.7");
        assert_eq!(json["Port"], 8301);
        assert_eq!(json["DelegateCur"], 4);
        assert_eq!(json["Tags"]["role"], "node");
    }

    #[test]
    fn info_is_sorted_and_indented_with_tabs() {
        let stats = Value::Map(vec![
            (
                "serf_lan".into(),
                Value::Map(vec![
                    ("members".into(), "1".into()),
                    ("encrypted".into(), "false".into()),
                ]),
            ),
            (
                "agent".into(),
                Value::Map(vec![("name".into(), "n1".into())]),
            ),
        ]);
        assert_eq!(
            info(&stats).unwrap(),
            "agent:\n\tname = n1\nserf_lan:\n\tencrypted = false\n\tmembers = 1\n"
        );
    }
}
