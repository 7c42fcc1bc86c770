//! The RPC side of the side-by-side benchmark (`tests/bench/side_by_side.sh`, issue #13):
//! a native msgpack load client, and the floor server it is compared with.
//!
//! ```text
//! rpc_load floor ADDR                          # serve until killed
//! rpc_load load ADDR COMMAND SECS CONNS DEPTH  # one line: requests, req/s, p50 µs, p99 µs
//! ```
//!
//! `load` opens CONNS connections (one thread each), handshakes, then keeps DEPTH requests
//! in flight on each for SECS seconds (DEPTH 1: sequential round trips, timed one by one).
//! The floor is the least work a server can do per request: a blocking thread per
//! connection that parses each request's header and writes a canned `members`-sized reply.
//! Not part of `cargo test`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tandem_tests::rpc_header as header;

/// Bytes of one msgpack value at the start of `b`, or `None` if it is not all there.
fn value_len(b: &[u8]) -> Option<usize> {
    let m = *b.first()?;
    let be = |n: usize| -> Option<usize> {
        let s = b.get(1..1 + n)?;
        Some(s.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x)))
    };
    let seq = |head: usize, items: usize| -> Option<usize> {
        let mut at = head;
        for _ in 0..items {
            at += value_len(b.get(at..)?)?;
        }
        Some(at)
    };
    let (head, body) = match m {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (1, 0),
        0xa0..=0xbf => (1, usize::from(m & 0x1f)),
        0x80..=0x8f => return seq(1, 2 * usize::from(m & 0x0f)),
        0x90..=0x9f => return seq(1, usize::from(m & 0x0f)),
        0xcc | 0xd0 => (2, 0),
        0xcd | 0xd1 => (3, 0),
        0xce | 0xd2 | 0xca => (5, 0),
        0xcf | 0xd3 | 0xcb => (9, 0),
        0xd9 | 0xc4 => (2, be(1)?),
        0xda | 0xc5 => (3, be(2)?),
        0xdb | 0xc6 => (5, be(4)?),
        0xdc => return seq(3, be(2)?),
        0xdd => return seq(5, be(4)?),
        0xde => return seq(3, 2 * be(2)?),
        0xdf => return seq(5, 2 * be(4)?),
        0xd4 => (3, 0),
        0xd5 => (4, 0),
        0xd6 => (6, 0),
        0xd7 => (10, 0),
        0xd8 => (18, 0),
        0xc7 => (3, be(1)?),
        0xc8 => (4, be(2)?),
        0xc9 => (6, be(4)?),
        0xc1 => return None,
    };
    (b.len() >= head + body).then_some(head + body)
}

fn handshake() -> Vec<u8> {
    let mut v = header("handshake", 0);
    rmp::encode::write_map_len(&mut v, 1).unwrap();
    rmp::encode::write_str(&mut v, "Version").unwrap();
    rmp::encode::write_uint(&mut v, 1).unwrap();
    v
}

/// Reads from `s` into `buf` until `values` whole msgpack values are at its start; returns
/// their length.
fn read_values(s: &mut TcpStream, buf: &mut Vec<u8>, values: usize) -> usize {
    let mut chunk = [0u8; 65536];
    loop {
        let mut at = 0;
        let mut ok = true;
        for _ in 0..values {
            match value_len(&buf[at..]) {
                Some(n) => at += n,
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            return at;
        }
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

struct Load {
    done: u64,
    lat_us: Vec<u32>,
}

fn one_conn(addr: &str, cmd: &str, until: Instant, depth: usize) -> Load {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    s.write_all(&handshake()).unwrap();
    let n = read_values(&mut s, &mut buf, 1);
    buf.drain(..n);
    // Replies to members/stats carry a body after the header.
    let values = if cmd == "members" || cmd == "stats" {
        2
    } else {
        1
    };
    let req = header(cmd, 1);
    let mut out = Load {
        done: 0,
        lat_us: Vec::new(),
    };
    if depth == 1 {
        while Instant::now() < until {
            let t = Instant::now();
            s.write_all(&req).unwrap();
            let n = read_values(&mut s, &mut buf, values);
            buf.drain(..n);
            out.lat_us.push(t.elapsed().as_micros() as u32);
            out.done += 1;
        }
        return out;
    }
    let batch: Vec<u8> = req.repeat(depth);
    s.write_all(&batch).unwrap();
    let mut in_flight = depth;
    while in_flight > 0 {
        let n = read_values(&mut s, &mut buf, values);
        buf.drain(..n);
        out.done += 1;
        in_flight -= 1;
        if Instant::now() < until {
            s.write_all(&req).unwrap();
            in_flight += 1;
        }
    }
    out
}

fn load(addr: &str, cmd: &str, secs: f64, conns: usize, depth: usize) {
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (addr, cmd) = (addr.to_string(), cmd.to_string());
            std::thread::spawn(move || one_conn(&addr, &cmd, until, depth))
        })
        .collect();
    let mut done = 0;
    let mut lat = Vec::new();
    for t in threads {
        let l = t.join().expect("load thread");
        done += l.done;
        lat.extend(l.lat_us);
    }
    let secs = t0.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or_else(|| "-".to_string(), |v| v.to_string())
    };
    println!(
        "{done} {:.0} {} {}",
        done as f64 / secs,
        pct(0.50),
        pct(0.99)
    );
}

