//! Vector math for the SIMD lanes: `exp_m1`, `ln`, and `(tanh, sech²)`, written for throughput
//! (no table lookups, no data-dependent branches) and checked against `libm` over dense sweeps
//! (`tests/batch.rs`, `math_*` tests).
//!
//! | function | f32 max error | f64 max error | documented edge cases |
//! |---|---:|---:|---|
//! | [`exp_m1`] | ≤ 2 ulp | ≤ 2 ulp | `x < −87.3` (f32) / `−708` (f64) give −1 (exact to rounding) |
//! | [`ln`] | ≤ 1 ulp | ≤ 1 ulp | subnormals handled by pre-scaling; `ln 0 = −∞`, `ln x<0 = NaN` |
//! | [`tanh_sech2`]: `tanh` | ≤ 3 ulp | ≤ 4 ulp | — |
//! | [`tanh_sech2`]: `sech²` | ≤ 3 ulp | ≤ 4 ulp | flushed to 0 where `sech² x` < `4e^{−87}` (f32) / `4e^{−708}` (f64), i.e. below or near the smallest normal |
//! | [`tanh_det`]: `tanh` | ≤ 3 ulp | ≤ 4 ulp | — |
//! | [`tanh_det`]: `n/d² = tanh² + cp1·sech²` | ≤ 6 ulp | ≤ 6 ulp | `cp1 ∈ [0, 2^60]` (f32) / `[0, 2^500]` (f64) |
//! | [`tanh_det_near`]: `tanh` (x86-64 FMA builds; else [`tanh_det`]'s) | ≤ 4 ulp (exhaustive: 3.69) | as [`tanh_det`] | `\|tanh\|` may exceed 1 by one ulp |
//! | [`tanh_det_near`]: `cp1 − c·tanh²`, `c ∈ [−1, 1]` | relative `(2 + 16·\|c\|)·2⁻²⁴` | `n/d²` ≤ 8 ulp | — |
//!
//! The bounds are what `tests/batch.rs` asserts (with the measured maxima printed by
//! `cargo test --release math_ -- --nocapture`); the measured values are in the README.
//!
//! `exp` is computed as `2ⁿ·(1 + p(r))`, `x = n·ln 2 + r`, `|r| ≤ ½ ln 2`, with `p` a
//! polynomial of `eʳ − 1` (minimax, degree 6 in f32, 11 in f64, error below ¼ ulp), `2ⁿ` assembled in
//! the exponent field, and `eˣ − 1 = 2ⁿ·p + (2ⁿ − 1)` (one rounding, no cancellation beyond a
//! factor 2). `ln` is musl's `log`/`logf` reduction and polynomials, branch-free.
//! `tanh`/`sech²` use `e = expm1(−2|x|)` and `E = exp(−2|x|)` from one reduction:
//! `tanh|x| = −e/(2 + e)`, `sech² x = 4E/(2 + e)²`: no cancellation anywhere. The rounding of
//! `d = fl(2 + e)` would count twice through the square; its exact low part
//! `dlo = e − (d − 2)` (Sterbenz) repairs it: for f32 `sech² = 4E/(d·(d + 2·dlo))` (second
//! division, 2.9 ulp), for f64 the first-order factor `1 − 2·dlo/d` (4.0 ulp, one division).
//! The forward kernels do not need `sech²` itself: they take the determinant factor
//! `tanh² + cp1·sech²` as the quotient [`tanh_det`] (one quotient `tanh = e/d`, by
//! [`SimdLane::quot_small`]: a division, or on Intel cores with AVX-512 FP16 a reciprocal
//! estimate and one correction), so the accuracy of `tanh_sech2` costs them nothing; it
//! costs the f32 inverse and gradient kernels 2–5 %. For f32 layers with `−1 ≤ c ≤ 1`
//! (`c = wᵀû`) they take [`tanh_det_near`] instead: a rational `tanh` (no `exp`) and the factor
//! as `cp1 − c·tanh²`, accurate there because the subtraction cannot cancel more than the
//! factor `2 + 16·|c|` of its error bound.

use crate::real::{Lane, Real};
use crate::simd::lanes::SimdLane;
use num_traits::Float;

#[inline(always)]
fn k<L: Lane>(x: f64) -> L {
    L::splat(L::Scalar::from_f64(x))
}

