//! The float abstraction: [`Real`] (a scalar, `f32` or `f64`) and [`Lane`] (a value the kernels
//! compute with: a plain scalar, or a SIMD vector of scalars).
//!
//! Every kernel of the crate is written once, generic over [`Lane`], so that the scalar reference
//! (`Lane` for `f32`/`f64` itself, backed by `libm`) and the SIMD path (`Lane` for the `wide`
//! vector types) run the same formulas and cannot drift apart.

use core::fmt::{Debug, Display};
use core::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};
use num_traits::{Float, FloatConst};

/// A value the kernels compute with: one scalar, or `LANES` scalars side by side.
///
/// Every operation acts lane by lane. NaN propagates through arithmetic as IEEE 754 says; the
/// comparisons behind [`Lane::select_neg`] treat a NaN lane as "not negative".
pub trait Lane:
    Copy
    + Debug
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    /// The scalar type of one lane.
    type Scalar: Real;
    /// Number of lanes.
    const LANES: usize;

    /// Every lane set to `x`.
    fn splat(x: Self::Scalar) -> Self;
    /// `self * a + b` (fused where the target has FMA and the lane type uses it).
    fn madd(self, a: Self, b: Self) -> Self;
    /// Absolute value.
    fn vabs(self) -> Self;
    /// Lane-wise minimum (if one lane is NaN, either operand may be returned).
    fn vmin(self, other: Self) -> Self;
    /// Lane-wise maximum (if one lane is NaN, either operand may be returned).
    fn vmax(self, other: Self) -> Self;
    /// Natural logarithm.
    fn vln(self) -> Self;
    /// `e^x − 1`, accurate near 0.
    fn vexp_m1(self) -> Self;
    /// `|self|` with the sign of `sign`.
    fn vcopysign(self, sign: Self) -> Self;
    /// Lane-wise `if self < 0 { if_neg } else { otherwise }`.
    fn select_neg(self, if_neg: Self, otherwise: Self) -> Self;

    /// `(tanh x, sech² x)`, both to a few ulps (relative) over the whole range.
    ///
    /// With `t = e^{−2|x|}`: `tanh|x| = (1 − t)/(1 + t)` and `sech² x = 4t/(1 + t)²`; neither
    /// cancels, so `sech²` keeps its relative accuracy where `1 − tanh²` would round to 0
    /// (|x| ≳ 9 in f32, ≳ 19 in f64). Near 0 the scalar implementations take `1 − t` from
    /// `expm1(−2|x|)` (so `tanh x ≈ x` keeps its relative accuracy) and `t` from `exp` beyond
    /// `|x| = ln2/2`, where `1 + expm1` would cancel. This provided default uses `expm1` alone:
    /// its `tanh` is accurate everywhere, its `sech²` only to a few ulps of 1 in absolute terms
    /// for large |x|; lane types override it (the `wide` lanes in `simd` do).
    /// `x = ±∞` gives `(±1, 0)`; NaN gives NaN in both.
    #[inline(always)]
    fn tanh_sech2(self) -> (Self, Self) {
        let two = Self::splat(Self::Scalar::TWO);
        let e = (-(two * self.vabs())).vexp_m1();
        let d = two + e;
        let t = (-e / d).vcopysign(self);
        let s2 = Self::splat(Self::Scalar::FOUR) * (Self::splat(Self::Scalar::ONE) + e) / (d * d);
        (t, s2)
    }

    /// `(tanh x, n, d)` with `n/d² = tanh² x + cp1·sech² x`, the determinant factor of a tanh
    /// planar layer (`cp1 = 1 + wᵀû`), as a quotient so that the batched kernels can multiply
    /// numerators and denominators over many layers and divide once (see
    /// [`crate::simd::math::tanh_det`], the `wide` lanes' override: one quotient per layer,
    /// `tanh`'s, where `tanh² + cp1·sech²` itself takes a second division and four
    /// multiplications). This provided default returns `d = 1` and `n = tanh² + cp1·sech²` from [`Lane::tanh_sech2`].
    /// Both terms are non-negative for `cp1 ≥ 0`: nothing cancels.
    #[inline(always)]
    fn tanh_det(self, cp1: Self) -> (Self, Self, Self) {
        let (t, s2) = self.tanh_sech2();
        (t, s2.madd(cp1, t * t), Self::splat(Self::Scalar::ONE))
    }

    /// `(tanh x, f)` with the determinant factor `f = tanh² x + cp1·sech² x` of a tanh planar
    /// layer whose `c = wᵀû` lies in `[−1, 1]` (`cp1 = 1 + c`), where the cancellation-prone
    /// form `f = cp1 − c·tanh² x` is accurate: for `c ≥ 0`, `f ≥ 1` and the error is at most
    /// `c·(2δ + ε)` from `tanh`'s relative error `δ`; for `c < 0` both terms are
    /// non-negative. The `wide` f32 lanes override it with a rational `tanh` and that form
    /// ([`crate::simd::math::tanh_det_near`]); this provided default is
    /// `tanh² + cp1·sech²` from [`Lane::tanh_sech2`] (`c` unused).
    #[inline(always)]
    fn tanh_det_near(self, c: Self, cp1: Self) -> (Self, Self) {
        let _ = c;
        let (t, s2) = self.tanh_sech2();
        (t, s2.madd(cp1, t * t))
    }
}

