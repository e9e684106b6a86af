//! [`Lane`] for the `wide` vector types, and [`SimdLane`]: the few extra lane operations the
//! batched kernels need (masks, selects, loads and stores, bit-level helpers of the vector math).
//!
//! A *mask* is a value of the lane type itself whose lanes are all-ones (true) or all-zeros
//! (false), as `wide` returns from its comparisons. Comparisons with a NaN lane give false.

use crate::real::{Lane, Real};
use crate::simd::math;
use wide::{f32x8, f32x16, f64x4, f64x8};

/// A SIMD lane type usable by the batched kernels: [`Lane`] plus masks, selects, lane access
/// and the bit-level pieces of the vector math in [`crate::simd::math`].
///
/// Implemented for `wide::f32x8`, `f32x16`, `f64x4`, `f64x8`. Every operation acts lane by lane;
/// no operation mixes lanes except [`SimdLane::any`], [`SimdLane::all`] and
/// [`SimdLane::count_set`].
pub trait SimdLane: Lane + PartialEq + Send + Sync {
    /// The lane built from `f(0), …, f(LANES − 1)`.
    fn from_fn<F: FnMut(usize) -> Self::Scalar>(f: F) -> Self;
    /// Lane `i` (`i < LANES`; a larger `i` gives lane `LANES − 1`).
    fn lane(self, i: usize) -> Self::Scalar;
    /// Writes lanes `0..min(out.len(), LANES)` to `out` (one vector store for a full chunk).
    fn write_lanes(self, out: &mut [Self::Scalar]);
    /// Whether [`SimdLane::load_tile`] / [`SimdLane::store_tile`] transpose in registers on this
    /// target (with AVX, through `wide`'s shuffle-based `f32x8` / `f64x4` transposes); otherwise
    /// the batched kernels go lane by lane.
    const FAST_TILE: bool;
    /// Transposed load of a `LANES × LANES` tile: `out[i]` gets lane `j` = `pts[j][col + i]`,
    /// for `j, i < LANES`. Needs `pts.len() ≥ LANES`, `col + LANES ≤ D`, `out.len() ≥ LANES`
    /// (panics otherwise; the kernels guarantee it).
    fn load_tile<const D: usize>(pts: &[[Self::Scalar; D]], col: usize, out: &mut [Self]);
    /// The inverse of [`SimdLane::load_tile`]: `pts[j][col + i]` = lane `j` of `v[i]`.
    fn store_tile<const D: usize>(v: &[Self], pts: &mut [[Self::Scalar; D]], col: usize);
    /// Mask of `self < other`.
    fn lt(self, other: Self) -> Self;
    /// Mask of `self <= other`.
    fn le(self, other: Self) -> Self;
    /// Mask of `self == other`.
    fn eq_mask(self, other: Self) -> Self;
    /// Mask of the finite lanes.
    fn finite_mask(self) -> Self;
    /// Mask of the NaN lanes.
    fn nan_mask(self) -> Self;
    /// With `self` a mask: `if_true` where set, `if_false` elsewhere.
    fn select(self, if_true: Self, if_false: Self) -> Self;
    /// Mask and.
    fn and(self, other: Self) -> Self;
    /// Mask or.
    fn or(self, other: Self) -> Self;
    /// Mask not.
    fn not(self) -> Self;
    /// Whether any lane of the mask is set.
    fn any(self) -> bool;
    /// Whether every lane of the mask is set.
    fn all(self) -> bool;
    /// How many of the mask's first `min(n, LANES)` lanes are set (a mask lane, as
    /// [`SimdLane::lt`] and the other masks build it, is all ones or all zeros; this reads the
    /// lanes' sign bits: one mask extraction and a population count).
    fn count_set(self, n: usize) -> usize;
    /// Square root.
    fn vsqrt(self) -> Self;
    /// `(sin x, cos x)` (from `wide`, used by the Gaussian sampler only).
    fn vsin_cos(self) -> (Self, Self);
    /// `2^n` for `self = magic + n`, `magic = 1.5·2^(p−1) + bias` (`p` the significand bits):
    /// the exponent-field trick of the vector `exp`. Valid for normal results only.
    fn pow2_from_magic(self) -> Self;
    /// `self·2^k` by an integer add to the exponent field (one integer operation instead of a
    /// multiply): for a positive normal `self` and a normal result only.
    fn mul_pow2_bits(self, k: u32) -> Self;
    /// `max(self, floor)` where `self` is not NaN, and NaN where it is (the vector `max`
    /// instructions of x86 keep their second operand when either is NaN, so the floor goes
    /// first; elsewhere a select). `floor` must not be NaN.
    fn max_keep_nan(self, floor: Self) -> Self;
    /// `min(self, cap)` where `self` is not NaN, and NaN where it is (as
    /// [`SimdLane::max_keep_nan`]). `cap` must not be NaN.
    fn min_keep_nan(self, cap: Self) -> Self;
    /// `(c, c²)` with `c = sign(self)·min(|self|, bound)`, for a positive, non-NaN `bound`
    /// whose square is finite; in a NaN lane the square is NaN and `c` unspecified (NaN or
    /// `±bound`). Three operations either way: by default `c` by [`SimdLane::min_keep_nan`]
    /// and [`SimdLane::max_keep_nan`], then `c·c`; where the build has AVX-512 DQ (f32x16;
    /// with AVX-512 VL also f32x8) `c` by one `vrangeps` beside `min(self², bound²)` (the
    /// same value: rounding is monotone), which leaves one operation instead of three
    /// between `self` and the square.
    fn clamp_sq(self, bound: Self) -> (Self, Self);
    /// For a positive normal `x`: `(f, k)` with `x = 2^k·(1 + f)`, `1 + f ∈ [√½, √2)`, `k`
    /// an integer-valued float (musl's `log` reduction). Garbage for other inputs.
    fn ln_reduce(self) -> (Self, Self);
    /// `self / d` for `1 ≤ |d| ≤ 2` and `|self| ≤ |d|` (the forward kernels'
    /// `tanh|x| = e/d`, `d = −(2 + e)`). For `f32x16` (and groups of them) when the build
    /// targets an Intel core with AVX-512 FP16 (Sapphire Rapids and later: `-C
    /// target-cpu=native` there): an estimate `y ≈ 1/d` (`vrcp14ps`, relative error below
    /// `2^−14`) and one correction of the quotient, `q = q₀ + y·(self − d·q₀)` with
    /// `q₀ = self·y`: one multiplication and two FMAs instead of a `vdivps zmm`, which holds
    /// that core's one divider for about 10 cycles (f32 forward+log-det 0.91–0.94× the time at
    /// D ∈ {1, 2, 3, 8}, 1.01× at D = 16, where the division hid behind the sweep; measured
    /// 2026-12-04 on a Xeon with 2 × 512-bit FMA). Zen 4 (no AVX-512 FP16) keeps the
    /// division: its divider runs beside the FMA pipes, which the estimate would load with
    /// three more operations (not measured there). For `f64x8` (and groups) on the same
    /// builds: `vrcp14pd`, one Newton refinement of the reciprocal (two FMAs, to about
    /// `2^−28`), then the same correction: six operations instead of a `vdivpd zmm` (about
    /// 16 cycles of the divider; f64 forward+log-det 0.955× the time at D = 2, 0.994× at
    /// D = 16), with the same bounds from `2^−990` on (f64's `2^−118`). f32: error ≤ 0.57
    /// ulp for results of magnitude at least `2^−118` (the last rounding and `δ² < 2^−28`);
    /// below, the residual
    /// `self − d·q₀` can be subnormal, and its rounding (≤ `2^−150`, as `|y| ≤ 1`) adds up to
    /// half the smallest spacing: ≤ 1.07 ulp of the result's spacing there, normal or
    /// subnormal; `|q| ≤ 1` where `|self| ≤ |d|`; ±0 gives 0 (the sign of a zero
    /// quotient is not kept: [`crate::simd::math::tanh_det`] takes it from `x`) and `±d`
    /// gives ±1 exactly. Elsewhere (`f32x8`, `f64x4`, other builds) a correctly rounded
    /// division. NaN in
    /// either operand gives NaN; other operands (`|d|` far from `[1, 2]`, ±∞) are not
    /// supported by the estimate (`tests/batch.rs`, `quot_small_error_bounds`).
    fn quot_small(self, d: Self) -> Self;
    /// `self / d` for `1 ≤ |d| ≤ 2^120` (or `d` NaN) and any `self`: the lane-wise inverse's
    /// Newton step `Fd·d / n` (`n ≥ 1` where `1 + wᵀû ≥ ½`). Where
    /// [`SimdLane::quot_small`] takes the reciprocal estimate (`f32x16` and `f64x8` on Intel
    /// cores with AVX-512 FP16), so does this, with the same bounds (`|d| ≥ 1` keeps the
    /// estimate `≤ 1` in magnitude): f32 ≤ 0.57 ulp for results of magnitude at least
    /// `2^−118` (f64: `2^−990`), ≤ 1.07 ulp of the result's spacing below, zero for a zero
    /// `self` (its sign not kept). Where a division would give ±∞ (and within `2^−13` of the
    /// overflow threshold) the estimate gives ±∞, NaN or ±`MAX`; a non-finite `self` gives
    /// NaN. Elsewhere a correctly rounded division (`tests/batch.rs`,
    /// `quot_wide_error_bounds`).
    fn quot_wide(self, d: Self) -> Self;
}