#[inline(always)]
fn is_f32<L: Lane>() -> bool {
    L::Scalar::BITS == 32
}

/// Estrin evaluation of `c[0] + c[1]·r + … + c[n−1]·r^(n−1)` given `r2 = r²`: pairs
/// `c[2i] + c[2i+1]·r` (independent), combined with powers `r², r⁴, …`: the same number of
/// multiply-adds as Horner but a dependency chain of about `log₂ n` of them instead of `n − 1`
/// (the `exp` polynomial sits on the critical path of every layer). With `fold3`, a last level
/// of three terms is folded by Horner in that level's power, `t₀ + pw·(t₁ + pw·t₂)`: as deep
/// as the pair-and-fold and one multiplication fewer (no `r⁴` in f32, no `r⁸` in f64), with a
/// slightly different rounding ([`tanh_det`] only).
#[inline(always)]
fn estrin_with<L: Lane>(r: L, r2: L, c: &[f64], fold3: bool) -> L {
    // Up to 10 coefficients: level 1 pairs, then fold with r², r⁴, r⁸.
    let n = c.len();
    let mut t = [L::splat(L::Scalar::from_f64(0.0)); 5];
    let mut m = 0;
    let mut i = 0;
    while i < n {
        t[m] = if i + 1 < n {
            r.madd(k(c[i + 1]), k(c[i]))
        } else {
            k(c[i])
        };
        m += 1;
        i += 2;
    }
    let mut pw = r2;
    while m > 1 {
        if fold3 && m == 3 {
            return t[2].madd(pw, t[1]).madd(pw, t[0]);
        }
        let mut j = 0;
        let mut o = 0;
        while j < m {
            t[o] = if j + 1 < m {
                t[j + 1].madd(pw, t[j])
            } else {
                t[j]
            };
            o += 1;
            j += 2;
        }
        m = o;
        if m > 1 {
            pw = pw * pw;
        }
    }
    t[0]
}

/// Horner evaluation of `c[0] + r·(c[1] + r·(…))`.
#[inline(always)]
fn horner<L: Lane>(r: L, c: &[f64]) -> L {
    let n = c.len();
    let mut acc = k::<L>(c[n - 1]);
    let mut i = n - 1;
    while i > 0 {
        i -= 1;
        acc = acc.madd(r, k(c[i]));
    }
    acc
}

/// Minimax (Remez, degree 4) for `(eʳ − 1 − r)/r²` on `|r| ≤ ½ ln 2 + 0.001`: error 6.3e−8,
/// i.e. at most 7.6e−9 (0.13 ulp) in `eʳ`; one coefficient fewer than the Taylor polynomial.
const EXPM1_Q32: [f64; 5] = [
    0.500_000_002_740_444_4,
    0.166_665_759_654_351_6,
    0.041_666_371_867_081_54,
    0.008_363_348_016_882_811,
    0.001_394_141_600_782_471,
];
/// Minimax (Remez, degree 9) for `(eʳ − 1 − r)/r²` on `|r| ≤ ½ ln 2 + 0.001`: error 1.1e−16,
/// i.e. at most 1.3e−17 (0.11 ulp) in `eʳ`; two coefficients fewer than the Taylor polynomial.
const EXPM1_Q64: [f64; 10] = [
    0.500_000_000_000_000_1,
    0.166_666_666_666_666_75,
    0.041_666_666_666_623_166,
    0.008_333_333_333_321_956,
    0.001_388_888_891_769_231,
    0.000_198_412_698_873_567_28,
    0.000_024_801_520_554_765_93,
    2.755_724_147_323_674e-6,
    2.762_043_987_877_668e-7,
    2.511_037_435_216_202_5e-8,
];

/// Shared range reduction: for `x` in the normal range of `exp`, returns
/// `(n, a, p)` with `n` the integer-valued reduction count, `a = magic + n` (so that
/// `a.pow2_from_magic() = 2ⁿ`) and `p = eʳ − 1`, `eˣ = 2ⁿ·(1 + p)`.
#[inline(always)]
fn exp_reduce<L: SimdLane>(x: L) -> (L, L, L) {
    exp_reduce_with(x, true, false, &EXPM1_Q32, &EXPM1_Q64)
}