/// A real scalar: `f32` or `f64`.
///
/// Besides the `num-traits` float interface it gives the few constants and conversions the
/// crate needs, and a total order on the bit patterns used by the safeguarded root finder to
/// bisect in ulps rather than in value (so the inverse ends in a bounded number of steps
/// whatever the bracket's magnitude).
pub trait Real:
    Float + FloatConst + Debug + Display + Default + Send + Sync + 'static + Lane<Scalar = Self>
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// 2.
    const TWO: Self;
    /// 4.
    const FOUR: Self;
    /// ½.
    const HALF: Self;
    /// Machine epsilon (`2^-23` for f32, `2^-52` for f64).
    const EPS: Self;
    /// `ln(e − 1)`: the shift that makes `softplus(x + ln(e−1)) − 1` vanish at `x = 0`.
    const LN_E_MINUS_1: Self;
    /// `ln(2π) / 2`.
    const HALF_LN_2PI: Self;
    /// Number of bits in the representation (32 or 64).
    const BITS: u32;

    /// Conversion from f64 (rounding to nearest for f32).
    fn from_f64(x: f64) -> Self;
    /// Exact conversion to f64.
    fn as_f64(self) -> f64;
    /// Conversion from a `usize` count (rounded to nearest).
    fn from_usize(n: usize) -> Self;
    /// Maps the float to an unsigned key whose integer order is the float order
    /// (`-0.0` and `+0.0` get adjacent keys). NaN maps outside the range of the finite values.
    fn to_ordered(self) -> u64;
    /// Inverse of [`Real::to_ordered`].
    fn from_ordered(key: u64) -> Self;
    /// `ln(1 + e^x)`, computed as `max(x, 0) + log1p(e^{−|x|})`: no overflow for large `x`,
    /// full relative accuracy for very negative `x` (where it equals `e^x` and underflows to 0
    /// below about −745 in f64, −104 in f32).
    fn softplus(self) -> Self;
}

