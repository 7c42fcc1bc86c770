//! The HTTP session load and its accounting.
//!
//! A session worker runs sessions one after another. Each: `init_session`, `join_session`
//! until it has `--consumers` consumers, one thread per consumer long-polling
//! `pull_results` on its own keep-alive connection (now and then on a fresh one), and the
//! worker issuing jobs — numbered `echo`s, background `dashboard -n N &` host jobs (their
//! items go through `job_output`'s backpressure), foreground `monitor`s stopped with
//! `interrupt_job`, `exec`s in the session and one-time ones, `session_info` — then
//! `close_session`.
//!
//! No loss is allowed: the worker never has more than `--window` jobs whose `status` some
//! consumer has not seen yet (at most ~10 items each), and a `monitor` job (its replay is up
//! to 256 log lines) runs alone, so a consumer queue holds a few hundred items at most,
//! under its bound of 1000. A `gap` therefore fails the run, as does any difference between
//! what the consumers saw, a job missing or with items other than its own in order
//! (command, payload, status), foreground jobs out of order, or any unexpected answer.
//!
//! The abandoner makes sessions whose parked poll's connection it drops (FIN or reset) and
//! that it never closes: the agent must discard the poll and expire the session.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{Http, state};
use crate::ctx::{Ctx, Rng, add};

/// How long consumers may take to catch up with the worker's jobs.
const CATCH_UP: Duration = Duration::from_secs(30);
/// Samples per background `dashboard` job.
const DASHBOARD_SAMPLES: u64 = 6;

type R<T> = Result<T, String>;

/// A job whose items the consumers must see.
struct Job {
    id: u64,
    command: String,
    kind: Kind,
}

enum Kind {
    /// `echo PAYLOAD`: one message item.
    Echo(String),
    /// `dashboard -i 20 -n N &`: N dashboard items (a host job, in the background).
    Dashboard(u64),
    /// `monitor`: log items until interrupted.
    Monitor,
}

impl Kind {
    fn foreground(&self) -> bool {
        !matches!(self, Kind::Dashboard(_))
    }
}

/// What one consumer thread saw.
#[derive(Default)]
struct Seen {
    /// Every item with a job id, and every `gap`, in order.
    items: Mutex<Vec<Value>>,
    /// `status` items seen.
    statuses: AtomicU64,
    /// Why the consumer stopped early, if it did.
    error: Mutex<Option<String>>,
}

/// Runs sessions until the load stops.
pub fn worker(ctx: &Arc<Ctx>, w: usize) {
    let mut rng = Rng::new(ctx.plan.seed, 100 + w as u64);
    let mut no = 0u64;
    while !ctx.stopping() {
        no += 1;
        if let Err(e) = session(ctx, w, no, &mut rng) {
            ctx.fail(format!("session worker {w}, session {no}: {e}"));
            ctx.sleep(Duration::from_secs(1));
        }
    }
}

fn api(http: &mut Http, body: Value, want: &str) -> R<Value> {
    let r = http.api(&body)?;
    if state(&r) != want {
        return Err(format!("{body} answered {r} (wanted state {want})"));
    }
    Ok(r)
}

fn str_of<'a>(v: &'a Value, key: &str) -> R<&'a str> {
    v[key].as_str().ok_or_else(|| format!("no {key} in {v}"))
}

