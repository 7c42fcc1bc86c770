//! Event handler scripts (`Effect::RunHandler`): each runs and is waited for on a thread of
//! its own ([`tandem_runtime::handler`]); a task awaits the outcome and gives it to
//! `Agent::handler_finished`. `Effect::CancelHandler` kills the script's process group, and
//! so does the agent's shutdown for those still running.

use std::rc::Rc;

use tandem_core::{HandlerId, HandlerRun};
use tandem_runtime::handler::{HandlerOutcome, spawn_handler};

use crate::agent::Runtime;

impl Runtime {
    /// `Effect::RunHandler`.
    pub(crate) fn run_handler(self: &Rc<Self>, run: HandlerRun) {
        let Some(ex) = self.ex.upgrade() else {
            return; // shutting down
        };
        let id = run.id;
        let (tx, rx) = async_channel::bounded(1);
        match spawn_handler(run, move |outcome| {
            let _ = tx.send_blocking(outcome);
        }) {
            Ok(kill) => {
                self.handlers.borrow_mut().insert(id, kill);
                let rt = Rc::clone(self);
                ex.spawn(async move {
                    // The thread always sends once; a closed channel means it panicked.
                    let outcome = rx.recv().await.unwrap_or_else(|_| HandlerOutcome {
                        id,
                        result: Err("the handler thread failed".into()),
                        output: Vec::new(),
                    });
                    rt.handler_done(&outcome);
                })
                .detach();
            }
            Err(outcome) => self.handler_done(&outcome),
        }
    }

    /// `Effect::CancelHandler`.
    pub(crate) fn cancel_handler(&self, id: HandlerId) {
        let kill = self.handlers.borrow_mut().remove(&id);
        if let Some(kill) = kill {
            kill.kill();
        }
    }

    /// Kills every script still running (the agent is going away).
    pub(crate) fn kill_handlers(&self) {
        for (_, kill) in self.handlers.borrow_mut().drain() {
            kill.kill();
        }
    }

    fn handler_done(self: &Rc<Self>, o: &HandlerOutcome) {
        self.handlers.borrow_mut().remove(&o.id);
        let result = o.result.as_ref().map(|_| ()).map_err(String::as_str);
        self.input(|agent, now| agent.handler_finished(o.id, result, &o.output, now));
    }
}
