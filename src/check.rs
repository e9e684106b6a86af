//! Property checks shared by the fuzz targets (`fuzz/`) and the replay tests
//! (`tests/fuzz_replay.rs`), behind the `check` feature.
//!
//! Every property is a function of raw bytes (`roundtrip(&[u8])`, …) that decodes its own input
//! with the small, dependency-free [`Bytes`] reader, so a corpus file replays identically under
//! `cargo fuzz` (nightly, libFuzzer) and under `cargo test` (stable). Each returns `Ok(())` or an
//! `Err(String)` that says what failed, with the input values; nothing in here panics on any
//! input (the fuzz harness turns an `Err` into a crash, and the replay test into a failure).
//!
//! The structured checks (`roundtrip_layer`, `log_det_layer`, …) take already-decoded
//! parameters and can be called directly from tests.
//!
//! ## Tolerances
//! `ε` is the unit roundoff of `T` (`T::EPS`), `C = 4·D + 16` ulps covers the `D`-term dot
//! product `wᵀz + b` and the handful of roundings after it, and `κ` is
//! [`Planar::conditioning`]. For one layer with `x = g(z)`, `s = wᵀz + b` and
//! `S = |b| + |wᵀû| + Σⱼ |wⱼ|·(|zⱼ| + |xⱼ| + |ûⱼ|)` (the scale of the rounding in the
//! pre-activation), coordinate `i` of
//!
//! * `g⁻¹(g(z)) − z` is bounded by `C·ε·(|zᵢ| + |xᵢ| + |ûᵢ| + |ûᵢ|·κ·(S + |s|))`: an error
//!   `δ` in the pre-activation moves the root `α` by at most `κ·δ` (the slope of
//!   `α ↦ α + wᵀû·h(α)` is at least `1/κ`), and `z = x − û·h(α)` carries it along `û`;
//! * `g(g⁻¹(x)) − x` is bounded by `C·ε·(|zᵢ| + |xᵢ| + |ûᵢ|·(1 + S + |s|))`: no `κ`, because
//!   the forward pass re-evaluates `h` at `wᵀz + b`, which absorbs the root's error.
//!
//! For a flow the local bounds are propagated through the remaining layers with their
//! Lipschitz constants in the ∞-norm (`1 + maxᵢ|ûᵢ|·‖w‖₁·sup h′`, times `κ` for an inverse).
//! Log-dets and densities have their own bounds, stated at each check.

// `!(a > b)` is how these checks say "not provably greater" with NaN counted as a failure.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use crate::activation::{Activation, LeakyRelu, Tanh};
use crate::base::{StandardNormal, normal_pair, uniform_open0};
use crate::constraint::Constraint;
use crate::error::FlowError;
use crate::flow::Flow;
use crate::planar::Planar;
use crate::real::{Lane, Real};
use rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::format;
use std::string::String;

/// The outcome of a property: `Ok(())`, or what failed.
pub type Outcome = core::result::Result<(), String>;

// ---------------------------------------------------------------------------------------------
// Input decoding
// ---------------------------------------------------------------------------------------------

/// A reader of fuzz bytes: every read succeeds (past the end it yields zeros), so any byte
/// string decodes to some input.
#[derive(Debug, Clone)]
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    /// A reader over `data`.
    #[must_use]
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// The next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }

    /// The next little-endian `u16`.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// The next little-endian `u64`.
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for v in &mut b {
            *v = self.u8();
        }
        u64::from_le_bytes(b)
    }

    /// An arbitrary bit pattern of `T` (NaN, ±∞, subnormals included).
    pub fn raw<T: Real>(&mut self) -> T {
        let bits = self.u64();
        if T::BITS == 32 {
            T::from_f64(f32::from_bits(bits as u32) as f64)
        } else {
            T::from_f64(f64::from_bits(bits))
        }
    }

    /// A finite "structured" value: 0, a small multiple of ¼, or `±(1 + m/2¹⁶)·2^e` with
    /// `|e| ≤ emax`.
    pub fn real<T: Real>(&mut self, emax: i32) -> T {
        let tag = self.u8();
        let v = match tag % 8 {
            0 => 0.0,
            1 => f64::from(self.u8() as i8) / 4.0,
            _ => {
                let m = 1.0 + f64::from(self.u16()) / 65536.0;
                let span = (2 * emax + 1).max(1);
                let e = i32::from(self.u8()) % span - emax;
                let s = if tag & 8 != 0 { -1.0 } else { 1.0 };
                s * m * libm::exp2(f64::from(e))
            }
        };
        T::from_f64(v)
    }

    /// `D` structured values.
    pub fn vec<T: Real, const D: usize>(&mut self, emax: i32) -> [T; D] {
        let mut v = [T::ZERO; D];
        for x in &mut v {
            *x = self.real(emax);
        }
        v
    }

    /// `D` arbitrary bit patterns.
    pub fn raw_vec<T: Real, const D: usize>(&mut self) -> [T; D] {
        let mut v = [T::ZERO; D];
        for x in &mut v {
            *x = self.raw();
        }
        v
    }
}

