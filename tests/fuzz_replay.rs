//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`) and every crash found so far
//! (`fuzz/regressions/<target>/`) through the same property functions the fuzz targets call
//! (`flowcore::check`), on stable, as part of `cargo test --all-features`.

use flowcore::check::{PROPERTIES, run};
use std::path::Path;

fn replay(dir: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(dir);
    let mut n = 0;
    let mut failures = Vec::new();
    for prop in PROPERTIES {
        let Ok(entries) = std::fs::read_dir(root.join(prop)) else {
            continue;
        };
        let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for f in files {
            if !f.is_file()
                || f.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let data = std::fs::read(&f).expect("corpus file readable");
            n += 1;
            if let Err(e) = run(prop, &data) {
                failures.push(format!("{}: {e}", f.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    n
}

#[test]
fn seed_corpus_passes() {
    let n = replay("corpus");
    assert!(n >= PROPERTIES.len(), "seed corpus missing ({n} files)");
}

#[test]
fn regressions_pass() {
    replay("regressions");
}

/// The properties on many deterministic pseudo-random inputs (a cheap stand-in for fuzzing on
/// stable): 300 inputs per property, lengths 1–400 bytes.
#[test]
fn pseudo_random_inputs_pass() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for prop in PROPERTIES {
        let n = if prop == "density" { 40 } else { 300 };
        for _ in 0..n {
            let len = (next() % 400) as usize + 1;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Err(e) = run(prop, &data) {
                panic!("{prop} failed on {data:?}: {e}");
            }
        }
    }
}

/// Bug found by the `constraint` property (pseudo-random replay): with leaky ReLU and
/// `1 + wᵀû` at the smallest normal, `LeakyRelu::solve` returned `Ok(±∞)` for a finite
/// pre-activation, so `Planar::inverse` returned `Ok` with ±∞ and NaN (`0·∞`) coordinates.
/// Now the out-of-range root is the documented `NonFiniteInput`.
#[test]
fn leaky_inverse_out_of_range_root_is_an_error() {
    use flowcore::{Constraint, FlowError, LeakyRelu, Planar};
    let act = LeakyRelu::new(0.5f32).unwrap();
    // wᵀu = −200: Smooth gives 1 + wᵀû = (e − 1)·e⁻²⁰⁰, clamped to the smallest normal.
    let l = Planar::with([-200.0f32, 0.0], [1.0, 0.0], 0.0, Constraint::Smooth, act).unwrap();
    assert_eq!(l.one_plus_w_dot_u_hat(), f32::MIN_POSITIVE);
    // y = 1 > 0: α = y / (1 + wᵀû) ≈ 8.5e37·… overflows for y ≥ 4 (and the second coordinate
    // has û = 0, which gave 0·∞ = NaN before the fix).
    let r = l.inverse(&[1e3, 5.0]);
    assert_eq!(r, Err(FlowError::NonFiniteInput));
    // A root in range still works: y = 1e-30.
    let z = l.inverse(&[1e-30, 5.0]).unwrap();
    assert!(z.iter().all(|v| v.is_finite()), "{z:?}");
}
