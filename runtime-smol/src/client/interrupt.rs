//! Ctrl-C for the long-running client commands (`monitor`, `exec`).
//!
//! The main thread sits in a blocking read, so the first SIGINT (or SIGTERM, as Consul's
//! CLI also treats it) runs an action on a watcher thread instead: it sends `stop` or
//! `interrupt_job`, and the main thread then sees the agent's answer and ends normally. An
//! interrupt before the action is set runs the action as soon as it is set. A second
//! interrupt exits at once with 130, for an agent that no longer answers.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use async_signal::{Signal, Signals};
use futures_lite::StreamExt as _;

/// The exit code of a process ended by SIGINT (128 + 2), by shell convention.
pub(crate) const EXIT_INTERRUPTED: i32 = 130;

type Action = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    interrupts: u32,
    action: Option<Action>,
}

/// The installed handler. Dropping it leaves the handler in place until the process exits.
pub(crate) struct Interrupts {
    state: Arc<Mutex<State>>,
}

impl Interrupts {
    /// Installs the handler; from now on SIGINT and SIGTERM no longer kill the process.
    pub(crate) fn install() -> io::Result<Interrupts> {
        // Created here, not on the thread, so the handlers are in before this returns.
        let mut signals = Signals::new([Signal::Int, Signal::Term])?;
        let state = Arc::new(Mutex::new(State::default()));
        let watcher = Arc::clone(&state);
        std::thread::Builder::new()
            .name("interrupts".into())
            .spawn(move || {
                while let Some(Ok(_)) = async_io::block_on(signals.next()) {
                    let action = {
                        let mut s = watcher.lock().unwrap_or_else(PoisonError::into_inner);
                        s.interrupts += 1;
                        if s.interrupts > 1 {
                            std::process::exit(EXIT_INTERRUPTED);
                        }
                        s.action.take()
                    };
                    if let Some(action) = action {
                        action();
                    }
                }
            })?;
        Ok(Interrupts { state })
    }

    /// Sets what the first interrupt does (at once, if one already came).
    pub(crate) fn on_interrupt(&self, action: impl FnOnce() + Send + 'static) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.interrupts == 0 {
            s.action = Some(Box::new(action));
            return;
        }
        drop(s);
        action();
    }

    /// Whether an interrupt came.
    pub(crate) fn interrupted(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .interrupts
            > 0
    }
}
