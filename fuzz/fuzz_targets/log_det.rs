//! Fuzz target `log_det`: the property `flowcore::check::log_det` (see src/check.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = flowcore::check::log_det(data) {
        panic!("property log_det failed: {e}");
    }
});