/// A one-member `members` body, about the size of a real agent's answer.
fn canned_members() -> Vec<u8> {
    let mut v = Vec::new();
    let w = &mut v;
    rmp::encode::write_map_len(w, 1).unwrap();
    rmp::encode::write_str(w, "Members").unwrap();
    rmp::encode::write_array_len(w, 1).unwrap();
    rmp::encode::write_map_len(w, 10).unwrap();
    rmp::encode::write_str(w, "Name").unwrap();
    rmp::encode::write_str(w, "floor").unwrap();
    rmp::encode::write_str(w, "Addr").unwrap();
    rmp::encode::write_bin(w, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]).unwrap();
    rmp::encode::write_str(w, "Port").unwrap();
    rmp::encode::write_uint(w, 7946).unwrap();
    rmp::encode::write_str(w, "Tags").unwrap();
    rmp::encode::write_map_len(w, 1).unwrap();
    rmp::encode::write_str(w, "role").unwrap();
    rmp::encode::write_str(w, "node").unwrap();
    rmp::encode::write_str(w, "Status").unwrap();
    rmp::encode::write_str(w, "alive").unwrap();
    for k in [
        "ProtocolMin",
        "ProtocolMax",
        "ProtocolCur",
        "DelegateMin",
        "DelegateMax",
    ] {
        rmp::encode::write_str(w, k).unwrap();
        rmp::encode::write_uint(w, 2).unwrap();
    }
    v
}

fn floor_conn(mut s: TcpStream, body: &[u8]) {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut out = Vec::new();
    loop {
        // Answer every whole request in the buffer, then read more.
        while let Some(h) = value_len(&buf) {
            let mut r = &buf[..h];
            let mut cmd = String::new();
            let mut seq = 0u64;
            let n = rmp::decode::read_map_len(&mut r).unwrap_or(0);
            for _ in 0..n {
                let mut key = [0u8; 16];
                let k = rmp::decode::read_str(&mut r, &mut key)
                    .unwrap_or("")
                    .to_string();
                match k.as_str() {
                    "Command" => {
                        let mut c = [0u8; 32];
                        cmd = rmp::decode::read_str(&mut r, &mut c)
                            .unwrap_or("")
                            .to_string();
                    }
                    _ => seq = rmp::decode::read_int(&mut r).unwrap_or(0),
                }
            }
            let mut used = h;
            if cmd == "handshake" {
                let Some(b) = value_len(&buf[h..]) else { break };
                used += b;
            }
            buf.drain(..used);
            rmp::encode::write_map_len(&mut out, 2).unwrap();
            rmp::encode::write_str(&mut out, "Error").unwrap();
            rmp::encode::write_str(&mut out, "").unwrap();
            rmp::encode::write_str(&mut out, "Seq").unwrap();
            rmp::encode::write_uint(&mut out, seq).unwrap();
            if cmd != "handshake" {
                out.extend_from_slice(body);
            }
        }
        if !out.is_empty() {
            if s.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn floor(addr: &str) {
    let l = TcpListener::bind(addr).expect("bind");
    let body: &'static [u8] = canned_members().leak();
    for s in l.incoming().flatten() {
        std::thread::spawn(move || floor_conn(s, body));
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    match a.get(1).map(String::as_str) {
        Some("floor") if a.len() == 3 => floor(&a[2]),
        Some("load") if a.len() == 7 => load(
            &a[2],
            &a[3],
            a[4].parse().expect("SECS"),
            a[5].parse().expect("CONNS"),
            a[6].parse().expect("DEPTH"),
        ),
        _ => {
            eprintln!("usage: rpc_load floor ADDR | rpc_load load ADDR COMMAND SECS CONNS DEPTH");
            std::process::exit(2);
        }
    }
}
