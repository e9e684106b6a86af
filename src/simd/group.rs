//! [`Group`]: `M` lane vectors taken as one wider lane, so that a kernel written once against
//! [`Lane`] / [`SimdLane`] runs on `M` interleaved chunks *step by step*: every operation of
//! the vector math is issued for all `M` chunks before the next one.
//!
//! Why: the layer's own dependency chain (the `exp` reduction and polynomial, a division) is
//! long, so the batched kernels interleave several chunks for the out-of-order core. Written
//! chunk by chunk, each chunk's whole chain comes before the next chunk's in program order,
//! and the chains overlap only as far as the scheduler's window reaches (on the Intel host of
//! the 2026-12-02 measurements, about two chunks). Issued step by step, independent
//! operations stand side by side in program order.

use crate::real::{Lane, Real};
use crate::simd::lanes::SimdLane;
use crate::simd::math;
use core::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// `M` vectors of lane type `L` as one lane of `M·L::LANES` scalars: lane `m·L::LANES + j` is
/// lane `j` of vector `m`. Every operation acts on the vectors one after the other (and
/// therefore, like `L`'s, lane by lane).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Group<L, const M: usize>(pub [L; M]);

impl<L: Copy, const M: usize> Group<L, M> {
    #[inline(always)]
    fn map(self, f: impl Fn(L) -> L) -> Self {
        Group(core::array::from_fn(|m| f(self.0[m])))
    }
    #[inline(always)]
    fn zip(self, o: Self, f: impl Fn(L, L) -> L) -> Self {
        Group(core::array::from_fn(|m| f(self.0[m], o.0[m])))
    }
    #[inline(always)]
    fn zip3(self, a: Self, b: Self, f: impl Fn(L, L, L) -> L) -> Self {
        Group(core::array::from_fn(|m| f(self.0[m], a.0[m], b.0[m])))
    }
}

macro_rules! group_op {
    ($tr:ident, $f:ident, $atr:ident, $af:ident) => {
        impl<L: Lane, const M: usize> $tr for Group<L, M> {
            type Output = Self;
            #[inline(always)]
            fn $f(self, o: Self) -> Self {
                self.zip(o, |a, b| a.$f(b))
            }
        }
        impl<L: Lane, const M: usize> $atr for Group<L, M> {
            #[inline(always)]
            fn $af(&mut self, o: Self) {
                *self = self.zip(o, |a, b| a.$f(b));
            }
        }
    };
}
group_op!(Add, add, AddAssign, add_assign);
group_op!(Sub, sub, SubAssign, sub_assign);
group_op!(Mul, mul, MulAssign, mul_assign);

impl<L: Lane, const M: usize> Div for Group<L, M> {
    type Output = Self;
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        self.zip(o, |a, b| a / b)
    }
}

impl<L: Lane, const M: usize> Neg for Group<L, M> {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        self.map(|a| -a)
    }
}

impl<L: SimdLane, const M: usize> Lane for Group<L, M> {
    type Scalar = L::Scalar;
    const LANES: usize = L::LANES * M;

    #[inline(always)]
    fn splat(x: Self::Scalar) -> Self {
        Group([L::splat(x); M])
    }
    #[inline(always)]
    fn madd(self, a: Self, b: Self) -> Self {
        self.zip3(a, b, L::madd)
    }
    #[inline(always)]
    fn vabs(self) -> Self {
        self.map(L::vabs)
    }
    #[inline(always)]
    fn vmin(self, other: Self) -> Self {
        self.zip(other, L::vmin)
    }
    #[inline(always)]
    fn vmax(self, other: Self) -> Self {
        self.zip(other, L::vmax)
    }
    #[inline(always)]
    fn vln(self) -> Self {
        math::ln(self)
    }
    #[inline(always)]
    fn vexp_m1(self) -> Self {
        math::exp_m1(self)
    }
    #[inline(always)]
    fn vcopysign(self, sign: Self) -> Self {
        self.zip(sign, L::vcopysign)
    }
    #[inline(always)]
    fn select_neg(self, if_neg: Self, otherwise: Self) -> Self {
        self.zip3(if_neg, otherwise, L::select_neg)
    }
    #[inline(always)]
    fn tanh_sech2(self) -> (Self, Self) {
        math::tanh_sech2(self)
    }
    #[inline(always)]
    fn tanh_det(self, cp1: Self) -> (Self, Self, Self) {
        math::tanh_det(self, cp1)
    }
    #[inline(always)]
    fn tanh_det_near(self, c: Self, cp1: Self) -> (Self, Self) {
        math::tanh_det_near(self, c, cp1)
    }
}