/// [`exp_reduce`] with the polynomial for `(eʳ − 1 − r)/r²` given (f32, f64 coefficients), and
/// `ln 2` split in two constants (`split`) or one (an error of up to `|n|·ulp(ln 2)/2` in `r`).
#[inline(always)]
fn exp_reduce_with<L: SimdLane>(
    x: L,
    split: bool,
    fold3: bool,
    q32: &[f64],
    q64: &[f64],
) -> (L, L, L) {
    let (magic, ln2_hi, ln2_lo) = if is_f32::<L>() {
        // 1.5·2^23 + 127; ln 2 split so that n·ln2_hi is exact for |n| < 2^12.
        (12582912.0 + 127.0, 0.693359375, -2.12194440e-4)
    } else {
        (
            6755399441055744.0 + 1023.0,
            6.93147180369123816490e-01,
            1.90821492927058770002e-10,
        )
    };
    let a = x.madd(k(core::f64::consts::LOG2_E), k(magic));
    let n = a - k(magic);
    let r = if split {
        n.madd(k(-ln2_lo), n.madd(k(-ln2_hi), x))
    } else {
        n.madd(k(-core::f64::consts::LN_2), x)
    };
    let r2 = r * r;
    let q = estrin_with(r, r2, if is_f32::<L>() { q32 } else { q64 }, fold3);
    let p = r2.madd(q, r);
    (n, a, p)
}

/// Lower limit of the reduction's normal range (`2ⁿ ≥` smallest normal).
#[inline(always)]
fn exp_lo<L: Lane>() -> L {
    if is_f32::<L>() { k(-87.0) } else { k(-708.0) }
}

/// `eˣ − 1`, lane-wise, ≤ 2 ulp (see the module table). `+∞ ↦ +∞`, `−∞ ↦ −1`, NaN ↦ NaN;
/// overflows to `+∞` above `ln(MAX)`.
#[inline(always)]
pub fn exp_m1<L: SimdLane>(x: L) -> L {
    let one = L::splat(L::Scalar::ONE);
    let hi: L = if is_f32::<L>() { k(88.75) } else { k(709.8) };
    let lo = exp_lo::<L>();
    let xc = x.vmin(hi).vmax(lo);
    let (n, a, p) = exp_reduce(xc);
    // Above the largest exponent the scale is 2^(n−1), and the result doubled afterwards.
    let nmax: L = if is_f32::<L>() { k(127.0) } else { k(1023.0) };
    let over = nmax.lt(n);
    let scale = a.pow2_from_magic();
    let half = (a - one).pow2_from_magic();
    let em1 = scale.madd(p, scale - one);
    let r = over.select(half.madd(p, half) * k(2.0), em1);
    let r = x.lt(lo).select(-one, r);
    x.nan_mask().select(x, r)
}

/// `(tanh x, sech² x)`, lane-wise (the override of [`Lane::tanh_sech2`] for the `wide` lanes).
/// `±∞ ↦ (±1, 0)`; NaN ↦ (NaN, NaN). Error bounds in the module table.
#[inline(always)]
pub fn tanh_sech2<L: SimdLane>(x: L) -> (L, L) {
    let one = L::splat(L::Scalar::ONE);
    let (e, ex4) = expm1_exp4_m2abs(x);
    let d = e + k(2.0);
    if is_f32::<L>() {
        // (2 + e)² = d² + 2d·dlo + dlo² with d + dlo = 2 + e exactly (dlo = e − (d − 2),
        // Sterbenz): 4E/(2 + e)² = 4E/(d·(d + 2·dlo)) up to (dlo/d)² < 2⁻⁴⁸.
        let dlo = e - (d - k(2.0));
        return ((-e / d).vcopysign(x), ex4 / (d * dlo.madd(k(2.0), d)));
    }
    let rinv = one / d;
    let t = (-e * rinv).vcopysign(x);
    let q = ex4 * (rinv * rinv);
    // f64: with d + dlo = 2 + e exactly (−dlo = (d − 2) − e, Sterbenz), q·(1 − 2·dlo/d)
    // compensates the rounding of d to first order (one division instead of two).
    let ndlo = (d - k(2.0)) - e;
    (t, (q + q).madd(ndlo * rinv, q))
}

