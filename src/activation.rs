//! Activations `h` of a planar layer `g(z) = z + û·h(wᵀz + b)`, with the derivatives the
//! kernels, the log-det and the gradients need, and the scalar inverse of `α ↦ α + c·h(α)`.

use crate::error::{FlowError, Result};
use crate::real::{Lane, Real};
use core::fmt::Debug;

/// An increasing activation with `0 ≤ h′ ≤ 1`.
///
/// With `c = wᵀû > −1` every such activation makes the layer invertible, since
/// `1 + c·h′ ≥ min(1, 1 + c) > 0`. The log-det term is evaluated as
/// `(1 − h′(s)) + h′(s)·(1 + c)`: both terms are non-negative, so nothing cancels when `c → −1`
/// (see [`crate::Planar::log_det`]). That is why [`Activation::eval`] returns `1 − h′` as a value
/// of its own, computed without cancellation.
pub trait Activation<T: Real>: Copy + Debug + PartialEq + Send + Sync + 'static {
    /// `(h(s), h′(s), 1 − h′(s))`, lane by lane, each to a few ulps.
    fn eval<L: Lane<Scalar = T>>(&self, s: L) -> (L, L, L);

    /// `h(s)`.
    #[inline(always)]
    fn h<L: Lane<Scalar = T>>(&self, s: L) -> L {
        self.eval(s).0
    }

    /// `h″(s)` (needed by the gradient of the log-det). For activations with a kink it is the
    /// derivative almost everywhere (0 for leaky ReLU).
    fn d2h<L: Lane<Scalar = T>>(&self, s: L) -> L;

    /// `(h, h′, 1 − h′, h″)` from one evaluation (the gradient kernels need all four).
    /// Default: [`Activation::eval`] then [`Activation::d2h`].
    #[inline(always)]
    fn eval_d2<L: Lane<Scalar = T>>(&self, s: L) -> (L, L, L, L) {
        let (h, dh, om) = self.eval(s);
        (h, dh, om, self.d2h(s))
    }

    /// Whether [`Activation::eval_det`] returns a denominator other than 1 (the batched
    /// kernels then keep a second product).
    const SPLIT_DET: bool = false;

    /// `(h(s), n, d)` with the layer's determinant factor `(1 − h′) + h′·cp1 = n/d²`, where
    /// `|d| ∈ [1, 2]` (1 unless [`Activation::SPLIT_DET`]; only `d²` counts, and the `wide`
    /// lanes' tanh returns `d ≤ −1`) and `n ≥ 0` for `cp1 ≥ 0`.
    /// Default: `d = 1`, `n` from [`Activation::eval`].
    #[inline(always)]
    fn eval_det<L: Lane<Scalar = T>>(&self, s: L, cp1: L) -> (L, L, L) {
        let (h, dh, om) = self.eval(s);
        (h, dh.madd(cp1, om), L::splat(T::ONE))
    }

    /// Whether [`Activation::eval_det_near`] is a cheaper form of the determinant factor that
    /// the batched forward kernels take for f32 layers with `−1 ≤ wᵀû ≤ 1`.
    const NEAR_DET: bool = false;

    /// `(h(s), (1 − h′) + h′·cp1)` for a layer with `c = wᵀû ∈ [−1, 1]` and `cp1 = 1 + c`
    /// (the batched forward kernels call it only there, and only for f32 when
    /// [`Activation::NEAR_DET`]). Default: [`Activation::eval_det`]'s `n/d²`.
    #[inline(always)]
    fn eval_det_near<L: Lane<Scalar = T>>(&self, s: L, c: L, cp1: L) -> (L, L) {
        let _ = c;
        let (h, n, d) = self.eval_det(s, cp1);
        (h, n / (d * d))
    }

    /// `(inf h′, sup h′)` over ℝ, used for the layer's conditioning.
    fn dh_range(&self) -> (T, T);

    /// Solves `α + c·h(α) = y` for α, where `cp1 = 1 + c > 0` is given to full relative
    /// accuracy. Returns the root and the number of iterations it took (0 for closed forms).
    ///
    /// # Errors
    /// [`FlowError::NonFiniteInput`] if `y` is not finite; [`FlowError::NotInvertible`] if
    /// `cp1 ≤ 0` or is NaN; [`FlowError::NotConverged`] if an iterative solver exceeds its bound
    /// (which the built-in activations never do for finite input).
    fn solve(&self, y: T, c: T, cp1: T) -> Result<(T, u32)>;
}

