//! Fuzz target `density`: the property `flowcore::check::density` (see src/check.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = flowcore::check::density(data) {
        panic!("property density failed: {e}");
    }
});