/// `(tanh x, sech² x)` with one division (a reciprocal `1/(2 + e)` shared by both): the form
/// the f32 lane-wise inverse iterates with (its Newton step adds a second division; the
/// two-division [`tanh_sech2`] made the f32 inverse 2–3 % slower). Errors: f32 `tanh` ≤ 3 ulp,
/// `sech²` ≤ 6 ulp (the rounding of `2 + e` counted twice); for f64 it is [`tanh_sech2`].
#[inline(always)]
pub fn tanh_sech2_rcp<L: SimdLane>(x: L) -> (L, L) {
    if !is_f32::<L>() {
        return tanh_sech2(x);
    }
    let (e, ex4) = expm1_exp4_m2abs(x);
    let rinv = L::splat(L::Scalar::ONE) / (e + k(2.0));
    ((-e * rinv).vcopysign(x), ex4 * (rinv * rinv))
}

/// `(e, 4E)` with `e = expm1(−2|x|)` and `E = exp(−2|x|)`, both to ≤ 2 ulp (relative), from
/// one reduction: the pieces of `tanh x = ±(−e/(2 + e))` and `sech² x = 4E/(2 + e)²` for
/// callers that combine them with other quotients before dividing (the lane-wise inverse's
/// Newton and Halley steps: one division per iteration). `|x| = ∞ ↦ (−1, 0)`; NaN ↦ NaN.
#[inline(always)]
pub fn expm1_exp4_m2abs<L: SimdLane>(x: L) -> (L, L) {
    let m2x = m2abs(x);
    let (e, scale, p) = expm1_parts(m2x, false);
    // 4·2ⁿ by an integer add to the exponent field of 2ⁿ, for 4E without a multiply.
    let scale4 = scale.mul_pow2_bits(2);
    let ex4 = scale4.madd(p, scale4);
    let under = m2x.lt(exp_lo());
    (
        under.select(-L::splat(L::Scalar::ONE), e),
        under.select(L::splat(L::Scalar::ZERO), ex4),
    )
}

/// Degree 2 (least-squares fit of the error in `eʳ`, Lawson-weighted toward minimax) for
/// `(eʳ − 1 − r)/r²` on `|r| ≤ ½ ln 2 + 0.001`: error at most 5.6e−6 in `eʳ`, 2.6e−5 relative
/// in `eʳ − 1`. For [`expm1_exp4_m2abs_rough`] (f32).
const EXPM1_Q32_ROUGH: [f64; 3] = [
    0.499_989_390_532_369_07,
    0.167_543_898_890_281_76,
    0.041_922_638_573_893_37,
];
/// Degree 3, as [`EXPM1_Q32_ROUGH`]: error at most 9.7e−8 in `eʳ`, 6.9e−7 relative in
/// `eʳ − 1`. For [`expm1_exp4_m2abs_rough`] (f64).
const EXPM1_Q64_ROUGH: [f64; 4] = [
    0.499_991_371_204_684_4,
    0.166_664_548_171_274_82,
    0.041_899_617_298_672_66,
    0.008_374_879_399_228_54,
];

/// [`expm1_exp4_m2abs`] to a lower accuracy, for the first step of the lane-wise inverse,
/// whose result the later, accurate iterations correct and certify: `e` and `4E` to a relative
/// error of about `3e−5` (f32) / `1e−6` (f64) (the test in `tests/batch.rs` bounds them by
/// `1e−4` / `1e−6`). Cheaper: a degree 2 / 3 polynomial (against 4 / 9), one `ln 2`
/// constant in the reduction, and `−2|x|` clamped at the reduction's floor by one `max`
/// (beyond it `e = −1` all the same and `4E` stays at `4e^{−87}` / `4e^{−708}` instead of
/// going to 0). NaN ↦ NaN.
#[inline(always)]
pub fn expm1_exp4_m2abs_rough<L: SimdLane>(x: L) -> (L, L) {
    let (_, a, p) = exp_reduce_with(
        m2abs(x).max_keep_nan(exp_lo()),
        false,
        false,
        &EXPM1_Q32_ROUGH,
        &EXPM1_Q64_ROUGH,
    );
    let scale = a.pow2_from_magic();
    let scale4 = scale.mul_pow2_bits(2);
    (
        scale.madd(p, scale - L::splat(L::Scalar::ONE)),
        scale4.madd(p, scale4),
    )
}

