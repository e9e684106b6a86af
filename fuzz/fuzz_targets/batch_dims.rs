//! Fuzz target `batch_dims`: the property `flowcore::check::batch_dims` (see src/check.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = flowcore::check::batch_dims(data) {
        panic!("property batch_dims failed: {e}");
    }
});
