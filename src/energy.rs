//! Unnormalised target densities `π̃(x) = exp(−U(x))` for reverse-KL fitting, and the four 2-D
//! test energies of Rezende & Mohamed (2015, Table 1).
//!
//! With `w₁(z) = sin(πz₁/2)`, `w₂(z) = 3·exp(−½((z₁ − 1)/0.6)²)`, `w₃(z) = 3·σ((z₁ − 1)/0.3)`:
//!
//! | | bare form (the paper's) |
//! |---|---|
//! | U1 | `½((‖z‖ − 2)/0.4)² − ln(e^{−½((z₁−2)/0.6)²} + e^{−½((z₁+2)/0.6)²})` |
//! | U2 | `½((z₂ − w₁)/0.4)²` |
//! | U3 | `−ln(e^{−½((z₂−w₁)/0.35)²} + e^{−½((z₂−w₁+w₂)/0.35)²})` |
//! | U4 | `−ln(e^{−½((z₂−w₁)/0.4)²} + e^{−½((z₂−w₁+w₃)/0.35)²})` |
//!
//! **Envelope.** U2–U4 as printed are not normalisable on ℝ²: every column `z₁ = const` carries
//! the same mass, so reverse KL has no optimum (the paper plots them on `[−4, 4]²`). By default
//! [`RmEnergy`] adds the envelope `(z₁⁴ + z₂⁴)/(2·8⁴)` to U2, U3 and U4, as normflows does for its
//! versions; U1 is proper as it is and gets none. Then `log Z = ln ∫ e^{−U}` is 1.8775016 (U1),
//! 2.8501378 (U2), 3.4097196 (U3), 3.4759752 (U4) (trapezoid quadrature; recomputed in the
//! tests). [`RmEnergy::bare`] gives the paper's forms, for plotting on `[−4, 4]²`.

use crate::real::Real;
use crate::simd::SimdLane;

/// An unnormalised log-density `−U(x)` with its gradient.
pub trait Energy<T: Real, const D: usize> {
    /// `U(x)`. May be `+∞` (zero density) or NaN for bad input; training rejects such steps.
    fn energy(&self, x: &[T; D]) -> T;
    /// `(U(x), ∇U(x))`.
    fn energy_and_grad(&self, x: &[T; D]) -> (T, [T; D]);

    /// `(U, ∇U)` for `L::LANES` points at once (one point per lane), for the batched training
    /// kernels. The default returns `None`, and the kernels then call
    /// [`Energy::energy_and_grad`] lane by lane.
    #[inline(always)]
    fn energy_and_grad_lanes<L: SimdLane<Scalar = T>>(&self, _x: &[L; D]) -> Option<(L, [L; D])>
    where
        Self: Sized,
    {
        None
    }
}

/// Which of the four Rezende–Mohamed energies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RmKind {
    /// Ring with two lobes.
    U1,
    /// Sine wave.
    U2,
    /// Sine wave split by a bump.
    U3,
    /// Sine wave split by a sigmoid step.
    U4,
}

/// The Rezende–Mohamed (2015) test energies on ℝ² (see the [module docs](self)).
///
/// ```
/// use flowcore::energy::{Energy, RmEnergy, RmKind};
/// let u = RmEnergy::new(RmKind::U1);
/// let (e, g) = u.energy_and_grad(&[2.0f64, 0.0]);
/// assert!((e - u.energy(&[2.0, 0.0])).abs() < 1e-15 && g[1] == 0.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RmEnergy {
    kind: RmKind,
    envelope: bool,
}

impl RmEnergy {
    /// The energy, with the envelope `(z₁⁴ + z₂⁴)/(2·8⁴)` added to U2–U4 (the proper forms).
    #[must_use]
    pub const fn new(kind: RmKind) -> Self {
        Self {
            kind,
            envelope: !matches!(kind, RmKind::U1),
        }
    }

    /// The paper's bare form (not normalisable on ℝ² for U2–U4; for plots on `[−4, 4]²`).
    #[must_use]
    pub const fn bare(kind: RmKind) -> Self {
        Self {
            kind,
            envelope: false,
        }
    }

    /// Which energy.
    #[must_use]
    pub const fn kind(&self) -> RmKind {
        self.kind
    }

    /// Whether the envelope is added.
    #[must_use]
    pub const fn has_envelope(&self) -> bool {
        self.envelope
    }