fn session(ctx: &Arc<Ctx>, w: usize, no: u64, rng: &mut Rng) -> R<()> {
    let mut http = Http::new(ctx.http);
    let send = Instant::now();
    let r = api(&mut http, json!({"action": "init_session"}), "SUCCEEDED")?;
    let sid = str_of(&r, "sessionId")?.to_string();
    ctx.mark(format!("http: session {sid} created"), send, Instant::now());
    add(&ctx.n.sessions, 1);
    let mut consumer_ids = vec![str_of(&r, "consumerId")?.to_string()];
    while consumer_ids.len() < ctx.plan.consumers {
        let r = api(
            &mut http,
            json!({"action": "join_session", "sessionId": sid}),
            "SUCCEEDED",
        )?;
        consumer_ids.push(str_of(&r, "consumerId")?.to_string());
    }
    add(&ctx.n.consumers, consumer_ids.len() as u64);
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Vec<Arc<Seen>> = consumer_ids.iter().map(|_| Arc::default()).collect();
    let threads: Vec<_> = consumer_ids
        .iter()
        .zip(&seen)
        .enumerate()
        .map(|(i, (cid, s))| {
            let (ctx, sid, cid) = (Arc::clone(ctx), sid.clone(), cid.clone());
            let (s, stop) = (Arc::clone(s), Arc::clone(&stop));
            let seed = rng.next() ^ i as u64;
            std::thread::spawn(move || consume(&ctx, &sid, &cid, &s, &stop, seed))
        })
        .collect();
    let produced = produce(ctx, &mut http, &sid, w, no, rng, &seen);
    // Whatever happened, the consumers stop and the session is closed.
    stop.store(true, Ordering::Relaxed);
    let send = Instant::now();
    let closed = api(
        &mut http,
        json!({"action": "close_session", "sessionId": sid}),
        "SUCCEEDED",
    );
    if closed.is_ok() {
        ctx.mark(format!("http: session {sid} closed"), send, Instant::now());
        add(&ctx.n.sessions_closed, 1);
    }
    for t in threads {
        let _ = t.join();
    }
    let jobs = produced?;
    closed?;
    for (i, s) in seen.iter().enumerate() {
        if let Some(e) = s.error.lock().unwrap().take() {
            return Err(format!("consumer {i} ({}): {e}", consumer_ids[i]));
        }
    }
    verify(ctx, &sid, &jobs, &seen)
}

/// Issues this session's jobs and waits until every consumer has seen every one end.
fn produce(
    ctx: &Ctx,
    http: &mut Http,
    sid: &str,
    w: usize,
    no: u64,
    rng: &mut Rng,
    seen: &[Arc<Seen>],
) -> R<Vec<Job>> {
    let mut jobs = Vec::new();
    let target = rng.range(20, 80);
    let mut seq = 0u64;
    for _ in 0..target {
        if ctx.stopping() {
            break;
        }
        let roll = rng.range(0, 99);
        if roll < 60 {
            wait_window(seen, jobs.len(), ctx.plan.window)?;
            seq += 1;
            let payload = format!("w{w}.s{no}.n{seq}");
            jobs.push(async_exec(
                http,
                sid,
                &format!("echo {payload}"),
                Kind::Echo(payload),
            )?);
            add(&ctx.n.echo_jobs, 1);
        } else if roll < 72 {
            wait_window(seen, jobs.len(), ctx.plan.window)?;
            let cmd = format!("dashboard -i 20 -n {DASHBOARD_SAMPLES} &");
            jobs.push(async_exec(
                http,
                sid,
                &cmd,
                Kind::Dashboard(DASHBOARD_SAMPLES),
            )?);
            add(&ctx.n.dashboard_jobs, 1);
        } else if roll < 76 {
            // Alone in the queues: its replay alone is up to 256 items.
            wait_window(seen, jobs.len(), 0)?;
            let job = async_exec(http, sid, "monitor", Kind::Monitor)?;
            let id = job.id;
            jobs.push(job);
            add(&ctx.n.monitor_jobs, 1);
            std::thread::sleep(Duration::from_millis(rng.range(50, 400)));
            let r = api(
                http,
                json!({"action": "interrupt_job", "sessionId": sid}),
                "SUCCEEDED",
            )?;
            if r["body"]["jobId"].as_u64() != Some(id) {
                return Err(format!("interrupt_job of job {id} answered {r}"));
            }
            add(&ctx.n.interrupts, 1);
            wait_window(seen, jobs.len(), 0)?;
        } else if roll < 88 {
            seq += 1;
            let payload = format!("x{w}.s{no}.n{seq}");
            let one_time = roll >= 84;
            exec(http, (!one_time).then_some(sid), &payload)?;
            add(
                if one_time {
                    &ctx.n.one_time_execs
                } else {
                    &ctx.n.execs
                },
                1,
            );
        } else if roll < 92 {
            let r = api(
                http,
                json!({"action": "session_info", "sessionId": sid}),
                "SUCCEEDED",
            )?;
            if r["body"]["pid"].as_u64().is_none() {
                return Err(format!("session_info without a pid: {r}"));
            }
            add(&ctx.n.session_infos, 1);
        } else {
            // A breather: consumers park their polls.
            std::thread::sleep(Duration::from_millis(rng.range(10, 300)));
        }
    }
    wait_window(seen, jobs.len(), 0)?;
    Ok(jobs)
}

