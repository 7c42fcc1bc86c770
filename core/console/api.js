// The agent's HTTP session API, as any client uses it: POST /api with a JSON action.
// Credentials (-http-auth) are the browser's: it asked for them when the page loaded and
// sends them with every request to this origin.

export async function api(body) {
  const r = await fetch('/api', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`HTTP ${r.status}`);
  return r.json();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A session and one consumer of it, pulled in a loop. `key` names the sessionStorage entry
// that keeps the ids across a reload (null: a fresh session every load).
export class Session {
  constructor(key, onItems, onState) {
    this.key = key;
    this.onItems = onItems;
    this.onState = onState;
    this.id = null;
    this.consumer = null;
  }

  async open() {
    const saved = this.key && JSON.parse(sessionStorage.getItem(this.key) || 'null');
    if (saved) {
      // A reload: a new consumer of the same session, which replays its recent history.
      const r = await api({ action: 'join_session', sessionId: saved.sessionId });
      if (r.state === 'SUCCEEDED') return this.keep(r, true);
    }
    const r = await api({ action: 'init_session' });
    if (r.state !== 'SUCCEEDED') throw new Error(r.message || 'init_session failed');
    return this.keep(r, false);
  }

  keep(r, joined) {
    this.id = r.sessionId;
    this.consumer = r.consumerId;
    if (this.key) {
      sessionStorage.setItem(this.key, JSON.stringify({ sessionId: this.id }));
    }
    return joined;
  }

  exec(command) {
    return api({ action: 'async_exec', command, sessionId: this.id });
  }

  interrupt() {
    return api({ action: 'interrupt_job', sessionId: this.id });
  }

  // Pulls until the page goes away; a lost session is opened again (joined or new).
  async run() {
    for (;;) {
      let r;
      try {
        r = await api({ action: 'pull_results', sessionId: this.id, consumerId: this.consumer });
      } catch (e) {
        this.onState(false, String(e.message || e));
        await sleep(1000);
        continue;
      }
      if (r.state === 'SUCCEEDED') {
        this.onState(true);
        this.onItems(r.body.results || []);
        continue;
      }
      this.onState(false, r.message || r.state);
      await sleep(500);
      try {
        await this.open();
      } catch (e) {
        await sleep(1000);
      }
    }
  }

  // The request that closes the session, sent as the page goes away (keepalive).
  closeNow() {
    if (!this.id) return;
    fetch('/api', {
      method: 'POST',
      keepalive: true,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ action: 'close_session', sessionId: this.id }),
    }).catch(() => {});
  }
}