macro_rules! impl_lanes {
    ($v:ty, $t:ty, $n:expr, $u:ty, $mbits:expr, $k_off:expr, $sqrt_half_bits:expr, $magic_bits:expr) => {
        impl Lane for $v {
            type Scalar = $t;
            const LANES: usize = $n;
            #[inline(always)]
            fn splat(x: $t) -> Self {
                <$v>::splat(x)
            }
            #[inline(always)]
            fn madd(self, a: Self, b: Self) -> Self {
                self.mul_add(a, b)
            }
            #[inline(always)]
            fn vabs(self) -> Self {
                self.abs()
            }
            #[inline(always)]
            fn vmin(self, other: Self) -> Self {
                self.fast_min(other)
            }
            #[inline(always)]
            fn vmax(self, other: Self) -> Self {
                self.fast_max(other)
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
                self.copysign(sign)
            }
            #[inline(always)]
            fn select_neg(self, if_neg: Self, otherwise: Self) -> Self {
                self.simd_lt(<$v>::ZERO).select(if_neg, otherwise)
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

        impl SimdLane for $v {
            #[inline(always)]
            fn from_fn<F: FnMut(usize) -> $t>(mut f: F) -> Self {
                let mut a = [0.0 as $t; $n];
                for (i, v) in a.iter_mut().enumerate() {
                    *v = f(i);
                }
                <$v>::new(a)
            }
            #[inline(always)]
            fn lane(self, i: usize) -> $t {
                self.to_array()[i.min($n - 1)]
            }
            #[inline(always)]
            fn write_lanes(self, out: &mut [$t]) {
                let a = self.to_array();
                if out.len() >= $n {
                    out[..$n].copy_from_slice(&a);
                } else {
                    let m = out.len();
                    out.copy_from_slice(&a[..m]);
                }
            }
            const FAST_TILE: bool = cfg!(target_feature = "avx");
            #[inline(always)]
            fn load_tile<const D: usize>(pts: &[[$t; D]], col: usize, out: &mut [Self]) {
                Tile::load_tile(pts, col, out)
            }
            #[inline(always)]
            fn store_tile<const D: usize>(v: &[Self], pts: &mut [[$t; D]], col: usize) {
                Tile::store_tile(v, pts, col)
            }
            #[inline(always)]
            fn lt(self, other: Self) -> Self {
                self.simd_lt(other)
            }
            #[inline(always)]
            fn le(self, other: Self) -> Self {
                self.simd_le(other)
            }
            #[inline(always)]
            fn eq_mask(self, other: Self) -> Self {
                self.simd_eq(other)
            }
            #[inline(always)]
            fn finite_mask(self) -> Self {
                self.is_finite()
            }
            #[inline(always)]
            fn nan_mask(self) -> Self {
                self.is_nan()
            }
            #[inline(always)]
            fn select(self, if_true: Self, if_false: Self) -> Self {
                wide::Select::select(self, if_true, if_false)
            }
            #[inline(always)]
            fn and(self, other: Self) -> Self {
                self & other
            }
            #[inline(always)]
            fn or(self, other: Self) -> Self {
                self | other
            }
            #[inline(always)]
            fn not(self) -> Self {
                !self
            }
            #[inline(always)]
            fn any(self) -> bool {
                <$v>::any(self)
            }
            #[inline(always)]
            fn all(self) -> bool {
                <$v>::all(self)
            }
            #[inline(always)]
            fn count_set(self, n: usize) -> usize {
                let keep = if n >= $n { u32::MAX } else { (1u32 << n) - 1 };
                (self.to_bitmask() & keep).count_ones() as usize
            }
            #[inline(always)]
            fn vsqrt(self) -> Self {
                self.sqrt()
            }
            #[inline(always)]
            fn vsin_cos(self) -> (Self, Self) {
                self.sin_cos()
            }
            #[inline(always)]
            fn pow2_from_magic(self) -> Self {
                <$v>::from_bits(self.to_bits() << $mbits)
            }
            #[inline(always)]
            fn mul_pow2_bits(self, k: u32) -> Self {
                <$v>::from_bits(self.to_bits() + <$u>::splat((k as <$t as FloatBits>::U) << $mbits))
            }
            #[inline(always)]
            fn max_keep_nan(self, floor: Self) -> Self {
                #[cfg(target_feature = "sse2")]
                {
                    // maxps / maxpd (and their AVX forms): the second operand on NaN.
                    floor.fast_max(self)
                }
                #[cfg(not(target_feature = "sse2"))]
                {
                    self.is_nan().select(self, floor.fast_max(self))
                }
            }
            #[inline(always)]
            fn min_keep_nan(self, cap: Self) -> Self {
                #[cfg(target_feature = "sse2")]
                {
                    // minps / minpd: the second operand on NaN.
                    cap.fast_min(self)
                }
                #[cfg(not(target_feature = "sse2"))]
                {
                    self.is_nan().select(self, cap.fast_min(self))
                }
            }
            #[inline(always)]
            fn clamp_sq(self, bound: Self) -> (Self, Self) {
                ClampSq::clamp_sq(self, bound)
            }
            #[inline(always)]
            fn quot_small(self, d: Self) -> Self {
                Quot::quot(self, d)
            }
            #[inline(always)]
            fn quot_wide(self, d: Self) -> Self {
                // The same body: see the `estimate` module for why its range is wider.
                Quot::quot(self, d)
            }
            #[inline(always)]
            fn ln_reduce(self) -> (Self, Self) {
                // musl: shift the mantissa range to [√½, √2) by an integer add on the bits.
                let one_bits = (1.0 as $t).to_bits();
                let ix = self.to_bits() + <$u>::splat(one_bits - $sqrt_half_bits);
                let kb = (ix >> $mbits) | <$u>::splat($magic_bits);
                let k = <$v>::from_bits(kb) - <$v>::splat($k_off);
                let mant_mask: <$t as FloatBits>::U = (1 << $mbits) - 1;
                let m =
                    <$v>::from_bits((ix & <$u>::splat(mant_mask)) + <$u>::splat($sqrt_half_bits));
                (m - <$v>::ONE, k)
            }
        }
    };
}

/// The per-type body of [`SimdLane::load_tile`] / [`SimdLane::store_tile`].
trait Tile: Sized {
    type S;
    fn load_tile<const D: usize>(pts: &[[Self::S; D]], col: usize, out: &mut [Self]);
    fn store_tile<const D: usize>(v: &[Self], pts: &mut [[Self::S; D]], col: usize);
}
macro_rules! tile_by_halves {
    ($($v:ty: $t:ty, $n:expr, $h:ty, $hn:expr);*) => {$(
        impl Tile for $v {
            type S = $t;
            // Sub-tiles of the `$hn`-lane type `$h` (whose `transpose` is shuffle-based with
            // AVX), joined into / split from the `$n`-lane rows by array copies.
            #[inline(always)]
            fn load_tile<const D: usize>(pts: &[[$t; D]], col: usize, out: &mut [Self]) {
                const H: usize = $hn;
                const B: usize = $n / $hn;
                let mut parts = [[[<$h>::ZERO; H]; B]; B];
                for (bj, pj) in parts.iter_mut().enumerate() {
                    for (bi, pji) in pj.iter_mut().enumerate() {
                        let c0 = col + bj * H;
                        *pji = <$h>::transpose(core::array::from_fn(|j| {
                            let mut a = [0.0 as $t; H];
                            a.copy_from_slice(&pts[bi * H + j][c0..c0 + H]);
                            <$h>::new(a)
                        }));
                    }
                }
                for (bj, pj) in parts.iter().enumerate() {
                    for i in 0..H {
                        let mut r = [0.0 as $t; $n];
                        for (bi, pji) in pj.iter().enumerate() {
                            r[bi * H..bi * H + H].copy_from_slice(&pji[i].to_array());
                        }
                        out[bj * H + i] = <$v>::new(r);
                    }
                }
            }
            #[inline(always)]
            fn store_tile<const D: usize>(v: &[Self], pts: &mut [[$t; D]], col: usize) {
                const H: usize = $hn;
                const B: usize = $n / $hn;
                for bj in 0..B {
                    let rows: [[$t; $n]; H] = core::array::from_fn(|i| v[bj * H + i].to_array());
                    for bi in 0..B {
                        let t = <$h>::transpose(core::array::from_fn(|i| {
                            let mut a = [0.0 as $t; H];
                            a.copy_from_slice(&rows[i][bi * H..bi * H + H]);
                            <$h>::new(a)
                        }));
                        let c0 = col + bj * H;
                        for (j, tj) in t.iter().enumerate() {
                            pts[bi * H + j][c0..c0 + H].copy_from_slice(&tj.to_array());
                        }
                    }
                }
            }
        }
    )*};
}
tile_by_halves!(f32x8: f32, 8, f32x8, 8; f64x4: f64, 4, f64x4, 4; f64x8: f64, 8, f64x4, 4);
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
tile_by_halves!(f32x16: f32, 16, f32x8, 8);

/// The `f32x16` tile transpose in 512-bit shuffles: 64 (`vunpcklps`/`vunpckhps`,
/// `vunpcklpd`/`vunpckhpd`, two rounds of `vshuff32x4`) against 96 256-bit shuffles and 16
/// joins for four `f32x8` sub-tiles (`wide` 1.7 has no 512-bit shuffles, so `unsafe`).
/// Measured (native, Intel host of 2026-12-04, f32 D = 16, N = 65536, K = 32, alternated
/// runs): forward+log-det 0.98–0.99× the time (18 rounds), `forward` 0.97×, inverse 0.98×.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
mod tile512 {
    use super::Tile;
    use core::arch::x86_64::{
        __m512, _mm512_castpd_ps, _mm512_castps_pd, _mm512_shuffle_f32x4, _mm512_unpackhi_pd,
        _mm512_unpackhi_ps, _mm512_unpacklo_pd, _mm512_unpacklo_ps,
    };
    use wide::f32x16;

    /// `o[i]` lane `j` = `r[j]` lane `i`.
    #[inline(always)]
    fn transpose(r: [__m512; 16]) -> [__m512; 16] {
        // SAFETY: the shuffles exist wherever avx512f is enabled (the module's cfg); they take
        // and return values only (no memory access).
        #[allow(unsafe_code)]
        unsafe {
            // Pairs of rows interleaved within each 128-bit lane: a[2k], a[2k + 1] hold rows
            // 2k, 2k + 1 of coordinates 4L, 4L + 1 / 4L + 2, 4L + 3 in lane L.
            let mut a = r;
            for k in 0..8 {
                a[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
                a[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
            }
            // b[4k + m] holds rows 4k..4k + 3 of coordinate 4L + m in lane L.
            let mut b = a;
            for k in 0..4 {
                let (lo, hi) = (_mm512_castps_pd(a[4 * k]), _mm512_castps_pd(a[4 * k + 2]));
                b[4 * k] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo, hi));
                b[4 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo, hi));
                let (lo, hi) = (
                    _mm512_castps_pd(a[4 * k + 1]),
                    _mm512_castps_pd(a[4 * k + 3]),
                );
                b[4 * k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo, hi));
                b[4 * k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo, hi));
            }
            // A 4 × 4 transpose of 128-bit blocks among b[m], b[4 + m], b[8 + m], b[12 + m].
            let mut o = b;
            for m in 0..4 {
                let c0 = _mm512_shuffle_f32x4::<0x44>(b[m], b[4 + m]);
                let c1 = _mm512_shuffle_f32x4::<0xEE>(b[m], b[4 + m]);
                let c2 = _mm512_shuffle_f32x4::<0x44>(b[8 + m], b[12 + m]);
                let c3 = _mm512_shuffle_f32x4::<0xEE>(b[8 + m], b[12 + m]);
                o[m] = _mm512_shuffle_f32x4::<0x88>(c0, c2);
                o[4 + m] = _mm512_shuffle_f32x4::<0xDD>(c0, c2);
                o[8 + m] = _mm512_shuffle_f32x4::<0x88>(c1, c3);
                o[12 + m] = _mm512_shuffle_f32x4::<0xDD>(c1, c3);
            }
            o
        }
    }

    impl Tile for f32x16 {
        type S = f32;
        #[inline(always)]
        fn load_tile<const D: usize>(pts: &[[f32; D]], col: usize, out: &mut [Self]) {
            let rows: [__m512; 16] = core::array::from_fn(|j| {
                let mut a = [0.0f32; 16];
                a.copy_from_slice(&pts[j][col..col + 16]);
                f32x16::new(a).into()
            });
            for (o, t) in out.iter_mut().zip(transpose(rows)) {
                *o = t.into();
            }
        }
        #[inline(always)]
        fn store_tile<const D: usize>(v: &[Self], pts: &mut [[f32; D]], col: usize) {
            let rows = transpose(core::array::from_fn(|i| v[i].into()));
            for (p, r) in pts.iter_mut().zip(rows) {
                p[col..col + 16].copy_from_slice(&f32x16::from(r).to_array());
            }
        }
    }
}

