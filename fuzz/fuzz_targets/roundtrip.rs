//! Fuzz target `roundtrip`: the property `flowcore::check::roundtrip` (see src/check.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = flowcore::check::roundtrip(data) {
        panic!("property roundtrip failed: {e}");
    }
});