    /// `log Z = ln ∫ e^{−U}` of the default (enveloped) forms, from trapezoid quadrature
    /// (the tests recompute it); `None` for the bare U2–U4, which are not normalisable.
    #[must_use]
    pub fn log_z(&self) -> Option<f64> {
        match (self.kind, self.envelope) {
            (RmKind::U1, false) => Some(1.877_501_6),
            (RmKind::U2, true) => Some(2.850_137_8),
            (RmKind::U3, true) => Some(3.409_719_6),
            (RmKind::U4, true) => Some(3.475_975_2),
            _ => None,
        }
    }
}

/// `−ln(e^{−a} + e^{−b})` and the weight `∂/∂a = e^{−a}/(e^{−a} + e^{−b})`, without overflow.
fn neg_log_add_exp<T: Real>(a: T, b: T) -> (T, T) {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let e = (lo - hi).exp();
    let v = lo - e.ln_1p();
    // weight of the smaller (dominant) argument: 1/(1 + e)
    let wl = T::ONE / (T::ONE + e);
    let wa = if a <= b { wl } else { T::ONE - wl };
    (v, wa)
}

fn sigmoid<T: Real>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
}

impl<T: Real> Energy<T, 2> for RmEnergy {
    fn energy(&self, x: &[T; 2]) -> T {
        self.energy_and_grad(x).0
    }

    fn energy_and_grad(&self, x: &[T; 2]) -> (T, [T; 2]) {
        let c = |v: f64| T::from_f64(v);
        let (z1, z2) = (x[0], x[1]);
        let half = T::HALF;
        let (mut e, mut g) = match self.kind {
            RmKind::U1 => {
                let r = z1.hypot(z2);
                let q = (r - c(2.0)) / c(0.4);
                let a = half * ((z1 - c(2.0)) / c(0.6)).powi(2);
                let b = half * ((z1 + c(2.0)) / c(0.6)).powi(2);
                let (l, wa) = neg_log_add_exp(a, b);
                let da = (z1 - c(2.0)) / c(0.36);
                let db = (z1 + c(2.0)) / c(0.36);
                // ∂(½q²)/∂z = q/0.4 · z/r (0 at the origin, where ‖z‖ has no gradient).
                let gr = if r > T::ZERO { q / c(0.4) / r } else { T::ZERO };
                let g1 = gr * z1 + wa * da + (T::ONE - wa) * db;
                (half * q * q + l, [g1, gr * z2])
            }
            RmKind::U2 => {
                let (w1, dw1) = w1(z1);
                let q = (z2 - w1) / c(0.4);
                let dq = q / c(0.4);
                (half * q * q, [-dq * dw1, dq])
            }
            RmKind::U3 | RmKind::U4 => {
                let (w1, dw1) = w1(z1);
                let (w, dw, s1, s2) = if self.kind == RmKind::U3 {
                    let t = (z1 - T::ONE) / c(0.6);
                    let w2 = c(3.0) * (-half * t * t).exp();
                    (w2, -w2 * t / c(0.6), c(0.35), c(0.35))
                } else {
                    let sg = sigmoid((z1 - T::ONE) / c(0.3));
                    (
                        c(3.0) * sg,
                        c(3.0) * sg * (T::ONE - sg) / c(0.3),
                        c(0.4),
                        c(0.35),
                    )
                };
                let p = (z2 - w1) / s1;
                let q = (z2 - w1 + w) / s2;
                let (l, wa) = neg_log_add_exp(half * p * p, half * q * q);
                let wb = T::ONE - wa;
                // ∂(½p²)/∂z = p/s1·(−w1′, 1), ∂(½q²)/∂z = q/s2·(−w1′ + w′, 1).
                let (pa, qb) = (wa * p / s1, wb * q / s2);
                (l, [-pa * dw1 + qb * (dw - dw1), pa + qb])
            }
        };
        if self.envelope {
            let k = c(1.0 / (2.0 * 4096.0));
            e += k * (z1.powi(4) + z2.powi(4));
            g[0] += c(4.0) * k * z1.powi(3);
            g[1] += c(4.0) * k * z2.powi(3);
        }
        (e, g)
    }

    #[inline(always)]
    fn energy_and_grad_lanes<L: SimdLane<Scalar = T>>(&self, x: &[L; 2]) -> Option<(L, [L; 2])> {
        Some(self.lanes(x))
    }
}