/// The per-type body of [`SimdLane::clamp_sq`].
trait ClampSq: Sized {
    fn clamp_sq(self, bound: Self) -> (Self, Self);
}
macro_rules! clamp_by_min_max {
    ($($v:ty),*) => {$(
        impl ClampSq for $v {
            #[inline(always)]
            fn clamp_sq(self, bound: Self) -> (Self, Self) {
                let c = self.min_keep_nan(bound).max_keep_nan(-bound);
                (c, c * c)
            }
        }
    )*};
}
clamp_by_min_max!(f64x4, f64x8);
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx512dq")))]
clamp_by_min_max!(f32x16);
#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx512dq",
    target_feature = "avx512vl"
)))]
clamp_by_min_max!(f32x8);

/// [`SimdLane::clamp_sq`] by `vrangeps` with imm8 = 2: the operand of smaller magnitude, with
/// the sign of the first (`self`), `sign(x)·min(|x|, bound)` in one instruction. It returns
/// the second operand where the first is a quiet NaN (seen on the Intel host), so the
/// NaN is carried by the square, `min_keep_nan(x², bound²)`, instead. Measured (native, Intel
/// host of 2026-12-04, against `min`, `max` and `c·c`): f32 D = 2 forward+log-det 0.976× the
/// time (8 rounds), D = 16 within noise.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512dq"))]
mod range {
    use super::{ClampSq, SimdLane};
    use wide::f32x16;