macro_rules! impl_scalar {
    ($t:ty, $bits:ty, $nbits:expr, $expm1:path, $log1p:path, $ln_em1:expr, $half_ln_2pi:expr) => {
        impl Lane for $t {
            type Scalar = $t;
            const LANES: usize = 1;
            #[inline(always)]
            fn splat(x: $t) -> $t {
                x
            }
            #[inline(always)]
            fn madd(self, a: $t, b: $t) -> $t {
                // Plain multiply-add: software fma is slow on targets without one, and the
                // reference must be cheap on microcontrollers.
                self * a + b
            }
            #[inline(always)]
            fn vabs(self) -> $t {
                Float::abs(self)
            }
            #[inline(always)]
            fn vmin(self, other: $t) -> $t {
                Float::min(self, other)
            }
            #[inline(always)]
            fn vmax(self, other: $t) -> $t {
                Float::max(self, other)
            }
            #[inline(always)]
            fn vln(self) -> $t {
                Float::ln(self)
            }
            #[inline(always)]
            fn vexp_m1(self) -> $t {
                $expm1(self)
            }
            #[inline(always)]
            fn vcopysign(self, sign: $t) -> $t {
                Float::copysign(self, sign)
            }
            #[inline(always)]
            fn select_neg(self, if_neg: $t, otherwise: $t) -> $t {
                if self < 0.0 { if_neg } else { otherwise }
            }
            #[inline(always)]
            fn tanh_sech2(self) -> ($t, $t) {
                let a = 2.0 * Float::abs(self);
                // om = 1 − t and t = e^{−a}, each from the function that gives it without
                // cancellation: expm1 for small a, exp for large a.
                let (om, t) = if a <= core::f64::consts::LN_2 as $t {
                    let e = $expm1(-a);
                    (-e, 1.0 + e)
                } else {
                    let t = Float::exp(-a);
                    (1.0 - t, t)
                };
                let d = 1.0 + t;
                (Float::copysign(om / d, self), 4.0 * t / (d * d))
            }
        }

        impl Real for $t {
            const ZERO: $t = 0.0;
            const ONE: $t = 1.0;
            const TWO: $t = 2.0;
            const FOUR: $t = 4.0;
            const HALF: $t = 0.5;
            const EPS: $t = <$t>::EPSILON;
            const LN_E_MINUS_1: $t = $ln_em1;
            const HALF_LN_2PI: $t = $half_ln_2pi;
            const BITS: u32 = $nbits;
            #[inline(always)]
            fn from_f64(x: f64) -> $t {
                x as $t
            }
            #[inline(always)]
            fn as_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn from_usize(n: usize) -> $t {
                n as $t
            }
            #[inline]
            fn to_ordered(self) -> u64 {
                let b = self.to_bits();
                let sign: $bits = 1 << ($nbits - 1);
                let k = if b & sign != 0 { !b } else { b | sign };
                k as u64
            }
            #[inline]
            fn softplus(self) -> $t {
                Float::max(self, 0.0) + $log1p(Float::exp(-Float::abs(self)))
            }
            #[inline]
            fn from_ordered(key: u64) -> $t {
                let k = key as $bits;
                let sign: $bits = 1 << ($nbits - 1);
                let b = if k & sign != 0 { k & !sign } else { !k };
                <$t>::from_bits(b)
            }
        }
    };
}

impl_scalar!(
    f32,
    u32,
    32,
    libm::expm1f,
    libm::log1pf,
    0.541_324_854_612_918_1,
    0.918_938_533_204_672_7
);
impl_scalar!(
    f64,
    u64,
    64,
    libm::expm1,
    libm::log1p,
    0.541_324_854_612_918_1,
    0.918_938_533_204_672_7
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sech2_keeps_relative_accuracy_for_large_arguments() {
        // sech² x = 4e^{−2x}/(1 + e^{−2x})²; for x ≥ 20 (f64) the denominator is 1 to rounding.
        for x in [20.0f64, 40.0, 100.0, 300.0] {
            let (_, s2) = Lane::tanh_sech2(x);
            let want = 4.0 * (-2.0 * x).exp();
            assert!(
                ((s2 - want) / want).abs() < 4.0 * f64::EPSILON,
                "x={x}: {s2} vs {want}"
            );
        }
        for x in [10.0f32, 20.0, 40.0] {
            let (_, s2) = Lane::tanh_sech2(x);
            let want = 4.0 * (-2.0 * f64::from(x)).exp();
            assert!(
                ((f64::from(s2) - want) / want).abs() < 4.0 * f64::from(f32::EPSILON),
                "x={x}"
            );
        }
        let (t, _) = Lane::tanh_sech2(1e-20f64);
        assert_eq!(t, 1e-20);
    }

    #[test]
    fn ordered_keys_are_monotone() {
        let xs = [
            -f64::INFINITY,
            -1e300,
            -1.0,
            -1e-310,
            -0.0,
            0.0,
            1e-310,
            1.0,
            1e300,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(w[0].to_ordered() < w[1].to_ordered(), "{:?}", w);
            assert_eq!(
                f64::from_ordered(w[0].to_ordered()).to_bits(),
                w[0].to_bits()
            );
        }
        let ys = [
            -f32::INFINITY,
            -1.0f32,
            -0.0,
            0.0,
            1e-40,
            3.0,
            f32::INFINITY,
        ];
        for w in ys.windows(2) {
            assert!(w[0].to_ordered() < w[1].to_ordered());
            assert_eq!(
                f32::from_ordered(w[1].to_ordered()).to_bits(),
                w[1].to_bits()
            );
        }
    }
}