impl<L: SimdLane, const M: usize> SimdLane for Group<L, M> {
    #[inline(always)]
    fn from_fn<F: FnMut(usize) -> Self::Scalar>(mut f: F) -> Self {
        let w = L::LANES;
        let mut g = [L::splat(<L::Scalar as Real>::ZERO); M];
        for (m, v) in g.iter_mut().enumerate() {
            *v = L::from_fn(|j| f(m * w + j));
        }
        Group(g)
    }
    #[inline(always)]
    fn lane(self, i: usize) -> Self::Scalar {
        let i = i.min(Self::LANES - 1);
        self.0[i / L::LANES].lane(i % L::LANES)
    }
    #[inline(always)]
    fn write_lanes(self, out: &mut [Self::Scalar]) {
        for (v, o) in self.0.iter().zip(out.chunks_mut(L::LANES)) {
            v.write_lanes(o);
        }
    }
    const FAST_TILE: bool = false;
    fn load_tile<const D: usize>(pts: &[[Self::Scalar; D]], col: usize, out: &mut [Self]) {
        for (i, o) in out.iter_mut().take(Self::LANES).enumerate() {
            *o = Self::from_fn(|j| pts[j][col + i]);
        }
    }
    fn store_tile<const D: usize>(v: &[Self], pts: &mut [[Self::Scalar; D]], col: usize) {
        for (i, vi) in v.iter().take(Self::LANES).enumerate() {
            for (j, p) in pts.iter_mut().take(Self::LANES).enumerate() {
                p[col + i] = vi.lane(j);
            }
        }
    }
    #[inline(always)]
    fn lt(self, other: Self) -> Self {
        self.zip(other, L::lt)
    }
    #[inline(always)]
    fn le(self, other: Self) -> Self {
        self.zip(other, L::le)
    }
    #[inline(always)]
    fn eq_mask(self, other: Self) -> Self {
        self.zip(other, L::eq_mask)
    }
    #[inline(always)]
    fn finite_mask(self) -> Self {
        self.map(L::finite_mask)
    }
    #[inline(always)]
    fn nan_mask(self) -> Self {
        self.map(L::nan_mask)
    }
    #[inline(always)]
    fn select(self, if_true: Self, if_false: Self) -> Self {
        self.zip3(if_true, if_false, L::select)
    }
    #[inline(always)]
    fn and(self, other: Self) -> Self {
        self.zip(other, L::and)
    }
    #[inline(always)]
    fn or(self, other: Self) -> Self {
        self.zip(other, L::or)
    }
    #[inline(always)]
    fn not(self) -> Self {
        self.map(L::not)
    }
    #[inline(always)]
    fn any(self) -> bool {
        self.0.iter().any(|v| v.any())
    }
    #[inline(always)]
    fn all(self) -> bool {
        self.0.iter().all(|v| v.all())
    }
    #[inline(always)]
    fn count_set(self, n: usize) -> usize {
        let w = L::LANES;
        self.0
            .iter()
            .enumerate()
            .map(|(m, v)| v.count_set(n.saturating_sub(m * w)))
            .sum()
    }
    #[inline(always)]
    fn quot_small(self, d: Self) -> Self {
        self.zip(d, L::quot_small)
    }
    #[inline(always)]
    fn quot_wide(self, d: Self) -> Self {
        self.zip(d, L::quot_wide)
    }
    #[inline(always)]
    fn vsqrt(self) -> Self {
        self.map(L::vsqrt)
    }
    #[inline(always)]
    fn vsin_cos(self) -> (Self, Self) {
        let sc: [(L, L); M] = core::array::from_fn(|m| self.0[m].vsin_cos());
        (
            Group(core::array::from_fn(|m| sc[m].0)),
            Group(core::array::from_fn(|m| sc[m].1)),
        )
    }
    #[inline(always)]
    fn pow2_from_magic(self) -> Self {
        self.map(L::pow2_from_magic)
    }
    #[inline(always)]
    fn mul_pow2_bits(self, k: u32) -> Self {
        self.map(|v| v.mul_pow2_bits(k))
    }
    #[inline(always)]
    fn max_keep_nan(self, floor: Self) -> Self {
        self.zip(floor, L::max_keep_nan)
    }
    #[inline(always)]
    fn min_keep_nan(self, cap: Self) -> Self {
        self.zip(cap, L::min_keep_nan)
    }
    #[inline(always)]
    fn clamp_sq(self, bound: Self) -> (Self, Self) {
        let cy: [(L, L); M] = core::array::from_fn(|m| self.0[m].clamp_sq(bound.0[m]));
        (
            Group(core::array::from_fn(|m| cy[m].0)),
            Group(core::array::from_fn(|m| cy[m].1)),
        )
    }
    #[inline(always)]
    fn ln_reduce(self) -> (Self, Self) {
        let fk: [(L, L); M] = core::array::from_fn(|m| self.0[m].ln_reduce());
        (
            Group(core::array::from_fn(|m| fk[m].0)),
            Group(core::array::from_fn(|m| fk[m].1)),
        )
    }
}
