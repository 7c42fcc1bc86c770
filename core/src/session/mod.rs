//! Sessions, consumers and their result queues (spec §5–6).
//!
//! A session's stream is a sequence of serialized items. Each item is appended to the
//! session's history (input-status items aside; only the latest is remembered) and to every
//! consumer's queue. Consumer queues are bounded: on overflow the oldest items go and a
//! single `gap` entry at the front counts them, so a client always learns what it missed.
//! Items leave a queue only when a `pull_results` answer is written, so nothing is taken
//! from a queue and then lost with a dropped request.

pub(crate) mod items;
pub(crate) mod jobs;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use crate::ConnId;
use crate::time::Instant;
pub(crate) use items::{InputStatus, Item, StatusItems};

/// The queue capacity that means "a job's end item: never evict" in `publish`.
const END: usize = usize::MAX;

/// A session id as bytes: a UUID with dashes, 36 ASCII characters.
pub(crate) type SessionKey = [u8; 36];

/// Parses a client-supplied session id into a key; anything else cannot name a session.
pub(crate) fn key_of(id: &str) -> Option<SessionKey> {
    id.as_bytes().try_into().ok()
}

pub(crate) fn key_str(key: &SessionKey) -> &str {
    // Keys are only ever made from ASCII by `uuid`, or from a `&str` of 36 bytes.
    core::str::from_utf8(key).unwrap_or("")
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A random (version 4) UUID with dashes.
pub(crate) fn uuid(random: [u8; 16]) -> SessionKey {
    let mut b = random;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = [b'-'; 36];
    let mut j = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            j += 1;
        }
        out[j] = HEX[usize::from(byte >> 4)];
        out[j + 1] = HEX[usize::from(byte & 0xf)];
        j += 2;
    }
    out
}