fn async_exec(http: &mut Http, sid: &str, command: &str, kind: Kind) -> R<Job> {
    let r = api(
        http,
        json!({"action": "async_exec", "command": command, "sessionId": sid}),
        "SCHEDULED",
    )?;
    let id = r["body"]["jobId"]
        .as_u64()
        .ok_or_else(|| format!("async_exec without a jobId: {r}"))?;
    if r["body"]["command"] != command || r["body"]["jobStatus"] != "READY" {
        return Err(format!("async_exec {command:?} answered {r}"));
    }
    Ok(Job {
        id,
        command: command.to_string(),
        kind,
    })
}

/// `exec echo PAYLOAD`, in `sid` or one-time: the answer carries the job's two items.
fn exec(http: &mut Http, sid: Option<&str>, payload: &str) -> R<()> {
    let mut body = json!({"action": "exec", "command": format!("echo {payload}")});
    if let Some(sid) = sid {
        body["sessionId"] = json!(sid);
    }
    let r = api(http, body, "SUCCEEDED")?;
    let b = &r["body"];
    let id = b["jobId"].as_u64().unwrap_or(0);
    let want = json!([
        {"jobId": id, "message": payload, "type": "message"},
        {"jobId": id, "statusCode": 0, "type": "status"},
    ]);
    if id == 0 || b["results"] != want || b["jobStatus"] != "TERMINATED" {
        return Err(format!("exec echo {payload} answered {r}"));
    }
    Ok(())
}