/// `−2|x|` in two operations (`−|x| + −|x|` compiles to three).
#[inline(always)]
fn m2abs<L: SimdLane>(x: L) -> L {
    x.vabs() * k(-2.0)
}

/// `(eˣ − 1, 2ⁿ, p)` with `eˣ = 2ⁿ·(1 + p)`, for `x` in the reduction's normal range
/// (`x ≥ −87` / `−708`, `x ≤ 0` here).
#[inline(always)]
fn expm1_parts<L: SimdLane>(x: L, fold3: bool) -> (L, L, L) {
    let (_, a, p) = exp_reduce_with(x, true, fold3, &EXPM1_Q32, &EXPM1_Q64);
    let scale = a.pow2_from_magic();
    (scale.madd(p, scale - L::splat(L::Scalar::ONE)), scale, p)
}

/// `(tanh x, n, d)` with `n/d² = tanh² x + cp1·sech² x` (the override of [`Lane::tanh_det`]
/// for the `wide` lanes): with `e = expm1(−2|x|)` and `E = e^{−2|x|} = 2ⁿ·(1 + p)` from one
/// reduction, `d = −(2 + e) ∈ [−2, −1]` (the sign saves the negation in `tanh|x| = e/d`; only
/// `d²` matters to the determinant), `n = e² + cp1·4E` (two non-negative terms for `cp1 ≥ 0`),
/// the second formed as `c + c·p` from `c = 2ⁿ·(4·cp1)` (exact but for subnormals: one
/// rounding, one operation fewer than `4E` then `·cp1`). `−2|x|` is clamped to the
/// reduction's lower limit (`−87` / `−708`; one operation, where [`expm1_exp4_m2abs`] flushes
/// by a compare and two selects): beyond it `e = −1` all the same and `E` stays at `e^{−87}` /
/// `e^{−708}`, below the rounding of `n = 1 + cp1·4E` for `cp1 ≤ 2^60` / `2^500`.
/// The `exp` polynomial's last Estrin level folds its three terms by Horner in `r²` (f32) /
/// `r⁴` (f64), which saves the power `r⁴` / `r⁸`: one multiplication of the 22 per layer and
/// chunk of the f32 forward kernels (this changes the rounding of `e` and `E` against
/// [`exp_m1`] and [`tanh_sech2`], which keep the plain Estrin form; the training kernels use
/// those, so their trajectories do not depend on this choice). `tanh|x| = e/d` is
/// [`SimdLane::quot_small`] (≤ 0.57 ulp: a division, or for `f32x16` / `f64x8` on Intel
/// cores with AVX-512 FP16 a `vrcp14ps` / `vrcp14pd` estimate and one correction: there the
/// division was 22 % of the f32 D = 2 forward kernel's time and the estimate made it 0.92×
/// as long, f64 D = 2 0.955×); the factor's
/// relative error is a few ulps (`e` and `E` ≤ 2 ulp, the rounding of `d` counted twice
/// through `d²`), checked against the scalar reference by `tests/batch.rs`. Needs `cp1·4`
/// finite (the kernels take the direct form for layers with `1 + wᵀû` beyond `2^60` /
/// `2^500`). `x = ±∞ ↦ (±1, 1, −1)`; NaN ↦ NaN.
#[inline(always)]
pub fn tanh_det<L: SimdLane>(x: L, cp1: L) -> (L, L, L) {
    let (e, scale, p) = expm1_parts(m2abs(x).max_keep_nan(exp_lo()), true);
    let c = scale * (cp1 * k(4.0));
    let n = e.madd(e, c.madd(p, c));
    let d = k::<L>(-2.0) - e;
    (e.quot_small(d).vcopysign(x), n, d)
}