/// `consumerId`: 32 hex digits, `_`, the per-session counter (spec §6.1).
pub(crate) fn consumer_id(random: [u8; 16], number: u32) -> String {
    let mut s = String::with_capacity(44);
    for byte in random {
        s.push(char::from(HEX[usize::from(byte >> 4)]));
        s.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    s.push('_');
    let mut digits = Vec::new();
    crate::json::write_u64(&mut digits, number.into());
    s.push_str(core::str::from_utf8(&digits).unwrap_or("0"));
    s
}

#[derive(Debug)]
enum Entry {
    Item(Item),
    Gap(u64),
}

/// One reader of a session's stream.
#[derive(Debug)]
pub(crate) struct Consumer {
    pub(crate) number: u32,
    pub(crate) id: String,
    queue: VecDeque<Entry>,
    /// Item entries in `queue` (the gap entry, if any, is not counted).
    items: usize,
    pub(crate) last_pull: Instant,
    /// The connection whose `pull_results` is parked on this consumer.
    pub(crate) pull: Option<ConnId>,
    /// Its idle-expiry timer.
    pub(crate) timer: Option<crate::time::TimerKey>,
}

impl Consumer {
    fn new(number: u32, id: String, now: Instant) -> Self {
        Consumer {
            number,
            id,
            queue: VecDeque::new(),
            items: 0,
            last_pull: now,
            pull: None,
            timer: None,
        }
    }

    /// Appends an item; beyond `cap` items the oldest goes into the front gap.
    fn push(&mut self, item: Item, cap: usize) {
        self.push_end(item);
        while self.items > cap.max(1) {
            let gap_first = matches!(self.queue.front(), Some(Entry::Gap(_)));
            let oldest = usize::from(gap_first);
            if self.queue.remove(oldest).is_none() {
                break;
            }
            self.items -= 1;
            match self.queue.front_mut() {
                Some(Entry::Gap(n)) if gap_first => *n += 1,
                _ => self.queue.push_front(Entry::Gap(1)),
            }
        }
    }

    /// Appends a job's end item (`status`, `ALLOW_INPUT`) without evicting: a host's items
    /// were accepted because they fit, and its own ending must not push them out. Each job
    /// ends once, so this exceeds the bound by at most two items per job.
    fn push_end(&mut self, item: Item) {
        self.queue.push_back(Entry::Item(item));
        self.items += 1;
    }

    /// Entries ready to be pulled (a gap counts as one).
    pub(crate) fn ready(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn is_full(&self, cap: usize) -> bool {
        self.items >= cap
    }

    /// Removes up to `max` entries, handing each to `f` as item JSON.
    pub(crate) fn take(&mut self, max: usize, mut f: impl FnMut(&[u8])) {
        for _ in 0..max {
            match self.queue.pop_front() {
                Some(Entry::Item(item)) => {
                    self.items -= 1;
                    f(&item);
                }
                Some(Entry::Gap(n)) => f(&items::gap(n)),
                None => break,
            }
        }
    }
}

/// A session: its consumers, history and jobs.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) key: SessionKey,
    pub(crate) created_ms: u64,
    pub(crate) last_access: Instant,
    pub(crate) consumers: Vec<Consumer>,
    next_consumer: u32,
    history: VecDeque<Item>,
    pub(crate) input_status: InputStatus,
    /// The foreground job: `interrupt_job` stops it; `exec`/`async_exec` are refused while
    /// it runs.
    pub(crate) foreground: Option<u32>,
    /// Every live job of the session, foreground and background.
    pub(crate) jobs: Vec<u32>,
    /// Made by `exec` without a `sessionId`; removed when that request is answered.
    pub(crate) one_time: bool,
    /// Named by a request since `init_session` (joined, pulled from, ran a command, …).
    /// Until then the session expires after `unused_session_timeout_ms` and is the first to
    /// be evicted when the table is full.
    pub(crate) used: bool,
    /// Its idle-expiry timer.
    pub(crate) timer: Option<crate::time::TimerKey>,
}

impl Session {
    pub(crate) fn new(key: SessionKey, created_ms: u64, now: Instant, one_time: bool) -> Self {
        Session {
            key,
            created_ms,
            last_access: now,
            consumers: Vec::new(),
            next_consumer: 1,
            history: VecDeque::new(),
            input_status: InputStatus::AllowInput,
            foreground: None,
            jobs: Vec::new(),
            one_time,
            used: false,
            timer: None,
        }
    }

    /// Adds a consumer with the given random id part; it starts empty.
    pub(crate) fn add_consumer(&mut self, random: [u8; 16], now: Instant) -> &mut Consumer {
        let number = self.next_consumer;
        self.next_consumer += 1;
        self.consumers
            .push(Consumer::new(number, consumer_id(random, number), now));
        let last = self.consumers.len() - 1;
        &mut self.consumers[last]
    }

    /// Gives a joining consumer `DISABLED`, the history, then the current input status.
    pub(crate) fn replay_into(&mut self, number: u32, cap: usize, statuses: &StatusItems) {
        let history: Vec<Item> = self.history.iter().cloned().collect();
        let status = self.input_status;
        if let Some(c) = self.consumer_mut(number) {
            c.push(statuses.get(InputStatus::Disabled), cap);
            for item in history {
                c.push(item, cap);
            }
            c.push(statuses.get(status), cap);
        }
    }

    pub(crate) fn consumer_mut(&mut self, number: u32) -> Option<&mut Consumer> {
        self.consumers.iter_mut().find(|c| c.number == number)
    }

    pub(crate) fn consumer_by_id(&self, id: &str) -> Option<&Consumer> {
        self.consumers.iter().find(|c| c.id == id)
    }

    /// Appends an item to the stream: history, then every consumer. Returns the connections
    /// of parked pulls that now have something to look at.
    pub(crate) fn publish(
        &mut self,
        item: Item,
        history_cap: usize,
        queue_cap: usize,
        woken: &mut Vec<ConnId>,
    ) {
        if items::is_input_status(&item) {
            // The history keeps only the latest input status (spec §6.3); it is replayed
            // after the history to joiners.
        } else if history_cap > 0 {
            while self.history.len() >= history_cap {
                self.history.pop_front();
            }
            self.history.push_back(item.clone());
        }
        for c in &mut self.consumers {
            match queue_cap {
                END => c.push_end(item.clone()),
                cap => c.push(item.clone(), cap),
            }
            if let Some(conn) = c.pull {
                woken.push(conn);
            }
        }
    }

    /// Ends the foreground job of a host command: `ALLOW_INPUT`, never evicting.
    pub(crate) fn allow_input_after_host_job(
        &mut self,
        statuses: &StatusItems,
        history_cap: usize,
        woken: &mut Vec<ConnId>,
    ) {
        self.input_status = InputStatus::AllowInput;
        self.publish_end(statuses.get(InputStatus::AllowInput), history_cap, woken);
    }

    /// Appends a host job's end item: like `publish`, but never evicting (see `push_end`).
    pub(crate) fn publish_end(&mut self, item: Item, history_cap: usize, woken: &mut Vec<ConnId>) {
        self.publish(item, history_cap, END, woken);
    }

    pub(crate) fn set_input_status(
        &mut self,
        status: InputStatus,
        statuses: &StatusItems,
        limits: &crate::Limits,
        woken: &mut Vec<ConnId>,
    ) {
        self.input_status = status;
        let item = statuses.get(status);
        self.publish(item, limits.history, limits.consumer_queue, woken);
    }

    /// True when some consumer could not take another item without dropping one.
    pub(crate) fn any_consumer_full(&self, cap: usize) -> bool {
        self.consumers.iter().any(|c| c.is_full(cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(c: &mut Consumer) -> Vec<String> {
        let mut out = Vec::new();
        c.take(usize::MAX, |j| {
            out.push(String::from_utf8(j.to_vec()).unwrap());
        });
        out
    }

    #[test]
    fn overflow_keeps_newest_and_one_gap_counts_the_rest() {
        let mut c = Consumer::new(1, String::from("c_1"), Instant::ZERO);
        for i in 0..10 {
            c.push(items::message(i, "m"), 4);
        }
        assert_eq!(c.ready(), 5);
        let got = drain(&mut c);
        assert_eq!(got[0], r#"{"dropped":6,"jobId":0,"type":"gap"}"#);
        assert_eq!(got[1], r#"{"jobId":6,"message":"m","type":"message"}"#);
        assert_eq!(got[4], r#"{"jobId":9,"message":"m","type":"message"}"#);
        assert_eq!(c.ready(), 0);
        c.push(items::message(10, "m"), 4);
        assert_eq!(drain(&mut c).len(), 1);
    }

    #[test]
    fn ids_have_the_arthas_shapes() {
        let key = uuid([0xab; 16]);
        let s = key_str(&key);
        assert_eq!(s, "abababab-abab-4bab-abab-abababababab");
        assert_eq!(
            consumer_id([0x0f; 16], 12),
            "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f_12"
        );
    }
}
