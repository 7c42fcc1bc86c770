//! The event handler scripts of a [`MioAgent`] (`Effect::RunHandler`): each runs and is
//! waited for on a thread of its own ([`tandem_runtime::handler`]), which hands the outcome
//! back through a channel and the waker; `Agent::handler_finished` takes it on the loop.
//! `Effect::CancelHandler` kills the script's process group.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, Sender};

use tandem_core::{HandlerId, HandlerRun};
use tandem_runtime::handler::{HandlerKill, HandlerOutcome, spawn_handler};

use super::MioAgent;

/// The scripts running, and the channel their outcomes come back on.
pub(super) struct Handlers {
    running: HashMap<HandlerId, HandlerKill>,
    tx: Sender<HandlerOutcome>,
    rx: Receiver<HandlerOutcome>,
}

impl Default for Handlers {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel();
        Handlers {
            running: HashMap::new(),
            tx,
            rx,
        }
    }
}

impl Handlers {
    /// Kills every script still running (the agent is going away).
    pub(super) fn kill_all(&mut self) {
        for (_, kill) in self.running.drain() {
            kill.kill();
        }
    }
}

impl MioAgent {
    /// `Effect::RunHandler`.
    pub(super) fn run_handler(&mut self, run: HandlerRun) {
        let id = run.id;
        let to_loop = self.handlers.tx.clone();
        let waker = self.waker.clone();
        match spawn_handler(run, move |outcome| {
            let _ = to_loop.send(outcome);
            if let Some(waker) = waker {
                let _ = waker.wake();
            }
        }) {
            Ok(kill) => {
                self.handlers.running.insert(id, kill);
            }
            Err(outcome) => {
                // Inside a drain: its outputs join it.
                self.handler_done(&outcome);
            }
        }
    }

    /// `Effect::CancelHandler`.
    pub(super) fn cancel_handler(&mut self, id: HandlerId) {
        if let Some(kill) = self.handlers.running.remove(&id) {
            kill.kill();
        }
    }

    fn handler_done(&mut self, o: &HandlerOutcome) {
        self.handlers.running.remove(&o.id);
        let now = self.clock.now();
        let result = o.result.as_ref().map(|_| ()).map_err(String::as_str);
        self.agent.handler_finished(o.id, result, &o.output, now);
    }

    /// Gives the agent the outcomes of the scripts that ended.
    pub(super) fn handler_messages(&mut self) {
        while let Ok(outcome) = self.handlers.rx.try_recv() {
            self.handler_done(&outcome);
            self.settle();
        }
    }
}
