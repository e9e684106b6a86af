//! A freestanding x86_64 Linux program that uses `flowcore` with no std, no C runtime and no
//! allocator: its own `_start`, its own panic handler, output and exit by raw system calls.
//!
//! It builds a fixed K = 8, D = 2 planar flow (in f32, or f64 with the `f64` feature), evaluates
//! it on a handful of points — forward with log-det, exact inverse with log-det, `log_prob`
//! (sampler direction, through the inverse) and `log_prob_normalizing` (forward direction) —
//! and checks every result against references computed in f64 inside the program:
//!
//! * the same flow built in f64 from the same (f32-representable) parameters, and
//! * an independent textbook evaluation in f64 (`x = z + û·tanh(wᵀz + b)`,
//!   `ln|det| = ln(1 + wᵀû·(1 − tanh²))` with `libm::tanh`, using only the layers' `û`, `w`, `b`),
//!   which also checks the f64 flow itself (the inverse by its forward residual).
//!
//! With the `simd` feature the points are also evaluated all at once by the batched SIMD calls
//! (`forward_log_det_batch`, `inverse_batch`, `log_prob_batch`, `log_prob_normalizing_batch`,
//! on `flowcore::simd` lanes) and checked against the same references with the same tolerances.
//!
//! **Tolerances.** A result `q` is accepted if `|q − q_ref| ≤ τ·A·(1 + |q_ref| + ‖z_ref‖)` with
//! `τ = 16·K·ε`, ε the machine epsilon of the precision under test: each layer adds a local
//! rounding error of at most about 16 ulps relative to the size of its operands (dot product,
//! `expm1`-based tanh, multiply-adds, the constraint's `û` rounded in the working precision),
//! and the error made in layer k reaches the output multiplied by the Jacobian of the layers
//! after it (first-order worst case: `Σ_k ‖J_K⋯J_{k+1}‖·ρ_k ≤ K·max_k ‖J_K⋯J_{k+1}‖·ρ`). `A` is
//! that largest Jacobian-product norm, computed along the point's reference trajectory
//! (forward: `J_K⋯J_{k+1}`; inverse, which runs the layers backwards: `J_1⁻¹⋯J_{k−1}⁻¹`), times
//! for log-densities the log-det's sensitivity to its input `1 + Σ_k ‖w_k‖·|wᵀû_k·h″(s_k)|/det_k`.
//! The program prints the largest observed `error / tolerance` (in thousandths) so the margin
//! is visible (about 0.004: the bound is a worst case; a relative error of 1e−4 in one f32
//! output fails the check, 1e−5 does not).
//!
//! **Stack.** `_start` paints 64 KiB below the initial stack pointer with a pattern before
//! anything runs; at the end the program scans for the deepest overwritten word (whole-program
//! peak). Each single-point operation (and the batched call) is also measured on its own: the
//! 16 KiB below the caller's stack pointer are repainted, the operation is called, and the
//! deepest overwritten word gives its peak use including the call's return address.
//!
//! Exit status: 0 all checks passed, 1 a check failed, 2 a layer could not be built, 101 panic.
#![no_std]
#![no_main]
// `for i in 0..D` over several fixed-size arrays at once, as in the library's kernels.
#![allow(clippy::needless_range_loop)]
// `T` is f32 or f64 by feature: `as f64` / `u64::from` are conversions in one build, no-ops in the other.
#![allow(clippy::unnecessary_cast, clippy::useless_conversion)]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("this program is x86_64 Linux only (own _start, raw syscalls)");

use core::arch::{asm, global_asm};
use core::hint::black_box;
#[cfg(not(feature = "footprint"))]
use flowcore::Real;
use flowcore::{Flow, Planar};

#[cfg(not(feature = "f64"))]
type T = f32;
#[cfg(feature = "f64")]
type T = f64;

const K: usize = 8;
const D: usize = 2;