/// `h = tanh`: the default activation, as in Rezende & Mohamed (2015).
///
/// `h′ = sech²`, `1 − h′ = tanh²`, `h″ = −2·tanh·sech²`, all from one exponential (`expm1` near 0, `exp` beyond) without the
/// `1 − tanh²` cancellation (see [`Lane::tanh_sech2`]). The inverse is a safeguarded Newton
/// iteration, bounded by [`Tanh::max_iter`] steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tanh;

impl Tanh {
    /// Iteration bound of [`Tanh`]'s inverse for scalar type `T`: `3 × (bits of T) + 8`
    /// (104 for f32, 200 for f64).
    ///
    /// Safeguarded Newton runs for at most `2 × bits` iterations; after that the bracket is
    /// bisected in the order of the floats' bit patterns, which halves the number of floats it
    /// holds at every step, so a bracket of at most 2^64 (f64) or 2^32 (f32) values collapses to
    /// adjacent floats within `bits` more. Typical inputs take 3–8 iterations (measured in the
    /// tests).
    pub const fn max_iter<T: Real>() -> u32 {
        3 * T::BITS + 8
    }
}

impl<T: Real> Activation<T> for Tanh {
    const SPLIT_DET: bool = true;

    #[inline(always)]
    fn eval_det<L: Lane<Scalar = T>>(&self, s: L, cp1: L) -> (L, L, L) {
        s.tanh_det(cp1)
    }

    const NEAR_DET: bool = true;

    #[inline(always)]
    fn eval_det_near<L: Lane<Scalar = T>>(&self, s: L, c: L, cp1: L) -> (L, L) {
        s.tanh_det_near(c, cp1)
    }

    #[inline(always)]
    fn eval<L: Lane<Scalar = T>>(&self, s: L) -> (L, L, L) {
        let (t, s2) = s.tanh_sech2();
        (t, s2, t * t)
    }

    #[inline(always)]
    fn d2h<L: Lane<Scalar = T>>(&self, s: L) -> L {
        let (t, s2) = s.tanh_sech2();
        -(L::splat(T::TWO) * t * s2)
    }

    #[inline(always)]
    fn eval_d2<L: Lane<Scalar = T>>(&self, s: L) -> (L, L, L, L) {
        let (t, s2) = s.tanh_sech2();
        (t, s2, t * t, -(L::splat(T::TWO) * t * s2))
    }

    #[inline]
    fn dh_range(&self) -> (T, T) {
        (T::ZERO, T::ONE)
    }

    fn solve(&self, y: T, c: T, cp1: T) -> Result<(T, u32)> {
        if !y.is_finite() {
            return Err(FlowError::NonFiniteInput);
        }
        if cp1.is_nan() || cp1 <= T::ZERO || !c.is_finite() {
            return Err(FlowError::NotInvertible);
        }
        if c == T::ZERO || y == T::ZERO {
            // h odd: α = 0 solves y = 0 exactly; c = 0 is the identity.
            return Ok((y, 0));
        }
        // Bracket. |tanh| ≤ 1 and sign(tanh α) = sign(α), so for c > 0 the root lies between 0
        // and y, and for −1 < c < 0 between y and y + |c|·sign(y); both within y ± |c|.
        let big = T::max_value();
        let clampf = |x: T| x.max(-big).min(big);
        let (lo, hi) = if c > T::ZERO {
            (
                clampf(y - c).max(y.min(T::ZERO)),
                clampf(y + c).min(y.max(T::ZERO)),
            )
        } else if y > T::ZERO {
            (y, clampf(y - c))
        } else {
            (clampf(y + c), y)
        };
        solve_bracketed(self, y, c, cp1, lo, hi, Tanh::max_iter::<T>())
    }
}