    impl ClampSq for f32x16 {
        #[inline(always)]
        fn clamp_sq(self, bound: Self) -> (Self, Self) {
            // SAFETY: `vrangeps` exists wherever avx512dq is enabled (the module's cfg); it
            // takes and returns values only (no memory access).
            #[allow(unsafe_code)]
            let c = unsafe { core::arch::x86_64::_mm512_range_ps::<2>(self.into(), bound.into()) };
            (c.into(), (self * self).min_keep_nan(bound * bound))
        }
    }

    #[cfg(target_feature = "avx512vl")]
    impl ClampSq for wide::f32x8 {
        #[inline(always)]
        fn clamp_sq(self, bound: Self) -> (Self, Self) {
            // SAFETY: as above, with avx512vl for the 256-bit form.
            #[allow(unsafe_code)]
            let c = unsafe { core::arch::x86_64::_mm256_range_ps::<2>(self.into(), bound.into()) };
            (c.into(), (self * self).min_keep_nan(bound * bound))
        }
    }
}

/// The per-type body of [`SimdLane::quot_small`] and [`SimdLane::quot_wide`].
trait Quot {
    fn quot(self, d: Self) -> Self;
}
macro_rules! quot_by_division {
    ($($v:ty),*) => {$(
        impl Quot for $v {
            #[inline(always)]
            fn quot(self, d: Self) -> Self {
                self / d
            }
        }
    )*};
}
quot_by_division!(f32x8, f64x4);
#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "avx512fp16"
)))]
quot_by_division!(f32x16, f64x8);

