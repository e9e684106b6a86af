//! Fuzz target `constraint`: the property `flowcore::check::constraint` (see src/check.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = flowcore::check::constraint(data) {
        panic!("property constraint failed: {e}");
    }
});
