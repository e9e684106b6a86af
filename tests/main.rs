//! The integration tests: one binary (links once), one module per concern.

mod support;

mod core_bad_input;
mod core_base;
mod core_constraint;
mod core_flow;
mod core_planar;
mod grad;
mod batch;
mod energy;
mod train;
#[cfg(feature = "check")]
mod fuzz_replay;
