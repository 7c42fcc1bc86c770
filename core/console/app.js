// The console page: a command line on one session (kept across reloads), its results as
// job blocks, and a members panel fed by a second session of its own.
import { Session } from './api.js';
import { el, render, statusBadge, addr, Job } from './render.js';

const $ = (id) => document.getElementById(id);
const out = $('output');
const input = $('cmd');
const hint = $('hint');
const interruptButton = $('interrupt');

// Appends keep the view at the bottom only if it was there: reading older output while
// results stream does not make it jump.
function stick(f) {
  const atBottom = out.scrollHeight - out.scrollTop - out.clientHeight < 40;
  f();
  if (atBottom) out.scrollTop = out.scrollHeight;
}

function setConn(up, why) {
  const c = $('conn');
  c.textContent = up ? 'connected' : `disconnected${why ? `: ${why}` : ''}`;
  c.className = `badge ${up ? 'up' : 'down'}`;
}

// ---- job blocks ----

const jobs = new Map();

function jobFor(id, command) {
  if (!jobs.has(id)) jobs.set(id, new Job(id, command, out));
  return jobs.get(id);
}

function notice(text, cls = 'muted') {
  out.append(el('pre', { class: cls, text }));
}

// ---- the console's session ----

let running = false;

function setRunning(r) {
  running = r;
  interruptButton.disabled = !r;
}

function onItem(item) {
  switch (item.type) {
    case 'welcome':
      $('node').textContent = `${item.node} · v${item.version} · pid ${item.pid}`;
      return;
    case 'input_status':
      return setRunning(item.inputStatus === 'ALLOW_INTERRUPT');
    case 'command':
      if (item.state === 'FAILED') return notice(`$ ${item.command}\n${item.message}`, 'error');
      jobFor(item.jobId, item.command);
      return;
    default:
      if (!item.jobId) return notice(item.message || JSON.stringify(item));
      render(item, jobFor(item.jobId));
  }
}

const main = new Session('tandem.console', (items) => stick(() => items.forEach(onItem)), setConn);

// ---- the command line ----

const history = JSON.parse(localStorage.getItem('tandem.history') || '[]');
let cursor = history.length;
let commands = [];

async function submit(line) {
  if (!line.trim()) return;
  if (history[history.length - 1] !== line) history.push(line);
  history.splice(0, history.length - 200);
  localStorage.setItem('tandem.history', JSON.stringify(history));
  cursor = history.length;
  input.value = '';
  hint.textContent = '';
  let r;
  try {
    r = await main.exec(line);
  } catch (e) {
    return stick(() => notice(`$ ${line}\n${e.message}`, 'error'));
  }
  // A failed command also arrives as a `command` item; a refused one only here.
  if (r.state === 'REFUSED') {
    stick(() => notice(`$ ${line}\n${r.message}${running ? ' (Ctrl-C interrupts it)' : ''}`, 'error'));
  }
}

function complete() {
  const v = input.value;
  if (!v || v.includes(' ')) return false;
  const found = commands.filter((c) => c.startsWith(v));
  if (found.length === 0) return false;
  let prefix = found[0];
  for (const c of found) while (!c.startsWith(prefix)) prefix = prefix.slice(0, -1);
  input.value = found.length === 1 ? `${found[0]} ` : prefix;
  hint.textContent = found.length === 1 ? '' : found.join('  ');
  return true;
}

function interrupt() {
  main.interrupt().catch(() => {});
}

$('prompt').addEventListener('submit', (e) => {
  e.preventDefault();
  submit(input.value);
});
interruptButton.addEventListener('click', interrupt);

input.addEventListener('keydown', (e) => {
  if (e.key === 'ArrowUp' && cursor > 0) {
    input.value = history[--cursor];
  } else if (e.key === 'ArrowDown' && cursor < history.length) {
    cursor += 1;
    input.value = history[cursor] ?? '';
  } else if (e.key === 'Tab' && !e.shiftKey) {
    // Completes when there is something to complete; otherwise Tab moves focus as usual.
    if (!complete()) return;
  } else if (e.key === 'Escape') {
    hint.textContent = '';
    return;
  } else {
    return;
  }
  e.preventDefault();
});

// Ctrl-C interrupts unless text is selected (then it copies, as everywhere).
document.addEventListener('keydown', (e) => {
  if (e.ctrlKey && !e.altKey && !e.metaKey && e.key.toLowerCase() === 'c'
      && !String(window.getSelection())
      && !(input.selectionStart !== input.selectionEnd && document.activeElement === input)) {
    e.preventDefault();
    interrupt();
    if (document.activeElement === input) input.value = '';
  }
});

// ---- the members panel: its own session, so a running job never holds it up ----

let selfName = null;
let server = false;
const memberJobs = new Map();

function showMembers(list, members) {
  list.replaceChildren(...members.map((m) => el('li', { 'data-name': m.Name, 'data-status': m.Status },
    el('span', { class: 'name', text: m.Name }), statusBadge(m.Status),
    el('span', { class: 'addr', text: `${addr(m)}${m.Tags && m.Tags.dc ? ` · ${m.Tags.dc}` : ''}${m.Tags && m.Tags.role === 'consul' ? ' · server' : ''}` }))));
}

let panel;
let pending = null;

function refreshMembers() {
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    const pools = server ? ['lan', 'wan'] : ['lan'];
    for (const pool of pools) {
      try {
        const r = await panel.exec(pool === 'wan' ? 'members -wan &' : 'members &');
        if (r.state === 'SCHEDULED') memberJobs.set(r.body.jobId, pool);
      } catch (e) { /* the pull loop shows the connection state */ }
    }
  }, 100);
}

function onPanelItem(item) {
  if (item.type === 'welcome') {
    selfName = item.node;
  } else if (item.type === 'help' && item.commands) {
    commands = item.commands.map((c) => c.name);
  } else if (item.type === 'members' && memberJobs.has(item.jobId)) {
    const pool = memberJobs.get(item.jobId);
    memberJobs.delete(item.jobId);
    if (pool === 'lan') {
      const me = item.members.find((m) => m.Name === selfName);
      const wasServer = server;
      server = Boolean(me && me.Tags && me.Tags.role === 'consul');
      $('wan-section').hidden = !server;
      if (server && !wasServer) refreshMembers();
    }
    showMembers($(pool), item.members);
  } else if (item.type === 'event' && item.event !== 'user') {
    refreshMembers();
  }
}

// ---- start ----

// The console's session is closed when its tab closes but kept over a reload; the worker
// (sw.js) tells the two apart. Without one (a page not from a secure origin), the agent's
// session timeout ends it.
let worker = null;

async function start() {
  setRunning(false);
  const joined = await main.open();
  if (joined) notice('(reloaded: joined the session again; recent output replayed)');
  panel = new Session(null, (items) => items.forEach(onPanelItem), () => {});
  await panel.open();
  if ('serviceWorker' in navigator) {
    try {
      const reg = await navigator.serviceWorker.register('/console/sw.js', { scope: '/console/' });
      worker = () => reg.active || reg.waiting || reg.installing;
      worker()?.postMessage({ op: 'alive', sessionId: main.id });
    } catch (e) { /* no worker: see above */ }
  }
  main.run();
  panel.run();
  await panel.exec('help &');
  await panel.exec('events &');
  refreshMembers();
  setInterval(refreshMembers, 10000);
  input.focus();
}

addEventListener('pagehide', () => {
  panel?.closeNow();
  worker?.()?.postMessage({ op: 'leaving', sessionId: main.id });
});

start().catch((e) => {
  setConn(false, e.message);
  notice(String(e.message || e), 'error');
});