/// `(u, w, b)` of the layers, first applied first. All values are exact in f32, so the f32 and
/// f64 flows have the same parameters. Layers 3 and 6 have `wᵀu < −1` (the constraint acts).
const PARAMS: [([f32; D], [f32; D], f32); K] = [
    ([1.0, 0.5], [0.8, -1.25], 0.25),
    ([-0.75, 1.125], [1.5, 0.375], -0.5),
    ([0.5, -0.25], [-2.0, 1.0], 0.125),
    ([2.0, 1.5], [0.25, 0.5], 1.0),
    ([-1.5, -0.5], [0.625, -0.875], -0.25),
    ([0.375, 0.75], [-1.0, -1.5], 0.0),
    ([-0.25, 2.5], [0.5, 0.125], 0.75),
    ([1.25, -1.0], [1.75, 1.25], -1.0),
];

/// The evaluation points (used as `z` for the forward direction and as `x` for the inverse).
const POINTS: [[f32; D]; 6] = [
    [0.0, 0.0],
    [0.5, -1.25],
    [-2.0, 1.5],
    [3.25, 0.125],
    [-0.75, -3.5],
    [1.0e-3, 2.0],
];

/// The stack paint pattern.
const PATTERN: u64 = 0x5A5A_5A5A_5A5A_5A5A;
/// Bytes painted by `_start` below the initial stack pointer.
const PAINT_PROGRAM: usize = 64 * 1024;
/// Bytes painted below the caller before each measured operation.
#[cfg(not(feature = "footprint"))]
const PAINT_OP: usize = 16 * 1024;

// The entry point. The kernel starts the process with `rsp` at `argc` (16-byte aligned), no
// return address. Paint the stack below, align, and call into Rust with the initial `rsp`.
global_asm!(
    ".globl _start",
    ".type _start,@function",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "mov rax, {pattern}",
    "lea rcx, [rsp - 8]",
    "lea rdx, [rsp - {bytes}]",
    "2:",
    "mov qword ptr [rcx], rax",
    "sub rcx, 8",
    "cmp rcx, rdx",
    "jae 2b",
    "and rsp, -16",
    "call {main}",
    "ud2",
    pattern = const PATTERN,
    bytes = const PAINT_PROGRAM,
    main = sym program_main,
);

/// `write(fd, buf)` by raw syscall (errors ignored: there is nothing to report them to).
fn sys_write(fd: usize, buf: &[u8]) {
    // SAFETY: Linux x86_64 `write` (syscall 1) reads `buf.len()` bytes from `buf.as_ptr()`, a
    // valid slice; the kernel clobbers only rax, rcx and r11, which are declared.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") 1usize => _,
            in("rdi") fd,
            in("rsi") buf.as_ptr(),
            in("rdx") buf.len(),
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, readonly, preserves_flags)
        );
    }
}

/// `exit_group(code)` by raw syscall.
fn sys_exit(code: i32) -> ! {
    // SAFETY: Linux x86_64 `exit_group` (syscall 231) takes one integer and does not return.
    unsafe {
        asm!("syscall", in("rax") 231usize, in("rdi") code as isize, options(noreturn, nostack));
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    sys_write(2, b"flowcore-embedded: panic\n");
    sys_exit(101)
}

// The memory functions the compiler emits calls to (there is no libc to provide them). Written
// with `rep movsb`/`rep stosb` so that LLVM cannot turn them back into calls to themselves.

/// `memcpy`.
///
/// # Safety
/// The C contract: `dst` and `src` valid for `n` bytes and not overlapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the C contract; `rep movsb` copies `rcx` bytes forward from
    // `rsi` to `rdi` (the direction flag is clear per the ABI).
    unsafe {
        asm!("rep movsb", inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") n => _, options(nostack, preserves_flags));
    }
    dst
}

/// `memmove`.
///
/// # Safety
/// The C contract: `dst` and `src` valid for `n` bytes (they may overlap).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // A forward copy never overwrites a source byte before reading it.
        // SAFETY: as `memcpy`; the test above makes the forward order correct.
        unsafe { memcpy(dst, src, n) }
    } else {
        // SAFETY: a backward copy with the direction flag set from the last byte (`n ≥ 1` here,
        // since `dst − src < n`); the flag is cleared again as the ABI requires.
        unsafe {
            asm!(
                "std",
                "rep movsb",
                "cld",
                inout("rdi") dst.add(n - 1) => _,
                inout("rsi") src.add(n - 1) => _,
                inout("rcx") n => _,
                options(nostack)
            );
        }
        dst
    }
}

