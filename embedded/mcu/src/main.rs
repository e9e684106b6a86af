//! The README's microcontroller usage as a bare-metal program: a K = 8, D = 2 f32 flow
//! evaluated forward (with log-det), through the exact inverse, and as a density both ways;
//! with the `sample` feature also sampled with a `Xoshiro128PlusPlus` seeded from "hardware
//! entropy"; with `simd` also one batched `log_prob_batch` call. Cross-built for thumbv7em-none-eabihf and
//! riscv32imac-unknown-none-elf to prove that every operation monomorphises, compiles and links
//! with no std and no allocator on those targets, and to size the code (`.text`).
//!
//! It is linked with the linker's default layout (no memory map, no vector table / runtime
//! crate), so it is not meant to be flashed: a real firmware gets `_start`/reset from its
//! runtime crate (cortex-m-rt, riscv-rt) and calls [`evaluate`] from there.
#![no_std]
#![no_main]

use core::hint::black_box;
use flowcore::{Flow, Planar};
#[cfg(feature = "sample")]
use flowcore::{SeedableRng, Xoshiro128PlusPlus};

/// Stands in for a hardware random number generator register (e.g. the STM32 RNG `DR`).
#[cfg(feature = "sample")]
fn hw_entropy() -> u64 {
    black_box(0x1234_5678_9abc_def0)
}

/// Builds the flow, draws a sample, and evaluates it both ways. Returns a digest of the results.
#[inline(never)]
pub fn evaluate(params: &[([f32; 2], [f32; 2], f32); 8], point: [f32; 2]) -> Option<f32> {
    let mut layers = [Planar::<f32, 2>::identity(); 8];
    for (l, (u, w, b)) in layers.iter_mut().zip(params) {
        *l = Planar::new(*u, *w, *b).ok()?;
    }
    let flow = Flow::new(layers);
    #[cfg(feature = "sample")]
    let (x, log_q) = {
        let mut rng = Xoshiro128PlusPlus::seed_from_u64(hw_entropy());
        flow.sample(&mut rng) // x = g(z), z ~ N(0, I), log_q = log q(x)
    };
    #[cfg(not(feature = "sample"))]
    let (x, log_q) = flow.forward_and_log_det(&point);
    let lp = flow.log_prob(&x).ok()?; // log q(x) via the exact inverse
    let (z, ld_inv) = flow.inverse_and_log_det(&x).ok()?;
    let lpn = flow.log_prob_normalizing(&point);
    #[cfg(feature = "simd")]
    let batched = {
        let pts = [x, z, point, [2.0, 0.25]];
        let mut out = [0.0f32; 4];
        flow.log_prob_batch(&pts, &mut out).ok()?;
        out[0] + out[3]
    };
    #[cfg(not(feature = "simd"))]
    let batched = 0.0;
    Some(lp - log_q + lpn + ld_inv + z[0] + batched)
}

#[unsafe(no_mangle)]
extern "C" fn _start() -> ! {
    let params = black_box([
        ([1.0, 0.5], [0.8, -1.25], 0.25),
        ([-0.75, 1.125], [1.5, 0.375], -0.5),
        ([0.5, -0.25], [-2.0, 1.0], 0.125),
        ([2.0, 1.5], [0.25, 0.5], 1.0),
        ([-1.5, -0.5], [0.625, -0.875], -0.25),
        ([0.375, 0.75], [-1.0, -1.5], 0.0),
        ([-0.25, 2.5], [0.5, 0.125], 0.75),
        ([1.25, -1.0], [1.75, 1.25], -1.0),
    ]);
    loop {
        black_box(evaluate(&params, black_box([0.5, -1.25])));
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
