//! What SIGINT and SIGTERM do, as Serf's agent decides it: SIGINT leaves the cluster
//! gracefully before shutting down unless `skip_leave_on_interrupt` is set; SIGTERM shuts
//! down at once unless `leave_on_terminate` is set. A second stop signal during the leave
//! shuts down at once, and the leave is bounded by [`GRACEFUL_TIMEOUT`].

use std::time::Duration;

use tandem_core::Config;

/// The most a graceful leave started by a signal may take before the agent shuts down
/// anyway (Serf's broadcast timeout). The leave itself takes `leave_propagate_delay` (1 s).
pub const GRACEFUL_TIMEOUT: Duration = Duration::from_secs(5);

/// The line logged when a signal starts a graceful leave (Serf's).
pub const GRACEFUL_LINE: &str = "agent: Gracefully shutting down agent...";

/// A signal that stops the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

/// What to do about a stop signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopAction {
    /// Leave the cluster (`Agent::leave`), then shut down when the agent asks to.
    Leave,
    /// Shut down now: peers see this node `failed`.
    ShutDown,
}

/// What `signal` does under `cfg`, given whether a graceful leave is already under way.
pub fn stop_action(cfg: &Config, signal: StopSignal, leaving: bool) -> StopAction {
    let leave = match signal {
        StopSignal::Interrupt => !cfg.skip_leave_on_interrupt,
        StopSignal::Terminate => cfg.leave_on_terminate,
    };
    if leave && !leaving {
        StopAction::Leave
    } else {
        StopAction::ShutDown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupt_leaves_and_terminate_shuts_down_by_default_as_serf() {
        let mut cfg = Config::default();
        assert_eq!(
            stop_action(&cfg, StopSignal::Interrupt, false),
            StopAction::Leave
        );
        assert_eq!(
            stop_action(&cfg, StopSignal::Terminate, false),
            StopAction::ShutDown
        );
        // A second signal during the leave does not wait for it.
        assert_eq!(
            stop_action(&cfg, StopSignal::Interrupt, true),
            StopAction::ShutDown
        );
        cfg.skip_leave_on_interrupt = true;
        cfg.leave_on_terminate = true;
        assert_eq!(
            stop_action(&cfg, StopSignal::Interrupt, false),
            StopAction::ShutDown
        );
        assert_eq!(
            stop_action(&cfg, StopSignal::Terminate, false),
            StopAction::Leave
        );
    }
}