/// An activation the checks know how to decode and to evaluate independently in f64.
pub trait CheckActivation<T: Real>: Activation<T> {
    /// Decodes an instance (e.g. a leaky-ReLU slope) from the input.
    fn decode(inp: &mut Bytes<'_>) -> Option<Self>;
    /// `(h(s), h′(s))` in f64, computed independently of the crate's kernels.
    fn reference(&self, s: f64) -> (f64, f64);
    /// `sup |h″|` (for the sensitivity of the log-det to its argument).
    fn max_d2h(&self) -> f64;
    /// Whether `h′` jumps at `s = 0` (the log-det is then only compared away from the kink).
    fn has_kink(&self) -> bool;
}

impl<T: Real> CheckActivation<T> for Tanh {
    fn decode(_inp: &mut Bytes<'_>) -> Option<Self> {
        Some(Tanh)
    }
    fn reference(&self, s: f64) -> (f64, f64) {
        let c = libm::cosh(s);
        (libm::tanh(s), 1.0 / (c * c))
    }
    fn max_d2h(&self) -> f64 {
        // max |−2 tanh·sech²| = 4/(3√3) at tanh² = 1/3.
        0.77
    }
    fn has_kink(&self) -> bool {
        false
    }
}

impl<T: Real> CheckActivation<T> for LeakyRelu<T> {
    fn decode(inp: &mut Bytes<'_>) -> Option<Self> {
        // A slope in (0, 1]: 1/256 … 1.
        LeakyRelu::new(T::from_f64(f64::from(u16::from(inp.u8()) + 1) / 256.0)).ok()
    }
    fn reference(&self, s: f64) -> (f64, f64) {
        let a = self.slope().v64();
        if s < 0.0 { (a * s, a) } else { (s, 1.0) }
    }
    fn max_d2h(&self) -> f64 {
        0.0
    }
    fn has_kink(&self) -> bool {
        true
    }
}

/// Decodes a constraint: Smooth (½), Paper, Project with a margin in `[2⁻²⁰, 1)`, Unconstrained.
pub fn decode_constraint<T: Real>(inp: &mut Bytes<'_>) -> Constraint<T> {
    match inp.u8() % 8 {
        0..=3 => Constraint::Smooth,
        4 => Constraint::Paper,
        5 | 6 => {
            let e = i32::from(inp.u8() % 20) + 1;
            let margin = libm::exp2(-f64::from(e)) * (1.0 + f64::from(inp.u8()) / 256.0);
            Constraint::Project {
                margin: T::from_f64(margin.min(0.5).max(T::EPS.v64() * 4.0)),
            }
        }
        _ => Constraint::Unconstrained,
    }
}

/// Decodes a layer with structured parameters (`|u|, |w|, |b| ≤ 2^emax`); `None` if the
/// constructor refuses them (the `constraint` property checks those refusals).
pub fn decode_layer<T: Real, const D: usize, A: CheckActivation<T>>(
    inp: &mut Bytes<'_>,
    act: A,
    emax: i32,
) -> Option<Planar<T, D, A>> {
    let u = inp.vec::<T, D>(emax);
    let w = inp.vec::<T, D>(emax);
    let b = inp.real::<T>(emax);
    let con = decode_constraint::<T>(inp);
    Planar::with(u, w, b, con, act).ok()
}

fn decode_flow<T: Real, const D: usize, const K: usize, A: CheckActivation<T>>(
    inp: &mut Bytes<'_>,
    act: A,
    emax: i32,
) -> Option<Flow<T, D, K, A>> {
    let first = decode_layer::<T, D, A>(inp, act, emax)?;
    let mut layers = [first; K];
    for l in layers.iter_mut().skip(1) {
        *l = decode_layer::<T, D, A>(inp, act, emax)?;
    }
    Some(Flow::new(layers))
}

/// Calls `$f::<T, D, K, A>(inp)` for the (precision, dimension, length, activation) chosen by the
/// next byte: f32/f64 × D ∈ {1, 2, 3, 8} × K ∈ {1, 2, 4} × {tanh, leaky ReLU (¼ of inputs)}.
macro_rules! dispatch {
    ($f:ident, $inp:expr) => {{
        let inp: &mut Bytes<'_> = $inp;
        let sel = inp.u8();
        let leaky = (sel >> 6) == 3;
        macro_rules! by_act {
            ($t:ty, $d:literal, $k:literal) => {
                if leaky {
                    match <LeakyRelu<$t> as CheckActivation<$t>>::decode(inp) {
                        Some(a) => $f::<$t, $d, $k, LeakyRelu<$t>>(inp, a),
                        None => Ok(()),
                    }
                } else {
                    $f::<$t, $d, $k, Tanh>(inp, Tanh)
                }
            };
        }
        macro_rules! by_k {
            ($t:ty, $d:literal) => {
                match (sel >> 3) % 3 {
                    0 => by_act!($t, $d, 1),
                    1 => by_act!($t, $d, 2),
                    _ => by_act!($t, $d, 4),
                }
            };
        }
        macro_rules! by_d {
            ($t:ty) => {
                match (sel >> 1) & 3 {
                    0 => by_k!($t, 1),
                    1 => by_k!($t, 2),
                    2 => by_k!($t, 3),
                    _ => by_k!($t, 8),
                }
            };
        }
        if sel & 1 == 0 { by_d!(f32) } else { by_d!(f64) }
    }};
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `Real::to_f64` (num-traits has a method of the same name).
trait V64 {
    fn v64(self) -> f64;
}

impl<T: Real> V64 for T {
    #[inline]
    fn v64(self) -> f64 {
        <T as Real>::as_f64(self)
    }
}

fn finite<T: Real, const D: usize>(v: &[T; D]) -> bool {
    v.iter().all(|x| x.is_finite())
}

fn c_ulps(d: usize) -> f64 {
    4.0 * d as f64 + 16.0
}

fn f64v<T: Real, const D: usize>(v: &[T; D]) -> [f64; D] {
    let mut o = [0.0; D];
    for i in 0..D {
        o[i] = v[i].v64();
    }
    o
}

/// `S = |b| + |wᵀû| + Σ|wⱼ|(|zⱼ| + |xⱼ| + |ûⱼ|)`.
fn scale<T: Real, const D: usize, A: Activation<T>>(
    l: &Planar<T, D, A>,
    z: &[T; D],
    x: &[T; D],
) -> f64 {
    let mut s = l.b().v64().abs() + l.w_dot_u_hat().v64().abs();
    for j in 0..D {
        s +=
            l.w()[j].v64().abs() * (z[j].v64().abs() + x[j].v64().abs() + l.u_hat()[j].v64().abs());
    }
    s
}

/// Max-norm bound of `g⁻¹(g(z)) − z` (`inverse = true`) or `g(g⁻¹(x)) − x`, for the pair
/// `x = g(z)` (see the module docs).
fn local_bound<T: Real, const D: usize, A: Activation<T>>(
    l: &Planar<T, D, A>,
    z: &[T; D],
    x: &[T; D],
    inverse: bool,
) -> f64 {
    let eps = T::EPS.v64();
    let big_s = scale(l, z, x);
    let s = l.preactivation(z).v64().abs();
    let kappa = l.conditioning().v64();
    let mut m: f64 = 0.0;
    for i in 0..D {
        let uh = l.u_hat()[i].v64().abs();
        let base = z[i].v64().abs() + x[i].v64().abs();
        let b = if inverse {
            base + uh + mul0(mul0(uh, kappa), big_s + s)
        } else {
            base + uh * (1.0 + big_s + s)
        };
        // NaN (∞ − ∞ in an overflowing scale) means no bound.
        m = if b.is_nan() { f64::INFINITY } else { m.max(b) };
    }
    c_ulps(D) * eps * m
}

/// ∞-norm Lipschitz constant of `g` (or of `g⁻¹` with `inverse`).
fn lipschitz<T: Real, const D: usize, A: Activation<T>>(l: &Planar<T, D, A>, inverse: bool) -> f64 {
    let umax = l.u_hat().iter().fold(0.0f64, |a, v| a.max(v.v64().abs()));
    let w1: f64 = l.w().iter().map(|v| v.v64().abs()).sum();
    let (_, dh_hi) = l.activation().dh_range();
    let k = if inverse { l.conditioning().v64() } else { 1.0 };
    1.0 + mul0(mul0(umax * w1, dh_hi.v64()), k)
}

fn max_diff<T: Real, const D: usize>(a: &[T; D], b: &[T; D]) -> f64 {
    let mut m: f64 = 0.0;
    for i in 0..D {
        // Equal values (the same infinity included) differ by 0.
        let d = if a[i] == b[i] {
            0.0
        } else {
            (a[i].v64() - b[i].v64()).abs()
        };
        if d.is_nan() {
            return f64::NAN;
        }
        m = m.max(d);
    }
    m
}

/// `l.inverse_and_log_det(x)`, with `None` for the documented `NonFiniteInput` when the root
/// of `α + wᵀû·h(α) = wᵀx + b` may lie beyond the float range (`|wᵀx + b|·κ ≥ T::MAX`).
fn inverse_checked<T: Real, const D: usize, A: Activation<T>>(
    l: &Planar<T, D, A>,
    x: &[T; D],
) -> core::result::Result<Option<([T; D], T)>, String> {
    if !l.preactivation(x).is_finite() {
        // Documented: `NonFiniteInput` when wᵀx + b overflows.
        return match l.inverse_and_log_det(x) {
            Err(FlowError::NonFiniteInput) => Ok(None),
            other => Err(format!(
                "inverse with overflowing wᵀx + b gave {other:?}; layer {l:?}, x {x:?}"
            )),
        };
    }
    match l.inverse_and_log_det(x) {
        Ok(r) => Ok(Some(r)),
        Err(FlowError::NonFiniteInput)
            if l.preactivation(x).v64().abs() * l.conditioning().v64() >= T::max_value().v64() =>
        {
            Ok(None)
        }
        Err(e) => Err(format!("inverse failed: {e:?}; layer {l:?}, x {x:?}")),
    }
}

/// `a·b` with `0·∞ = 0` (a zero term of a bound stays zero however ill-conditioned the rest).
fn mul0(a: f64, b: f64) -> f64 {
    if a == 0.0 || b == 0.0 { 0.0 } else { a * b }
}

/// `within`, where a bound beyond `T`'s range says nothing (the exact result itself may not be
/// representable: e.g. the inverse of a layer with `1 + wᵀû` near the smallest normal).
fn within_t<T: Real>(err: f64, bound: f64) -> bool {
    bound >= T::max_value().v64() || within(err, bound)
}

fn within(err: f64, bound: f64) -> bool {
    // A NaN error fails; an infinite bound (a layer so ill-conditioned that round-off can move
    // the result anywhere) accepts any non-NaN error, and so does a NaN bound (it comes from
    // ∞ − ∞ in a bound whose terms overflowed).
    err <= bound || (bound.is_nan() && !err.is_nan())
}

// ---------------------------------------------------------------------------------------------
// roundtrip
// ---------------------------------------------------------------------------------------------

/// Whether a coordinate of `p` lies within `bound` of the float range: a product `ûᵢ·h`
/// formed from such a point may overflow by round-off alone (IEEE, as documented), so the
/// round trips accept a non-finite result there.
fn near_max<T: Real, const D: usize>(p: &[T; D], bound: f64) -> bool {
    p.iter()
        .any(|v| v.v64().abs() + bound >= T::max_value().v64())
}

/// `g⁻¹(g(z)) = z` and `g(g⁻¹(z)) = z` for one layer, within the bounds of the module docs.
/// Points whose image overflows are skipped (that is documented IEEE behaviour).
///
/// # Errors
/// A description of the failure.
pub fn roundtrip_layer<T: Real, const D: usize, A: Activation<T>>(
    l: &Planar<T, D, A>,
    z: &[T; D],
) -> Outcome {
    if !finite(z) {
        return Ok(());
    }
    let x = l.forward(z);
    if finite(&x) && l.preactivation(&x).is_finite() {
        let Some((z2, _)) = inverse_checked(l, &x)? else {
            return Ok(());
        };
        let err = max_diff(&z2, z);
        let bound = local_bound(l, z, &x, true);
        if !within_t::<T>(err, bound) {
            return Err(format!(
                "g⁻¹(g(z)) ≠ z: err {err:?} > bound {bound:?}; layer {l:?}, z {z:?}, x {x:?}, got {z2:?}"
            ));
        }
    }
    // The other direction, with z read as a point of x-space.
    if !l.preactivation(z).is_finite() {
        return Ok(());
    }
    let Some((zi, _)) = inverse_checked(l, z)? else {
        return Ok(());
    };
    if !finite(&zi) {
        return Ok(());
    }
    if !l.preactivation(&zi).is_finite() {
        // g⁻¹(x) is representable but wᵀz + b overflows (a layer with 1 + wᵀû near the
        // smallest normal): the forward pass gives NaN/∞ by IEEE arithmetic, as documented.
        return Ok(());
    }
    let x2 = l.forward(&zi);
    let err = max_diff(&x2, z);
    let bound = local_bound(l, &zi, z, false);
    if !finite(&x2) && near_max(&zi, bound) {
        // The product ûᵢ·h ≈ xᵢ − g⁻¹(x)ᵢ may reach the float range within the bound: it can
        // overflow by round-off alone (IEEE, as documented). A fuzz finding (CI, 2026-12-03):
        // f32, 1 + c = 1.2e−38, g⁻¹(x)₁ = −3.40278e38, x = 0, and rounding noise in h times
        // |û₁| = 65536 took the product past MAX: g(g⁻¹(x))₁ = ∞ against the bound 2.0e36.
        return Ok(());
    }
    if !within_t::<T>(err, bound) {
        return Err(format!(
            "g(g⁻¹(x)) ≠ x: err {err:?} > bound {bound:?}; layer {l:?}, x {z:?}, g⁻¹(x) {zi:?}, got {x2:?}"
        ));
    }
    Ok(())
}

/// Both round trips through a whole flow, with the local bounds propagated through the other
/// layers' Lipschitz constants.
///
/// # Errors
/// A description of the failure.
pub fn roundtrip_flow<T: Real, const D: usize, const K: usize, A: Activation<T>>(
    f: &Flow<T, D, K, A>,
    z: &[T; D],
) -> Outcome {
    if !finite(z) {
        return Ok(());
    }
    // f⁻¹∘f: forward, remembering the points; the inverse of layer k sees an error e_k and adds
    // its local error.
    let mut pts = [[T::ZERO; D]; K];
    let mut cur = *z;
    for (k, l) in f.layers().iter().enumerate() {
        pts[k] = cur;
        cur = l.forward(&cur);
    }
    let x = cur;
    if finite(&x) {
        let mut e = 0.0f64;
        let mut ok = true;
        for k in (0..K).rev() {
            let l = &f.layers()[k];
            let out = if k + 1 < K { pts[k + 1] } else { x };
            if !l.preactivation(&out).is_finite() {
                ok = false;
            }
            e = local_bound(l, &pts[k], &out, true) + mul0(lipschitz(l, true), e);
        }
        if ok {
            let z2 = match f.inverse(&x) {
                Ok(v) => v,
                // An intermediate point overflowed: only possible if the bound is vacuous.
                Err(FlowError::NonFiniteInput)
                    if 2.0 * e >= T::max_value().v64()
                        || f.layers()
                            .iter()
                            .map(|l| lipschitz(l, true))
                            .product::<f64>()
                            * (2.0 * e + x.iter().map(|v| v.v64().abs()).fold(0.0, f64::max))
                            >= T::max_value().v64() =>
                {
                    *z
                }
                Err(er) => {
                    return Err(format!(
                        "flow inverse(g(z)) failed: {er:?}; bound {e:?}, flow {f:?}, z {z:?}"
                    ));
                }
            };
            let err = max_diff(&z2, z);
            if !within_t::<T>(err, 2.0 * e) {
                return Err(format!(
                    "flow g⁻¹(g(z)) ≠ z: err {err:?} > bound {:?}; flow {f:?}, z {z:?}, got {z2:?}",
                    2.0 * e
                ));
            }
        }
    }
    // f∘f⁻¹ with z read as x.
    let mut cur = *z;
    let mut pre = [[T::ZERO; D]; K];
    for k in (0..K).rev() {
        let l = &f.layers()[k];
        if !l.preactivation(&cur).is_finite() || !finite(&cur) {
            return Ok(());
        }
        pre[k] = cur;
        let Some((next, _)) = inverse_checked(l, &cur)? else {
            return Ok(());
        };
        cur = next;
    }
    if !finite(&cur) {
        return Ok(());
    }
    let zi = f
        .inverse(z)
        .map_err(|er| format!("flow inverse failed: {er:?}; flow {f:?}, x {z:?}"))?;
    if max_diff(&zi, &cur) != 0.0 {
        return Err(format!(
            "Flow::inverse differs from the layers' inverses: {zi:?} vs {cur:?}"
        ));
    }
    let mut e = 0.0f64;
    let mut inp = cur;
    for k in 0..K {
        let l = &f.layers()[k];
        let out = pre[k];
        e = local_bound(l, &inp, &out, false) + mul0(lipschitz(l, false), e);
        inp = out;
    }
    let mut pt = zi;
    let mut reaches = false;
    for l in f.layers() {
        if !l.preactivation(&pt).is_finite() {
            return Ok(()); // overflow in wᵀz + b: NaN/∞ as documented
        }
        reaches |= near_max(&pt, 2.0 * e);
        pt = l.forward(&pt);
    }
    let x2 = f.forward(&zi);
    if !finite(&x2) && reaches {
        // As in `roundtrip_layer`: a layer's input lies within the bound of the float range,
        // so `ûᵢ·h` may overflow by round-off alone (IEEE, as documented). A fuzz finding (CI,
        // 2026-12-05, `fuzz/regressions/roundtrip/f32-leaky-flow-overflow-near-max`): the
        // one-layer flow of that finding, f32, 1 + c = 1.2e−38, g⁻¹(x)₁ = −3.40278e38, x = 0,
        // g(g⁻¹(x))₁ = ∞ against the bound 4.0e36.
        return Ok(());
    }
    let err = max_diff(&x2, z);
    if !within_t::<T>(err, 2.0 * e) {
        return Err(format!(
            "flow g(g⁻¹(x)) ≠ x: err {err:?} > bound {:?}; flow {f:?}, x {z:?}, g⁻¹(x) {zi:?}, got {x2:?}",
            2.0 * e
        ));
    }
    Ok(())
}

fn roundtrip_typed<T: Real, const D: usize, const K: usize, A: CheckActivation<T>>(
    inp: &mut Bytes<'_>,
    act: A,
) -> Outcome {
    let emax = i32::from(inp.u8() % 24);
    let Some(f) = decode_flow::<T, D, K, A>(inp, act, emax) else {
        return Ok(());
    };
    let pe = i32::from(inp.u8() % 24);
    for _ in 0..2 {
        let z = inp.vec::<T, D>(pe);
        for l in f.layers() {
            roundtrip_layer(l, &z)?;
        }
        roundtrip_flow(&f, &z)?;
    }
    Ok(())
}

/// Property `roundtrip` over raw bytes: decodes a precision, `D`, `K`, activation, a flow and two
/// points, and checks [`roundtrip_layer`] for every layer and [`roundtrip_flow`].
///
/// # Errors
/// A description of the failure.
pub fn roundtrip(data: &[u8]) -> Outcome {
    dispatch!(roundtrip_typed, &mut Bytes::new(data))
}

// ---------------------------------------------------------------------------------------------
// log_det
// ---------------------------------------------------------------------------------------------

/// A forward-mode dual number with `N` tangent directions, in f64 (exact derivatives: no
/// truncation error, only rounding).
#[derive(Clone, Copy, Debug)]
struct Dual<const N: usize> {
    v: f64,
    d: [f64; N],
}

impl<const N: usize> Dual<N> {
    fn constant(v: f64) -> Self {
        Self { v, d: [0.0; N] }
    }
    fn add(self, o: Self) -> Self {
        let mut d = self.d;
        for i in 0..N {
            d[i] += o.d[i];
        }
        Self { v: self.v + o.v, d }
    }
    fn scale(self, a: f64) -> Self {
        let mut d = self.d;
        for x in &mut d {
            *x *= a;
        }
        Self { v: self.v * a, d }
    }
    /// `φ(self)` for a scalar function with value `fv` and derivative `fd` at `self.v`.
    fn chain(self, fv: f64, fd: f64) -> Self {
        let mut d = self.d;
        for x in &mut d {
            *x *= fd;
        }
        Self { v: fv, d }
    }
}

/// The Jacobian of one layer at `z`, by forward-mode AD in f64 of the layer's map written
/// independently (`x = z + û·h(wᵀz + b)` with the reference `h`).
fn jacobian_ad<T: Real, const D: usize, A: CheckActivation<T>>(
    l: &Planar<T, D, A>,
    z: &[f64; D],
) -> [[f64; D]; D] {
    let mut zd = [Dual::<D>::constant(0.0); D];
    for j in 0..D {
        zd[j].v = z[j];
        zd[j].d[j] = 1.0;
    }
    let mut s = Dual::<D>::constant(l.b().v64());
    for j in 0..D {
        s = s.add(zd[j].scale(l.w()[j].v64()));
    }
    let (hv, hd) = l.activation().reference(s.v);
    let h = s.chain(hv, hd);
    let mut jac = [[0.0; D]; D];
    for i in 0..D {
        let xi = zd[i].add(h.scale(l.u_hat()[i].v64()));
        jac[i] = xi.d;
    }
    jac
}

/// `ln|det M|` by Gaussian elimination with partial pivoting (−∞ for a singular matrix).
fn ln_abs_det<const D: usize>(mut m: [[f64; D]; D]) -> f64 {
    let mut acc = 0.0;
    for c in 0..D {
        let mut p = c;
        for r in c + 1..D {
            if m[r][c].abs() > m[p][c].abs() {
                p = r;
            }
        }
        m.swap(c, p);
        let piv = m[c][c];
        if piv == 0.0 {
            return f64::NEG_INFINITY;
        }
        acc += piv.abs().ln();
        for r in c + 1..D {
            let f = m[r][c] / piv;
            for k in c..D {
                m[r][k] -= f * m[c][k];
            }
        }
    }
    acc
}

fn inf_norm<const D: usize>(m: &[[f64; D]; D]) -> f64 {
    m.iter()
        .map(|r| r.iter().map(|v| v.abs()).sum::<f64>())
        .fold(0.0, f64::max)
}

/// The analytic log-det of one layer at `z` against `ln|det J|` of the AD Jacobian (LU in f64),
/// and `log|det J_{g⁻¹}(g(z))| = −log|det J_g(z)|` via [`Planar::inverse_and_log_det`].
///
/// Bounds. The determinant of `J = I + h′·û wᵀ` by LU has relative error about
/// `D·ε₆₄·‖J‖∞·‖J⁻¹‖∞`, with `‖J⁻¹‖∞ ≤ 1 + h′·maxᵢ|ûᵢ|·‖w‖₁/F` and `F = 1 + wᵀû·h′(s)` (the
/// comparison is skipped when that estimate exceeds ¼: the reference cannot resolve the
/// determinant). The layer evaluates `F` from `1 + wᵀû` carried exactly while the map it
/// applies has the rounded `û`, whose `wᵀû` differs by `≈ D·ε·Σ|wᵢûᵢ|`; and `s` is rounded by
/// `≈ C·ε·(|b| + Σ|wᵢzᵢ|)`, which moves `ln F` by `|wᵀû|·sup|h″|/F` times that. The relative
/// error bound `r` of `F` is the sum of these (times `C`); the log-det error is at most `2r`
/// for `r < ½`, plus `C·ε·|ln F|` for the final `ln`.
///
/// # Errors
/// A description of the failure.
pub fn log_det_layer<T: Real, const D: usize, A: CheckActivation<T>>(
    l: &Planar<T, D, A>,
    z: &[T; D],
) -> Outcome {
    if !finite(z) {
        return Ok(());
    }
    let (x, ld) = l.forward_and_log_det(z);
    let ld2 = l.log_det(z);
    if ld.v64() != ld2.v64() && !(ld.is_nan() && ld2.is_nan()) {
        return Err(format!(
            "forward_and_log_det's {ld:?} ≠ log_det's {ld2:?}; layer {l:?}, z {z:?}"
        ));
    }
    let s = l.preactivation(z);
    if !s.is_finite() {
        return Ok(());
    }
    if !ld.is_finite() {
        return Err(format!(
            "non-finite log-det {ld:?} at finite s {s:?}; layer {l:?}, z {z:?}"
        ));
    }
    let eps = T::EPS.v64();
    let cu = c_ulps(D);
    let zf = f64v(z);
    let sf = {
        let mut a = l.b().v64();
        for j in 0..D {
            a += l.w()[j].v64() * zf[j];
        }
        a
    };
    let mut s_scale = l.b().v64().abs();
    let mut wu = 0.0;
    for j in 0..D {
        s_scale += (l.w()[j].v64() * zf[j]).abs();
        wu += (l.w()[j].v64() * l.u_hat()[j].v64()).abs();
    }
    let act = l.activation();
    let kink = act.has_kink() && sf.abs() <= cu * eps * s_scale;
    // Independent reference.
    let (_, hd) = act.reference(sf);
    let jac = jacobian_ad(l, &zf);
    let f_est = ld.v64().exp();
    let umax = l.u_hat().iter().fold(0.0f64, |a, v| a.max(v.v64().abs()));
    let w1: f64 = l.w().iter().map(|v| v.v64().abs()).sum();
    let jinv = 1.0 + hd * umax * w1 / f_est;
    let r_lu = 4.0 * D as f64 * f64::EPSILON * inf_norm(&jac) * jinv;
    let c = l.w_dot_u_hat().v64();
    let r =
        cu * (eps * wu * hd / f_est + eps * c.abs() * act.max_d2h() * s_scale / f_est + eps) + r_lu;
    if r < 0.25 && !kink && jac.iter().flatten().all(|v| v.is_finite()) {
        let ref_ld = ln_abs_det(jac);
        let err = (ld.v64() - ref_ld).abs();
        let bound = 2.0 * r + cu * eps * ld.v64().abs();
        if !within(err, bound) {
            return Err(format!(
                "log-det {ld:?} vs AD-Jacobian LU {ref_ld:?}: err {err:?} > bound {bound:?}; layer {l:?}, z {z:?}"
            ));
        }
    }
    // Inverse identity.
    if finite(&x) && l.preactivation(&x).is_finite() {
        let Some((_, ldi)) = inverse_checked(l, &x)? else {
            return Ok(());
        };
        // The root α differs from s by at most κ·C·ε·(S + |s|); ln F moves by |c|·sup|h″|/F per
        // unit of it (F ≥ 1/κ).
        let kappa = l.conditioning().v64();
        let d_alpha = mul0(kappa * cu * eps, scale(l, z, &x) + s.v64().abs());
        let bound =
            cu * eps * (1.0 + ld.v64().abs()) + mul0(mul0(c.abs() * act.max_d2h(), kappa), d_alpha);
        let bound = if act.has_kink() && s.v64().abs() <= d_alpha {
            f64::INFINITY
        } else {
            bound
        };
        let err = (ld.v64() + ldi.v64()).abs();
        if !within(err, bound) {
            return Err(format!(
                "log|det J_f(g(z))| = {ldi:?} ≠ −log|det J_g(z)| = {:?}: err {err:?} > bound {bound:?}; layer {l:?}, z {z:?}",
                -ld.v64()
            ));
        }
    }
    Ok(())
}

/// For a flow: the summed log-det of [`Flow::forward_and_log_det`] equals the layers' log-dets
/// at the intermediate points (to `C·ε·Σ|ldₖ|`), each layer passes [`log_det_layer`] there, and
/// `ln|det J_f(g(z))| = −ln|det J_g(z)|` through [`Flow::inverse_and_log_det`] within the sum
/// of the layer bounds.
///
/// # Errors
/// A description of the failure.
pub fn log_det_flow<T: Real, const D: usize, const K: usize, A: CheckActivation<T>>(
    f: &Flow<T, D, K, A>,
    z: &[T; D],
) -> Outcome {
    if !finite(z) {
        return Ok(());
    }
    let (x, ld) = f.forward_and_log_det(z);
    let mut cur = *z;
    let mut sum = 0.0f64;
    let mut abs_sum = 0.0f64;
    let mut inv_bound = 0.0f64;
    let eps = T::EPS.v64();
    let cu = c_ulps(D);
    for l in f.layers() {
        log_det_layer(l, &cur)?;
        let (nx, d) = l.forward_and_log_det(&cur);
        if !l.preactivation(&cur).is_finite() || !finite(&nx) {
            return Ok(());
        }
        let kappa = l.conditioning().v64();
        let d_alpha = mul0(
            kappa * cu * eps,
            scale(l, &cur, &nx) + l.preactivation(&cur).v64().abs(),
        );
        inv_bound += cu * eps * (1.0 + d.v64().abs())
            + mul0(
                mul0(
                    l.w_dot_u_hat().v64().abs() * l.activation().max_d2h(),
                    kappa,
                ),
                d_alpha,
            );
        if l.activation().has_kink() && l.preactivation(&cur).v64().abs() <= d_alpha {
            inv_bound = f64::INFINITY;
        }
        sum += d.v64();
        abs_sum += d.v64().abs();
        cur = nx;
    }
    let err = (ld.v64() - sum).abs();
    if !within(err, 2.0 * K as f64 * eps * abs_sum) {
        return Err(format!(
            "flow log-det {ld:?} ≠ Σ layer log-dets {sum:?}; flow {f:?}, z {z:?}"
        ));
    }
    // Through the inverse, the points differ by the round-trip error; bound it loosely by
    // adding each layer's own inverse bound (first order, the propagated point errors enter
    // through the same κ·|c|·sup|h″| sensitivity; K ≤ 4 so the sum is close).
    let mut pt = x;
    for l in f.layers().iter().rev() {
        match inverse_checked(l, &pt)? {
            Some((p, _)) if finite(&p) => pt = p,
            _ => return Ok(()),
        }
    }
    let (_, ldi) = f
        .inverse_and_log_det(&x)
        .map_err(|e| format!("flow inverse_and_log_det failed: {e:?}; flow {f:?}, x {x:?}"))?;
    let err = (ld.v64() + ldi.v64()).abs();
    // Both chains' log-det bounds (each includes the propagated point errors and the kinks).
    let bound = chain_bounds(f, z, false).1 + chain_bounds(f, &x, true).1;
    let _ = inv_bound;
    if !within(err, bound) {
        return Err(format!(
            "flow: log|det J_f(g(z))| = {ldi:?} ≠ −{ld:?}: err {err:?} > bound {bound:?}; flow {f:?}, z {z:?}"
        ));
    }
    Ok(())
}

fn log_det_typed<T: Real, const D: usize, const K: usize, A: CheckActivation<T>>(
    inp: &mut Bytes<'_>,
    act: A,
) -> Outcome {
    let emax = i32::from(inp.u8() % 16);
    let Some(f) = decode_flow::<T, D, K, A>(inp, act, emax) else {
        return Ok(());
    };
    let pe = i32::from(inp.u8() % 16);
    let z = inp.vec::<T, D>(pe);
    log_det_flow(&f, &z)
}

/// Property `log_det` over raw bytes: [`log_det_flow`] (and so [`log_det_layer`] for every layer).
///
/// # Errors
/// A description of the failure.
pub fn log_det(data: &[u8]) -> Outcome {
    dispatch!(log_det_typed, &mut Bytes::new(data))
}

// ---------------------------------------------------------------------------------------------
// density
// ---------------------------------------------------------------------------------------------

const GL5: [(f64, f64); 5] = [
    (0.0, 0.568_888_888_888_888_9),
    (-0.538_469_310_105_683_1, 0.478_628_670_499_366_5),
    (0.538_469_310_105_683_1, 0.478_628_670_499_366_5),
    (-0.906_179_845_938_664, 0.236_926_885_056_189_1),
    (0.906_179_845_938_664, 0.236_926_885_056_189_1),
];

fn gauss<F: FnMut(f64) -> core::result::Result<f64, String>>(
    a: f64,
    b: f64,
    f: &mut F,
) -> core::result::Result<f64, String> {
    let (m, h) = ((a + b) / 2.0, (b - a) / 2.0);
    let mut s = 0.0;
    for (x, w) in GL5 {
        s += w * f(m + h * x)?;
    }
    Ok(s * h)
}

/// For a 1-D flow: `∫ q(x) dx = 1` with `q = exp(Flow::log_prob)` (the sampler's density via
/// the exact inverse), by 5-point Gauss–Legendre on the images `g(zⱼ)` of a grid of step 0.05
/// in `z ∈ [−10, 10]` (so the panels follow the density's features) and of the points where
/// each layer's pre-activation is `0, ±¼, ±½, ±1, ±2, ±4` (its kink, or the peak of `h′` and its
/// flanks), each panel compared with its two halves and split adaptively (≤ 40 levels, a bounded
/// number of splits; an input beyond that is skipped) until they agree to `10⁻¹⁴` or to the
/// rounding of `q` in `T`; `E` is the sum of the final differences. The mass outside is
/// `P(|z| > 10) < 2·10⁻²³` because `g` is increasing. Tolerance: `2·E + 10⁶·ε` — the density is evaluated in `T`, whose relative error
/// over the bulk of the mass is a few hundred ulps (`|log q| ≲ 50` and `K` layers).
///
/// # Errors
/// A description of the failure.
pub fn density_1d<T: Real, const K: usize, A: Activation<T>>(f: &Flow<T, 1, K, A>) -> Outcome {
    let mut q = |x: f64| -> core::result::Result<f64, String> {
        let lp = f
            .log_prob(&[T::from_f64(x)])
            .map_err(|e| format!("log_prob({x:?}) failed: {e:?}; flow {f:?}"))?;
        Ok(lp.v64().exp())
    };
    let n = 400;
    // Panel ends: the images of the z-grid, plus the images of every layer's kink `wz + b = 0`
    // (leaky ReLU: the density jumps there, and a jump inside a panel escapes the estimate).
    let mut ends: std::vec::Vec<f64> = (0..=n)
        .map(|j| f.forward(&[T::from_f64(-10.0 + 20.0 * j as f64 / n as f64)])[0].v64())
        .collect();
    for w in ends.windows(2) {
        if w[1] < w[0] {
            return Err(format!(
                "forward not increasing: g(z) {:?} after {:?}; flow {f:?}",
                w[1], w[0]
            ));
        }
    }
    let (lo, hi) = (ends[0], ends[n]);
    // Each layer's features sit around its pre-activation s = 0 (the kink of leaky ReLU, the
    // peak of tanh's h′, where a layer with small 1 + wᵀû compresses or a large wᵀû stretches),
    // about 1/|w| wide in the layer's input: the images of s ∈ {0, ±¼, ±½, ±1, ±2, ±4} are panel
    // ends too, so a narrow feature inside a panel stretched by an earlier layer is not missed.
    for (k, l) in f.layers().iter().enumerate() {
        if l.w()[0] != T::ZERO {
            for s in [0.0, 0.25, -0.25, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 4.0, -4.0] {
                let mut p = [(T::from_f64(s) - l.b()) / l.w()[0]];
                for m in &f.layers()[k..] {
                    p = m.forward(&p);
                }
                let v = p[0].v64();
                if v > lo && v < hi {
                    ends.push(v);
                }
            }
        }
    }
    ends.sort_by(f64::total_cmp);
    ends.dedup();
    let (mut total, mut est) = (0.0, 0.0);
    // Adaptive: a panel is split (up to 40 levels) until its two estimates agree to 10⁻¹⁴, so a
    // feature narrower than the panel is resolved, not extrapolated (with 10 levels, a spike of
    // width 10⁻³ inside a panel of width 2 stretched by an earlier layer was not, and the halving
    // estimate of the unresolved pieces was 5× too small: a false alarm the fuzzer found). The
    // number of splits is bounded; an input that exhausts the budget, or a piece that reaches
    // the depth limit, cannot be checked and is skipped.
    let mut budget = 200_000u32;
    for w in ends.windows(2) {
        let mut stack = std::vec![(w[0], w[1], 40u32)];
        while let Some((a0, b0, depth)) = stack.pop() {
            let one = gauss(a0, b0, &mut q)?;
            let mid = (a0 + b0) / 2.0;
            let two = gauss(a0, mid, &mut q)? + gauss(mid, b0, &mut q)?;
            // Agreement to 10⁻¹⁴, or to the rounding of q in T (f32: the estimates cannot agree
            // better than a few ulps of their values, and splitting further only spends budget).
            if (two - one).abs() > 1e-14 + 16.0 * T::EPS.v64() * (one.abs() + two.abs()) {
                if depth == 0 || budget == 0 {
                    return Ok(());
                }
                budget -= 1;
                stack.push((a0, mid, depth - 1));
                stack.push((mid, b0, depth - 1));
            } else {
                total += two;
                est += (two - one).abs();
            }
        }
    }
    let tol = 2.0 * est + 1e6 * T::EPS.v64();
    if !within((total - 1.0).abs(), tol) {
        return Err(format!(
            "∫q = {total} ≠ 1 (tolerance {tol:?}, quadrature estimate {est:?}); flow {f:?}"
        ));
    }
    Ok(())
}

/// For a 2-D tanh flow (each layer moves a point by at most `|ûₖ|`): `∬ q = 1` on the box `|xᵢ| ≤ 7 + Σₖ|ûₖ,ᵢ|` (outside it `|zᵢ| > 7`, mass
/// `< 3·10⁻¹²`), by 5×5-point Gauss–Legendre on cells of side ≤ 0.25, compared with the 1-point
/// split of each cell into four for an error estimate `E`. Tolerance `2·E + 10⁶·ε + 10⁻¹⁰`.
///
/// # Errors
/// A description of the failure.
pub fn density_2d<T: Real, const K: usize, A: Activation<T>>(f: &Flow<T, 2, K, A>) -> Outcome {
    let mut r = [7.0f64; 2];
    for l in f.layers() {
        for i in 0..2 {
            r[i] += l.u_hat()[i].v64().abs();
        }
    }
    let q = |x: f64, y: f64| -> core::result::Result<f64, String> {
        let lp = f
            .log_prob(&[T::from_f64(x), T::from_f64(y)])
            .map_err(|e| format!("log_prob(({x:?}, {y:?})) failed: {e:?}; flow {f:?}"))?;
        Ok(lp.v64().exp())
    };
    let cell = |x0: f64, x1: f64, y0: f64, y1: f64| -> core::result::Result<f64, String> {
        let (mx, hx, my, hy) = (
            (x0 + x1) / 2.0,
            (x1 - x0) / 2.0,
            (y0 + y1) / 2.0,
            (y1 - y0) / 2.0,
        );
        let mut s = 0.0;
        for (a, wa) in GL5 {
            for (b, wb) in GL5 {
                s += wa * wb * q(mx + hx * a, my + hy * b)?;
            }
        }
        Ok(s * hx * hy)
    };
    let nx = ((2.0 * r[0] / 0.25).ceil() as usize).clamp(1, 400);
    let ny = ((2.0 * r[1] / 0.25).ceil() as usize).clamp(1, 400);
    let (dx, dy) = (2.0 * r[0] / nx as f64, 2.0 * r[1] / ny as f64);
    let (mut total, mut est) = (0.0, 0.0);
    for i in 0..nx {
        for j in 0..ny {
            let (x0, y0) = (-r[0] + dx * i as f64, -r[1] + dy * j as f64);
            let (x1, y1) = (x0 + dx, y0 + dy);
            let one = cell(x0, x1, y0, y1)?;
            let (xm, ym) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
            let four = cell(x0, xm, y0, ym)?
                + cell(xm, x1, y0, ym)?
                + cell(x0, xm, ym, y1)?
                + cell(xm, x1, ym, y1)?;
            total += four;
            est += (four - one).abs();
        }
    }
    let tol = 2.0 * est + 1e6 * T::EPS.v64() + 1e-10;
    if !within((total - 1.0).abs(), tol) {
        return Err(format!(
            "∬q = {total} ≠ 1 (tolerance {tol:?}, quadrature estimate {est:?}); flow {f:?}"
        ));
    }
    Ok(())
}

fn density_typed<T: Real, const K: usize, A: CheckActivation<T>>(
    inp: &mut Bytes<'_>,
    act: A,
    two_d: bool,
) -> Outcome {
    // Moderate parameters (|u|, |w|, |b| ≤ 8) for 1-D; milder (≤ 2) and K ≤ 2 for the 2-D grid.
    if two_d {
        // The box of `density_2d` needs a bounded activation (tanh).
        if act.max_d2h() == 0.0 {
            return Ok(());
        }
        let Some(f) = decode_flow::<T, 2, K, A>(inp, act, 1) else {
            return Ok(());
        };
        if f.layers()
            .iter()
            .any(|l| l.one_plus_w_dot_u_hat().v64() < 0.1)
        {
            return Ok(());
        }
        density_2d(&f)
    } else {
        let Some(f) = decode_flow::<T, 1, K, A>(inp, act, 3) else {
            return Ok(());
        };
        if f.layers()
            .iter()
            .any(|l| l.one_plus_w_dot_u_hat().v64() < 1e-3)
        {
            return Ok(());
        }
        density_1d(&f)
    }
}

/// Property `density` over raw bytes: [`density_1d`] for K ∈ {1, 2, 4} or [`density_2d`] for
/// K ∈ {1, 2}, f32 or f64, tanh or leaky ReLU.
///
/// # Errors
/// A description of the failure.
pub fn density(data: &[u8]) -> Outcome {
    let inp = &mut Bytes::new(data);
    let sel = inp.u8();
    let two_d = sel & 2 != 0;
    macro_rules! go {
        ($t:ty) => {{
            let leaky = sel & 4 != 0;
            let k = (sel >> 3) % 3;
            if leaky {
                let Some(a) = <LeakyRelu<$t> as CheckActivation<$t>>::decode(inp) else {
                    return Ok(());
                };
                match (k, two_d) {
                    (0, _) => density_typed::<$t, 1, _>(inp, a, two_d),
                    (1, _) | (2, true) => density_typed::<$t, 2, _>(inp, a, two_d),
                    _ => density_typed::<$t, 4, _>(inp, a, two_d),
                }
            } else {
                match (k, two_d) {
                    (0, _) => density_typed::<$t, 1, _>(inp, Tanh, two_d),
                    (1, _) | (2, true) => density_typed::<$t, 2, _>(inp, Tanh, two_d),
                    _ => density_typed::<$t, 4, _>(inp, Tanh, two_d),
                }
            }
        }};
    }
    if sel & 1 == 0 { go!(f32) } else { go!(f64) }
}

// ---------------------------------------------------------------------------------------------
// constraint
// ---------------------------------------------------------------------------------------------

/// For arbitrary bit patterns `(u, w, b)` and a constraint: the constructor either returns the
/// documented error (non-finite parameter ⇒ `NonFiniteParameter`; a bad margin ⇒
/// `InvalidArgument`; `Unconstrained` ⇒ `NotInvertible` only if `1 + wᵀu ≤ 0` up to rounding),
/// or a layer with `wᵀû ≥ −1` and `1 + wᵀû > 0` as carried, finite `û`, `1 + wᵀû·h′(s) > 0`
/// at the given pre-activations, and an inverse that converges within [`Tanh::max_iter`] to a
/// root with residual `≤ 4ε·(|y| + |α| + |wᵀû|)` for every finite `y` tried.
///
/// # Errors
/// A description of the failure.
pub fn constraint_layer<T: Real, const D: usize, A: Activation<T>>(
    u: [T; D],
    w: [T; D],
    b: T,
    con: Constraint<T>,
    act: A,
    ys: &[T],
) -> Outcome {
    let l = match Planar::with(u, w, b, con, act) {
        Ok(l) => l,
        Err(e) => {
            let params_finite = finite(&u) && finite(&w) && b.is_finite();
            let margin_bad = matches!(con, Constraint::Project { margin } if !(margin >= T::EPS && margin < T::ONE));
            let ok = match e {
                FlowError::NonFiniteParameter => true,
                FlowError::InvalidArgument(_) => margin_bad && params_finite,
                FlowError::NotInvertible => {
                    // 1 + wᵀu ≤ 0 up to the rounding of the dot product.
                    let mut x = 0.0f64;
                    let mut ax = 0.0f64;
                    for i in 0..D {
                        x += w[i].v64() * u[i].v64();
                        ax += (w[i].v64() * u[i].v64()).abs();
                    }
                    matches!(con, Constraint::Unconstrained)
                        && params_finite
                        && (1.0 + x <= c_ulps(D) * T::EPS.v64() * (1.0 + ax) || !x.is_finite())
                }
                FlowError::NonFiniteInput | FlowError::NotConverged => false,
            };
            if !ok {
                return Err(format!(
                    "constructor error {e:?} not as documented: u {u:?}, w {w:?}, b {b:?}, {con:?}"
                ));
            }
            if params_finite && !margin_bad && e == FlowError::NonFiniteParameter {
                // Only an overflow may explain it: some |wᵢuᵢ| or the correction must be huge.
                let big = T::max_value().v64();
                let mut x = 0.0f64;
                for i in 0..D {
                    x += w[i].v64() * u[i].v64();
                }
                let wmax = w.iter().fold(0.0f64, |a, v| a.max(v.v64().abs()));
                let umax = u.iter().fold(0.0f64, |a, v| a.max(v.v64().abs()));
                let plausible = !x.is_finite()
                    || x.abs() > big / 4.0
                    || umax > big / 4.0
                    || (wmax > 0.0 && (x.abs() + 1.0) / wmax > big / 4.0)
                    || T::BITS == 64;
                if !plausible {
                    return Err(format!(
                        "NonFiniteParameter without overflow (wᵀu = {x:?}): u {u:?}, w {w:?}, b {b:?}, {con:?}"
                    ));
                }
            }
            return Ok(());
        }
    };
    let (c, cp1) = (l.w_dot_u_hat(), l.one_plus_w_dot_u_hat());
    if !(cp1 > T::ZERO)
        || !cp1.is_finite()
        || !(c >= -T::ONE)
        || !c.is_finite()
        || !finite(l.u_hat())
    {
        return Err(format!(
            "invalid carried constraint: wᵀû {c:?}, 1 + wᵀû {cp1:?}, û {:?}; {l:?}",
            l.u_hat()
        ));
    }
    // cp1 agrees with 1 + c where that is representable without loss.
    if c.v64().abs() < 0.5 && ((T::ONE + c) - cp1).v64().abs() > 8.0 * T::EPS.v64() {
        return Err(format!(
            "1 + wᵀû {cp1:?} inconsistent with wᵀû {c:?}; {l:?}"
        ));
    }
    if matches!(con, Constraint::Smooth) {
        // Documented: ‖û − u‖ ≤ ‖u‖ (checked in the ∞-norm of the scaled vectors, with rounding).
        let umax = u.iter().fold(0.0f64, |a, v| a.max(v.v64().abs()));
        if umax > 0.0 {
            let (mut du, mut nu) = (0.0f64, 0.0f64);
            for i in 0..D {
                let d = (l.u_hat()[i].v64() - u[i].v64()) / umax;
                du += d * d;
                nu += (u[i].v64() / umax) * (u[i].v64() / umax);
            }
            if du.sqrt() > nu.sqrt() * (1.0 + c_ulps(D) * T::EPS.v64()) {
                return Err(format!(
                    "Smooth: ‖û − u‖ = {} > ‖u‖ = {} (scaled); {l:?}",
                    du.sqrt(),
                    nu.sqrt()
                ));
            }
        } else if l.u_hat().iter().any(|v| *v != T::ZERO) {
            return Err(format!("Smooth: u = 0 but û = {:?}", l.u_hat()));
        }
    }
    if let Constraint::Project { margin } = con
        && cp1 < margin * (T::ONE - T::from_f64(4.0) * T::EPS)
    {
        return Err(format!(
            "Project: 1 + wᵀû {cp1:?} below the margin {margin:?}; {l:?}"
        ));
    }
    let act = *l.activation();
    let max_iter = Tanh::max_iter::<T>();
    for &y in ys {
        if !y.is_finite() {
            continue;
        }
        let (_, dh, om) = act.eval(y);
        let det = dh.madd(cp1, om);
        if !(det > T::ZERO) {
            return Err(format!("1 + wᵀû·h′(s) = {det:?} ≤ 0 at s = {y:?}; {l:?}"));
        }
        let (alpha, it) = match l.solve_preactivation(y) {
            Ok(r) => r,
            // The root lies beyond the float range (leaky ReLU with 1 + c tiny: |α| = |y|/(1 + c)).
            Err(FlowError::NonFiniteInput) if y.v64().abs() / cp1.v64() >= T::max_value().v64() => {
                continue;
            }
            Err(e) => return Err(format!("solve_preactivation({y:?}) failed: {e:?}; {l:?}")),
        };
        if it > max_iter {
            return Err(format!(
                "solve_preactivation({y:?}) took {it} > {max_iter} iterations; {l:?}"
            ));
        }
        if !alpha.is_finite() {
            return Err(format!("solve_preactivation({y:?}) gave {alpha:?}; {l:?}"));
        }
        // Residual, evaluated in f64 for f32 (exact enough) and in T otherwise.
        let h = act.h(alpha);
        let (a, yf, cf, hf) = (alpha.v64(), y.v64(), c.v64(), h.v64());
        let res = (a - yf) + cf * hf;
        let scale_r = yf.abs() + a.abs() + cf.abs();
        // The root is the float nearest the true one, which moves the residual by
        // F′·ulp(α) ≤ (1 + |c|)·2ε|α|; h is rounded by ε|h|.
        let bound =
            8.0 * T::EPS.v64() * (scale_r + cf.abs() * a.abs()) + T::min_positive_value().v64();
        if !within(res.abs(), bound) {
            return Err(format!(
                "root of α + c·h(α) = {y:?} not accurate: α {alpha:?}, residual {res:?} > {bound:?}; {l:?}"
            ));
        }
    }
    Ok(())
}

fn constraint_typed<T: Real, const D: usize, const K: usize, A: CheckActivation<T>>(
    inp: &mut Bytes<'_>,
    act: A,
) -> Outcome {
    let mode = inp.u8();
    let (u, w, b) = if mode & 1 == 0 {
        (inp.raw_vec::<T, D>(), inp.raw_vec::<T, D>(), inp.raw::<T>())
    } else {
        let e = i32::from(mode >> 1) + 2;
        (inp.vec::<T, D>(e), inp.vec::<T, D>(e), inp.real::<T>(e))
    };
    let con = match inp.u8() % 6 {
        0 | 1 => Constraint::Smooth,
        2 => Constraint::Paper,
        3 => Constraint::Project {
            margin: inp.raw::<T>(),
        },
        4 => decode_constraint(inp),
        _ => Constraint::Unconstrained,
    };
    let mut ys = [T::ZERO; 6];
    ys[0] = b;
    for y in ys.iter_mut().skip(1).take(3) {
        *y = inp.raw::<T>();
    }
    ys[4] = inp.real::<T>(30);
    ys[5] = inp.real::<T>(4);
    let _ = K;
    constraint_layer(u, w, b, con, act, &ys)
}

/// Property `constraint` over raw bytes: [`constraint_layer`] with arbitrary bit patterns.
///
/// # Errors
/// A description of the failure.
pub fn constraint(data: &[u8]) -> Outcome {
    dispatch!(constraint_typed, &mut Bytes::new(data))
}

// ---------------------------------------------------------------------------------------------
// no_panic
// ---------------------------------------------------------------------------------------------

fn documented<T>(r: &crate::Result<T>, what: &str, allowed: &[FlowError]) -> Outcome {
    match r {
        Ok(_) => Ok(()),
        Err(e) if allowed.contains(e) => Ok(()),
        Err(FlowError::InvalidArgument(_))
            if allowed
                .iter()
                .any(|a| matches!(a, FlowError::InvalidArgument(_))) =>
        {
            Ok(())
        }
        Err(e) => Err(format!("{what}: undocumented error {e:?}")),
    }
}

fn no_panic_typed<T: Real, const D: usize, const K: usize, A: CheckActivation<T>>(
    inp: &mut Bytes<'_>,
    act: A,
) -> Outcome {
    use FlowError::*;
    let raw = inp.u8() & 1 == 0;
    let mut layers =
        [Planar::<T, D, A>::with([T::ZERO; D], [T::ZERO; D], T::ZERO, Constraint::Smooth, act)
            .map_err(|e| format!("zero layer failed: {e:?}"))?; K];
    for l in layers.iter_mut() {
        let (u, w, b) = if raw {
            (inp.raw_vec::<T, D>(), inp.raw_vec::<T, D>(), inp.raw::<T>())
        } else {
            (inp.vec::<T, D>(40), inp.vec::<T, D>(40), inp.real::<T>(40))
        };
        let con = match inp.u8() % 5 {
            0 => Constraint::Project {
                margin: inp.raw::<T>(),
            },
            _ => decode_constraint(inp),
        };
        let r = Planar::with(u, w, b, con, act);
        documented(
            &r,
            "Planar::with",
            &[NonFiniteParameter, NotInvertible, InvalidArgument("")],
        )?;
        if let Ok(nl) = r {
            *l = nl;
        }
        if T::BITS == 32 {
            documented(
                &Planar::<T, D>::new(u, w, b),
                "Planar::new",
                &[NonFiniteParameter],
            )?;
        }
    }
    let pts: [[T; D]; 2] = if raw {
        [inp.raw_vec(), inp.raw_vec()]
    } else {
        [inp.vec(60), inp.vec(60)]
    };
    let mut flow = Flow::new(layers);
    let _ = flow.set_layer(usize::from(inp.u8()), layers[0]);
    for p in &pts {
        for l in flow.layers() {
            let _ = l.forward(p);
            let _ = l.forward_and_log_det(p);
            let _ = l.log_det(p);
            let s = l.preactivation(p);
            let _ = l.log_det_at(s);
            let _ = l.conditioning();
            let mut lanes = *p;
            let _ = l.forward_lanes(&mut lanes);
            documented(&l.inverse(p), "Planar::inverse", &[NonFiniteInput])?;
            documented(
                &l.inverse_and_log_det(p),
                "Planar::inverse_and_log_det",
                &[NonFiniteInput],
            )?;
            documented(
                &l.solve_preactivation(s),
                "Planar::solve_preactivation",
                &[NonFiniteInput],
            )?;
            let y = p[0];
            documented(
                &l.solve_preactivation(y),
                "Planar::solve_preactivation",
                &[NonFiniteInput],
            )?;
            let _ = l.constraint().m(y);
            let _ = l.constraint().dm_dx(y);
            let _ = l.constraint().apply(p, p);
            let _ = l.activation().eval(y);
            let _ = l.activation().d2h(y);
            // Inconsistent (c, 1 + c) pairs: any outcome but a panic or a hang.
            let _ = l.activation().solve(y, p[D - 1], p[D / 2]);
            let _ = Tanh.solve(y, p[D - 1], p[D / 2]);
        }
        let _ = flow.forward(p);
        let _ = flow.forward_and_log_det(p);
        let _ = flow.log_prob_normalizing(p);
        documented(&flow.inverse(p), "Flow::inverse", &[NonFiniteInput])?;
        documented(
            &flow.inverse_and_log_det(p),
            "Flow::inverse_and_log_det",
            &[NonFiniteInput],
        )?;
        documented(&flow.log_prob(p), "Flow::log_prob", &[NonFiniteInput])?;
        let base = StandardNormal::<T, D>::new();
        let _ = base.log_prob(p);
        for v in p {
            let _ = v.softplus();
            let k = v.to_ordered();
            let back = T::from_ordered(k);
            if !v.is_nan() && back.v64().to_bits() != v.v64().to_bits() {
                return Err(format!("from_ordered(to_ordered({v:?})) = {back:?}"));
            }
            let _ = LeakyRelu::new(*v);
            let _ = Constraint::Project { margin: *v }.m(*v);
        }
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(inp.u64());
    let (x, lq) = flow.sample(&mut rng);
    let _ = (x, lq);
    documented(
        &flow.sample_normalizing(&mut rng),
        "Flow::sample_normalizing",
        &[NonFiniteInput],
    )?;
    let _ = StandardNormal::<T, D>::new().sample(&mut rng);
    let _ = normal_pair(&mut rng);
    let u = uniform_open0(&mut rng);
    if !(u > 0.0 && u <= 1.0) {
        return Err(format!("uniform_open0 gave {u}"));
    }
    let _ = <T as Lane>::tanh_sech2(pts[0][0]);
    Ok(())
}

/// Property `no_panic` over raw bytes: arbitrary (bit-pattern or huge-range) parameters and
/// points through every public entry point; each fallible one returns `Ok` or one of its
/// documented errors, and nothing panics (integer overflow included: the fuzz build has debug
/// assertions) or hangs (libFuzzer's timeout).
///
/// # Errors
/// A description of the failure.
pub fn no_panic(data: &[u8]) -> Outcome {
    dispatch!(no_panic_typed, &mut Bytes::new(data))
}

// ---------------------------------------------------------------------------------------------
// batch_vs_scalar
// ---------------------------------------------------------------------------------------------

/// Propagated bounds for one point through the flow, from the scalar reference's intermediate
/// points: `(bound on the points, bound on the log-det)`. `inverse` selects `g⁻¹` (points
/// `pts[k] → pts[k+1]` are the inputs/outputs of the layers in the order applied). Infinite
/// (no bound) where the scalar chain fails, or where a forward layer's pre-activation `s` or an
/// inverse layer's root `α` may reach the float range within its error bound
/// (`|s| + δs ≥ MAX`, `|α| + κ·δs ≥ MAX`).
fn chain_bounds<T: Real, const D: usize, const K: usize, A: CheckActivation<T>>(
    f: &Flow<T, D, K, A>,
    z: &[T; D],
    inverse: bool,
) -> (f64, f64) {
    let eps = T::EPS.v64();
    let cu = c_ulps(D);
    let (mut e, mut el) = (0.0f64, 0.0f64);
    let mut cur = *z;
    for j in 0..K {
        let k = if inverse { K - 1 - j } else { j };
        let l = &f.layers()[k];
        let next = if inverse {
            match l.inverse(&cur) {
                Ok(v) => v,
                Err(_) => return (f64::INFINITY, f64::INFINITY),
            }
        } else {
            l.forward(&cur)
        };
        if !finite(&next) {
            return (f64::INFINITY, f64::INFINITY);
        }
        let (zz, xx) = if inverse { (next, cur) } else { (cur, next) };
        let w1: f64 = l.w().iter().map(|v| v.v64().abs()).sum();
        // The pre-activation whose side of a kink decides h′. Forward: wᵀz + b from the input.
        // Inverse: the root α that both sides solve for from y = wᵀx + b, not wᵀz + b re-formed
        // from the output z, which can be pure rounding noise when Σ|wᵢzᵢ| ≫ |α| (a false alarm
        // the fuzzer found: |α| ≈ 10⁻⁷ read as 4.7, so a kink crossed by the SIMD sum's
        // different rounding of y was not recognised).
        let s = if inverse {
            match l.solve_preactivation(l.preactivation(&xx)) {
                Ok((a, _)) => a.v64().abs(),
                Err(_) => return (f64::INFINITY, f64::INFINITY),
            }
        } else {
            l.preactivation(&zz).v64().abs()
        };
        let big_s = scale(l, &zz, &xx);
        let kappa = l.conditioning().v64();
        let ld = l.log_det(&zz).v64().abs();
        let d2 = mul0(l.w_dot_u_hat().v64().abs(), l.activation().max_d2h());
        // Error of this layer's pre-activation: its own rounding plus the incoming point error.
        let ds = cu * eps * (big_s + s) + mul0(w1, e);
        let kink = l.activation().has_kink();
        if inverse {
            let da = mul0(kappa, ds);
            if s + da >= T::max_value().v64() {
                // The root may reach the float range by round-off alone (an ill-conditioned
                // layer): the chain may then fail (α overflows) where the scalar's did not, or
                // land anywhere; no bound (a fuzz finding: f32, 1 + c = 1.2e−38, the SIMD
                // chain's x differing by ½ ulp moved α from 0 to 5e38).
                return (f64::INFINITY, f64::INFINITY);
            }
            if kink && !(s > da) {
                el = f64::INFINITY; // h′ may jump between the two evaluations
            }
            el += cu * eps * (1.0 + ld) + mul0(mul0(d2, kappa), da);
            e = local_bound(l, &zz, &xx, true) + mul0(lipschitz(l, true), e);
        } else {
            if s + ds >= T::max_value().v64() {
                // The pre-activation may reach the float range by round-off alone: one chain
                // may overflow where the other does not; no bound (a fuzz finding: f32,
                // 1 + c = 1.2e−38 then 1.8e8, the two sides' roundings of a cancellation,
                // amplified, put the scalar result at −0.625 and the SIMD one at +∞ through an
                // overflowing wᵀz + b, against a bound of 2.7e38 on the result).
                return (f64::INFINITY, f64::INFINITY);
            }
            if kink && !(s > ds) {
                el = f64::INFINITY;
            }
            el += cu * eps * (1.0 + ld) + mul0(mul0(d2, kappa), ds);
            e = local_bound(l, &zz, &xx, false) + mul0(lipschitz(l, false), e);
        }
        cur = next;
    }
    (e, el)
}

fn lp_bound<T: Real, const D: usize>(z: &[T; D], e: f64, el: f64, lp: T) -> f64 {
    let zn: f64 = z.iter().map(|v| v.v64().abs()).sum();
    mul0(zn + D as f64 * e, e) + el + c_ulps(D) * T::EPS.v64() * (1.0 + lp.v64().abs())
}

fn cmp_lane<T: Real, const D: usize>(
    what: &str,
    n: usize,
    simd: &[T; D],
    scalar: &[T; D],
    bound: f64,
) -> Outcome {
    let err = max_diff(simd, scalar);
    if within_t::<T>(err, bound) {
        Ok(())
    } else {
        Err(format!(
            "{what}: point {n}: SIMD {simd:?} vs scalar {scalar:?}: err {err:?} > bound {bound:?}"
        ))
    }
}

fn cmp_val<T: Real>(what: &str, n: usize, simd: T, scalar: T, bound: f64) -> Outcome {
    let err = if simd == scalar {
        0.0
    } else {
        (simd.v64() - scalar.v64()).abs()
    };
    if within_t::<T>(err, bound) {
        Ok(())
    } else {
        Err(format!(
            "{what}: point {n}: SIMD {simd:?} vs scalar {scalar:?}: err {err:?} > bound {bound:?}"
        ))
    }
}

/// The SIMD batched kernels ([`Flow::forward_batch`], [`Flow::forward_log_det_batch`],
/// [`Flow::log_prob_normalizing_batch`], [`Flow::inverse_batch`], [`Flow::log_prob_batch`])
/// against the scalar reference, point by point, for any batch length. Bounds: the scalar
/// error bounds of the module docs propagated through the layers, doubled (each side has its
/// own rounding; the vector math's ≤ 4 ulp fits in `C`). Points with a non-finite coordinate
/// must give NaN (inverse) or not disturb the other lanes; the inverse's failure count must
/// equal the number of points the scalar inverse rejects. Then the same points tiled into a
/// batch long enough for the kernels' grouped passes (`17·LANES + 5`) must give, point by
/// point, bit for bit the same results, and each point alone the same inverse (a point's
/// results do not depend on its position in the batch).
///
/// # Errors
/// A description of the failure.
pub fn batch_vs_scalar_flow<T, const D: usize, const K: usize, A>(
    f: &Flow<T, D, K, A>,
    pts: &[[T; D]],
) -> Outcome
where
    T: crate::simd::SimdReal,
    A: CheckActivation<T> + crate::simd::LaneSolve<T>,
{
    let (small, failed, failed2) = BatchOut::run(f, pts, "")?;
    let BatchOut {
        x,
        x2,
        ld,
        lpn,
        zi,
        ldi,
        lp,
    } = &small;
    let mut scalar_failed = 0usize;
    let mut vacuous = false;
    for (j, p) in pts.iter().enumerate() {
        let ctx = |e: String| format!("{e}; input point {p:?}; flow {f:?}");
        if finite(p) {
            let (sx, sld) = f.forward_and_log_det(p);
            if finite(&sx) && sld.is_finite() {
                let (e, el) = chain_bounds(f, p, false);
                cmp_lane("forward_batch", j, &x[j], &sx, 2.0 * e).map_err(ctx)?;
                cmp_lane("forward_log_det_batch (points)", j, &x2[j], &sx, 2.0 * e).map_err(ctx)?;
                cmp_val("forward_log_det_batch (log-det)", j, ld[j], sld, 2.0 * el).map_err(ctx)?;
                let slp = f.log_prob_normalizing(p);
                cmp_val(
                    "log_prob_normalizing_batch",
                    j,
                    lpn[j],
                    slp,
                    2.0 * lp_bound(&sx, e, el, slp),
                )
                .map_err(ctx)?;
            }
        }
        match f.inverse_and_log_det(p) {
            Ok((sz, sldi)) => {
                let (e, el) = chain_bounds(f, p, true);
                if e >= T::max_value().v64() || !finite(&sz) {
                    vacuous = true;
                    continue;
                }
                cmp_lane("inverse_batch (points)", j, &zi[j], &sz, 2.0 * e).map_err(ctx)?;
                cmp_val("inverse_batch (log-det)", j, ldi[j], sldi, 2.0 * el).map_err(ctx)?;
                let slp = f
                    .log_prob(p)
                    .map_err(|e| format!("scalar log_prob failed after inverse: {e:?}"))?;
                cmp_val(
                    "log_prob_batch",
                    j,
                    lp[j],
                    slp,
                    2.0 * lp_bound(&sz, e, el, slp),
                )
                .map_err(ctx)?;
            }
            Err(e) => {
                scalar_failed += 1;
                let all_nan = zi[j].iter().all(|v| v.is_nan()) && ldi[j].is_nan() && lp[j].is_nan();
                if !all_nan {
                    if finite(p) {
                        // The scalar chain failed on an overflow (finite input) that the SIMD
                        // chain may miss by rounding: the counts need not agree then.
                        vacuous = true;
                        continue;
                    }
                    return Err(format!(
                        "inverse_batch: point {j} {p:?}: scalar failed ({e:?}) but SIMD gave {:?}, {:?}, {:?}",
                        zi[j], ldi[j], lp[j]
                    ));
                }
            }
        }
    }
    if !vacuous && (failed != scalar_failed || failed2 != scalar_failed) {
        return Err(format!(
            "inverse_batch failed count {failed} / log_prob_batch {failed2} ≠ scalar failures {scalar_failed}"
        ));
    }
    position_independent(f, pts, &small)
}

/// The five batched kernels' outputs for one batch.
struct BatchOut<T: Real, const D: usize> {
    x: std::vec::Vec<[T; D]>,
    x2: std::vec::Vec<[T; D]>,
    ld: std::vec::Vec<T>,
    lpn: std::vec::Vec<T>,
    zi: std::vec::Vec<[T; D]>,
    ldi: std::vec::Vec<T>,
    lp: std::vec::Vec<T>,
}

impl<T: crate::simd::SimdReal, const D: usize> BatchOut<T, D> {
    /// The five batched kernels on `pts`, with the failure counts of `inverse_batch` and
    /// `log_prob_batch`; errors name the kernel after `what`.
    fn run<const K: usize, A: crate::simd::LaneSolve<T>>(
        f: &Flow<T, D, K, A>,
        pts: &[[T; D]],
        what: &str,
    ) -> core::result::Result<(Self, usize, usize), String> {
        let n = pts.len();
        let mut b = BatchOut {
            x: std::vec![[T::ZERO; D]; n],
            x2: std::vec![[T::ZERO; D]; n],
            ld: std::vec![T::ZERO; n],
            lpn: std::vec![T::ZERO; n],
            zi: std::vec![[T::ZERO; D]; n],
            ldi: std::vec![T::ZERO; n],
            lp: std::vec![T::ZERO; n],
        };
        let err = |kernel: &'static str| move |e: FlowError| format!("{what}{kernel}: {e:?}");
        f.forward_batch(pts, &mut b.x)
            .map_err(err("forward_batch"))?;
        f.forward_log_det_batch(pts, &mut b.x2, &mut b.ld)
            .map_err(err("forward_log_det_batch"))?;
        f.log_prob_normalizing_batch(pts, &mut b.lpn)
            .map_err(err("log_prob_normalizing_batch"))?;
        let failed = f
            .inverse_batch(pts, &mut b.zi, &mut b.ldi)
            .map_err(err("inverse_batch"))?;
        let failed2 = f
            .log_prob_batch(pts, &mut b.lp)
            .map_err(err("log_prob_batch"))?;
        Ok((b, failed, failed2))
    }
}

/// Equal bit for bit but for NaN payloads (both NaN counts as equal).
fn same_bits<T: Real>(a: T, b: T) -> bool {
    (a.is_nan() && b.is_nan()) || (a == b && a.is_sign_negative() == b.is_sign_negative())
}

/// A point's batched results do not depend on where it stands in the batch: the points tiled
/// into a batch of `17·LANES + 5` (two passes of the largest number of interleaved chunks, 8,
/// then whole chunks and a partial one: the grouped passes of every shape and the tail) must
/// give, point by point, bit for bit the results of the original batch (at most 39 points,
/// mostly the tail's one-chunk path), and each point alone (`inverse_batch` of one point) the
/// same inverse; the inverse's failure count must be the sum of the single points' counts.
/// No operation of the kernels mixes lanes, chunks or groups, so any difference is a bug.
fn position_independent<T, const D: usize, const K: usize, A>(
    f: &Flow<T, D, K, A>,
    pts: &[[T; D]],
    small: &BatchOut<T, D>,
) -> Outcome
where
    T: crate::simd::SimdReal,
    A: CheckActivation<T> + crate::simd::LaneSolve<T>,
{
    let n = pts.len();
    if n == 0 {
        return Ok(());
    }
    let w = <T::Simd as Lane>::LANES;
    let nb = 17 * w + 5;
    let big: std::vec::Vec<[T; D]> = (0..nb).map(|q| pts[q % n]).collect();
    let (b, failed, failed2) = BatchOut::run(f, &big, "tiled batch: ")?;
    let err = |e: FlowError| format!("tiled batch: {e:?}");
    // Each point alone.
    let mut single = std::vec![0usize; n];
    for (j, p) in pts.iter().enumerate() {
        let (mut z1, mut l1) = ([[T::ZERO; D]], [T::ZERO]);
        single[j] = f.inverse_batch(&[*p], &mut z1, &mut l1).map_err(err)?;
        let ok =
            (0..D).all(|i| same_bits(z1[0][i], small.zi[j][i])) && same_bits(l1[0], small.ldi[j]);
        if !ok {
            return Err(format!(
                "inverse_batch of point {j} {p:?} alone gave {:?}, {:?}; in the batch {:?}, {:?}; flow {f:?}",
                z1[0], l1[0], small.zi[j], small.ldi[j]
            ));
        }
    }
    for q in 0..nb {
        let j = q % n;
        let pair = |what: &str, a: &[T], c: &[T]| -> Outcome {
            if a.iter().zip(c).all(|(&u, &v)| same_bits(u, v)) {
                Ok(())
            } else {
                Err(format!(
                    "{what}: point {j} {:?} at position {q} of a tiled batch of {nb} gave {a:?}, at position {j} of the batch of {n} {c:?}; flow {f:?}",
                    pts[j]
                ))
            }
        };
        pair("forward_batch", &b.x[q], &small.x[j])?;
        pair("forward_log_det_batch (points)", &b.x2[q], &small.x2[j])?;
        pair(
            "forward_log_det_batch (log-det)",
            &[b.ld[q]],
            &[small.ld[j]],
        )?;
        pair("log_prob_normalizing_batch", &[b.lpn[q]], &[small.lpn[j]])?;
        pair("inverse_batch (points)", &b.zi[q], &small.zi[j])?;
        pair("inverse_batch (log-det)", &[b.ldi[q]], &[small.ldi[j]])?;
        pair("log_prob_batch", &[b.lp[q]], &[small.lp[j]])?;
    }
    let want: usize = (0..nb).map(|q| single[q % n]).sum();
    if failed != want || failed2 != want {
        return Err(format!(
            "tiled batch of {nb}: inverse_batch failed count {failed} / log_prob_batch {failed2} ≠ {want} from the points alone; flow {f:?}"
        ));
    }
    Ok(())
}

fn batch_typed<T, const D: usize, const K: usize, A>(inp: &mut Bytes<'_>, act: A) -> Outcome
where
    T: crate::simd::SimdReal,
    A: CheckActivation<T> + crate::simd::LaneSolve<T>,
{
    let emax = i32::from(inp.u8() % 16);
    let Some(f) = decode_flow::<T, D, K, A>(inp, act, emax) else {
        return Ok(());
    };
    let n = usize::from(inp.u8() % 40);
    let pe = i32::from(inp.u8() % 16);
    let mut pts = std::vec![[T::ZERO; D]; n];
    for p in pts.iter_mut() {
        *p = if inp.u8().is_multiple_of(16) {
            inp.raw_vec()
        } else {
            inp.vec(pe)
        };
    }
    batch_vs_scalar_flow(&f, &pts)
}

/// Property `batch_vs_scalar` over raw bytes: [`batch_vs_scalar_flow`] for a decoded flow and
/// 0–39 points (1 in 16 an arbitrary bit pattern: NaN, ±∞, huge).
///
/// # Errors
/// A description of the failure.
pub fn batch_vs_scalar(data: &[u8]) -> Outcome {
    dispatch!(batch_typed, &mut Bytes::new(data))
}

/// Property `batch_dims`: [`batch_vs_scalar_flow`] at the dimensions the other properties do
/// not decode, so that every chunk shape of every build runs (`simd::batch`'s forward shapes
/// change at D = 3, 4, 8 and 16, the inverse interleaves more chunks for 4 < D < 8 on Zen 5
/// builds, the coordinate sweeps are fused from D = 8). The first byte `sel` chooses f32/f64
/// (bit 0), D ∈ {4, 5, 6, 7, 9, 12, 16, 17} (bits 1–3) and K ∈ {2, 3} (bit 4); tanh layers
/// only (the shapes are the same for both activations, and `batch_vs_scalar` runs leaky ReLU
/// through them at D ∈ {1, 2, 3, 8}), which keeps the instances few: with leaky ReLU, three
/// lengths and D = 24, the native fuzz build (ASan, coverage) of the library passed 21 GB of
/// memory (this one: 14.4 GB).
///
/// # Errors
/// A description of the failure.
pub fn batch_dims(data: &[u8]) -> Outcome {
    let inp = &mut Bytes::new(data);
    let sel = inp.u8();
    macro_rules! by_k {
        ($t:ty, $d:literal) => {
            if sel & 16 == 0 {
                batch_typed::<$t, $d, 2, Tanh>(inp, Tanh)
            } else {
                batch_typed::<$t, $d, 3, Tanh>(inp, Tanh)
            }
        };
    }
    macro_rules! by_d {
        ($t:ty) => {
            match (sel >> 1) & 7 {
                0 => by_k!($t, 4),
                1 => by_k!($t, 5),
                2 => by_k!($t, 6),
                3 => by_k!($t, 7),
                4 => by_k!($t, 9),
                5 => by_k!($t, 12),
                6 => by_k!($t, 16),
                _ => by_k!($t, 17),
            }
        };
    }
    if sel & 1 == 0 { by_d!(f32) } else { by_d!(f64) }
}

// ---------------------------------------------------------------------------------------------
// gradients
// ---------------------------------------------------------------------------------------------

/// The analytic gradients of `src/grad.rs` ([`Flow::forward_store`], [`Flow::backward_point`],
/// [`Flow::reparam_vjp`]) of the loss `L = aᵀg(z) + β·ln|det J_g(z)|` with respect to every
/// layer's `(u, w, b)` and to `z`, against central finite differences in f64 with steps
/// `h_j = 10⁻¹·2⁻ʲ·max(1, |p|)/G`, `j = 0…17`, `G = Πₖ(1 + ‖wₖ‖₁·(1 + ‖ûₖ‖∞))` (the
/// narrowest feature of the loss is about `1/G` wide), Richardson-combined into fourth-order
/// estimates `R(h) = (4·D(h) − D(2h))/3`. At each step the tolerance is the spread of three
/// successive `R` plus the rounding error `8·ε·G·M/h` (`M` the magnitude of the terms the loss
/// is summed from) plus `10⁻⁶·(1 + |∂L/∂p|)`; the step with the smallest tolerance is used (a
/// fixed step fails on layers whose features are narrower than the step; an earlier version
/// with second-order pairs and a rounding term in `|L|` alone let two noisy estimates at a tiny
/// step agree by chance, a false alarm the CI smoke run found). Only where `L` is smooth: tanh layers with
/// `‖w‖∞ ≥ 0.05` (the `w`-derivative of `û` grows like `1/‖w‖` near 0, see `src/grad.rs`)
/// and `1 + wᵀû ≥ 0.05`, no projection constraint (a kink at the margin).
///
/// # Errors
/// A description of the failure.
pub fn gradients_flow<const D: usize, const K: usize>(
    f: &Flow<f64, D, K, Tanh>,
    z: &[f64; D],
    a: &[f64; D],
    beta: f64,
) -> Outcome {
    use crate::grad::LayerAcc;
    let loss = |fl: &Flow<f64, D, K, Tanh>, zz: &[f64; D]| -> f64 {
        let (x, ld) = fl.forward_and_log_det(zz);
        let mut l = beta * ld;
        for i in 0..D {
            l += a[i] * x[i];
        }
        l
    };
    let mut x = *z;
    let mut st = [0.0f64; K];
    let _ = f.forward_store(&mut x, &mut st);
    let mut gx = *a;
    let mut acc = [LayerAcc::<f64, D>::zero(); K];
    f.backward_point(&mut x, &st, &mut gx, beta, &mut acc);
    let g = f.reparam_vjp(&acc);
    let l0 = loss(f, z).abs();
    // The narrowest feature of L is about 1/G wide, G = Πₖ (1 + ‖wₖ‖₁·(1 + ‖ûₖ‖∞)) bounding how
    // fast the pre-activations move with the input: steps start below it (a coarse pair of
    // steps can agree on a plateau far from the derivative).
    let feature: f64 = f
        .layers()
        .iter()
        .map(|l| {
            let w1: f64 = l.w().iter().map(|v| v.abs()).sum();
            let um = l.u_hat().iter().fold(0.0f64, |m, v| m.max(v.abs()));
            1.0 + w1 * (1.0 + um)
        })
        .product();
    let eps = f64::EPSILON;
    // Magnitude of the terms the loss is summed from (x = z + Σₖ ûₖ·h(sₖ), so each coordinate
    // carries |zᵢ| + Σₖ‖ûₖ‖∞; the log-det is a sum of K logs): the rounding error of L is at most
    // a few eps of this, amplified by at most G through the layers.
    let usum: f64 = f
        .layers()
        .iter()
        .map(|l| l.u_hat().iter().fold(0.0f64, |m, v| m.max(v.abs())))
        .sum();
    let (_, ld0) = f.forward_and_log_det(z);
    let mag = 1.0
        + l0
        + (0..D)
            .map(|i| a[i].abs() * (z[i].abs() + usum))
            .sum::<f64>()
        + beta.abs() * (K as f64 + ld0.abs());
    let check = |what: String, analytic: f64, fd: &dyn Fn(f64) -> Option<f64>, p: f64| -> Outcome {
        // Central differences D(h) on steps hⱼ = 10⁻¹·2⁻ʲ·max(1, |p|)/G, j = 0…17, combined into
        // the fourth-order R(h) = (4·D(h) − D(2h))/3. For each j the tolerance is the spread of
        // three successive R (max of the two adjacent differences: it bounds the truncation
        // error of the O(h⁴) estimate and guards against two estimates agreeing by chance) plus
        // the rounding error 8·eps·G·mag/h plus 10⁻⁶·(1 + |∂L/∂p|); the smallest is used.
        let mut best: Option<(f64, f64)> = None; // (tolerance, R)
        let mut ds: [f64; 18] = [0.0; 18];
        let mut rs: [f64; 18] = [0.0; 18];
        for j in 0..18 {
            let h = 1e-1 * libm::exp2(-(j as f64)) * p.abs().max(1.0) / feature;
            let Some(d) = fd(h) else {
                return Ok(());
            };
            ds[j] = d;
            if j >= 1 {
                rs[j] = (4.0 * ds[j] - ds[j - 1]) / 3.0;
            }
            if j >= 3 {
                let spread = (rs[j] - rs[j - 1]).abs().max((rs[j - 1] - rs[j - 2]).abs());
                let t = spread + 8.0 * eps * feature * mag / h + 1e-6 * (1.0 + analytic.abs());
                if best.is_none_or(|(bt, _)| t < bt) {
                    best = Some((t, rs[j]));
                }
            }
        }
        let Some((tol, d2)) = best else {
            return Ok(());
        };
        let d1 = ds[17];
        let err = (analytic - d2).abs();
        if within(err, tol) {
            Ok(())
        } else {
            Err(format!(
                "{what}: analytic {analytic:?} vs finite differences {d2:?} (smallest-step central difference: {d1:?}): err {err:?} > {tol:?}; flow {f:?}, z {z:?}, a {a:?}, β {beta:?}"
            ))
        }
    };
    for k in 0..K {
        let l = f.layers()[k];
        let rebuild = |u: [f64; D], w: [f64; D], b: f64| -> Option<Flow<f64, D, K, Tanh>> {
            let nl = Planar::with(u, w, b, l.constraint(), Tanh).ok()?;
            let mut nf = *f;
            nf.set_layer(k, nl);
            Some(nf)
        };
        for i in 0..D {
            let fd_u = |h: f64| {
                let (mut up, mut um) = (*l.u(), *l.u());
                up[i] += h;
                um[i] -= h;
                Some(
                    (loss(&rebuild(up, *l.w(), l.b())?, z) - loss(&rebuild(um, *l.w(), l.b())?, z))
                        / (2.0 * h),
                )
            };
            check(
                format!("∂L/∂u[{k}][{i}]"),
                g.layers[k].u[i],
                &fd_u,
                l.u()[i],
            )?;
            let fd_w = |h: f64| {
                let (mut wp, mut wm) = (*l.w(), *l.w());
                wp[i] += h;
                wm[i] -= h;
                Some(
                    (loss(&rebuild(*l.u(), wp, l.b())?, z) - loss(&rebuild(*l.u(), wm, l.b())?, z))
                        / (2.0 * h),
                )
            };
            check(
                format!("∂L/∂w[{k}][{i}]"),
                g.layers[k].w[i],
                &fd_w,
                l.w()[i],
            )?;
        }
        let fd_b = |h: f64| {
            Some(
                (loss(&rebuild(*l.u(), *l.w(), l.b() + h)?, z)
                    - loss(&rebuild(*l.u(), *l.w(), l.b() - h)?, z))
                    / (2.0 * h),
            )
        };
        check(format!("∂L/∂b[{k}]"), g.layers[k].b, &fd_b, l.b())?;
    }
    for i in 0..D {
        let fd_z = |h: f64| {
            let (mut zp, mut zm) = (*z, *z);
            zp[i] += h;
            zm[i] -= h;
            Some((loss(f, &zp) - loss(f, &zm)) / (2.0 * h))
        };
        check(format!("∂L/∂z[{i}]"), gx[i], &fd_z, z[i])?;
    }
    Ok(())
}

fn gradients_typed<const D: usize, const K: usize>(inp: &mut Bytes<'_>) -> Outcome {
    let Some(f) = decode_flow::<f64, D, K, Tanh>(inp, Tanh, 2) else {
        return Ok(());
    };
    for l in f.layers() {
        let wmax = l.w().iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if wmax < 0.05
            || l.one_plus_w_dot_u_hat() < 0.05
            || matches!(l.constraint(), Constraint::Project { .. })
        {
            return Ok(());
        }
    }
    let z = inp.vec::<f64, D>(2);
    let a = inp.vec::<f64, D>(1);
    let beta = inp.real::<f64>(1);
    gradients_flow(&f, &z, &a, beta)
}

/// Property `gradients` over raw bytes: [`gradients_flow`] for f64 tanh flows, D ∈ {1, 2, 3, 8},
/// K ∈ {1, 2, 3}, parameters and points with `|·| ≤ 8`.
///
/// # Errors
/// A description of the failure.
pub fn gradients(data: &[u8]) -> Outcome {
    let inp = &mut Bytes::new(data);
    let sel = inp.u8();
    macro_rules! by_k {
        ($d:literal) => {
            match (sel >> 2) % 3 {
                0 => gradients_typed::<$d, 1>(inp),
                1 => gradients_typed::<$d, 2>(inp),
                _ => gradients_typed::<$d, 3>(inp),
            }
        };
    }
    match sel & 3 {
        0 => by_k!(1),
        1 => by_k!(2),
        2 => by_k!(3),
        _ => by_k!(8),
    }
}

/// The property names, as the fuzz targets and corpus directories are named.
pub const PROPERTIES: [&str; 8] = [
    "roundtrip",
    "log_det",
    "density",
    "constraint",
    "no_panic",
    "batch_vs_scalar",
    "batch_dims",
    "gradients",
];

/// Runs the property called `name` on `data`.
///
/// # Errors
/// The property's failure, or an unknown name.
pub fn run(name: &str, data: &[u8]) -> Outcome {
    match name {
        "roundtrip" => roundtrip(data),
        "log_det" => log_det(data),
        "density" => density(data),
        "constraint" => constraint(data),
        "no_panic" => no_panic(data),
        "batch_vs_scalar" => batch_vs_scalar(data),
        "batch_dims" => batch_dims(data),
        "gradients" => gradients(data),
        _ => Err(format!("unknown property {name}")),
    }
}