/// The reciprocal estimates of [`SimdLane::quot_small`] and [`SimdLane::quot_wide`] for the
/// 512-bit types, where [`INTEL_AVX512FP16`] holds (its condition is this module's `cfg`).
/// Two of the crate's six `unsafe` blocks (the others: `vrangeps` in [`SimdLane::clamp_sq`],
/// the `f32x16` tile transpose, the prefetch hints of the batch drivers): `wide` 1.7 has no safe `rcp14` (its `recip`
/// divides), and `core::arch` intrinsics need `#[target_feature]` on the calling function or
/// an `unsafe` block even when the build enables the feature.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "avx512fp16"
))]
mod estimate {
    use super::Quot;
    use wide::{f32x16, f64x8};

    impl Quot for f32x16 {
        #[inline(always)]
        fn quot(self, d: Self) -> Self {
            // SAFETY: `vrcp14ps` exists wherever avx512f is enabled (the module's cfg), it
            // takes and returns values only (no memory access), and `From` converts between
            // `f32x16` and `__m512` by value.
            #[allow(unsafe_code)]
            let y: f32x16 = unsafe { core::arch::x86_64::_mm512_rcp14_ps(d.into()) }.into();
            // Also `SimdLane::quot_wide`'s body: for 1 ≤ |d| ≤ 2^120 the estimate is a normal
            // number within 2^−14 of 1/d and at most 1 in magnitude, so `quot_small`'s error
            // bounds hold for every finite quotient short of overflow (an overflowing one
            // gives ∞·y − ∞ = NaN, or ∞).
            let q0 = self * y;
            (-d).mul_add(q0, self).mul_add(y, q0)
        }
    }