/// Lane-wise `−ln(e^{−a} + e^{−b})` and the weight of `a`.
#[inline(always)]
fn neg_log_add_exp_lanes<L: SimdLane>(a: L, b: L) -> (L, L) {
    let one = L::splat(<L::Scalar as Real>::ONE);
    let lo = a.vmin(b);
    let hi = a.vmax(b);
    let e = (lo - hi).vexp_m1() + one;
    let v = lo - (one + e).vln();
    let wl = one / (one + e);
    let wa = a.le(b).select(wl, one - wl);
    (v, wa)
}

impl RmEnergy {
    /// The lane-wise form of [`Energy::energy_and_grad`] (same formulas, the vector `exp`,
    /// `ln`, `sqrt`, `sin_cos` of [`crate::simd`]).
    #[inline(always)]
    fn lanes<T: Real, L: SimdLane<Scalar = T>>(&self, x: &[L; 2]) -> (L, [L; 2]) {
        let c = |v: f64| L::splat(T::from_f64(v));
        let one = c(1.0);
        let half = c(0.5);
        let (z1, z2) = (x[0], x[1]);
        let (mut e, mut g) = match self.kind {
            RmKind::U1 => {
                let r = (z1 * z1 + z2 * z2).vsqrt();
                let q = (r - c(2.0)) / c(0.4);
                let t1 = (z1 - c(2.0)) / c(0.6);
                let t2 = (z1 + c(2.0)) / c(0.6);
                let (l, wa) = neg_log_add_exp_lanes(half * t1 * t1, half * t2 * t2);
                let da = (z1 - c(2.0)) / c(0.36);
                let db = (z1 + c(2.0)) / c(0.36);
                let zero = c(0.0);
                let gr = zero.lt(r).select(q / c(0.4) / r, zero);
                let g1 = gr * z1 + wa * da + (one - wa) * db;
                (half * q * q + l, [g1, gr * z2])
            }
            RmKind::U2 => {
                let k = c(core::f64::consts::FRAC_PI_2);
                let (sn, cs) = (k * z1).vsin_cos();
                let q = (z2 - sn) / c(0.4);
                let dq = q / c(0.4);
                (half * q * q, [-dq * k * cs, dq])
            }
            RmKind::U3 | RmKind::U4 => {
                let k = c(core::f64::consts::FRAC_PI_2);
                let (w1, cs) = (k * z1).vsin_cos();
                let dw1 = k * cs;
                let (w, dw, s1, s2) = if self.kind == RmKind::U3 {
                    let t = (z1 - one) / c(0.6);
                    let w2 = c(3.0) * ((-half * t * t).vexp_m1() + one);
                    (w2, -w2 * t / c(0.6), c(0.35), c(0.35))
                } else {
                    // σ(y) = 1/(1 + e^{−y}), with e^{−y} clamped to avoid ∞/∞.
                    let y = ((z1 - one) / c(0.3)).vmax(c(-80.0)).vmin(c(80.0));
                    let sg = one / (one + ((-y).vexp_m1() + one));
                    (
                        c(3.0) * sg,
                        c(3.0) * sg * (one - sg) / c(0.3),
                        c(0.4),
                        c(0.35),
                    )
                };
                let p = (z2 - w1) / s1;
                let q = (z2 - w1 + w) / s2;
                let (l, wa) = neg_log_add_exp_lanes(half * p * p, half * q * q);
                let wb = one - wa;
                let (pa, qb) = (wa * p / s1, wb * q / s2);
                (l, [-pa * dw1 + qb * (dw - dw1), pa + qb])
            }
        };
        if self.envelope {
            let k = c(1.0 / (2.0 * 4096.0));
            let (a2, b2) = (z1 * z1, z2 * z2);
            e += k * (a2 * a2 + b2 * b2);
            g[0] += c(4.0) * k * a2 * z1;
            g[1] += c(4.0) * k * b2 * z2;
        }
        (e, g)
    }
}

/// `(w₁, w₁′)` with `w₁ = sin(πz₁/2)`.
fn w1<T: Real>(z1: T) -> (T, T) {
    let k = T::PI() * T::HALF;
    let (s, co) = (k * z1).sin_cos();
    (s, k * co)
}
