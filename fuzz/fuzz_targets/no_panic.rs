//! Fuzz target `no_panic`: the property `flowcore::check::no_panic` (see src/check.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = flowcore::check::no_panic(data) {
        panic!("property no_panic failed: {e}");
    }
});