/// Rational approximation `2·tanh(x/2) ≈ x·P(x²)/Q(x²)` on `|x| ≤ 9.1` (f32), `P = 1 + p₁y +
/// p₂y² + p₃y³`, `Q = 1 + q₁y + q₂y² + q₃y³`, `y = x²`: fitted for relative error by
/// Lawson-weighted linearised least squares in f64 (`P(0) = Q(0) = 1` fixed, so that
/// `tanh x = x` for tiny `x`), coefficients rounded to f32 and the error re-measured: at most
/// `3.0e−8` relative (0.51·2⁻²⁴). All coefficients are positive (nothing cancels in `P` or `Q`),
/// `Q ∈ [1, 22]` on the range.
const TANH_P32: [f64; 3] = [
    0.031_487_349_420_785_904,
    0.000_159_760_689_712_129_53,
    8.570_130_205_498_572e-8,
];
/// See [`TANH_P32`].
const TANH_Q32: [f64; 3] = [
    0.114_820_636_808_872_22,
    0.001_394_838_560_372_591,
    2.732_379_243_752_802_7e-6,
];

/// `2·TANH_Q32`, the denominator's coefficients doubled (exact in binary).
const TANH_R32: [f64; 3] = [2.0 * TANH_Q32[0], 2.0 * TANH_Q32[1], 2.0 * TANH_Q32[2]];

/// Whether [`tanh_det_near`] takes its rational form for f32 (builds for x86-64 with FMA, where
/// its error bounds were measured exhaustively; elsewhere it is [`tanh_det`] and a division,
/// and the forward kernels do not call it).
pub const TANH_DET_NEAR_RATIONAL: bool = cfg!(all(target_arch = "x86_64", target_feature = "fma"));

/// `(tanh x, f)` with the determinant factor `f = tanh² x + cp1·sech² x` of a tanh planar layer
/// with `c = wᵀû ∈ [−1, 1]` and `cp1 = 1 + c`, in the form `f = cp1 − c·tanh² x` (the override
/// of [`Lane::tanh_det_near`] for the `wide` lanes; the forward kernels take it for such f32
/// layers, see `simd::batch::NEAR_MAX`).
///
/// f32 with [`TANH_DET_NEAR_RATIONAL`]: `x` clamped to `±9.1` (beyond it `tanh` rounds to
/// `±1`) and squared by [`SimdLane::clamp_sq`], `n₂ = x + (x·y)·(p₁ + …) ≈ 2·tanh(x/2)·Q`
/// from the rational `TANH_P32` / `TANH_Q32`, then the double angle `tanh x = 2t₂/(1 + t₂²)`
/// with `t₂ = (n₂/2)/Q`, as `2n₂·(r/(r² + n₂²))` with `r = 2Q` (the form `n₂·(Q/(Q² +
/// (n₂/2)²))` scaled by powers of two, one step shorter) by one [`SimdLane::quot_wide`]; `f`
/// by one multiplication and one FMA. With the reciprocal estimate that is 20 vector
/// operations (2 `min`/`max` or `vrangeps` and `min`, 6 MUL, 1 ADD, 10 FMA, 1 `vrcp14ps`)
/// against 25 for [`tanh_det`], and the kernels multiply one product per
/// layer instead of two (`n` and `d`); [`tanh_det`]'s `exp` is needed only where `sech²` must
/// be accurate relative to itself (large `c`). The double angle damps the rational's rounding
/// where `tanh` saturates (by `(1 − t₂²)/(1 + t₂²)`): a direct rational `x·P/Q` for `tanh`,
/// two operations cheaper, was 4.5 ulp off near `|x| = 8`; forming `Q/(Q² + …)` first and
/// multiplying by `n₂` last leaves one rounding fewer on the way to small results than
/// `(n₂·Q)/(Q² + …)` (4.06 ulp).
///
/// Errors (`tests/batch.rs`): `tanh` ≤ 3.69 ulp over every f32 input (exhaustive, bound asserted
/// 4), through `f32x16` with the reciprocal estimate and through the division; `|tanh|` may
/// exceed 1 by one ulp (`2⁻²³`) near saturation. `f` to a relative `(2 + 16·|c|)·2⁻²⁴` of
/// `1 + c·sech² x`, with `cp1` the rounded `1 + c`: for `c ≥ 0`, `f ≥ 1` and the error of
/// `c·tanh²` is at most `c·(2δ + 2⁻²⁴)` with `tanh`'s relative error `δ ≤ 3.7·2⁻²³`; for
/// `c < 0` the two terms `cp1` and `|c|·tanh²` are non-negative; the final rounding and that
/// of `cp1` count `2⁻²⁴` each. Otherwise (f64, other builds) it is [`tanh_det`] and `n/d²`
/// (≤ 8 ulp).
/// `x = ±∞ ↦ (±1 within an ulp, cp1 − c·t²)`; `±0 ↦ (±0, cp1)`; NaN ↦ NaN.
#[inline(always)]
pub fn tanh_det_near<L: SimdLane>(x: L, c: L, cp1: L) -> (L, L) {
    if !(is_f32::<L>() && TANH_DET_NEAR_RATIONAL) {
        let (t, n, d) = tanh_det(x, cp1);
        return (t, n / (d * d));
    }
    let t = tanh_rational(x);
    (t, (t * t).madd(-c, cp1))
}