    /// `vrcp14pd` (relative error below `2^−14`), one Newton refinement of the reciprocal
    /// (two FMAs, to about `2^−28`), then the same correction of the quotient as for f32. The
    /// refined `y` is at most 1 in magnitude for `|d| ≥ 1`, so `quot_small`'s analysis carries
    /// over with `2^−53` rounding: ≤ 0.57 ulp from `2^−990` on, ≤ 1.07 ulp of the spacing
    /// below.
    impl Quot for f64x8 {
        #[inline(always)]
        fn quot(self, d: Self) -> Self {
            // SAFETY: as for `f32x16` above, with `vrcp14pd` and `__m512d`.
            #[allow(unsafe_code)]
            let y0: f64x8 = unsafe { core::arch::x86_64::_mm512_rcp14_pd(d.into()) }.into();
            let y = (-d).mul_add(y0, f64x8::ONE).mul_add(y0, y0);
            let q0 = self * y;
            (-d).mul_add(q0, self).mul_add(y, q0)
        }
    }
}

/// Whether the build targets an Intel core with AVX-512 FP16 (Sapphire Rapids and later,
/// e.g. `-C target-cpu=native` there): a proxy, known at compile time, for two 512-bit pipes
/// that execute every vector operation and a `vdivps zmm` that holds the one divider for about
/// 10 cycles, as opposed to Zen 4 (256-bit pipes, multiplies and additions on separate pipes,
/// no AVX-512 FP16). [`SimdLane::quot_small`] / [`SimdLane::quot_wide`] and the forward kernels' shapes
/// (`fwd_shape` in `simd/batch.rs`) are tuned on it (its condition is repeated in the `cfg`s
/// that choose between the division and the `estimate` module); other builds keep the
/// choices measured on Zen 4.
pub(crate) const INTEL_AVX512FP16: bool = cfg!(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "avx512fp16"
));