/// Safeguarded Newton for `F(α) = (α − y) + c·h(α) = 0` on a bracket `[lo, hi]` holding the root,
/// with `F′ = (1 − h′) + h′·cp1 > 0`.
///
/// A Newton step is taken when it lands strictly inside the current bracket and the iteration
/// is making progress (steps shrinking or the bracket halving); otherwise the bracket is
/// bisected in bit-pattern order. It stops when a Newton step is below `2·eps·|α|`, when
/// `F(α) = 0`, or when `lo` and `hi` are adjacent floats.
fn solve_bracketed<T: Real, A: Activation<T>>(
    act: &A,
    y: T,
    c: T,
    cp1: T,
    mut lo: T,
    mut hi: T,
    max_iter: u32,
) -> Result<(T, u32)> {
    let width = |lo: T, hi: T| hi.to_ordered().saturating_sub(lo.to_ordered());
    let bisect = |lo: T, hi: T| {
        let (a, b) = (lo.to_ordered(), hi.to_ordered());
        T::from_ordered(a + (b - a) / 2)
    };
    if width(lo, hi) <= 1 {
        return Ok((
            if (lo - y).abs() <= (hi - y).abs() {
                lo
            } else {
                hi
            },
            0,
        ));
    }
    // Start from one fixed-point step from the linearisation at 0: α₀ = y − c·tanh-like term,
    // exact to first order for small y (α ≈ y/(1 + c)) and for large |y| (α ≈ y − c·sign y),
    // and at the outer end of the bracket when 1 + c is tiny (where F is convex towards the root).
    let (h0, _, _) = act.eval(y / cp1);
    let mut a = y - c * h0;
    if a.is_nan() || a < lo || a > hi {
        a = bisect(lo, hi);
    }
    // Newton phase (at most 2·bits iterations): a step is taken if it lands strictly inside the
    // bracket and either the steps are shrinking (|δ| ≤ |δ two steps ago| / 2) or the bracket
    // has halved; otherwise bisect. Then a pure bisection phase, which halves the bracket (in
    // floats) every iteration, so the total is bounded by 3·bits + 8.
    let newton_budget = 2 * T::BITS;
    let mut hist = [width(lo, hi); 2];
    let mut steps = [T::infinity(); 2];
    for it in 0..max_iter {
        let (h, dh, om) = act.eval(a);
        let f = (a - y) + c * h;
        let df = om + dh * cp1;
        if f == T::ZERO {
            return Ok((a, it + 1));
        }
        if f < T::ZERO {
            lo = lo.max(a);
        } else {
            hi = hi.min(a);
        }
        let w = width(lo, hi);
        if w <= 1 {
            // Adjacent floats: return the end nearer to the root by |F| (the current point is
            // one of them).
            let other = if a == lo { hi } else { lo };
            let (ho, _, _) = act.eval(other);
            let fo = (other - y) + c * ho;
            return Ok((if fo.abs() < f.abs() { other } else { a }, it + 1));
        }
        let step = f / df;
        let cand = a - step;
        let progress = it < 2 || w <= hist[0] / 2 || step.abs() <= steps[0].abs() / T::TWO;
        hist = [hist[1], w];
        steps = [steps[1], step];
        if step.abs() <= T::TWO * T::EPS * a.abs() && cand >= lo && cand <= hi {
            // Below round-off: the next step could not move α by more than an ulp or two.
            return Ok((cand, it + 1));
        }
        // The closed bracket is allowed: its initial ends were never evaluated, and the root
        // can sit on one of them (e.g. α = y − c exactly once tanh α rounds to 1).
        if it < newton_budget && progress && cand >= lo && cand <= hi && cand != a {
            a = cand;
        } else {
            a = bisect(lo, hi);
        }
    }
    Err(FlowError::NotConverged)
}

