//! The integration tests: one binary (links once), one module per concern.

mod support;

mod batch;
mod core_bad_input;
mod core_base;
mod core_constraint;
mod core_flow;
mod core_planar;
mod energy;
#[cfg(feature = "check")]
mod fuzz_replay;
mod grad;
mod train;