/// `memset`.
///
/// # Safety
/// The C contract: `dst` valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the C contract; `rep stosb` stores `al` `rcx` times.
    unsafe {
        asm!("rep stosb", inout("rdi") dst => _, inout("rcx") n => _, in("al") c as u8, options(nostack, preserves_flags));
    }
    dst
}

/// `memcmp`.
///
/// # Safety
/// The C contract: `a` and `b` valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: `i < n`, within both buffers by the caller's contract (volatile: keeps LLVM
        // from recognising the loop as a call to `memcmp` itself).
        let (x, y) = unsafe {
            (
                core::ptr::read_volatile(a.add(i)),
                core::ptr::read_volatile(b.add(i)),
            )
        };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// `bcmp` (zero iff equal).
///
/// # Safety
/// As [`memcmp`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}

/// A fixed-size line buffer written to a file descriptor (no `core::fmt`: it would cost
/// kilobytes of .text).
struct Line {
    buf: [u8; 160],
    len: usize,
}

impl Line {
    const fn new() -> Self {
        Self {
            buf: [0; 160],
            len: 0,
        }
    }
    fn s(&mut self, s: &str) -> &mut Self {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        self
    }
    #[cfg(not(feature = "footprint"))]
    fn u(&mut self, mut v: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        while n > 0 {
            n -= 1;
            let d = [digits[n]];
            // SAFETY-free: an ASCII digit is valid UTF-8.
            self.s(core::str::from_utf8(&d).unwrap_or("?"));
        }
        self
    }
    #[cfg(feature = "footprint")]
    fn hex(&mut self, v: u64) -> &mut Self {
        for i in (0..16).rev() {
            let d = ((v >> (4 * i)) & 15) as usize;
            self.s(&"0123456789abcdef"[d..d + 1]);
        }
        self
    }
    fn emit(&mut self, fd: usize) {
        sys_write(fd, &self.buf[..self.len]);
        self.len = 0;
    }
}

fn widen(p: [f32; D]) -> [T; D] {
    p.map(|v| v as T)
}

/// The flow under test, built from [`PARAMS`] (read through `black_box` so that nothing is
/// evaluated at compile time).
fn build_flow_t() -> Option<Flow<T, D, K>> {
    let params = black_box(PARAMS);
    let mut flow = Flow::<T, D, K>::identity();
    for (k, (u, w, b)) in params.iter().enumerate() {
        let layer = Planar::<T, D>::new(widen(*u), widen(*w), *b as T).ok()?;
        flow.set_layer(k, layer);
    }
    Some(flow)
}

/// Number of evaluation points.
#[cfg(feature = "simd")]
const N: usize = POINTS.len();

/// The results of the batched SIMD calls (`flowcore`'s `*_batch` methods, `T::Simd` lanes) on
/// all points at once.
#[cfg(feature = "simd")]
struct Batch {
    x: [[T; D]; N],
    log_det: [T; N],
    z: [[T; D]; N],
    log_det_inv: [T; N],
    log_prob: [T; N],
    log_prob_normalizing: [T; N],
    /// Calls that returned an error or points they reported as failed.
    failures: usize,
}

