// Closes the console's session when its tab closes, but not when it reloads: the page
// hides, tells this worker "leaving", and the worker waits a moment; a reloaded page says
// "alive" for the same session first, a closed tab never does, and then the worker sends
// close_session. (A page cannot tell a reload from a close as it unloads; the worker
// outlives it.)
const GRACE_MS = 3000;
const alive = new Set();

self.addEventListener('install', () => self.skipWaiting());

self.addEventListener('message', (e) => {
  const { op, sessionId } = e.data || {};
  if (op === 'alive') {
    alive.add(sessionId);
  } else if (op === 'leaving') {
    alive.delete(sessionId);
    e.waitUntil(new Promise((done) => setTimeout(() => {
      if (alive.has(sessionId)) return done();
      fetch('/api', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ action: 'close_session', sessionId }),
      }).catch(() => {}).finally(done);
    }, GRACE_MS)));
  }
});