/// Waits until at most `window` of the `issued` jobs are still unseen by some consumer.
fn wait_window(seen: &[Arc<Seen>], issued: usize, window: usize) -> R<()> {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let min = seen
            .iter()
            .map(|s| s.statuses.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0) as usize;
        if issued <= min + window {
            return Ok(());
        }
        for (i, s) in seen.iter().enumerate() {
            if let Some(e) = s.error.lock().unwrap().as_ref() {
                return Err(format!("consumer {i} stopped: {e}"));
            }
        }
        if Instant::now() >= deadline {
            let each: Vec<u64> = seen
                .iter()
                .map(|s| s.statuses.load(Ordering::Relaxed))
                .collect();
            return Err(format!(
                "consumers saw the end of {each:?} of {issued} jobs after {CATCH_UP:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// One consumer: long-polls until told to stop, then until one pull has answered.
fn consume(ctx: &Ctx, sid: &str, cid: &str, seen: &Seen, stop: &AtomicBool, seed: u64) {
    let mut rng = Rng::new(seed, 7);
    let mut http = Http::new(ctx.http);
    let pull = json!({"action": "pull_results", "sessionId": sid, "consumerId": cid});
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping {
            return;
        }
        if rng.pct(4) {
            http.reconnect();
        }
        let r = match http.api(&pull) {
            Ok(r) => r,
            Err(e) => {
                *seen.error.lock().unwrap() = Some(e);
                return;
            }
        };
        match state(&r) {
            "SUCCEEDED" => {}
            // The session was closed under a pull that had not reached the agent yet.
            "FAILED" if stop.load(Ordering::Relaxed) => return,
            _ => {
                *seen.error.lock().unwrap() = Some(format!("pull_results answered {r}"));
                return;
            }
        }
        let Some(results) = r["body"]["results"].as_array() else {
            *seen.error.lock().unwrap() = Some(format!("pull_results without results: {r}"));
            return;
        };
        let mut items = seen.items.lock().unwrap();
        for item in results {
            let job = item["jobId"].as_u64().unwrap_or(0);
            if job != 0 || item["type"] == "gap" {
                items.push(item.clone());
            }
            if item["type"] == "status" {
                seen.statuses.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(items);
        add(&ctx.n.pulls, 1);
        add(&ctx.n.pull_items, results.len() as u64);
    }
}

/// Every consumer saw the same items; they are exactly the jobs' items, in order.
fn verify(ctx: &Ctx, sid: &str, jobs: &[Job], seen: &[Arc<Seen>]) -> R<()> {
    let all: Vec<Vec<Value>> = seen
        .iter()
        .map(|s| std::mem::take(&mut *s.items.lock().unwrap()))
        .collect();
    let base = &all[0];
    for (i, other) in all.iter().enumerate().skip(1) {
        if other != base {
            let at = base
                .iter()
                .zip(other)
                .position(|(a, b)| a != b)
                .unwrap_or(base.len().min(other.len()));
            return Err(format!(
                "session {sid}: consumer {i} saw other items than consumer 0 ({} vs {} items; \
                 first difference at {at}: {:?} vs {:?})",
                other.len(),
                base.len(),
                base.get(at).map(Value::to_string),
                other.get(at).map(Value::to_string)
            ));
        }
    }
    let mut by_job: BTreeMap<u64, Vec<(usize, &Value)>> = BTreeMap::new();
    for (pos, item) in base.iter().enumerate() {
        if item["type"] == "gap" {
            add(&ctx.n.gaps, 1);
            return Err(format!(
                "session {sid}: a gap at item {pos} although no queue can have been over its \
                 bound: {item}"
            ));
        }
        by_job
            .entry(item["jobId"].as_u64().unwrap_or(0))
            .or_default()
            .push((pos, item));
    }
    let mut last_foreground: Option<(u64, usize)> = None;
    for job in jobs {
        let items = by_job
            .remove(&job.id)
            .ok_or_else(|| format!("session {sid}: no item of job {} ({})", job.id, job.command))?;
        let bad = |why: &str| {
            let shown: Vec<String> = items.iter().map(|(_, v)| v.to_string()).collect();
            Err(format!(
                "session {sid}: job {} ({}): {why}: {}",
                job.id,
                job.command,
                shown.join(" ")
            ))
        };
        let (first, last) = (items[0], items[items.len() - 1]);
        let command = json!({"command": job.command, "jobId": job.id, "state": "SCHEDULED", "type": "command"});
        if *first.1 != command {
            return bad("the first item is not its command");
        }
        let mut status = json!({"jobId": job.id, "statusCode": 0, "type": "status"});
        if matches!(job.kind, Kind::Monitor) {
            status["interrupted"] = json!(true);
        }
        if items.len() < 2 || *last.1 != status {
            return bad("the last item is not its status");
        }
        let middle = &items[1..items.len() - 1];
        let ok = match &job.kind {
            Kind::Echo(p) => {
                middle.len() == 1
                    && *middle[0].1 == json!({"jobId": job.id, "message": p, "type": "message"})
            }
            Kind::Dashboard(n) => {
                middle.len() as u64 == *n && middle.iter().all(|(_, v)| v["type"] == "dashboard")
            }
            Kind::Monitor => middle
                .iter()
                .all(|(_, v)| v["type"] == "log" && v["log"].is_string()),
        };
        if !ok {
            return bad("its items are not the command's output");
        }
        if job.kind.foreground() {
            if let Some((prev, end)) = last_foreground
                && first.0 < end
            {
                return bad(&format!("it began before foreground job {prev} ended"));
            }
            last_foreground = Some((job.id, last.0));
        }
        add(&ctx.n.jobs_checked, 1);
    }
    if let Some((id, items)) = by_job.into_iter().next() {
        return Err(format!(
            "session {sid}: items of job {id}, which no consumer was promised: {}",
            items[0].1
        ));
    }
    add(&ctx.n.items_checked, (base.len() * all.len()) as u64);
    Ok(())
}

/// Sessions whose parked poll is abandoned and that are left to expire.
pub fn abandoner(ctx: &Ctx) {
    let mut rng = Rng::new(ctx.plan.seed, 99);
    while ctx.sleep(Duration::from_millis(rng.range(100, 500))) {
        if let Err(e) = abandon_one(ctx, &mut rng) {
            ctx.fail(format!("abandoner: {e}"));
            ctx.sleep(Duration::from_secs(1));
        }
    }
}

fn abandon_one(ctx: &Ctx, rng: &mut Rng) -> R<()> {
    let mut http = Http::new(ctx.http);
    let send = Instant::now();
    let r = api(&mut http, json!({"action": "init_session"}), "SUCCEEDED")?;
    let sid = str_of(&r, "sessionId")?.to_string();
    let cid = str_of(&r, "consumerId")?.to_string();
    ctx.mark(format!("http: session {sid} created"), send, Instant::now());
    add(&ctx.n.sessions, 1);
    add(&ctx.n.consumers, 1);
    let pull = json!({"action": "pull_results", "sessionId": sid, "consumerId": cid});
    // The welcome items; the next pull parks.
    let r = api(&mut http, pull.clone(), "SUCCEEDED")?;
    if r["body"]["results"].as_array().is_none_or(Vec::is_empty) {
        return Err(format!("the first pull of a session answered {r}"));
    }
    http.send_and_abandon(&pull, rng.pct(50))?;
    add(&ctx.n.abandoned_polls, 1);
    Ok(())
}