#[cfg(feature = "simd")]
impl Batch {
    fn new() -> Self {
        let (p, s) = ([[0.0 as T; D]; N], [0.0 as T; N]);
        Self {
            x: p,
            log_det: s,
            z: p,
            log_det_inv: s,
            log_prob: s,
            log_prob_normalizing: s,
            failures: 0,
        }
    }

    fn forward(&mut self, flow: &Flow<T, D, K>, pts: &[[T; D]; N]) {
        if flow
            .forward_log_det_batch(pts, &mut self.x, &mut self.log_det)
            .is_err()
        {
            self.failures += 1;
        }
    }
    fn inverse(&mut self, flow: &Flow<T, D, K>, pts: &[[T; D]; N]) {
        self.failures += flow
            .inverse_batch(pts, &mut self.z, &mut self.log_det_inv)
            .unwrap_or(1);
    }
    fn log_prob(&mut self, flow: &Flow<T, D, K>, pts: &[[T; D]; N]) {
        self.failures += flow.log_prob_batch(pts, &mut self.log_prob).unwrap_or(1);
    }
    fn log_prob_normalizing(&mut self, flow: &Flow<T, D, K>, pts: &[[T; D]; N]) {
        if flow
            .log_prob_normalizing_batch(pts, &mut self.log_prob_normalizing)
            .is_err()
        {
            self.failures += 1;
        }
    }
    fn all(flow: &Flow<T, D, K>, pts: &[[T; D]; N]) -> Self {
        let mut b = Self::new();
        b.forward(flow, pts);
        b.inverse(flow, pts);
        b.log_prob(flow, pts);
        b.log_prob_normalizing(flow, pts);
        b
    }
}

#[cfg(feature = "footprint")]
extern "C" fn program_main(_sp0: *const u64) -> ! {
    // The flow alone: evaluate every operation on every point and print a digest of the bits
    // so that nothing can be optimised away. No reference, no checks.
    let Some(flow) = build_flow_t() else {
        sys_exit(2)
    };
    let points = black_box(POINTS);
    let mut digest = 0u64;
    let mut fold = |v: T| digest = digest.rotate_left(7) ^ u64::from(v.to_bits());
    #[cfg(not(feature = "simd"))]
    for p in &points {
        let p = widen(*p);
        let (x, ld) = flow.forward_and_log_det(&p);
        fold(x[0]);
        fold(x[1]);
        fold(ld);
        fold(flow.log_prob_normalizing(&p));
        match flow.inverse_and_log_det(&p) {
            Ok((z, ld)) => {
                fold(z[0]);
                fold(z[1]);
                fold(ld);
            }
            Err(_) => sys_exit(1),
        }
        match flow.log_prob(&p) {
            Ok(lp) => fold(lp),
            Err(_) => sys_exit(1),
        }
    }
    #[cfg(feature = "simd")]
    {
        let b = Batch::all(&flow, &points.map(widen));
        if b.failures != 0 {
            sys_exit(1);
        }
        for i in 0..N {
            for v in [
                b.x[i][0],
                b.x[i][1],
                b.log_det[i],
                b.log_prob_normalizing[i],
            ] {
                fold(v);
            }
            for v in [b.z[i][0], b.z[i][1], b.log_det_inv[i], b.log_prob[i]] {
                fold(v);
            }
        }
    }
    let mut line = Line::new();
    line.s("digest=").hex(digest).s("\n").emit(1);
    sys_exit(0)
}

#[cfg(not(feature = "footprint"))]
mod check {
    use super::*;

    /// The independent textbook evaluation of the forward direction in f64, with the
    /// amplification factors of the tolerance (see the crate docs).
    pub struct Reference {
        pub x: [f64; D],
        pub log_det: f64,
        /// `max_k ‖J_K ⋯ J_{k+1}‖_F`: how much an error made in layer k grows to the output.
        pub amp_fwd: f64,
        /// `max_k ‖J_1⁻¹ ⋯ J_{k−1}⁻¹‖_F`: the same for the inverse, which runs the layers
        /// backwards.
        pub amp_inv: f64,
        /// `1 + Σ_k ‖w_k‖·|wᵀû_k·h″(s_k)| / det_k`: sensitivity of the log-det to its input.
        pub sens: f64,
    }