/// Whether the build targets an AMD core with AVX-512 and AVX-VNNI (Zen 5 and later, e.g.
/// `-C target-cpu=native` there or `znver5`): a proxy, known at compile time, for 512-bit
/// FMA pipes that execute a `zmm` operation whole. Zen 4 splits it in two halves and has no
/// AVX-VNNI; the Intel cores with AVX-512 and AVX-VNNI (Sapphire Rapids and later) also have
/// AVX-512 FP16 ([`INTEL_AVX512FP16`]): of LLVM's CPUs only `znver5` meets the condition.
/// (`sse4a`, which would mark AMD, is no `cfg` feature on Rust 1.89, the MSRV.) The forward
/// kernels' shapes (`zen5_shape` in `simd/batch.rs`) are tuned on it (Zen 5 host of
/// 2026-12-05).
pub(crate) const AMD_ZEN5: bool = cfg!(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "avxvnni",
    not(target_feature = "avx512fp16")
));

/// Whether the build targets an x86-64 core with AVX2 and FMA but no AVX-512 (e.g.
/// `-C target-cpu=native` on Zen 3 or on a client Intel core): 16 vector registers of 256
/// bits, so the lane types are `f32x8` / `f64x4` and fewer chunks fit the registers. The
/// forward kernels' shapes (`fwd_shape` in `simd/batch.rs`) and the inverse's chunk count
/// are tuned for it (on the Zen 3 host of 2026-12-04).
pub(crate) const AVX2_ONLY: bool = cfg!(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma",
    not(target_feature = "avx512f")
));

