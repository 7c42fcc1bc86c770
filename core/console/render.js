// Result items as DOM: one renderer per item type, a table where the item is one, a live
// chart for `dashboard`. Everything is built with textContent, never innerHTML, so text
// from the agent (command lines, tags, log lines) is never markup.

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

const mib = (bytes) => `${(bytes / 1048576).toFixed(1)} MiB`;

function duration(ms) {
  const s = Math.floor(ms / 1000);
  const parts = [[Math.floor(s / 86400), 'd'], [Math.floor(s / 3600) % 24, 'h'],
    [Math.floor(s / 60) % 60, 'm'], [s % 60, 's']];
  return parts.filter(([n], i) => n || i === 3).map(([n, u]) => `${n}${u}`).join(' ');
}

export function table(headers, rows) {
  return el('div', { class: 'scroll' }, el('table', {},
    el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', { text: h })))),
    el('tbody', {}, ...rows.map((r) => el('tr', {}, ...r.map((c) =>
      (c instanceof Node ? el('td', {}, c) : el('td', { text: String(c) }))))))));
}

export function statusBadge(status) {
  const s = String(status || 'none');
  return el('span', { class: `status s-${s}`, text: s });
}

export function addr(m) {
  return m.Addr.includes(':') ? `[${m.Addr}]:${m.Port}` : `${m.Addr}:${m.Port}`;
}

function membersTable(members) {
  return table(['node', 'address', 'status', 'tags'], members.map((m) => [
    m.Name, addr(m), statusBadge(m.Status),
    Object.entries(m.Tags || {}).map(([k, v]) => `${k}=${v}`).join(' '),
  ]));
}

const SYSINFO = [
  ['pid', (i) => i.pid], ['rss', (i) => mib(i.rss)], ['threads', (i) => i.threads],
  ['open fds', (i) => i.fds], ['uptime', (i) => duration(i.uptime_ms)],
  ['load', (i) => (i.load || []).join(' ')],
];

// The dashboard's series: what each sample contributes, and how its value reads.
const SERIES = [
  ['rss', (i) => i.rss, mib],
  ['threads', (i) => i.threads, String],
  ['open fds', (i) => i.fds, String],
  ['load 1m', (i) => (i.load || [0])[0], (v) => v.toFixed(2)],
];
const WINDOW = 50;

// A dashboard job's charts: one sparkline per series over the last WINDOW samples.
// `data-samples` counts the samples drawn, for whoever wants to watch it update.
export class Dashboard {
  constructor() {
    this.samples = [];
    this.charts = SERIES.map(([name]) => {
      const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
      const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
      svg.setAttribute('viewBox', `0 0 ${WINDOW - 1} 100`);
      svg.setAttribute('preserveAspectRatio', 'none');
      svg.setAttribute('role', 'img');
      svg.setAttribute('aria-label', `${name} over time`);
      svg.append(line);
      const value = el('span', { class: 'value' });
      const box = el('div', { class: 'chart' },
        el('div', { class: 'label' }, el('span', { text: name }), value), svg);
      return { box, line, value };
    });
    this.node = el('div', { class: 'charts dashboard', 'data-samples': '0' },
      ...this.charts.map((c) => c.box));
  }

  add(item) {
    this.samples.push(item);
    if (this.samples.length > WINDOW) this.samples.shift();
    SERIES.forEach(([, get, fmt], k) => {
      const values = this.samples.map((s) => Number(get(s)) || 0);
      const lo = Math.min(...values);
      const span = Math.max(...values) - lo;
      const off = WINDOW - values.length;
      // A flat series runs through the middle; otherwise it spans the height.
      const y = (v) => (span ? 95 - ((v - lo) / span) * 90 : 50).toFixed(1);
      const pts = values.map((v, i) => `${off + i},${y(v)}`);
      this.charts[k].line.setAttribute('points', pts.join(' '));
      this.charts[k].value.textContent = fmt(values[values.length - 1]);
    });
    const n = Number(this.node.dataset.samples) + 1;
    this.node.dataset.samples = String(n);
    this.node.title = `${n} samples`;
  }
}

// A job's block in the output: its command line, its results, and how it ended.
export class Job {
  constructor(id, command, container) {
    this.parts = {};
    this.groups = new Map();
    this.body = el('div');
    this.node = el('div', { class: 'job running', 'data-job': String(id), 'data-state': 'running' },
      el('div', { class: 'cmdline', text: command || `job ${id}` }), this.body);
    container.append(this.node);
  }

  // Items of a cluster-wide job carry `node`: each node's results get their own group.
  add(child, item) {
    let target = this.body;
    if (item.node) {
      if (!this.groups.has(item.node)) {
        const g = el('div', { class: 'node', 'data-node': item.node }, el('h4', { text: item.node }));
        this.groups.set(item.node, g);
        this.body.append(g);
      }
      target = this.groups.get(item.node);
    }
    target.append(child);
  }

  end(item) {
    let state = 'ok';
    let text = 'done';
    if (item.interrupted) {
      state = 'interrupted';
      text = 'interrupted';
    } else if (item.statusCode !== 0) {
      state = 'failed';
      text = `exit ${item.statusCode}${item.message ? `: ${item.message}` : ''}`;
    }
    this.node.className = `job ${state}`;
    this.node.dataset.state = state;
    this.add(el('div', { class: 'end', text }), item);
  }
}

// Renders one item into `job` (a job block, see app.js). Returns nothing; the block
// decides where the element goes.
export function render(item, job) {
  switch (item.type) {
    case 'message':
      return job.add(el('pre', { text: item.message }), item);
    case 'version':
      return job.add(el('pre', { class: 'version', text: `tandem ${item.version}` }), item);
    case 'help':
      if (item.commands) {
        return job.add(table(['command', 'summary'], item.commands.map((c) => [c.name, c.summary])), item);
      }
      return job.add(el('pre', { text: `usage: ${item.command.usage}\n${item.command.summary}` }), item);
    case 'sysinfo':
      return job.add(table(['', ''], SYSINFO.map(([k, f]) => [k, f(item)])), item);
    case 'dashboard': {
      const key = `dashboard ${item.node || ''}`;
      if (!job.parts[key]) {
        job.parts[key] = new Dashboard();
        job.add(job.parts[key].node, item);
      }
      return job.parts[key].add(item);
    }
    case 'members':
      return job.add(membersTable(item.members), item);
    case 'jobs':
      return job.add(item.jobs.length
        ? table(['id', 'command', 'status', ''], item.jobs.map((j) =>
          [j.id, j.command, j.status, j.background ? 'background' : 'foreground']))
        : el('pre', { class: 'muted', text: 'no other jobs' }), item);
    case 'gap':
      return job.add(el('div', { class: 'gap', role: 'alert',
        text: `⚠ ${item.dropped} result${item.dropped === 1 ? '' : 's'} dropped here: this console read too slowly` }), item);
    case 'event':
      if (item.event === 'user') {
        return job.add(el('pre', { text: `user event ${item.name}: ${item.payload}` }), item);
      }
      return job.add(el('pre', { text: `${item.event}: ${item.members.map((m) => `${m.Name} (${addr(m)})`).join(', ')}` }), item);
    case 'log':
      return job.add(el('pre', { class: `log ${item.level}`, text: item.log }), item);
    case 'join':
      return job.add(el('pre', { text: `joined ${item.joined} node${item.joined === 1 ? '' : 's'}` }), item);
    case 'status':
      return job.end(item);
    default:
      return job.add(el('pre', { class: 'json', text: JSON.stringify(item, null, 2) }), item);
  }
}