    type M = [[f64; D]; D];

    fn mul(a: &M, b: &M) -> M {
        let mut c = [[0.0; D]; D];
        for i in 0..D {
            for j in 0..D {
                c[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j];
            }
        }
        c
    }

    fn frob(a: &M) -> f64 {
        libm::sqrt(a[0][0] * a[0][0] + a[0][1] * a[0][1] + a[1][0] * a[1][0] + a[1][1] * a[1][1])
    }

    pub fn naive_forward(layers: &[Planar<f64, D>; K], z: &[f64; D]) -> Reference {
        let mut x = *z;
        let (mut log_det, mut sens) = (0.0, 1.0);
        let mut jac = [[[0.0; D]; D]; K];
        let mut jac_inv = [[[0.0; D]; D]; K];
        for (k, l) in layers.iter().enumerate() {
            let (u, w) = (l.u_hat(), l.w());
            let s = w[0] * x[0] + w[1] * x[1] + l.b();
            let t = libm::tanh(s);
            let sech2 = 1.0 - t * t;
            let c = w[0] * u[0] + w[1] * u[1];
            let det = 1.0 + c * sech2;
            x = [x[0] + u[0] * t, x[1] + u[1] * t];
            log_det += libm::log(det);
            sens += libm::hypot(w[0], w[1]) * libm::fabs(c * 2.0 * t * sech2) / det;
            // J = I + sech²·û wᵀ, J⁻¹ = I − sech²·û wᵀ / det (Sherman–Morrison).
            for i in 0..D {
                for j in 0..D {
                    let id = if i == j { 1.0 } else { 0.0 };
                    jac[k][i][j] = id + sech2 * u[i] * w[j];
                    jac_inv[k][i][j] = id - sech2 * u[i] * w[j] / det;
                }
            }
        }
        let (mut amp_fwd, mut amp_inv) = (1.0f64, 1.0f64);
        let mut suffix = [[1.0, 0.0], [0.0, 1.0]];
        let mut prefix = suffix;
        for k in (0..K).rev() {
            suffix = mul(&suffix, &jac[k]);
            amp_fwd = amp_fwd.max(frob(&suffix));
        }
        for k in 0..K {
            prefix = mul(&prefix, &jac_inv[k]);
            amp_inv = amp_inv.max(frob(&prefix));
        }
        Reference {
            x,
            log_det,
            amp_fwd,
            amp_inv,
            sens,
        }
    }

    pub fn log_normal(z: &[f64; D]) -> f64 {
        -0.5 * (z[0] * z[0] + z[1] * z[1]) - (D as f64) * 0.918_938_533_204_672_7
    }

    /// Collects the verdict and the worst error/tolerance ratio.
    pub struct Checker {
        pub ok: bool,
        pub worst: f64,
    }

    impl Checker {
        /// `|got − want| ≤ tol`; NaN fails.
        pub fn cmp(&mut self, what: &str, point: usize, got: f64, want: f64, tol: f64) {
            let err = libm::fabs(got - want);
            let ratio = err / tol;
            // Written so that a NaN error fails.
            if err.partial_cmp(&tol) != Some(core::cmp::Ordering::Less) && err != tol {
                self.ok = false;
                let mut line = Line::new();
                let milli = if ratio.is_finite() {
                    (ratio * 1000.0) as u64
                } else {
                    u64::MAX
                };
                line.s("FAIL ")
                    .s(what)
                    .s(" point ")
                    .u(point as u64)
                    .s(" err/tol*1000=")
                    .u(milli)
                    .s("\n");
                line.emit(2);
            }
            if ratio > self.worst || ratio.is_nan() {
                self.worst = ratio;
            }
        }
    }

