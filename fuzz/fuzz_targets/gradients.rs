//! Fuzz target `gradients`: the property `flowcore::check::gradients` (see src/check.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = flowcore::check::gradients(data) {
        panic!("property gradients failed: {e}");
    }
});