/// Leaky ReLU, `h(s) = s` for `s ≥ 0` and `slope·s` for `s < 0`, with `0 < slope ≤ 1`
/// (normflows and flowjax offer it; their default slope is 0.01 and 0.2 respectively).
///
/// Piecewise linear, so the inverse is in closed form: `α = y / (1 + c)` for `y ≥ 0` and
/// `α = y / (1 + slope·c)` for `y < 0`, both denominators evaluated as
/// `(1 − h′) + h′·(1 + c)` without cancellation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeakyRelu<T> {
    slope: T,
}

impl<T: Real> LeakyRelu<T> {
    /// A leaky ReLU with the given negative-side slope.
    ///
    /// # Errors
    /// [`FlowError::InvalidArgument`] unless `0 < slope ≤ 1` (NaN included).
    pub fn new(slope: T) -> Result<Self> {
        if slope > T::ZERO && slope <= T::ONE {
            Ok(Self { slope })
        } else {
            Err(FlowError::InvalidArgument(
                "leaky ReLU slope must be in (0, 1]",
            ))
        }
    }

    /// The negative-side slope.
    #[inline]
    #[must_use]
    pub fn slope(&self) -> T {
        self.slope
    }
}

impl<T: Real> Activation<T> for LeakyRelu<T> {
    #[inline(always)]
    fn eval<L: Lane<Scalar = T>>(&self, s: L) -> (L, L, L) {
        let a = L::splat(self.slope);
        let one = L::splat(T::ONE);
        let zero = L::splat(T::ZERO);
        (
            s.select_neg(a * s, s),
            s.select_neg(a, one),
            s.select_neg(one - a, zero),
        )
    }

    #[inline(always)]
    fn d2h<L: Lane<Scalar = T>>(&self, _s: L) -> L {
        L::splat(T::ZERO)
    }

    #[inline]
    fn dh_range(&self) -> (T, T) {
        (self.slope, T::ONE)
    }

    fn solve(&self, y: T, _c: T, cp1: T) -> Result<(T, u32)> {
        if !y.is_finite() {
            return Err(FlowError::NonFiniteInput);
        }
        if cp1.is_nan() || cp1 <= T::ZERO {
            return Err(FlowError::NotInvertible);
        }
        let (_, dh, om) = self.eval(y);
        // α has the sign of y (both pieces increase through 0), so h′(α) = h′(y).
        let alpha = y / (om + dh * cp1);
        if !alpha.is_finite() {
            // 1 + c tiny: the root |y|/(1 + c) is beyond the float range (found by fuzzing:
            // returning ±∞ made the inverse produce ±∞ and 0·∞ = NaN coordinates).
            return Err(FlowError::NonFiniteInput);
        }
        Ok((alpha, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_sech2_special_values() {
        let (t, s) = Lane::tanh_sech2(f64::INFINITY);
        assert_eq!((t, s), (1.0, 0.0));
        let (t, s) = Lane::tanh_sech2(-f32::INFINITY);
        assert_eq!((t, s), (-1.0, 0.0));
        let (t, s) = Lane::tanh_sech2(f64::NAN);
        assert!(t.is_nan() && s.is_nan());
        let (t, s) = Lane::tanh_sech2(0.0f64);
        assert_eq!((t, s), (0.0, 1.0));
    }

    #[test]
    fn leaky_slope_validated() {
        assert!(LeakyRelu::new(0.0f32).is_err());
        assert!(LeakyRelu::new(1.5f32).is_err());
        assert!(LeakyRelu::new(f32::NAN).is_err());
        assert!(LeakyRelu::new(0.2f32).is_ok());
    }
}