    /// `16·K·ε` of the precision under test.
    pub fn tau<R: Real>() -> f64 {
        16.0 * K as f64 * R::EPS.as_f64()
    }

    pub fn sq(z: &[f64; D]) -> f64 {
        z[0] * z[0] + z[1] * z[1]
    }
}

/// Calls `f` once with the 16 KiB below the current stack pointer painted, and returns the
/// number of bytes of that region `f` overwrote (its peak stack use, return address included).
#[cfg(not(feature = "footprint"))]
#[inline(never)]
fn stack_used<F: FnMut()>(mut f: F) -> usize {
    extern "C" fn trampoline<F: FnMut()>(ctx: *mut u8) {
        // SAFETY: `ctx` is the `&mut F` passed by `stack_used` below, valid for this call and
        // not aliased while it runs.
        let f = unsafe { &mut *ctx.cast::<F>() };
        f();
    }
    let ctx = (&mut f as *mut F).cast::<u8>();
    let call: extern "C" fn(*mut u8) = trampoline::<F>;
    let used: usize;
    // SAFETY: without `nostack` the block may use the stack below `rsp`, which is aligned for a
    // call there; it writes only that unused region (the paint), then calls `trampoline`
    // (C ABI: caller-saved registers clobbered via `clobber_abi`, `r12` callee-saved and
    // declared), then only reads the painted region back.
    unsafe {
        asm!(
            "mov r12, rsp",
            "mov rax, {pattern}",
            "lea rcx, [rsp - 8]",
            "lea rdx, [rsp - {bytes}]",
            "2:",
            "mov qword ptr [rcx], rax",
            "sub rcx, 8",
            "cmp rcx, rdx",
            "jae 2b",
            "call r8",
            "mov rax, {pattern}",
            "lea rcx, [r12 - {bytes}]",
            "3:",
            "cmp qword ptr [rcx], rax",
            "jne 4f",
            "add rcx, 8",
            "cmp rcx, r12",
            "jb 3b",
            "4:",
            "mov rax, r12",
            "sub rax, rcx",
            pattern = const PATTERN,
            bytes = const PAINT_OP,
            in("rdi") ctx,
            in("r8") call,
            out("r12") _,
            lateout("rax") used,
            clobber_abi("C"),
        );
    }
    used
}

/// Scans the region `_start` painted for the deepest overwritten word.
#[cfg(not(feature = "footprint"))]
fn program_stack_used(sp0: *const u64) -> usize {
    let lo = (sp0 as usize) - PAINT_PROGRAM;
    let mut addr = lo;
    while addr < sp0 as usize {
        // SAFETY: `[sp0 − PAINT_PROGRAM, sp0)` is the process's stack, mapped and written by
        // `_start`'s paint loop; it is read here as plain words (volatile: it lies below frames
        // the compiler knows about).
        let v = unsafe { core::ptr::read_volatile(addr as *const u64) };
        if v != PATTERN {
            break;
        }
        addr += 8;
    }
    sp0 as usize - addr
}