/// The rational `tanh` of [`tanh_det_near`] alone (f32 only: its coefficients are fitted for
/// f32, and its bounds were measured on x86-64 FMA builds, see [`TANH_DET_NEAR_RATIONAL`]):
/// ≤ 3.69 ulp over every f32 input, `|t|` may exceed 1 by one ulp near saturation, NaN ↦ NaN.
/// 18 vector operations (the batched inverse's Newton iterations take it for such layers).
#[inline(always)]
pub(crate) fn tanh_rational<L: SimdLane>(x: L) -> L {
    let (xc, y) = x.clamp_sq(k(9.1));
    let n2 = (xc * y).madd(horner(y, &TANH_P32), xc);
    // r = 2Q (coefficients doubled: exact), so tanh x = n₂Q/(Q² + (n₂/2)²) = 2n₂·r/(r² + n₂²),
    // every step the form with Q scaled by a power of two, but without the halving of n₂ on
    // the dependency chain (one operation shorter). `vrcp14ps` need not scale exactly, so the
    // results moved by an ulp here and there: dense sweep 3.71 → 3.14 ulp, every f32 input
    // still 3.694 ulp.
    let r = y.madd(horner(y, &TANH_R32), k(2.0));
    (n2 + n2) * r.quot_wide(r.madd(r, n2 * n2))
}

/// Natural logarithm, lane-wise, ≤ 1 ulp for f32 and f64 (musl's algorithm, branch-free).
/// `ln(+0) = −∞`, `ln(x < 0) = NaN`, `ln(+∞) = +∞`, NaN ↦ NaN; subnormal inputs are exact
/// (pre-scaled by `2^24` / `2^54`).
#[inline(always)]
pub fn ln<L: SimdLane>(x: L) -> L {
    let zero = L::splat(L::Scalar::ZERO);
    let (min_pos, up, up_k): (L, L, L) = if is_f32::<L>() {
        (k(f32::MIN_POSITIVE as f64), k(16777216.0), k(24.0))
    } else {
        (k(f64::MIN_POSITIVE), k(18014398509481984.0), k(54.0))
    };
    let tiny = x.lt(min_pos);
    let xs = tiny.select(x * up, x);
    let (f, kk) = xs.ln_reduce();
    let kk = kk - tiny.select(up_k, zero);
    let s = f / (f + k(2.0));
    let z = s * s;
    let w = z * z;
    let (t1, t2, ln2_hi, ln2_lo) = if is_f32::<L>() {
        (
            w * horner(w, &[0.40000972152, 0.24279078841]),
            z * horner(w, &[0.66666662693, 0.28498786688]),
            6.9313812256e-01,
            9.0580006145e-06,
        )
    } else {
        (
            w * horner(
                w,
                &[
                    3.999999999940941908e-01,
                    2.222219843214978396e-01,
                    1.531383769920937332e-01,
                ],
            ),
            z * horner(
                w,
                &[
                    6.666666666666735130e-01,
                    2.857142874366239149e-01,
                    1.818357216161805012e-01,
                    1.479819860511658591e-01,
                ],
            ),
            6.93147180369123816490e-01,
            1.90821492927058770002e-10,
        )
    };
    let r = t2 + t1;
    let hfsq = k::<L>(0.5) * f * f;
    let res = s * (hfsq + r) + kk * k(ln2_lo) - hfsq + f + kk * k(ln2_hi);
    // Special values.
    let inf = L::splat(L::Scalar::infinity());
    let res = x.eq_mask(inf).select(inf, res);
    let res = x.eq_mask(zero).select(-inf, res);
    x.lt(zero)
        .or(x.nan_mask())
        .select(L::splat(L::Scalar::nan()), res)
}
