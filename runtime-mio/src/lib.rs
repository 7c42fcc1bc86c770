//! tandem-mio: the hand-rolled mio runtime. Only a placeholder until its issue lands; the
//! workspace builds it so the crate layout of DESIGN.md holds from the start.

/// The version of the core this runtime drives.
pub fn core_version() -> &'static str {
    tandem_core::VERSION
}