#[cfg(not(feature = "footprint"))]
extern "C" fn program_main(sp0: *const u64) -> ! {
    use check::*;

    let Some(flow) = build_flow_t() else {
        sys_exit(2)
    };
    let params = black_box(PARAMS);
    let mut f64_layers = [Planar::<f64, D>::identity(); K];
    for (k, (u, w, b)) in params.iter().enumerate() {
        match Planar::<f64, D>::new(u.map(f64::from), w.map(f64::from), f64::from(*b)) {
            Ok(l) => f64_layers[k] = l,
            Err(_) => sys_exit(2),
        }
    }
    let flow64 = Flow::new(f64_layers);
    let (tau_t, tau_64) = (tau::<T>(), tau::<f64>());
    let mut chk = Checker {
        ok: true,
        worst: 0.0,
    };
    let points = black_box(POINTS);
    #[cfg(feature = "simd")]
    let batch = Batch::all(&flow, &points.map(widen));
    #[cfg(feature = "simd")]
    if batch.failures != 0 {
        chk.cmp("batched call (error)", 0, f64::NAN, 0.0, 1.0);
    }

    for (i, p) in points.iter().enumerate() {
        let p64 = p.map(f64::from);
        let pt = widen(*p);

        // Forward direction, z = p.
        let r = naive_forward(&f64_layers, &p64);
        let scale = |q: f64, z: &[f64; D]| 1.0 + libm::fabs(q) + libm::sqrt(sq(z));
        let (x64, ld64) = flow64.forward_and_log_det(&p64);
        let (xt, ldt) = flow.forward_and_log_det(&pt);
        for j in 0..D {
            let s = scale(r.x[j], &p64);
            chk.cmp("f64 forward x", i, x64[j], r.x[j], tau_64 * r.amp_fwd * s);
            chk.cmp("forward x", i, xt[j] as f64, x64[j], tau_t * r.amp_fwd * s);
        }
        #[cfg(feature = "simd")]
        for j in 0..D {
            let s = scale(r.x[j], &p64);
            chk.cmp(
                "batched forward x",
                i,
                batch.x[i][j] as f64,
                x64[j],
                tau_t * r.amp_fwd * s,
            );
        }
        let s = scale(r.log_det, &p64) * r.sens;
        #[cfg(feature = "simd")]
        chk.cmp(
            "batched forward log-det",
            i,
            batch.log_det[i] as f64,
            ld64,
            tau_t * r.amp_fwd * s,
        );
        chk.cmp(
            "f64 forward log-det",
            i,
            ld64,
            r.log_det,
            tau_64 * r.amp_fwd * s,
        );
        chk.cmp(
            "forward log-det",
            i,
            ldt as f64,
            ld64,
            tau_t * r.amp_fwd * s,
        );
        // log_prob_normalizing(p) = log N(g(p)) + ln|det J_g(p)|.
        let lpn_ref = log_normal(&r.x) + r.log_det;
        let s = scale(lpn_ref, &r.x) * r.sens;
        chk.cmp(
            "f64 log_prob_normalizing",
            i,
            flow64.log_prob_normalizing(&p64),
            lpn_ref,
            tau_64 * r.amp_fwd * s,
        );
        #[cfg(feature = "simd")]
        chk.cmp(
            "batched log_prob_normalizing",
            i,
            batch.log_prob_normalizing[i] as f64,
            lpn_ref,
            tau_t * r.amp_fwd * s,
        );
        chk.cmp(
            "log_prob_normalizing",
            i,
            flow.log_prob_normalizing(&pt) as f64,
            lpn_ref,
            tau_t * r.amp_fwd * s,
        );

        // Inverse direction, x = p: the f64 inverse is checked by its forward residual, then is
        // the reference of the inverse under test.
        let Ok((z64, ldi64)) = flow64.inverse_and_log_det(&p64) else {
            sys_exit(1)
        };
        let back = naive_forward(&f64_layers, &z64);
        for j in 0..D {
            let s = scale(p64[j], &z64);
            chk.cmp(
                "f64 inverse residual",
                i,
                back.x[j],
                p64[j],
                tau_64 * back.amp_fwd * s,
            );
        }
        let s = scale(back.log_det, &z64) * back.sens;
        chk.cmp(
            "f64 inverse log-det",
            i,
            ldi64,
            -back.log_det,
            tau_64 * back.amp_inv * s,
        );
        #[cfg(feature = "simd")]
        {
            for j in 0..D {
                let s = scale(z64[j], &z64);
                chk.cmp(
                    "batched inverse z",
                    i,
                    batch.z[i][j] as f64,
                    z64[j],
                    tau_t * back.amp_inv * s,
                );
            }
            chk.cmp(
                "batched inverse log-det",
                i,
                batch.log_det_inv[i] as f64,
                ldi64,
                tau_t * back.amp_inv * s,
            );
        }
        match flow.inverse_and_log_det(&pt) {
            Ok((zt, ldit)) => {
                for j in 0..D {
                    let s = scale(z64[j], &z64);
                    chk.cmp(
                        "inverse z",
                        i,
                        zt[j] as f64,
                        z64[j],
                        tau_t * back.amp_inv * s,
                    );
                }
                chk.cmp(
                    "inverse log-det",
                    i,
                    ldit as f64,
                    ldi64,
                    tau_t * back.amp_inv * s,
                );
            }
            Err(_) => chk.cmp("inverse (error)", i, f64::NAN, 0.0, 1.0),
        }
        // log_prob(p) = log N(g⁻¹(p)) − ln|det J_g(g⁻¹(p))|.
        let lp_ref = log_normal(&z64) - back.log_det;
        let s = scale(lp_ref, &z64) * back.sens;
        #[cfg(feature = "simd")]
        chk.cmp(
            "batched log_prob",
            i,
            batch.log_prob[i] as f64,
            lp_ref,
            tau_t * back.amp_inv * s,
        );
        match (flow64.log_prob(&p64), flow.log_prob(&pt)) {
            (Ok(lp64), Ok(lpt)) => {
                chk.cmp("f64 log_prob", i, lp64, lp_ref, tau_64 * back.amp_inv * s);
                chk.cmp("log_prob", i, lpt as f64, lp_ref, tau_t * back.amp_inv * s);
            }
            _ => chk.cmp("log_prob (error)", i, f64::NAN, 0.0, 1.0),
        }
    }

    // The whole program's peak so far (everything above, references included).
    let stack_program = program_stack_used(sp0);

    // Each batched call on its own (all points in one call).
    #[cfg(feature = "simd")]
    let stack_batch = {
        let pts = points.map(widen);
        let mut b = Batch::new();
        let uses = [
            stack_used(|| b.forward(black_box(&flow), black_box(&pts))),
            stack_used(|| b.inverse(black_box(&flow), black_box(&pts))),
            stack_used(|| b.log_prob(black_box(&flow), black_box(&pts))),
            stack_used(|| b.log_prob_normalizing(black_box(&flow), black_box(&pts))),
        ];
        black_box(&b);
        uses.iter().fold(0, |a, &u| a.max(u))
    };
    #[cfg(not(feature = "simd"))]
    let stack_batch = 0usize;

    // Each single-point operation on its own.
    let mut stack_single = 0usize;
    for p in &points {
        let pt = widen(*p);
        let mut sink = 0.0 as T;
        let uses = [
            stack_used(|| {
                let (x, ld) = black_box(&flow).forward_and_log_det(black_box(&pt));
                sink += x[0] + x[1] + ld;
            }),
            stack_used(|| {
                if let Ok((z, ld)) = black_box(&flow).inverse_and_log_det(black_box(&pt)) {
                    sink += z[0] + z[1] + ld;
                }
            }),
            stack_used(|| {
                if let Ok(lp) = black_box(&flow).log_prob(black_box(&pt)) {
                    sink += lp;
                }
            }),
            stack_used(|| sink += black_box(&flow).log_prob_normalizing(black_box(&pt))),
        ];
        black_box(sink);
        for u in uses {
            stack_single = stack_single.max(u);
        }
    }

    let mut line = Line::new();
    let worst = if chk.worst.is_finite() {
        (chk.worst * 1000.0) as u64
    } else {
        u64::MAX
    };
    line.s("ok=")
        .u(chk.ok as u64)
        .s(" stack_single=")
        .u(stack_single as u64)
        .s(" stack_batch=")
        .u(stack_batch as u64)
        .s(" stack_program=")
        .u(stack_program as u64)
        .s(" worst_err_over_tol_milli=")
        .u(worst)
        .s("\n")
        .emit(1);
    sys_exit(if chk.ok { 0 } else { 1 })
}
