//! Fuzz target `batch_vs_scalar`: the property `flowcore::check::batch_vs_scalar` (see src/check.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = flowcore::check::batch_vs_scalar(data) {
        panic!("property batch_vs_scalar failed: {e}");
    }
});