/// Whether the build targets x86-64 without AVX: the x86-64 baseline (SSE2), i.e. a default
/// build without `-C target-cpu`. `f32x8` / `f64x4` then run as two 128-bit halves in 16
/// registers of 128 bits, without FMA, so a chunk takes twice the registers it takes with AVX;
/// the forward kernels' shapes (`fwd_shape` in `simd/batch.rs`) and the inverse's chunks per
/// pass and their `Group` solve (`Flow::inv_drive`, `Flow::inv_group`) are tuned for it (on
/// the Zen 3 host of 2026-12-05).
pub(crate) const SSE_ONLY: bool = cfg!(all(target_arch = "x86_64", not(target_feature = "avx")));

/// The unsigned integer of a float's bit pattern.
trait FloatBits {
    type U;
}
impl FloatBits for f32 {
    type U = u32;
}
impl FloatBits for f64 {
    type U = u64;
}

// k offset: 2^p + bias, where `magic_bits` is the bit pattern of 2^p (p = significand bits).
impl_lanes!(
    f32x8,
    f32,
    8,
    wide::u32x8,
    23,
    8388608.0 + 127.0,
    0x3f35_04f3,
    0x4b00_0000
);
impl_lanes!(
    f32x16,
    f32,
    16,
    wide::u32x16,
    23,
    8388608.0 + 127.0,
    0x3f35_04f3,
    0x4b00_0000
);
impl_lanes!(
    f64x4,
    f64,
    4,
    wide::u64x4,
    52,
    4503599627370496.0 + 1023.0,
    0x3fe6_a09e_0000_0000,
    0x4330_0000_0000_0000
);
impl_lanes!(
    f64x8,
    f64,
    8,
    wide::u64x8,
    52,
    4503599627370496.0 + 1023.0,
    0x3fe6_a09e_0000_0000,
    0x4330_0000_0000_0000
);

#[allow(dead_code)]
fn _assert_real<T: Real>() {}
