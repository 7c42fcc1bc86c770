//! Result items as they appear in `pull_results` and `exec` results (spec §5), serialized
//! once when produced and shared by every consumer that receives them.

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::json::{Obj, object};

/// One serialized result item.
pub(crate) type Item = Arc<[u8]>;

/// `input_status` values (spec §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InputStatus {
    AllowInput,
    AllowInterrupt,
    Disabled,
}

impl InputStatus {
    fn as_str(self) -> &'static str {
        match self {
            InputStatus::AllowInput => "ALLOW_INPUT",
            InputStatus::AllowInterrupt => "ALLOW_INTERRUPT",
            InputStatus::Disabled => "DISABLED",
        }
    }
}

/// The three `input_status` items, built once: they are sent on every job start and end.
#[derive(Debug)]
pub(crate) struct StatusItems([Item; 3]);

impl StatusItems {
    pub(crate) fn new() -> Self {
        StatusItems([
            input_status(InputStatus::AllowInput),
            input_status(InputStatus::AllowInterrupt),
            input_status(InputStatus::Disabled),
        ])
    }

    pub(crate) fn get(&self, status: InputStatus) -> Item {
        let i = match status {
            InputStatus::AllowInput => 0,
            InputStatus::AllowInterrupt => 1,
            InputStatus::Disabled => 2,
        };
        self.0[i].clone()
    }
}

/// Serializes one item with the writer's alphabetical-key discipline.
pub(crate) fn build(f: impl FnOnce(&mut Obj<'_>)) -> Item {
    // Most items fit; growing from empty would cost several reallocations per item.
    build_in(&mut Vec::with_capacity(128), f)
}

/// [`build`] through a reused buffer (cleared first): the item is its one allocation.
pub(crate) fn build_in(buf: &mut Vec<u8>, f: impl FnOnce(&mut Obj<'_>)) -> Item {
    buf.clear();
    object(buf, f);
    Arc::from(&buf[..])
}

pub(crate) fn message(job: u32, text: &str) -> Item {
    build(|o| {
        o.u64("jobId", job.into());
        o.str("message", text);
        o.str("type", "message");
    })
}

fn input_status(status: InputStatus) -> Item {
    build(|o| {
        o.str("inputStatus", status.as_str());
        o.u64("jobId", 0);
        o.str("type", "input_status");
    })
}

/// The echo of an `async_exec` request on the stream.
pub(crate) fn command(job: u32, command: &str, failure: Option<&str>) -> Item {
    build(|o| {
        o.str("command", command);
        o.u64("jobId", job.into());
        o.opt_str("message", failure);
        o.str(
            "state",
            if failure.is_some() {
                "FAILED"
            } else {
                "SCHEDULED"
            },
        );
        o.str("type", "command");
    })
}

/// A job's last item. `interrupted` is tandem's extension: Arthas reports an interrupted
/// job with code 0 and nothing else (spec §9.3).
pub(crate) fn status(
    buf: &mut Vec<u8>,
    job: u32,
    code: i32,
    message: Option<&str>,
    interrupted: bool,
) -> Item {
    build_in(buf, |o| {
        if interrupted {
            o.bool("interrupted", true);
        }
        o.u64("jobId", job.into());
        o.opt_str("message", message);
        o.i64("statusCode", code.into());
        o.str("type", "status");
    })
}

/// Stands where `dropped` items were lost to a full queue.
pub(crate) fn gap(dropped: u64) -> Item {
    build(|o| {
        o.u64("dropped", dropped);
        o.u64("jobId", 0);
        o.str("type", "gap");
    })
}

/// True for `input_status` items, which the history does not keep (spec §6.3).
pub(crate) fn is_input_status(item: &[u8]) -> bool {
    item.starts_with(b"{\"inputStatus\"")
}
