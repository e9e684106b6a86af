//! SIMD batched kernels vs the scalar reference, and the vector math vs libm.
//!
//! Tolerances (the bounds stated in `flowcore::simd::batch`): per point, `|simd − scalar| ≤
//! TOL·K·ε·(1 + |scalar|)·κ` with `TOL = 16`, `ε` the type's epsilon, and `κ` = 1 for the
//! forward kernels, the product of the layers' conditionings for the inverse kernels. Why:
//! both paths run the same formulas; the vector tanh/sech² and ln differ from libm by ≤ 4 ulp
//! (measured below), the SIMD path uses FMA, and each layer adds its rounding, which later
//! layers pass on with a gain of at most (1 + |wᵀû|·‖w‖‖û‖)-ish; the test flows keep that gain
//! near 1 per layer (|u|, |w| ≲ 1).

use flowcore::simd::math;
use flowcore::simd::{SimdLane, SimdReal};
use flowcore::{Constraint, Flow, Lane, Planar, Real, SeedableRng, Tanh, Xoshiro256PlusPlus};
use wide::{f32x8, f32x16, f64x4, f64x8};

fn ulp32(x: f32) -> f64 {
    let a = x.abs();
    if a == f32::INFINITY {
        return f64::INFINITY;
    }
    (a.next_up() - a).max(f32::from_bits(1)) as f64
}
fn ulp64(x: f64) -> f64 {
    let a = x.abs();
    if a == f64::INFINITY {
        return f64::INFINITY;
    }
    (a.next_up() - a).max(f64::from_bits(1))
}

fn err_ulp32(got: f32, want: f64) -> f64 {
    if got.is_nan() && want.is_nan() || got as f64 == want {
        return 0.0;
    }
    ((got as f64) - want).abs() / ulp32(want as f32)
}
fn err_ulp64(got: f64, want: f64) -> f64 {
    if got.is_nan() && want.is_nan() || got == want {
        return 0.0;
    }
    (got - want).abs() / ulp64(want)
}

/// Dense sweep of `f` over `[a, b]`, `n` points, in lanes of `L`.
fn sweep32<L: SimdLane<Scalar = f32>>(
    a: f64,
    b: f64,
    n: usize,
    mut f: impl FnMut(L) -> L,
    want: impl Fn(f32) -> f64,
) -> f64 {
    let mut worst: f64 = 0.0;
    let mut i = 0;
    while i < n {
        let x = L::from_fn(|j| (a + (b - a) * ((i + j) as f64 / n as f64)) as f32);
        let y = f(x);
        for j in 0..L::LANES {
            let e = err_ulp32(y.lane(j), want(x.lane(j)));
            worst = worst.max(e);
        }
        i += L::LANES;
    }
    worst
}
fn sweep64<L: SimdLane<Scalar = f64>>(
    a: f64,
    b: f64,
    n: usize,
    mut f: impl FnMut(L) -> L,
    want: impl Fn(f64) -> f64,
) -> f64 {
    let mut worst: f64 = 0.0;
    let mut i = 0;
    while i < n {
        let x = L::from_fn(|j| a + (b - a) * ((i + j) as f64 / n as f64));
        let y = f(x);
        for j in 0..L::LANES {
            worst = worst.max(err_ulp64(y.lane(j), want(x.lane(j))));
        }
        i += L::LANES;
    }
    worst
}

/// Special arguments of the tanh functions' tests: NaN, ±∞, ±0, ±50 (saturated), 1.
const SPECIAL: [f32; 8] = [
    f32::NAN,
    f32::INFINITY,
    -f32::INFINITY,
    0.0,
    -0.0,
    50.0,
    -50.0,
    1.0,
];

/// sech² reference in f64 for f32 arguments: 4e/(1+e)², e = exp(−2|x|) (f64 is 2^29 times finer).
fn sech2_ref(x: f64) -> f64 {
    let e = (-2.0 * x.abs()).exp();
    4.0 * e / ((1.0 + e) * (1.0 + e))
}

#[test]
fn math_exp_m1_f32() {
    let mut worst: f64 = 0.0;
    for (a, b) in [(-90.0, 89.0), (-1.0, 1.0), (-1e-3, 1e-3)] {
        worst = worst.max(sweep32::<f32x8>(a, b, 1 << 20, math::exp_m1, |x| {
            libm::expm1(x as f64)
        }));
        worst = worst.max(sweep32::<f32x16>(a, b, 1 << 18, math::exp_m1, |x| {
            libm::expm1(x as f64)
        }));
    }
    println!("exp_m1 f32: max {worst:.3} ulp vs libm (f64)");
    assert!(worst <= 2.0, "{worst}");
    let s = f32x8::from([
        f32::NAN,
        f32::INFINITY,
        -f32::INFINITY,
        0.0,
        -0.0,
        100.0,
        -200.0,
        88.7,
    ]);
    let r = math::exp_m1(s).to_array();
    assert!(
        r[0].is_nan()
            && r[1] == f32::INFINITY
            && r[2] == -1.0
            && r[3] == 0.0
            && r[5] == f32::INFINITY
    );
    assert_eq!(r[6], -1.0);
    assert!(r[7].is_finite());
}

#[test]
fn math_exp_m1_f64() {
    let mut worst: f64 = 0.0;
    for (a, b) in [(-750.0, 710.0), (-1.0, 1.0), (-1e-6, 1e-6)] {
        worst = worst.max(sweep64::<f64x4>(a, b, 1 << 20, math::exp_m1, libm::expm1));
        worst = worst.max(sweep64::<f64x8>(a, b, 1 << 18, math::exp_m1, libm::expm1));
    }
    println!("exp_m1 f64: max {worst:.3} ulp vs libm");
    assert!(worst <= 2.0, "{worst}");
}

#[test]
fn math_ln() {
    // Log-uniform over the whole positive range, subnormals included.
    let mut w32: f64 = 0.0;
    let n = 1 << 20;
    for i in (0..n).step_by(8) {
        let x = f32x8::from_fn(|j| {
            f32::from_bits(1 + (((i + j) as u64 * 0x7f7f_fffe) / n as u64) as u32)
        });
        let y = math::ln(x);
        for j in 0..8 {
            w32 = w32.max(err_ulp32(y.lane(j), libm::log(x.lane(j) as f64)));
        }
    }
    w32 = w32.max(sweep32::<f32x16>(0.5, 2.0, 1 << 18, math::ln, |x| {
        libm::log(x as f64)
    }));
    let mut w64: f64 = 0.0;
    for i in (0..n).step_by(4) {
        let x = f64x4::from_fn(|j| {
            f64::from_bits(1 + ((i + j) as u64) * (0x7fef_ffff_ffff_fffe / n as u64))
        });
        let y = math::ln(x);
        for j in 0..4 {
            w64 = w64.max(err_ulp64(y.lane(j), libm::log(x.lane(j))));
        }
    }
    w64 = w64.max(sweep64::<f64x8>(0.5, 2.0, 1 << 18, math::ln, libm::log));
    println!("ln: f32 max {w32:.3} ulp vs libm (f64), f64 max {w64:.3} ulp vs libm");
    assert!(w32 <= 1.0 && w64 <= 1.0, "{w32} {w64}");
    let s = math::ln(f64x4::from([0.0, -1.0, f64::INFINITY, f64::NAN])).to_array();
    assert!(s[0] == f64::NEG_INFINITY && s[1].is_nan() && s[2] == f64::INFINITY && s[3].is_nan());
}

/// `SimdLane::quot_small` (the forward kernels' `tanh = e/(2 + e)`) against the exact quotient
/// (formed in f64) for `|d| ∈ [1, 2]` and numerators of any magnitude up to `|d|`: ≤ 0.57 ulp
/// for results from 2^−118 on (the last rounding, 0.5, and the estimate's relative
/// `δ² < 2^−28`, at most 1/16 ulp), ≤ 1.07 ulp of the result's spacing below, normal or
/// subnormal (the residual `n − d·q₀` may be subnormal there: its rounding, ≤ 2^−150, passes
/// on through `|y| ≤ 1`; 0.586 ulp seen at 1.74e−38 by `quot_wide_error_bounds`), never above 1 in
/// magnitude where `|n| ≤ |d|`, 0 for ±0 (the estimate does not keep the sign of a zero
/// quotient; `tanh_det` takes it from `x`), ±1 for ±d, and NaN from a NaN in either operand.
/// f64 lanes divide: bit-for-bit `n / d`. Run for the lane types the kernels use, grouped
/// and not.
#[test]
fn quot_small_error_bounds() {
    use flowcore::simd::Group;
    fn check32<L: SimdLane<Scalar = f32>>() -> (f64, f64) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let (mut worst, mut worst_sub): (f64, f64) = (0.0, 0.0);
        let n_lanes = L::LANES;
        for round in 0..20_000 {
            let scale = [1.0, 1e-3, 1e-20, 1e-36, 1e-38, 1e-41][round % 6];
            let pairs: ([f32; 96], [f32; 96]) = (
                core::array::from_fn(|_| {
                    (crate::support::uniform(&mut rng, -1.0, 1.0) * scale) as f32
                }),
                core::array::from_fn(|_| {
                    let m = crate::support::uniform(&mut rng, 1.0, 2.0) as f32;
                    if crate::support::uniform(&mut rng, 0.0, 1.0) < 0.5 {
                        -m
                    } else {
                        m
                    }
                }),
            );
            let (ns, ds) = pairs;
            let mut i = 0;
            while i + n_lanes <= ns.len() {
                let n = L::from_fn(|j| ns[i + j]);
                let d = L::from_fn(|j| ds[i + j]);
                let q = n.quot_small(d);
                for j in 0..n_lanes {
                    let (nj, dj, qj) = (ns[i + j], ds[i + j], q.lane(j));
                    let want = nj as f64 / dj as f64;
                    if want.abs() < 2f64.powi(-118) {
                        worst_sub = worst_sub.max(err_ulp32(qj, want));
                    } else {
                        worst = worst.max(err_ulp32(qj, want));
                    }
                    assert!(qj.abs() <= 1.0, "{nj} / {dj} = {qj}");
                }
                i += n_lanes;
            }
        }
        // Exact cases and NaN.
        let d_vals = [1.0f32, -1.0, 1.5, -2.0, 1.999_999_9, -1.000_000_1];
        for &dv in &d_vals {
            let d = L::splat(dv);
            for (nv, want) in [(0.0, 0.0), (-0.0, 0.0), (dv, 1.0), (-dv, -1.0)] {
                let q = L::splat(nv).quot_small(d).lane(0);
                assert_eq!(q, want, "{nv} / {dv}");
            }
            assert!(L::splat(f32::NAN).quot_small(d).lane(0).is_nan());
            assert!(
                L::splat(0.5)
                    .quot_small(L::splat(f32::NAN))
                    .lane(0)
                    .is_nan()
            );
        }
        (worst, worst_sub)
    }
    let w = [
        check32::<f32x8>(),
        check32::<f32x16>(),
        check32::<Group<f32x16, 6>>(),
        check32::<Group<f32x8, 6>>(),
    ];
    println!(
        "quot_small f32 (results from 2^-118 on, below): {w:?} ulp \
         (f32x8, f32x16, f32x16 Group 6, f32x8 Group 6)"
    );
    assert!(w.iter().all(|&(a, b)| a <= 0.57 && b <= 1.07), "{w:?}");
    // f64: `f64x4` divides (bit-for-bit); `f64x8` takes the estimate where f32x16 does.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(6);
    for _ in 0..10_000 {
        let n = crate::support::uniform(&mut rng, -1.0, 1.0);
        let d = crate::support::uniform(&mut rng, 1.0, 2.0);
        assert_eq!(f64x4::splat(n).quot_small(f64x4::splat(d)).lane(0), n / d);
    }
    let scales = [1.0, 1e-3, 1e-100, 1e-300, 1e-306, 1e-310, 1e-318];
    let w64 = [
        check64::<f64x8>(|n, d| n.quot_small(d), 0.0, 0.0, &scales, 9),
        check64::<Group<f64x8, 3>>(|n, d| n.quot_small(d), 0.0, 0.0, &scales, 9),
    ];
    println!("quot_small f64 (results from 2^-990 on, below): {w64:?} ulp (f64x8, Group 3)");
    assert!(w64.iter().all(|&(a, b)| a <= 0.57 && b <= 1.07), "{w64:?}");
    for dv in [
        1.0f64,
        -1.0,
        1.5,
        -2.0,
        1.9999999999999998,
        -1.0000000000000002,
    ] {
        let d = f64x8::splat(dv);
        for (nv, want) in [(0.0, 0.0), (-0.0, 0.0), (dv, 1.0), (-dv, -1.0)] {
            assert_eq!(f64x8::splat(nv).quot_small(d).lane(0), want, "{nv} / {dv}");
        }
        assert!(f64x8::splat(f64::NAN).quot_small(d).lane(0).is_nan());
        assert!(
            f64x8::splat(0.5)
                .quot_small(f64x8::splat(f64::NAN))
                .lane(0)
                .is_nan()
        );
    }
}

/// Max errors of an f64 lane quotient `q(n, d)` over random `|d| ∈ [1, 2]·2^[dlo, dhi)` and
/// `|n| ≤ |d|·scale` for each scale: in ulps of the exact quotient for results from 2^−990
/// on, and of the result's spacing below (the residual `n − d·q₀` may be subnormal there).
/// The reference is the correctly rounded `n/d` plus the exact residual's `r/d` (scaled
/// by 2^200 for tiny numerators, so the residual is exact).
fn check64<L: SimdLane<Scalar = f64>>(
    q: impl Fn(L, L) -> L,
    dlo: f64,
    dhi: f64,
    scales: &[f64],
    seed: u64,
) -> (f64, f64) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let (mut worst, mut worst_tiny) = (0.0f64, 0.0f64);
    let k = 2f64.powi(200);
    for round in 0..6_000 {
        let scale = scales[round % scales.len()];
        let ns: [f64; 48] =
            core::array::from_fn(|_| crate::support::uniform(&mut rng, -1.0, 1.0) * scale);
        let ds: [f64; 48] = core::array::from_fn(|_| {
            let e = crate::support::uniform(&mut rng, dlo, dhi).floor();
            let m = crate::support::uniform(&mut rng, 1.0, 2.0) * e.exp2();
            if crate::support::uniform(&mut rng, 0.0, 1.0) < 0.5 {
                -m
            } else {
                m
            }
        });
        let mut i = 0;
        while i + L::LANES <= ns.len() {
            let got = q(L::from_fn(|j| ns[i + j]), L::from_fn(|j| ds[i + j]));
            for j in 0..L::LANES {
                let (n, d, g) = (ns[i + j] * k, ds[i + j], got.lane(j) * k);
                let qr = n / d;
                let r = (-d).mul_add(qr, n);
                let spacing = ulp64(qr / k) * k;
                let e = ((g - qr) - r / d).abs() / spacing;
                if (qr / k).abs() < 2f64.powi(-990) {
                    worst_tiny = worst_tiny.max(e);
                } else {
                    worst = worst.max(e);
                }
            }
            i += L::LANES;
        }
    }
    (worst, worst_tiny)
}

/// `SimdLane::quot_wide` (the lane-wise inverse's Newton quotient) over its documented range,
/// `1 ≤ |d| ≤ 2^120` with any `self`, against the f64 quotient (exact to 2^−53, far below the
/// bounds): ≤ 0.57 ulp for quotients in [2^−118, 2^127), ≤ 1.07 ulp of the result's spacing
/// below 2^−118 (normal or subnormal), non-finite from 2^128 on (a division: ±∞) and for
/// a non-finite `self`, zero for a zero `self`, NaN for a NaN `d`; f64 lanes divide exactly.
/// The estimate is what `f32x16` and its groups run in a build for an Intel core with
/// AVX-512 FP16 (`.ci/steps/simd.sh`); elsewhere this checks the division.
#[test]
fn quot_wide_error_bounds() {
    use flowcore::simd::Group;
    fn check32<L: SimdLane<Scalar = f32>>() -> (f64, f64, usize) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let (mut worst, mut worst_sub, mut over) = (0.0f64, 0.0f64, 0);
        let n_lanes = L::LANES;
        let sign = |r: &mut Xoshiro256PlusPlus| {
            if crate::support::uniform(r, 0.0, 1.0) < 0.5 {
                -1.0
            } else {
                1.0
            }
        };
        for _ in 0..4_000 {
            let ns: [f32; 96] = core::array::from_fn(|_| {
                let e = crate::support::uniform(&mut rng, -150.0, 128.0);
                (sign(&mut rng) * e.exp2() * crate::support::uniform(&mut rng, 1.0, 2.0)) as f32
            });
            let ds: [f32; 96] = core::array::from_fn(|_| {
                let e = crate::support::uniform(&mut rng, 0.0, 120.0).floor();
                (sign(&mut rng) * e.exp2() * crate::support::uniform(&mut rng, 1.0, 2.0)) as f32
            });
            let mut i = 0;
            while i + n_lanes <= ns.len() {
                let q = L::from_fn(|j| ns[i + j]).quot_wide(L::from_fn(|j| ds[i + j]));
                for j in 0..n_lanes {
                    let (nj, dj, qj) = (ns[i + j], ds[i + j], q.lane(j));
                    assert!((1.0..=2f32.powi(121)).contains(&dj.abs()), "{dj}");
                    let want = nj as f64 / dj as f64;
                    if want.abs() >= 2f64.powi(128) {
                        assert!(!qj.is_finite(), "{nj} / {dj} = {qj}");
                        over += 1;
                    } else if want.abs() < 2f64.powi(127) {
                        let e = err_ulp32(qj, want);
                        if want.abs() < 2f64.powi(-118) {
                            worst_sub = worst_sub.max(e);
                        } else {
                            worst = worst.max(e);
                        }
                    }
                }
                i += n_lanes;
            }
        }
        for dv in [1.0f32, -1.0, 3.0, -1e30, 1.3e36] {
            let d = L::splat(dv);
            for nv in [0.0f32, -0.0] {
                assert_eq!(L::splat(nv).quot_wide(d).lane(0), 0.0, "{nv} / {dv}");
            }
            assert_eq!(L::splat(dv).quot_wide(d).lane(0), 1.0, "{dv} / {dv}");
            for nv in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                assert!(
                    !L::splat(nv).quot_wide(d).lane(0).is_finite(),
                    "{nv} / {dv}"
                );
            }
            assert!(L::splat(0.5).quot_wide(L::splat(f32::NAN)).lane(0).is_nan());
        }
        (worst, worst_sub, over)
    }
    let w = [
        check32::<f32x8>(),
        check32::<f32x16>(),
        check32::<Group<f32x16, 4>>(),
        check32::<Group<f32x8, 4>>(),
    ];
    println!(
        "quot_wide f32 (results from 2^-118 on, below, overflows seen): {w:?} \
         (f32x8, f32x16, f32x16 Group 4, f32x8 Group 4)"
    );
    assert!(
        w.iter().all(|&(a, b, o)| a <= 0.57 && b <= 1.07 && o > 100),
        "{w:?}"
    );
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(8);
    for _ in 0..10_000 {
        let n = crate::support::uniform(&mut rng, -1.0, 1.0) * 1e200;
        let d = crate::support::uniform(&mut rng, 1.0, 2.0) * 1e30;
        assert_eq!(f64x4::splat(n).quot_wide(f64x4::splat(d)).lane(0), n / d);
    }
    let scales = [1e200, 1.0, 1e-100, 1e-280, 1e-300, 1e-306, 1e-310, 1e-318];
    let w64 = [
        check64::<f64x8>(|n, d| n.quot_wide(d), 0.0, 120.0, &scales, 10),
        check64::<Group<f64x8, 4>>(|n, d| n.quot_wide(d), 0.0, 120.0, &scales, 10),
    ];
    println!("quot_wide f64 (results from 2^-990 on, below): {w64:?} ulp (f64x8, Group 4)");
    assert!(w64.iter().all(|&(a, b)| a <= 0.57 && b <= 1.07), "{w64:?}");
}

/// The split determinant factor `n/d² = tanh² x + cp1·sech² x` of `math::tanh_det`, against
/// f64 (for f32) and double-double (for f64) references, over dense sweeps and `1 + wᵀû`
/// from 1e−30 to the kernels' cap (2^60 / 2^500). `n/d²` is formed in double-double from the
/// returned `n` and `d`, so this measures the error of the pair (the kernels divide once per
/// group of layers, adding ≤ 1.5 ulp there). Stated bound: 6 ulp (f32), 6 ulp (f64).
#[test]
fn math_tanh_det() {
    use crate::support::dd::Dd;
    let cps = [
        1e-30, 1e-6, 0.01, 0.5, 1.0, 1.5, 2.0, 100.0, 1e6, 1e12, 1.15e18,
    ];
    let mut w32: f64 = 0.0;
    let mut wt32: f64 = 0.0;
    for &cp in &cps {
        let cp32 = cp as f32;
        for (a, b) in [(-50.0, 50.0), (-3.0, 3.0), (-1e-3, 1e-3)] {
            for lanes16 in [false, true] {
                let n = if lanes16 { 1 << 16 } else { 1 << 18 };
                let mut i = 0;
                while i < n {
                    let xs: [f32; 16] = core::array::from_fn(|j| {
                        (a + (b - a) * ((i + j) as f64 / n as f64)) as f32
                    });
                    let (t, nn, dd): ([f32; 16], [f32; 16], [f32; 16]) = if lanes16 {
                        let (t, nn, dd) = math::tanh_det(f32x16::from(xs), f32x16::splat(cp32));
                        (t.to_array(), nn.to_array(), dd.to_array())
                    } else {
                        let lo: [f32; 8] = core::array::from_fn(|j| xs[j]);
                        let hi: [f32; 8] = core::array::from_fn(|j| xs[8 + j]);
                        let (t0, n0, d0) = math::tanh_det(f32x8::from(lo), f32x8::splat(cp32));
                        let (t1, n1, d1) = math::tanh_det(f32x8::from(hi), f32x8::splat(cp32));
                        let cat = |p: f32x8, q: f32x8| -> [f32; 16] {
                            let (p, q) = (p.to_array(), q.to_array());
                            core::array::from_fn(|j| if j < 8 { p[j] } else { q[j - 8] })
                        };
                        (cat(t0, t1), cat(n0, n1), cat(d0, d1))
                    };
                    for j in 0..16 {
                        let x = xs[j] as f64;
                        let th = libm::tanh(x);
                        let want = th * th + cp32 as f64 * sech2_ref(x);
                        let got = nn[j] as f64 / (dd[j] as f64 * dd[j] as f64);
                        w32 = w32.max((got - want).abs() / ulp32(want as f32));
                        wt32 = wt32.max(err_ulp32(t[j], th));
                        assert!(t[j].abs() <= 1.0, "tanh({x}) = {}", t[j]);
                    }
                    i += 16;
                }
            }
        }
    }
    let mut w64: f64 = 0.0;
    for &cp in &cps {
        let cps = [cp, cp * 1e100, 3.27e150].map(|c: f64| c.min(3.27e150));
        for cp in cps {
            for (a, b) in [(-19.0, 19.0), (-1.0, 1.0), (-1e-6, 1e-6), (19.0, 360.0)] {
                let n = 1 << 16;
                let mut i = 0;
                while i < n {
                    let x = f64x4::from_fn(|j| a + (b - a) * ((i + j) as f64 / n as f64));
                    let (_, nn, dd) = math::tanh_det(x, f64x4::splat(cp));
                    for j in 0..4 {
                        let xj = x.lane(j);
                        let want = if xj.abs() < 19.0 {
                            let (t, s2) = Dd::new(xj).tanh_sech2();
                            t.mul(t).add(Dd::new(cp).mul(s2)).to_f64()
                        } else {
                            // tanh² = 1 − 4E + O(E²), sech² = 4E(1 + O(E)), E = e^{−2|x|} < 1e−16.
                            let e4 = 4.0 * libm::exp(-2.0 * xj.abs());
                            1.0 + (cp - 1.0) * e4
                        };
                        let d = Dd::new(dd.lane(j));
                        let got = Dd::new(nn.lane(j)).div(d.mul(d)).to_f64();
                        w64 = w64.max(err_ulp64(got, want));
                    }
                    i += 4;
                }
            }
        }
    }
    println!("tanh_det factor: f32 {w32:.3} ulp (tanh {wt32:.3}), f64 {w64:.3} ulp");
    assert!(
        w32 <= 6.0 && wt32 <= 3.0 && w64 <= 6.0,
        "{w32} {wt32} {w64}"
    );
    // Special values: ±∞ give (±1, n/d² = 1), NaN propagates, 0 gives (0, cp1).
    let (t, nn, dd) = math::tanh_det(f32x8::from(SPECIAL), f32x8::splat(3.0));
    let (t, nn, dd) = (t.to_array(), nn.to_array(), dd.to_array());
    assert!(t[0].is_nan() && nn[0].is_nan());
    assert_eq!(
        (t[1], t[2], nn[1] / (dd[1] * dd[1]), nn[2] / (dd[2] * dd[2])),
        (1.0, -1.0, 1.0, 1.0)
    );
    assert_eq!((t[3], nn[3] / (dd[3] * dd[3])), (0.0, 3.0));
    assert!(t[4] == 0.0 && t[4].is_sign_negative());
    // The same through f32x16 (with AVX-512: the reciprocal estimate of `quot_small`).
    let sp16: [f32; 16] = core::array::from_fn(|i| SPECIAL[i % 8]);
    let (t, nn, dd) = math::tanh_det(f32x16::from(sp16), f32x16::splat(3.0));
    let (t, nn, dd) = (t.to_array(), nn.to_array(), dd.to_array());
    for base in [0, 8] {
        assert!(t[base].is_nan() && nn[base].is_nan());
        let f = |i: usize| nn[base + i] / (dd[base + i] * dd[base + i]);
        assert_eq!(
            (t[base + 1], t[base + 2], f(1), f(2)),
            (1.0, -1.0, 1.0, 1.0)
        );
        assert_eq!((t[base + 3], f(3)), (0.0, 3.0));
        assert!(t[base + 4] == 0.0 && t[base + 4].is_sign_negative());
    }
}

/// `SimdLane::load_tile` / `store_tile` (a `LANES × LANES` transpose: 512-bit shuffles for
/// `f32x16` on AVX-512 builds, sub-tiles of the half-width type otherwise) against the
/// element-wise definition, bit for bit, at both column offsets of a `2·LANES`-wide point, for
/// every lane type; `store_tile` writes only its tile.
#[test]
fn tiles_transpose() {
    fn run<T: Real, V: SimdLane<Scalar = T>, const D: usize>() -> usize {
        let w = V::LANES;
        assert_eq!(D, 2 * w);
        let pts: Vec<[T; D]> = (0..w)
            .map(|j| core::array::from_fn(|i| T::from_f64((j * 1000 + i) as f64 + 0.25)))
            .collect();
        let mut checked = 0;
        for col in [0, w] {
            let mut out = vec![V::splat(T::ZERO); w];
            V::load_tile(&pts, col, &mut out);
            for (i, o) in out.iter().enumerate() {
                for j in 0..w {
                    assert_eq!(
                        o.lane(j).as_f64(),
                        pts[j][col + i].as_f64(),
                        "load {col} {i} {j}"
                    );
                    checked += 1;
                }
            }
            let mut back = vec![[T::from_f64(-1.0); D]; w];
            V::store_tile(&out, &mut back, col);
            for j in 0..w {
                for i in 0..D {
                    let want = if (col..col + w).contains(&i) {
                        pts[j][i]
                    } else {
                        T::from_f64(-1.0)
                    };
                    assert_eq!(back[j][i].as_f64(), want.as_f64(), "store {col} {j} {i}");
                }
            }
        }
        checked
    }
    let n = run::<f32, f32x8, 16>()
        + run::<f32, f32x16, 32>()
        + run::<f64, f64x4, 8>()
        + run::<f64, f64x8, 16>();
    assert_eq!(n, 2 * (64 + 256 + 16 + 64));
}

/// `SimdLane::clamp_sq` (the `vrangeps` form on AVX-512 DQ builds, `min`/`max` elsewhere)
/// against `c = sign(x)·min(|x|, bound)` and `c·c` computed per element, bit for bit, on
/// special values, values next to the bound and a dense sweep; in NaN lanes the square is NaN
/// (and `c` NaN or `±bound`), and they leave their neighbours alone; every lane type.
#[test]
fn clamp_sq() {
    fn run<T: Real, V: SimdLane<Scalar = T>>(bound: T, xs: &[T]) -> usize {
        let b = bound.as_f64();
        let mut checked = 0;
        for chunk in xs.chunks(V::LANES) {
            let v = V::from_fn(|j| chunk.get(j).copied().unwrap_or(T::ZERO));
            let (c, y) = v.clamp_sq(V::splat(bound));
            for (j, &x) in chunk.iter().enumerate() {
                let (cj, yj) = (c.lane(j), y.lane(j));
                let (g, gy, x) = (cj.as_f64(), yj.as_f64(), x.as_f64());
                if x.is_nan() {
                    assert!(gy.is_nan(), "NaN lane {j}: square {gy:?}");
                    assert!(g.is_nan() || g.abs() == b, "NaN lane {j}: {g:?}");
                } else {
                    let want = x.abs().min(b).copysign(x);
                    assert_eq!(g.to_bits(), want.to_bits(), "x = {x:?}: {g:?}");
                    assert_eq!(
                        yj.as_f64().to_bits(),
                        (cj * cj).as_f64().to_bits(),
                        "x = {x:?}"
                    );
                }
                checked += 1;
            }
        }
        checked
    }
    fn values<T: Real>(bound: T) -> Vec<T> {
        let mut xs = vec![
            T::nan(),
            T::infinity(),
            T::neg_infinity(),
            T::ZERO,
            -T::ZERO,
            bound,
            -bound,
            T::max_value(),
            T::min_positive_value(),
            -T::min_positive_value(),
        ];
        for i in -2000..=2000 {
            let x = T::from_f64(f64::from(i) * 0.01);
            xs.extend([x, -x, bound * (T::ONE + T::from_f64(f64::from(i) * 1e-7))]);
            if i % 7 == 0 {
                xs.push(T::nan());
            }
        }
        xs
    }
    let (b32, b64) = (9.1f32, 9.1f64);
    let mut n = 0;
    n += run::<f32, f32x8>(b32, &values(b32));
    n += run::<f32, f32x16>(b32, &values(b32));
    n += run::<f64, f64x4>(b64, &values(b64));
    n += run::<f64, f64x8>(b64, &values(b64));
    assert!(n > 4 * 12_000, "{n}");
}

/// `math::tanh_det_near` of 16 values through lane type `V`, `V::LANES` at a time.
fn near16<V: SimdLane<Scalar = f32>>(xs: &[f32; 16], c: f32, cp1: f32) -> ([f32; 16], [f32; 16]) {
    let (mut t, mut f) = ([0.0; 16], [0.0; 16]);
    for o in (0..16).step_by(V::LANES) {
        let (tv, fv) = math::tanh_det_near(V::from_fn(|j| xs[o + j]), V::splat(c), V::splat(cp1));
        for j in 0..V::LANES {
            (t[o + j], f[o + j]) = (tv.lane(j), fv.lane(j));
        }
    }
    (t, f)
}

/// `tanh_det_near` (f32, the forward kernels' form for layers with `−1 ≤ wᵀû ≤ 1`): `tanh` to
/// ≤ 4 ulp against libm (the exhaustive test below: 3.69 ulp), `|tanh| ≤ 1 + 2⁻²³`, and the
/// factor `f = tanh² + cp1·sech²` to a relative error of at most `(2 + 16·|c|)·2⁻²⁴` against an
/// f64 reference (8 ulp where the build takes `tanh_det` and a division instead),
/// over dense sweeps of `x` and `c ∈ [−1, 1]`, through `f32x8` and `f32x16` (the reciprocal
/// estimate of `quot_wide` where the build has it); special values.
#[test]
fn math_tanh_det_near() {
    let eps = f64::from(f32::EPSILON) / 2.0;
    let cs = [
        -1.0f32, -0.999_999, -0.75, -0.5, -1e-3, 0.0, 1e-6, 0.25, 0.5, 0.9, 1.0,
    ];
    let mut wt: f64 = 0.0;
    let mut wf: f64 = 0.0;
    let mut wx = 0.0;
    for &c in &cs {
        let cp1 = 1.0 + c;
        for (a, b) in [
            (-50.0, 50.0),
            (-10.0, 10.0),
            (-3.0, 3.0),
            (-1e-3, 1e-3),
            (-1e-30, 1e-30),
        ] {
            for lanes16 in [false, true] {
                let n = if lanes16 { 1 << 16 } else { 1 << 17 };
                let mut i = 0;
                while i < n {
                    let xs: [f32; 16] = core::array::from_fn(|j| {
                        (a + (b - a) * ((i + j) as f64 / n as f64)) as f32
                    });
                    let (t, f) = if lanes16 {
                        near16::<f32x16>(&xs, c, cp1)
                    } else {
                        near16::<f32x8>(&xs, c, cp1)
                    };
                    for j in 0..16 {
                        let x = xs[j] as f64;
                        let th = libm::tanh(x);
                        let et = err_ulp32(t[j], th);
                        if et > wt {
                            wx = x;
                        }
                        wt = wt.max(et);
                        assert!(t[j].abs() <= 1.0 + f32::EPSILON, "tanh({x}) = {}", t[j]);
                        let want = th * th + cp1 as f64 * sech2_ref(x);
                        // Beyond the normal range, an absolute floor of the smallest subnormal.
                        let d =
                            ((f[j] as f64 - want).abs() - f64::from(f32::from_bits(1))).max(0.0);
                        let rel = if d == 0.0 { 0.0 } else { d / want };
                        let allow = if math::TANH_DET_NEAR_RATIONAL {
                            (2.0 + 16.0 * f64::from(c.abs())) * eps * (1.0 + 1e-9)
                        } else {
                            8.0 * ulp32(want as f32) / want
                        };
                        assert!(
                            rel <= allow,
                            "x = {x}, c = {c}: f = {} vs {want}: {rel:e} > {allow:e}",
                            f[j]
                        );
                        wf = wf.max(rel / eps);
                    }
                    i += 16;
                }
            }
        }
    }
    println!("tanh_det_near: tanh {wt:.3} ulp (worst at {wx}), factor {wf:.3} × 2^-24 (relative)");
    assert!(wt <= 4.0, "{wt}");
    // Special values: ±∞ give (±1, 1) to within an ulp, NaN propagates, ±0 give (0, cp1).
    let sp16: [f32; 16] = core::array::from_fn(|i| SPECIAL[i % 8]);
    for (t, f) in [
        near16::<f32x16>(&sp16, 0.5, 1.5),
        near16::<f32x8>(&sp16, 0.5, 1.5),
    ] {
        for base in [0, 8] {
            assert!(t[base].is_nan() && f[base].is_nan());
            assert!(
                (t[base + 1] - 1.0).abs() <= f32::EPSILON / 2.0
                    && (f[base + 1] - 1.0).abs() <= f32::EPSILON
            );
            assert!(
                (t[base + 2] + 1.0).abs() <= f32::EPSILON / 2.0
                    && (f[base + 2] - 1.0).abs() <= f32::EPSILON
            );
            assert_eq!((t[base + 3], f[base + 3]), (0.0, 1.5));
            assert_eq!((t[base + 4], f[base + 4]), (0.0, 1.5));
        }
    }
}

/// `tanh_det_near`'s `tanh` over every non-negative f32 up to the clamp (`9.1`; the function
/// is odd bit for bit), against libm in f64: the maximum error in ulps, printed and asserted
/// ≤ 4 (about a minute in release: `cargo test --release --test tests
/// math_tanh_det_near_exhaustive -- --ignored --nocapture`).
#[test]
#[ignore]
fn math_tanh_det_near_exhaustive() {
    fn run<V: SimdLane<Scalar = f32>>() -> (f64, f32, f32) {
        let w = V::LANES as u32;
        let top = 9.1f32.to_bits();
        let (mut worst, mut wx, mut over) = (0.0f64, 0.0f32, 0.0f32);
        let mut b = 0u32;
        while b <= top {
            let x = V::from_fn(|j| f32::from_bits((b + j as u32).min(top)));
            let (t, _) = math::tanh_det_near(x, V::splat(0.0), V::splat(1.0));
            for j in 0..V::LANES {
                let e = err_ulp32(t.lane(j), libm::tanh(f64::from(x.lane(j))));
                if e > worst {
                    worst = e;
                    wx = x.lane(j);
                }
                over = over.max(t.lane(j) - 1.0);
            }
            b += w;
        }
        (worst, wx, over)
    }
    for (name, (worst, wx, over)) in [("f32x16", run::<f32x16>()), ("f32x8", run::<f32x8>())] {
        println!(
            "tanh_det_near exhaustive, {name}: {worst:.3} ulp at {wx:e}, max tanh − 1 = {over:e}"
        );
        assert!(
            worst <= 4.0 && over <= f32::EPSILON,
            "{name}: {worst} at {wx}, {over:e} above 1"
        );
    }
}

/// The rough `(expm1(−2|x|), 4·exp(−2|x|))` of the inverse's first step: relative error
/// ≤ 1e−4 (f32) / 1e−6 (f64) against libm in f64 over the reduction's range (`|x| ≤ 43.5` /
/// `354`), `e = −1` exactly and `4E` at most `4e^{−87}` / `4e^{−708}` beyond it, NaN ↦ NaN.
#[test]
fn math_expm1_exp4_rough() {
    let (mut r32, mut r64): (f64, f64) = (0.0, 0.0);
    let rel = |got: f64, want: f64| ((got - want) / want).abs();
    for (a, b) in [(-43.5, 43.5), (-1.0, 1.0), (-1e-4, 1e-4)] {
        let n = 1 << 18;
        let mut i = 0;
        while i < n {
            let x = f32x16::from_fn(|j| (a + (b - a) * ((i + j) as f64 / n as f64)) as f32);
            let (e, e4) = math::expm1_exp4_m2abs_rough(x);
            for j in 0..16 {
                let m2 = -2.0 * (x.lane(j) as f64).abs();
                if m2 != 0.0 {
                    r32 = r32.max(rel(e.lane(j) as f64, libm::expm1(m2)));
                }
                r32 = r32.max(rel(e4.lane(j) as f64, 4.0 * libm::exp(m2)));
            }
            let x = f64x8::from_fn(|j| a * 8.0 + (b - a) * 8.0 * ((i + j) as f64 / n as f64));
            let (e, e4) = math::expm1_exp4_m2abs_rough(x);
            for j in 0..8 {
                let m2 = -2.0 * x.lane(j).abs();
                if m2 != 0.0 {
                    r64 = r64.max(rel(e.lane(j), libm::expm1(m2)));
                }
                r64 = r64.max(rel(e4.lane(j), 4.0 * libm::exp(m2)));
            }
            i += 16;
        }
    }
    println!("expm1_exp4_m2abs_rough: relative error f32 {r32:.3e}, f64 {r64:.3e}");
    assert!(r32 <= 1e-4 && r64 <= 1e-6, "{r32} {r64}");
    let (e, e4) = math::expm1_exp4_m2abs_rough(f32x8::from([
        f32::NAN,
        f32::INFINITY,
        -f32::INFINITY,
        0.0,
        50.0,
        -1e30,
        1.0,
        -1.0,
    ]));
    let (e, e4) = (e.to_array(), e4.to_array());
    assert!(e[0].is_nan() && e4[0].is_nan());
    for j in [1, 2, 4, 5] {
        assert!(
            e[j] == -1.0 && e4[j] > 0.0 && e4[j] <= 4.0 * 1.7e-38,
            "{} {}",
            e[j],
            e4[j]
        );
    }
    assert_eq!((e[3], e4[3]), (0.0, 4.0));
    assert_eq!((e[6], e4[6]), (e[7], e4[7]));
    let (e, e4) = math::expm1_exp4_m2abs_rough(f64x4::from([f64::NAN, f64::INFINITY, 400.0, 0.0]));
    let (e, e4) = (e.to_array(), e4.to_array());
    assert!(e[0].is_nan() && e4[0].is_nan());
    for j in [1, 2] {
        assert!(
            e[j] == -1.0 && e4[j] > 0.0 && e4[j] <= 4.0 * 3.4e-308,
            "{} {}",
            e[j],
            e4[j]
        );
    }
    assert_eq!((e[3], e4[3]), (0.0, 4.0));
}

#[test]
fn math_tanh_sech2() {
    let mut wt32: f64 = 0.0;
    let mut ws32: f64 = 0.0;
    // `tanh_sech2_rcp`: the one-division form of the f32 inverse.
    let (mut rt, mut rs): (f64, f64) = (0.0, 0.0);
    // sech² ≥ 4e^{−87} (f32) outside the documented flush-to-zero tail: |x| ≤ 42.8.
    for (a, b) in [(-42.8, 42.8), (-1.0, 1.0), (-1e-3, 1e-3)] {
        let tanh_ref = |x: f32| libm::tanh(x as f64);
        let sech2 = |x: f32| sech2_ref(x as f64);
        rt = rt.max(sweep32::<f32x16>(
            a,
            b,
            1 << 18,
            |x| math::tanh_sech2_rcp(x).0,
            tanh_ref,
        ));
        rs = rs.max(sweep32::<f32x16>(
            a,
            b,
            1 << 18,
            |x| math::tanh_sech2_rcp(x).1,
            sech2,
        ));
        wt32 = wt32.max(sweep32::<f32x8>(
            a,
            b,
            1 << 20,
            |x| math::tanh_sech2(x).0,
            |x| libm::tanh(x as f64),
        ));
        ws32 = ws32.max(sweep32::<f32x8>(
            a,
            b,
            1 << 20,
            |x| math::tanh_sech2(x).1,
            |x| sech2_ref(x as f64),
        ));
        ws32 = ws32.max(sweep32::<f32x16>(
            a,
            b,
            1 << 18,
            |x| math::tanh_sech2(x).1,
            |x| sech2_ref(x as f64),
        ));
    }
    let mut wt64: f64 = 0.0;
    let mut ws64: f64 = 0.0;
    for (a, b) in [(-353.0, 353.0), (-2.0, 2.0), (-1e-6, 1e-6)] {
        wt64 = wt64.max(sweep64::<f64x4>(
            a,
            b,
            1 << 20,
            |x| math::tanh_sech2(x).0,
            libm::tanh,
        ));
        // f64 sech² against double-double (the scalar `Lane::tanh_sech2` forms `1 + expm1(−2|x|)`,
        // which loses relative accuracy once e^{−2|x|} < ε: it is no reference in the tails).
        // Tails |x| ≥ 20: sech² x = 4e^{−2|x|}·(1 + O(1e−17)), libm's exp (≤ 1 ulp) is the reference.
        ws64 = ws64.max(sweep64::<f64x4>(
            a.clamp(-30.0, -20.0),
            b.clamp(20.0, 30.0),
            1 << 16,
            |x| math::tanh_sech2(x).1,
            |x| {
                if x.abs() >= 20.0 {
                    4.0 * libm::exp(-2.0 * x.abs())
                } else {
                    crate::support::dd::Dd::new(x).tanh_sech2().1.to_f64()
                }
            },
        ));
        ws64 = ws64.max(sweep64::<f64x4>(
            a,
            b,
            1 << 18,
            |x| math::tanh_sech2(x).1,
            |x| {
                if x.abs() >= 20.0 {
                    4.0 * libm::exp(-2.0 * x.abs())
                } else {
                    crate::support::dd::Dd::new(x).tanh_sech2().1.to_f64()
                }
            },
        ));
    }
    println!(
        "tanh: f32 {wt32:.3} ulp, f64 {wt64:.3} ulp vs libm; sech²: f32 {ws32:.3} ulp vs f64, f64 {ws64:.3} ulp vs double-double"
    );
    assert!(wt32 <= 3.0 && wt64 <= 4.0, "{wt32} {wt64}");
    assert!(ws32 <= 3.0 && ws64 <= 4.0, "{ws32} {ws64}");
    // The one-division form of the f32 inverse: tanh ≤ 3 ulp, sech² ≤ 6 ulp.
    println!("tanh_sech2_rcp f32: tanh {rt:.3} ulp, sech² {rs:.3} ulp");
    assert!(rt <= 3.0 && rs <= 6.0, "{rt} {rs}");
    let (t, s) = math::tanh_sech2(f32x8::from(SPECIAL));
    let (t, s) = (t.to_array(), s.to_array());
    assert!(t[0].is_nan() && s[0].is_nan());
    assert_eq!(
        (t[1], s[1], t[2], s[2], t[3], s[3]),
        (1.0, 0.0, -1.0, 0.0, 0.0, 1.0)
    );
    assert!(t[4] == 0.0 && t[4].is_sign_negative());
    assert_eq!((t[5], t[6]), (1.0, -1.0));
}

// ---------------------------------------------------------------------------------------------
// Batched kernels vs the scalar reference.

const K: usize = 8;
const TOL: f64 = 16.0;

fn normal(r: &mut Xoshiro256PlusPlus) -> f64 {
    flowcore::base::normal_pair(r).0
}

/// A random flow; `hard` adds a near-singular layer (wᵀû ≈ −1) and large-|b| layers.
fn flow<T: Real, const D: usize>(seed: u64, hard: bool) -> Flow<T, D, K> {
    let mut r = Xoshiro256PlusPlus::seed_from_u64(seed);
    let layers = core::array::from_fn(|k| {
        let mut u: [T; D] =
            core::array::from_fn(|_| T::from_f64(0.7 * normal(&mut r) / (D as f64).sqrt()));
        let w: [T; D] = core::array::from_fn(|_| T::from_f64(normal(&mut r) / (D as f64).sqrt()));
        let mut b = T::from_f64(0.5 * normal(&mut r));
        if hard && k == 3 {
            // wᵀu ≪ 0 → wᵀû = m(wᵀu) close to −1 (conditioning ~ 1e2).
            let ww: f64 = w.iter().map(|v| (*v).to_f64_lossy().powi(2)).sum();
            for i in 0..D {
                u[i] = T::from_f64(-3.5 * w[i].to_f64_lossy() / ww);
            }
        }
        if hard && k == 5 {
            b = T::from_f64(25.0);
        }
        Planar::with(u, w, b, Constraint::Smooth, Tanh).unwrap()
    });
    Flow::new(layers)
}

trait Lossy {
    fn to_f64_lossy(self) -> f64;
}
impl<T: Real> Lossy for T {
    fn to_f64_lossy(self) -> f64 {
        num_traits::ToPrimitive::to_f64(&self).unwrap()
    }
}

fn points<T: Real, const D: usize>(seed: u64, n: usize, adversarial: bool) -> Vec<[T; D]> {
    let mut r = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n)
        .map(|p| {
            core::array::from_fn(|i| {
                let v = normal(&mut r) * 1.5;
                if adversarial {
                    match (p * 7 + i) % 23 {
                        0 => return T::nan(),
                        5 => return T::from_f64(60.0 * v.signum()),
                        9 => return T::infinity(),
                        13 => return T::from_f64(1e4 * v),
                        17 => return T::from_f64(1e-30 * v),
                        _ => {}
                    }
                }
                T::from_f64(v)
            })
        })
        .collect()
}

fn close<T: Real>(got: T, want: T, tol: f64) -> bool {
    let (g, w) = (got.to_f64_lossy(), want.to_f64_lossy());
    if w.is_nan() {
        return g.is_nan();
    }
    if w.is_infinite() {
        return g == w;
    }
    (g - w).abs() <= tol * (1.0 + w.abs())
}

fn check_flow<T: Real + SimdReal, const D: usize>(seed: u64, hard: bool, adversarial: bool) {
    check_given_flow(&flow::<T, D>(seed, hard), seed, adversarial);
}

/// [`check_flow`]'s comparisons for a given flow.
fn check_given_flow<T: Real + SimdReal, const D: usize>(
    f: &Flow<T, D, K>,
    seed: u64,
    adversarial: bool,
) {
    let eps = T::EPS.to_f64_lossy();
    let tol_f = TOL * K as f64 * eps;
    let cond: f64 = f
        .layers()
        .iter()
        .map(|l| l.conditioning().to_f64_lossy())
        .product();
    let tol_i = tol_f * cond;
    let lanes = <T::Simd as Lane>::LANES;
    for n in [
        0,
        1,
        lanes - 1,
        lanes,
        lanes + 1,
        4 * lanes + 3,
        37,
        131,
        16 * lanes + 5,
    ] {
        let z = points::<T, D>(seed ^ (n as u64) << 8, n, adversarial);
        let mut x = vec![[T::ZERO; D]; n];
        let mut x2 = vec![[T::ZERO; D]; n];
        let mut ld = vec![T::ZERO; n];
        let mut lp = vec![T::ZERO; n];
        f.forward_batch(&z, &mut x2).unwrap();
        f.forward_log_det_batch(&z, &mut x, &mut ld).unwrap();
        f.log_prob_normalizing_batch(&z, &mut lp).unwrap();
        for p in 0..n {
            let (xr, ldr) = f.forward_and_log_det(&z[p]);
            for i in 0..D {
                assert!(
                    close(x[p][i], xr[i], tol_f),
                    "fwd D={D} n={n} p={p} i={i}: {:?} vs {:?}",
                    x[p][i],
                    xr[i]
                );
                assert!(close(x2[p][i], xr[i], tol_f), "fwd-only D={D} p={p}");
            }
            assert!(
                close(ld[p], ldr, tol_f),
                "ld D={D} n={n} p={p}: {:?} vs {:?} (z {:?})",
                ld[p],
                ldr,
                z[p]
            );
            let lpr = f.log_prob_normalizing(&z[p]);
            assert!(
                close(lp[p], lpr, tol_f),
                "lp_norm D={D} p={p}: {lp:?} vs {lpr:?}"
            );
        }
        // Inverse of the forward images (and of the raw points, which hits the adversarial ones).
        for src in [&x, &z] {
            let mut zi = vec![[T::ZERO; D]; n];
            let mut ldi = vec![T::ZERO; n];
            let mut lq = vec![T::ZERO; n];
            let failed = f.inverse_batch(src, &mut zi, &mut ldi).unwrap();
            let failed2 = f.log_prob_batch(src, &mut lq).unwrap();
            assert_eq!(failed, failed2);
            let mut want_failed = 0;
            for p in 0..n {
                match f.inverse_and_log_det(&src[p]) {
                    Ok((zr, ldr)) => {
                        for i in 0..D {
                            assert!(
                                close(zi[p][i], zr[i], tol_i),
                                "inv D={D} n={n} p={p} i={i}: {:?} vs {:?}",
                                zi[p][i],
                                zr[i]
                            );
                        }
                        assert!(
                            close(ldi[p], ldr, tol_i),
                            "inv ld D={D} p={p}: {:?} vs {:?}",
                            ldi[p],
                            ldr
                        );
                        let lqr = f.log_prob(&src[p]).unwrap();
                        assert!(
                            close(lq[p], lqr, tol_i),
                            "log_prob D={D} p={p}: {:?} vs {:?}",
                            lq[p],
                            lqr
                        );
                    }
                    Err(_) => {
                        want_failed += 1;
                        assert!(
                            zi[p].iter().all(|v| v.is_nan()) && ldi[p].is_nan() && lq[p].is_nan()
                        );
                    }
                }
            }
            assert_eq!(failed, want_failed);
        }
    }
}

macro_rules! batch_tests {
    ($($name:ident: $t:ty, $d:expr;)*) => {$(
        #[test]
        fn $name() {
            for seed in 0..3 {
                check_flow::<$t, $d>(seed, false, false);
                check_flow::<$t, $d>(seed + 100, true, false);
                check_flow::<$t, $d>(seed + 200, true, true);
            }
        }
    )*};
}

batch_tests! {
    batch_vs_scalar_f32_d1: f32, 1;
    batch_vs_scalar_f32_d2: f32, 2;
    batch_vs_scalar_f32_d3: f32, 3;
    batch_vs_scalar_f32_d4: f32, 4;
    batch_vs_scalar_f32_d5: f32, 5;
    batch_vs_scalar_f32_d7: f32, 7;
    batch_vs_scalar_f32_d8: f32, 8;
    batch_vs_scalar_f32_d16: f32, 16;
    batch_vs_scalar_f32_d24: f32, 24;
    batch_vs_scalar_f64_d1: f64, 1;
    batch_vs_scalar_f64_d2: f64, 2;
    batch_vs_scalar_f64_d3: f64, 3;
    batch_vs_scalar_f64_d4: f64, 4;
    batch_vs_scalar_f64_d5: f64, 5;
    batch_vs_scalar_f64_d7: f64, 7;
    batch_vs_scalar_f64_d8: f64, 8;
    batch_vs_scalar_f64_d16: f64, 16;
    batch_vs_scalar_f64_d24: f64, 24;
}

#[test]
fn nan_lanes_do_not_poison_neighbours() {
    let f = flow::<f32, 2>(7, true);
    let clean = points::<f32, 2>(1, 24, false);
    let mut dirty = clean.clone();
    for p in [0, 3, 8, 15, 23] {
        dirty[p][p % 2] = f32::NAN;
    }
    dirty[5][0] = f32::INFINITY;
    let run = |pts: &[[f32; 2]]| {
        let mut x = vec![[0.0f32; 2]; pts.len()];
        let mut ld = vec![0.0f32; pts.len()];
        let mut zi = vec![[0.0f32; 2]; pts.len()];
        let mut ldi = vec![0.0f32; pts.len()];
        f.forward_log_det_batch(pts, &mut x, &mut ld).unwrap();
        let failed = f.inverse_batch(pts, &mut zi, &mut ldi).unwrap();
        (x, ld, zi, ldi, failed)
    };
    let (xc, ldc, zc, ldic, fc) = run(&clean);
    let (xd, ldd, zd, ldid, fd) = run(&dirty);
    assert_eq!(fc, 0);
    assert_eq!(fd, 6);
    for p in 0..24 {
        if [0, 3, 5, 8, 15, 23].contains(&p) {
            assert!(zd[p][0].is_nan() && ldid[p].is_nan());
            if p != 5 {
                assert!(ldd[p].is_nan());
            }
        } else {
            // Bit-identical: lanes are independent.
            assert_eq!(xc[p].map(f32::to_bits), xd[p].map(f32::to_bits));
            assert_eq!(ldc[p].to_bits(), ldd[p].to_bits());
            assert_eq!(zc[p].map(f32::to_bits), zd[p].map(f32::to_bits));
            assert_eq!(ldic[p].to_bits(), ldid[p].to_bits());
        }
    }
}

#[test]
fn length_mismatch_is_an_error() {
    let f = flow::<f64, 2>(1, false);
    let z = [[0.0; 2]; 3];
    let mut x = [[0.0; 2]; 2];
    let mut ld = [0.0; 3];
    assert!(f.forward_batch(&z, &mut x).is_err());
    assert!(f.forward_log_det_batch(&z, &mut x, &mut ld).is_err());
    assert!(f.inverse_batch(&z, &mut x, &mut ld).is_err());
    assert!(f.log_prob_batch(&z, &mut ld[..1]).is_err());
}

#[test]
fn soa_and_lanes_forms_match_the_batch() {
    let f = flow::<f32, 3>(3, false);
    let pts = points::<f32, 3>(9, 48, false);
    let mut x = vec![[0.0f32; 3]; 48];
    let mut ld = vec![0.0f32; 48];
    f.forward_log_det_batch(&pts, &mut x, &mut ld).unwrap();
    // f32x16 chunks (structure of arrays).
    let mut soa: Vec<[f32x16; 3]> = (0..3)
        .map(|c| core::array::from_fn(|i| f32x16::from_fn(|j| pts[16 * c + j][i])))
        .collect();
    let mut lds = vec![f32x16::splat(0.0); 3];
    f.forward_log_det_soa(&mut soa, &mut lds).unwrap();
    let tol = TOL * K as f64 * f32::EPSILON as f64;
    for c in 0..3 {
        for j in 0..16 {
            let p = 16 * c + j;
            assert!(close(lds[c].lane(j), ld[p], tol));
            for i in 0..3 {
                assert!(close(soa[c][i].lane(j), x[p][i], tol));
            }
        }
    }
    // One chunk: lanes forward then lanes inverse round-trips.
    let mut ch: [f64x4; 3] = core::array::from_fn(|i| f64x4::from_fn(|j| pts[j][i] as f64));
    let orig = ch;
    let fd = flow::<f64, 3>(3, false);
    let l1 = fd.forward_log_det_lanes(&mut ch);
    let (l2, bad) = fd.inverse_log_det_lanes(&mut ch);
    assert!(!bad.any());
    for j in 0..4 {
        assert!((l1.lane(j) + l2.lane(j)).abs() < 1e-13);
        for i in 0..3 {
            assert!((ch[i].lane(j) - orig[i].lane(j)).abs() < 1e-13);
        }
    }
}

/// Standard normal CDF.
fn phi(x: f64) -> f64 {
    0.5 * libm::erfc(-x / core::f64::consts::SQRT_2)
}

/// Moments and Kolmogorov–Smirnov of n draws against N(0, 1). With n = 2^17, the sample mean
/// has s.d. 0.0028, the variance 0.0039, the KS statistic's 0.1 % critical value is
/// 1.95/√n = 0.0054: a correct sampler fails with probability ≲ 1e−3 per check (seeded, so
/// the outcome is fixed).
fn check_normal(mut v: Vec<f64>) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let skew = v.iter().map(|x| (x - mean).powi(3)).sum::<f64>() / n / var.powf(1.5);
    let kurt = v.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n / (var * var);
    assert!(mean.abs() < 4.0 / n.sqrt(), "mean {mean}");
    assert!((var - 1.0).abs() < 4.0 * (2.0 / n).sqrt(), "var {var}");
    assert!(skew.abs() < 4.0 * (6.0 / n).sqrt(), "skew {skew}");
    assert!((kurt - 3.0).abs() < 4.0 * (24.0 / n).sqrt(), "kurt {kurt}");
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut d: f64 = 0.0;
    for (i, x) in v.iter().enumerate() {
        let c = phi(*x);
        d = d
            .max((c - i as f64 / n).abs())
            .max(((i + 1) as f64 / n - c).abs());
    }
    assert!(d < 1.95 / n.sqrt(), "KS {d}");
}

#[test]
fn sampler_lanes_are_standard_normal() {
    let mut r = Xoshiro256PlusPlus::seed_from_u64(5);
    let mut v32 = Vec::new();
    let mut v64 = Vec::new();
    while v32.len() < 1 << 17 {
        let (a, b) = flowcore::simd::batch::normal_lanes::<f32x8, _>(&mut r);
        v32.extend(
            a.to_array()
                .iter()
                .chain(b.to_array().iter())
                .map(|x| *x as f64),
        );
        let (a, b) = flowcore::simd::batch::normal_lanes::<f64x4, _>(&mut r);
        v64.extend(a.to_array().iter().chain(b.to_array().iter()));
    }
    check_normal(v32);
    check_normal(v64);
}

#[test]
fn sample_batch_matches_density_and_base() {
    let f = flow::<f64, 3>(11, false);
    let n = 1 << 15;
    let mut r = Xoshiro256PlusPlus::seed_from_u64(8);
    let mut x = vec![[0.0f64; 3]; n + 3];
    let mut lq = vec![0.0f64; n + 3];
    f.sample_batch(&mut r, &mut x, &mut lq).unwrap();
    let mut zs = Vec::new();
    for p in 0..n + 3 {
        // log q from the batch equals the density through the exact scalar inverse.
        let want = f.log_prob(&x[p]).unwrap();
        assert!(
            (lq[p] - want).abs() < 1e-10 * (1.0 + want.abs()),
            "{} {}",
            lq[p],
            want
        );
        zs.extend(f.inverse(&x[p]).unwrap());
    }
    check_normal(zs);
    let f32f = flow::<f32, 2>(12, false);
    let mut x = vec![[0.0f32; 2]; n];
    let mut lq = vec![0.0f32; n];
    f32f.sample_batch(&mut r, &mut x, &mut lq).unwrap();
    let zs: Vec<f64> = x
        .iter()
        .flat_map(|p| f32f.inverse(p).unwrap().map(|v| v as f64))
        .collect();
    check_normal(zs);
}

#[cfg(feature = "parallel")]
#[test]
fn parallel_kernels_match_single_core_bit_for_bit() {
    let f = flow::<f32, 3>(21, true);
    let n = 20_000 + 5;
    let z = points::<f32, 3>(4, n, true);
    let (mut x1, mut x2) = (vec![[0.0f32; 3]; n], vec![[0.0f32; 3]; n]);
    let (mut l1, mut l2) = (vec![0.0f32; n], vec![0.0f32; n]);
    f.forward_log_det_batch(&z, &mut x1, &mut l1).unwrap();
    f.par_forward_log_det_batch(&z, &mut x2, &mut l2).unwrap();
    assert!(
        x1.iter()
            .zip(&x2)
            .all(|(a, b)| a.map(f32::to_bits) == b.map(f32::to_bits))
    );
    assert!(l1.iter().zip(&l2).all(|(a, b)| a.to_bits() == b.to_bits()));
    let fa = f.inverse_batch(&x1, &mut x2, &mut l2).unwrap();
    let mut x3 = vec![[0.0f32; 3]; n];
    let mut l3 = vec![0.0f32; n];
    let fb = f.par_inverse_batch(&x1, &mut x3, &mut l3).unwrap();
    assert_eq!(fa, fb);
    assert!(fa > 0);
    assert!(
        x2.iter()
            .zip(&x3)
            .all(|(a, b)| a.map(f32::to_bits) == b.map(f32::to_bits))
    );
    assert!(l2.iter().zip(&l3).all(|(a, b)| a.to_bits() == b.to_bits()));
    let (mut o1, mut o2) = (vec![0.0f32; n], vec![0.0f32; n]);
    assert_eq!(
        f.log_prob_batch(&x1, &mut o1).unwrap(),
        f.par_log_prob_batch(&x1, &mut o2).unwrap()
    );
    assert!(o1.iter().zip(&o2).all(|(a, b)| a.to_bits() == b.to_bits()));
    f.log_prob_normalizing_batch(&z, &mut o1).unwrap();
    f.par_log_prob_normalizing_batch(&z, &mut o2).unwrap();
    assert!(o1.iter().zip(&o2).all(|(a, b)| a.to_bits() == b.to_bits()));
    f.forward_batch(&z, &mut x1).unwrap();
    f.par_forward_batch(&z, &mut x2).unwrap();
    assert!(
        x1.iter()
            .zip(&x2)
            .all(|(a, b)| a.map(f32::to_bits) == b.map(f32::to_bits))
    );
}

/// Points near the float range whose terms `wᵢzᵢ` cancel in the scalar's serial sum
/// `b + w₀z₀ + w₁z₁ + …` (alternating signs, partial sums ≤ 0.6·MAX) but not in a reordered
/// sum such as four partial sums (`wᵢzᵢ + wᵢ₊₄zᵢ₊₄` has equal signs: 1.2·MAX overflows), which
/// the D ≥ 8 kernels used before 2026-11-25 (a fuzz finding: `[NaN, ∞, …]` where the scalar
/// gave values near −1.3e38). The kernels now sum in the scalar's order; this stays as the
/// regression test of any reordering. The batched results must be finite and agree with the
/// scalar reference. Tolerance `TOL·K·ε·(1 + |x|)` as in `check_flow`: only FMA and the vector
/// math differ; `|û| ≤ 0.1/D` keeps `û·h(s)` small against `x` (|s| ≤ Σ|wᵢzᵢ| ≤ D·‖z‖∞).
fn check_near_max<T: Real + SimdReal, const D: usize, A>(act: A)
where
    A: flowcore::simd::LaneSolve<T>,
{
    const KN: usize = 2;
    let big = T::max_value().to_f64_lossy() * 0.6;
    let mut r = Xoshiro256PlusPlus::seed_from_u64(D as u64);
    let layers: [Planar<T, D, A>; KN] = core::array::from_fn(|k| {
        let w = core::array::from_fn(|i| T::from_f64(if i % 2 == 0 { 1.0 } else { -1.0 }));
        let u =
            core::array::from_fn(|i| T::from_f64((0.1 / D as f64) * ((i + k) as f64 * 0.7).cos()));
        Planar::with(u, w, T::ZERO, Constraint::Smooth, act).unwrap()
    });
    let f = Flow::new(layers);
    let n = 37;
    // Within 1 % of 0.6·MAX; every fourth point ordinary (neighbouring lanes stay on the fast path).
    let z: Vec<[T; D]> = (0..n)
        .map(|p| {
            core::array::from_fn(|_| {
                let v = normal(&mut r);
                T::from_f64(if p % 4 == 3 {
                    v
                } else {
                    -big * (1.0 + 0.01 * v)
                })
            })
        })
        .collect();
    let tol = TOL * KN as f64 * T::EPS.to_f64_lossy();
    let mut x = vec![[T::ZERO; D]; n];
    let mut x2 = vec![[T::ZERO; D]; n];
    let mut ld = vec![T::ZERO; n];
    f.forward_batch(&z, &mut x2).unwrap();
    f.forward_log_det_batch(&z, &mut x, &mut ld).unwrap();
    let mut zi = vec![[T::ZERO; D]; n];
    let mut ldi = vec![T::ZERO; n];
    let failed = f.inverse_batch(&x, &mut zi, &mut ldi).unwrap();
    let mut want_failed = 0;
    for p in 0..n {
        let (xr, ldr) = f.forward_and_log_det(&z[p]);
        let xm = xr.iter().fold(0.0f64, |m, v| m.max(v.to_f64_lossy().abs()));
        assert!(
            xm.is_finite() && xm > 0.0,
            "scalar reference overflowed: {xr:?}"
        );
        for i in 0..D {
            for (got, what) in [(x[p][i], "fwd+ld"), (x2[p][i], "fwd")] {
                let e = (got.to_f64_lossy() - xr[i].to_f64_lossy()).abs();
                assert!(
                    e <= tol * (1.0 + xm),
                    "{what} D={D} p={p} i={i}: {got:?} vs {:?}",
                    xr[i]
                );
            }
        }
        assert!(
            close(ld[p], ldr, tol),
            "ld D={D} p={p}: {:?} vs {ldr:?}",
            ld[p]
        );
        match f.inverse_and_log_det(&x[p]) {
            Ok((zr, ldr)) => {
                let cond: f64 = f
                    .layers()
                    .iter()
                    .map(|l| l.conditioning().to_f64_lossy())
                    .product();
                for i in 0..D {
                    let e = (zi[p][i].to_f64_lossy() - zr[i].to_f64_lossy()).abs();
                    assert!(
                        e <= tol * cond * (1.0 + xm),
                        "inv D={D} p={p} i={i}: {:?} vs {:?}",
                        zi[p][i],
                        zr[i]
                    );
                }
                assert!(close(ldi[p], ldr, tol * cond), "inv ld D={D} p={p}");
            }
            Err(_) => want_failed += 1,
        }
    }
    assert_eq!(failed, want_failed);
}

/// `LaneSolve::solve_lanes_det` (the batched inverse's solver) against an f64 root, for every
/// lane type and for `wᵀû` inside `(−1, 1]` (f32 FMA builds: Newton's method on the rational
/// `tanh`, `simd::math::tanh_rational`) and outside it (the `exp` form), over `y` from `1e−30`
/// to `1e20`. Bounds, with `F′ = 1 + c·sech² α` at the f64 root `α₀` and `t₀ = tanh α₀`
/// (`ε` the unit roundoff): `α` within `2ε·(|α₀| + (|α₀| + 8|c·t₀|)/F′)` (the last rounding;
/// the residual's, `|y| ≤ |α| + |c|`, and `tanh`'s ≤ 4 ulp, divided by the slope), `h` within `6ε|t₀| + sech²α₀·Δα`, the factor within `(8 + 16·min(|c|, 1))·ε` of
/// `(1 + c) − c·t₀²` relative, plus `2|c·t₀|·sech²α₀·Δα` (`1 + c` the rounded one the layer
/// holds). Returns the largest ratio of error to bound seen.
fn solve_det_lanes<T: Real, L: SimdLane<Scalar = T>>() -> f64 {
    use flowcore::Activation;
    use flowcore::simd::LaneSolve;
    let eps = T::EPS.to_f64_lossy() / 2.0;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    let mut worst = 0.0f64;
    let cs = [
        -0.999_999, -0.999, -0.5, -1e-3, 1e-7, 0.3, 0.999, 1.0, 1.001, 3.0, 40.0,
    ];
    for &c in &cs {
        let (c, cp1) = (T::from_f64(c), T::from_f64(1.0 + c));
        let (c64, cp1_64) = (c.to_f64_lossy(), cp1.to_f64_lossy());
        for &scale in &[1e-30, 1e-3, 0.3, 1.0, 3.0, 10.0, 1e4, 1e20] {
            for _ in 0..64 {
                let ys: [[T; 64]; 2] = core::array::from_fn(|_| {
                    core::array::from_fn(|_| T::from_f64(scale * normal(&mut rng)))
                });
                let y: [L; 2] = core::array::from_fn(|m| L::from_fn(|j| ys[m][j % ys[m].len()]));
                let r = Tanh.solve_lanes_det(y, c, cp1, true);
                for m in 0..2 {
                    for j in 0..L::LANES {
                        let y64 = ys[m][j].to_f64_lossy();
                        let (a0, _) = <Tanh as Activation<f64>>::solve(&Tanh, y64, c64, 1.0 + c64)
                            .expect("f64 root");
                        let t0 = a0.tanh();
                        let s0 = 1.0 / (a0.cosh() * a0.cosh());
                        let fp = 1.0 + c64 * s0;
                        let ta = 2.0 * eps * (a0.abs() + (a0.abs() + 8.0 * (c64 * t0).abs()) / fp)
                            + 1e-300;
                        let th = 6.0 * eps * t0.abs() + s0 * ta + 1e-300;
                        // (1 + c) − c·t₀² without cancellation: two non-negative terms for
                        // c < 0; for c > 0 the rounding of the layer's 1 + c, then
                        // 1 + c·sech² α₀.
                        let d0 = if c64 < 0.0 {
                            cp1_64 - c64 * t0 * t0
                        } else {
                            (cp1_64 - (1.0 + c64)) + (1.0 + c64 * s0)
                        };
                        let td = (8.0 + 16.0 * c64.abs().min(1.0)) * eps * d0
                            + 2.0 * (c64 * t0).abs() * s0 * ta;
                        let [a, h, d] = r[m].map(|v| v.lane(j).to_f64_lossy());
                        for (got, want, tol, what) in
                            [(a, a0, ta, "α"), (h, t0, th, "h"), (d, d0, td, "det")]
                        {
                            let e = (got - want).abs() / tol;
                            assert!(
                                e <= 1.0,
                                "{what}: c={c64} y={y64}: {got} vs {want} (bound {tol:e})"
                            );
                            worst = worst.max(e);
                        }
                    }
                }
            }
        }
    }
    worst
}

#[test]
fn solve_lanes_det_agrees_with_f64() {
    use flowcore::simd::Group;
    let w = [
        solve_det_lanes::<f32, f32x8>(),
        solve_det_lanes::<f32, f32x16>(),
        solve_det_lanes::<f32, Group<f32x16, 3>>(),
        solve_det_lanes::<f64, f64x4>(),
        solve_det_lanes::<f64, f64x8>(),
    ];
    println!("solve_lanes_det: largest error / bound {w:.3?}");
}

/// A fuzz-replay finding in the rational path of `solve_lanes_det`: f32, `wᵀû = −1` after
/// rounding with `1 + wᵀû = 2.4676388e−18`, `y = 3961.0571`. The start `y/(1 + c)` times the
/// scaling `1/(1 + c)` overflowed, the step went to −∞ and then passed the test `|δ| ≤ 2ε|α|`
/// as ∞ ≤ ∞, so the lane was returned as NaN while the scalar solver finds the root. Now
/// such a lane goes to the bracketed fallback: the root matches the scalar one.
#[test]
fn solve_lanes_det_overflowing_start_falls_back() {
    use flowcore::Activation;
    use flowcore::simd::LaneSolve;
    fn check<L: SimdLane<Scalar = f32>>() {
        let (c, cp1) = (-1.0f32, 2.467_638_8e-18f32);
        for y in [3961.0571f32, -3961.0571, 1e30, 5.0, 1e-3] {
            let (want, _) = Activation::<f32>::solve(&Tanh, y, c, cp1).unwrap();
            let [r] = Tanh.solve_lanes_det([L::splat(y)], c, cp1, true);
            let [a, h, d] = r.map(|v| v.lane(0));
            assert!(err_ulp32(a, want as f64) <= 2.0, "y={y}: α {a} vs {want}");
            let t = (want as f64).tanh();
            assert!(
                (h as f64 - t).abs() <= 4e-7 * t.abs(),
                "y={y}: h {h} vs {t}"
            );
            let dw = cp1 as f64 - c as f64 * t * t;
            assert!((d as f64 - dw).abs() <= 2e-6 * dw, "y={y}: det {d} vs {dw}");
        }
    }
    check::<f32x8>();
    check::<f32x16>();
}

/// The forward kernels' two forms of a tanh layer's determinant factor side by side: layers
/// with `wᵀû` just inside and just outside `[−1, 1]` (f32 builds with FMA take the rational
/// `tanh_det_near` for the former, `tanh_det`'s `n/d²` for the latter), at the ends of the
/// range, and far outside it, in one flow, against the scalar reference (the tolerances of
/// `check_flow`), for f32 and f64, D ∈ {1, 2, 16}, random and adversarial points.
#[test]
fn near_and_far_layers_agree_with_scalar() {
    fn flow_with<T: Real + SimdReal, const D: usize>(seed: u64) -> Flow<T, D, K> {
        let cs = [0.999, 1.001, -0.999, 1.0, -1.0 + 1e-3, 3.0, -0.5, 1e-7];
        let mut r = Xoshiro256PlusPlus::seed_from_u64(seed);
        Flow::new(core::array::from_fn(|k| {
            let w: [f64; D] = core::array::from_fn(|_| normal(&mut r) / (D as f64).sqrt());
            let ww: f64 = w.iter().map(|v| v * v).sum();
            // u = c·w/‖w‖² plus a part orthogonal to w: wᵀu = c.
            let v: [f64; D] = core::array::from_fn(|_| 0.5 * normal(&mut r) / (D as f64).sqrt());
            let vw: f64 = v.iter().zip(&w).map(|(a, b)| a * b).sum();
            let u: [T; D] =
                core::array::from_fn(|i| T::from_f64(cs[k] * w[i] / ww + v[i] - vw * w[i] / ww));
            let b = T::from_f64(0.5 * normal(&mut r));
            let w: [T; D] = core::array::from_fn(|i| T::from_f64(w[i]));
            Planar::with(u, w, b, Constraint::Unconstrained, Tanh).unwrap()
        }))
    }
    for seed in 0..4 {
        check_given_flow(&flow_with::<f32, 1>(seed), seed, seed % 2 == 1);
        check_given_flow(&flow_with::<f32, 2>(seed), seed, seed % 2 == 1);
        check_given_flow(&flow_with::<f32, 16>(seed), seed, seed % 2 == 1);
        check_given_flow(&flow_with::<f64, 2>(seed), seed, seed % 2 == 1);
    }
}

#[test]
fn near_float_range_sums_do_not_overflow() {
    let leaky32 = flowcore::LeakyRelu::new(0.3f32).unwrap();
    let leaky64 = flowcore::LeakyRelu::new(0.3f64).unwrap();
    check_near_max::<f32, 8, _>(Tanh);
    check_near_max::<f32, 16, _>(Tanh);
    check_near_max::<f64, 8, _>(Tanh);
    check_near_max::<f64, 16, _>(Tanh);
    check_near_max::<f32, 8, _>(leaky32);
    check_near_max::<f32, 16, _>(leaky32);
    check_near_max::<f64, 8, _>(leaky64);
    check_near_max::<f64, 16, _>(leaky64);
}

/// Points so far out that the inverse's root α is beyond 1/(2ε) (tanh saturated, h′ = 0): the
/// fast path accepts a step |δ| ≤ 2ε|α| that is huge in absolute terms, and carrying h, h′ to
/// α − δ must not overflow (it squared δ and gave 0·∞ = NaN in the log-det: a fuzz finding,
/// f64, x = 1e270). Each layer then maps the point to itself up to ûᵢ, with log-det 0.
fn huge_points_invert<T: Real + SimdReal>(mags: &[f64]) {
    let cs = [
        (2.4, -3.1, Constraint::Smooth),
        (-0.5, 1.7, Constraint::Paper),
        (12.75, 0.82, Constraint::Paper),
        (0.9, 0.3, Constraint::projected()),
    ];
    for (u, w, c) in cs {
        let l = Planar::with(
            [T::from_f64(u)],
            [T::from_f64(w)],
            T::from_f64(-0.87),
            c,
            Tanh,
        )
        .unwrap();
        let f = Flow::new([l; 3]);
        for &m in mags {
            for sg in [1.0, -1.0] {
                let pts = vec![[T::from_f64(sg * m)]; 37];
                let mut z = vec![[T::ZERO]; pts.len()];
                let mut ld = vec![T::ZERO; pts.len()];
                assert_eq!(f.inverse_batch(&pts, &mut z, &mut ld).unwrap(), 0);
                let (sz, sld) = f.inverse_and_log_det(&pts[0]).unwrap();
                for j in 0..pts.len() {
                    let (e, ez) = (T::EPS.as_f64(), (z[j][0].as_f64() - sz[0].as_f64()).abs());
                    assert!(
                        (ld[j].as_f64() - sld.as_f64()).abs() <= 64.0 * e,
                        "log-det {:?} vs scalar {sld:?} at x = {}, layer {l:?}",
                        ld[j],
                        sg * m
                    );
                    assert!(
                        ez <= 4.0 * e * sz[0].as_f64().abs(),
                        "z {:?} vs {sz:?}",
                        z[j]
                    );
                }
            }
        }
    }
}

#[test]
fn inverse_of_huge_points_has_finite_log_det() {
    huge_points_invert::<f64>(&[1e17, 1e100, 1e270, 1e300]);
    huge_points_invert::<f32>(&[1e8, 1e20, 1e30, 1e36]);
}

/// A leaky-ReLU layer with `1 + wᵀû` at the smallest normal: for `wᵀx + b > 0` the root
/// `α = (wᵀx + b)/(1 + wᵀû)` is beyond the float range, which the scalar inverse rejects
/// (`NonFiniteInput`). The lane-wise inverse must reject the same points (NaN, counted as
/// failed) and leave the others to agree with the scalar; it returned `−∞` and no failure
/// (a fuzz finding, f32 native). Points with `wᵀx + b ≤ 0` (α = y/(1 + c·slope)) stay finite.
fn leaky_root_overflow<T: Real + SimdReal>() {
    let act = flowcore::LeakyRelu::new(T::from_f64(0.90234375)).unwrap();
    let w = T::from_f64(-18183.0);
    let l = Planar::with([T::from_f64(9924.375)], [w], w, Constraint::Paper, act).unwrap();
    assert!(l.one_plus_w_dot_u_hat() < T::from_f64(1e-30));
    let f = Flow::new([l]);
    // y = w·(x + 1): y > 0 for x < −1 (root overflows), y ≤ 0 for x ≥ −1.
    let xs: Vec<[T; 1]> = (0..40)
        .map(|p| [T::from_f64(-1.0 + (p as f64 - 20.0) * 3e-4)])
        .collect();
    let mut z = vec![[T::ZERO; 1]; xs.len()];
    let mut ld = vec![T::ZERO; xs.len()];
    let mut lp = vec![T::ZERO; xs.len()];
    let failed = f.inverse_batch(&xs, &mut z, &mut ld).unwrap();
    let failed_lp = f.log_prob_batch(&xs, &mut lp).unwrap();
    let mut want = 0;
    for p in 0..xs.len() {
        match f.inverse_and_log_det(&xs[p]) {
            Ok((zr, ldr)) => {
                let tol = TOL * T::EPS.to_f64_lossy();
                assert!(
                    close(z[p][0], zr[0], tol),
                    "x {:?}: {:?} vs {zr:?}",
                    xs[p],
                    z[p]
                );
                assert!(
                    close(ld[p], ldr, tol),
                    "x {:?}: ld {:?} vs {ldr:?}",
                    xs[p],
                    ld[p]
                );
            }
            Err(_) => {
                want += 1;
                assert!(
                    z[p][0].is_nan() && ld[p].is_nan() && lp[p].is_nan(),
                    "x {:?}",
                    xs[p]
                );
            }
        }
    }
    assert!(want > 0 && want < xs.len(), "both kinds of points: {want}");
    assert_eq!((failed, failed_lp), (want, want));
}

#[test]
fn leaky_inverse_rejects_overflowing_roots_like_the_scalar() {
    leaky_root_overflow::<f32>();
    leaky_root_overflow::<f64>();
}

/// Layers with `1 + wᵀû` above the split-factor cap (2^60 for f32, 2^500 for f64: `4·(1 + wᵀû)`
/// could overflow) make the forward kernels take the direct factors; just below the cap they
/// take the split ones. Both must agree with the scalar reference to the stated tolerance.
fn huge_cp1<T: Real + SimdReal>(scale: f64) {
    for big in [scale * 3.0, scale * 0.5] {
        let (s, r) = (big.sqrt(), 1.0 / big.sqrt());
        let layers: [Planar<T, 2>; 3] = [
            Planar::new(
                [T::from_f64(s), T::ZERO],
                [T::from_f64(s), T::ZERO],
                T::from_f64(0.0),
            )
            .unwrap(),
            Planar::new(
                [T::from_f64(0.3), T::from_f64(-0.2)],
                [T::from_f64(0.5), T::from_f64(0.4)],
                T::from_f64(0.1),
            )
            .unwrap(),
            Planar::new(
                [T::from_f64(-0.4), T::from_f64(0.6)],
                [T::from_f64(0.2), T::from_f64(-0.7)],
                T::from_f64(-0.3),
            )
            .unwrap(),
        ];
        let f = Flow::new(layers);
        let c = f.layers()[0].one_plus_w_dot_u_hat().to_f64_lossy();
        assert!(c > 0.4 * big && c < 4.0 * big, "{c}");
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let n = 77;
        // Pre-activations of order 1 at the big layer: z₀ of order 1/√big.
        let z: Vec<[T; 2]> = (0..n)
            .map(|_| core::array::from_fn(|_| T::from_f64(normal(&mut rng) * r)))
            .collect();
        let (mut x, mut ld) = (vec![[T::ZERO; 2]; n], vec![T::ZERO; n]);
        f.forward_log_det_batch(&z, &mut x, &mut ld).unwrap();
        let tol = TOL * 3.0 * T::EPS.to_f64_lossy();
        let mut large = 0;
        for p in 0..n {
            let (xr, ldr) = f.forward_and_log_det(&z[p]);
            assert!(
                close(ld[p], ldr, tol),
                "ld {:?} vs {:?} (big {big})",
                ld[p],
                ldr
            );
            for i in 0..2 {
                assert!(close(x[p][i], xr[i], tol), "x {:?} vs {:?}", x[p][i], xr[i]);
            }
            large += usize::from(ldr.to_f64_lossy() > 0.25 * big.ln());
        }
        assert!(large > n / 4, "the big layer's factor must matter: {large}");
    }
}

#[test]
fn huge_one_plus_w_dot_u_takes_direct_factors() {
    // Around the caps, and where 4·(1 + wᵀû) overflows (only the direct factors work there).
    for e in [60, 125] {
        huge_cp1::<f32>(2f64.powi(e));
    }
    for e in [500, 1021] {
        huge_cp1::<f64>(2f64.powi(e));
    }
}

/// `Group<L, M>` runs the vector math on `M` vectors step by step: every lane's result must be
/// bit-for-bit that of the vector `L` it came from (no operation mixes lanes or vectors), and
/// its lane access, `from_fn` and `write_lanes` must agree with the `M·LANES` layout.
#[test]
fn group_lanes_match_their_vectors_bit_for_bit() {
    use flowcore::simd::Group;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    let special = [
        0.0f32,
        -0.0,
        1e-30,
        -1e-30,
        43.0,
        -44.0,
        90.0,
        f32::INFINITY,
        f32::NAN,
    ];
    for round in 0..200 {
        let xs: [f32; 24] = core::array::from_fn(|i| {
            if round % 4 == 0 && i < special.len() {
                special[i]
            } else {
                crate::support::uniform(&mut rng, -30.0, 30.0) as f32
            }
        });
        let cp = crate::support::uniform(&mut rng, 1e-3, 3.0) as f32;
        let g = Group::<f32x8, 3>::from_fn(|i| xs[i]);
        let (t, n, d) = math::tanh_det(g, Group::splat(cp));
        let (th, s2) = math::tanh_sech2(g);
        let (e, e4) = math::expm1_exp4_m2abs(g);
        let (er, e4r) = math::expm1_exp4_m2abs_rough(g);
        let lg = math::ln(g.vabs());
        let em = math::exp_m1(g);
        for m in 0..3 {
            let v = g.0[m];
            let (t1, n1, d1) = math::tanh_det(v, f32x8::splat(cp));
            let (th1, s21) = math::tanh_sech2(v);
            let (e1, e41) = math::expm1_exp4_m2abs(v);
            let (er1, e4r1) = math::expm1_exp4_m2abs_rough(v);
            let want = [
                t1,
                n1,
                d1,
                th1,
                s21,
                e1,
                e41,
                math::ln(v.vabs()),
                math::exp_m1(v),
                er1,
                e4r1,
            ];
            let got = [t, n, d, th, s2, e, e4, lg, em, er, e4r].map(|x| x.0[m]);
            for (w, gt) in want.iter().zip(&got) {
                for j in 0..8 {
                    assert_eq!(
                        w.lane(j).to_bits(),
                        gt.lane(j).to_bits(),
                        "x = {}",
                        xs[m * 8 + j]
                    );
                }
            }
        }
        let mut out = [0.0f32; 24];
        t.write_lanes(&mut out);
        for (i, o) in out.iter().enumerate() {
            assert_eq!(o.to_bits(), t.lane(i).to_bits());
            assert_eq!(t.lane(i).to_bits(), t.0[i / 8].lane(i % 8).to_bits());
        }
        assert_eq!(t.lane(99).to_bits(), t.lane(23).to_bits());
    }
}

/// The batched forward kernels take `M` chunks per pass through each layer in groups of `G`
/// (`(M, G)` depends on the scalar type and `D`: (6, 6), (6, 3), (4, 4), (4, 2), (2, 2)).
/// Interleaving and grouping only reorder independent work, so every point's output must be
/// bit-for-bit that of the one-chunk lanes form (`forward_log_det_lanes`, `M = G = 1`), for
/// full passes, the chunks of the tail, and the structure-of-arrays form (`log_prob_normalizing`
/// takes the same pass: its log-det is checked through the forward kernel).
fn grouped_equals_one_chunk<T: Real + SimdReal, const D: usize>(seed: u64) {
    let w = <T::Simd as Lane>::LANES;
    for hard in [false, true] {
        let f = flow::<T, D>(seed, hard);
        // Two full passes of up to 6 chunks, then a tail of whole chunks and a partial one.
        let n = 12 * w + 3 * w + 5;
        let pts = points::<T, D>(seed + 1, n, false);
        let mut x = vec![[T::ZERO; D]; n];
        let mut ld = vec![T::ZERO; n];
        f.forward_log_det_batch(&pts, &mut x, &mut ld).unwrap();
        let mut soa: Vec<[T::Simd; D]> = pts
            .chunks(w)
            .map(|c| {
                core::array::from_fn(|i| T::Simd::from_fn(|j| c.get(j).map_or(T::ZERO, |p| p[i])))
            })
            .collect();
        let mut lds = vec![T::Simd::splat(T::ZERO); soa.len()];
        f.forward_log_det_soa(&mut soa, &mut lds).unwrap();
        for (c, chunk) in pts.chunks(w).enumerate() {
            let mut one: [T::Simd; D] = core::array::from_fn(|i| {
                T::Simd::from_fn(|j| chunk.get(j).map_or(T::ZERO, |p| p[i]))
            });
            let l = f.forward_log_det_lanes(&mut one);
            for j in 0..chunk.len() {
                let p = c * w + j;
                let same = |a: T, b: T| {
                    (a == b && a.is_sign_negative() == b.is_sign_negative())
                        || (a.is_nan() && b.is_nan())
                };
                assert!(
                    same(ld[p], l.lane(j)),
                    "log-det, D = {D}, point {p}: {:?} vs {:?}",
                    ld[p],
                    l.lane(j)
                );
                assert!(
                    same(lds[c].lane(j), l.lane(j)),
                    "SoA log-det, D = {D}, point {p}"
                );
                for i in 0..D {
                    assert!(
                        same(x[p][i], one[i].lane(j)),
                        "x, D = {D}, point {p}, coordinate {i}"
                    );
                    assert!(
                        same(soa[c][i].lane(j), one[i].lane(j)),
                        "SoA x, D = {D}, point {p}"
                    );
                }
            }
        }
    }
}

#[test]
fn grouped_passes_match_one_chunk_bit_for_bit() {
    grouped_equals_one_chunk::<f32, 1>(31);
    grouped_equals_one_chunk::<f32, 2>(32);
    grouped_equals_one_chunk::<f32, 3>(33);
    grouped_equals_one_chunk::<f32, 5>(34);
    grouped_equals_one_chunk::<f32, 8>(35);
    grouped_equals_one_chunk::<f32, 16>(36);
    grouped_equals_one_chunk::<f64, 1>(41);
    grouped_equals_one_chunk::<f64, 2>(42);
    grouped_equals_one_chunk::<f64, 3>(43);
    grouped_equals_one_chunk::<f64, 5>(44);
    grouped_equals_one_chunk::<f64, 8>(45);
    grouped_equals_one_chunk::<f64, 16>(46);
}

/// `SimdLane::count_set` (the inverse's count of failed points) against lane-by-lane counting
/// of the same masks (set lanes are all-ones, so NaN as floats), for every width, the
/// `Group`s, and every prefix length `n` (0 to past the end).
#[test]
fn count_set_counts_the_set_lanes_of_a_prefix() {
    use flowcore::simd::Group;
    fn check<L: SimdLane>(rng: &mut Xoshiro256PlusPlus) {
        use num_traits::Float;
        for _ in 0..200 {
            let a = L::from_fn(|_| L::Scalar::from_f64(crate::support::uniform(rng, -1.0, 1.0)));
            let b = L::from_fn(|_| L::Scalar::from_f64(crate::support::uniform(rng, -1.0, 1.0)));
            // Masks from a comparison, a finiteness test (of a lane with NaN and ∞ in it) and
            // their combinations, as the kernels build them.
            let special = L::from_fn(|j| match j % 5 {
                0 => L::Scalar::nan(),
                1 => L::Scalar::infinity(),
                _ => L::Scalar::ONE,
            });
            for mask in [
                a.lt(b),
                special.finite_mask().not(),
                a.lt(b).or(special.finite_mask().not()),
                a.lt(a),
                a.eq_mask(a),
            ] {
                for n in 0..=L::LANES + 2 {
                    let want = (0..n.min(L::LANES))
                        .filter(|&j| mask.lane(j).is_nan())
                        .count();
                    assert_eq!(mask.count_set(n), want, "LANES = {}, n = {n}", L::LANES);
                }
            }
        }
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(29);
    check::<f32x8>(&mut rng);
    check::<f32x16>(&mut rng);
    check::<f64x4>(&mut rng);
    check::<f64x8>(&mut rng);
    check::<Group<f32x8, 3>>(&mut rng);
    check::<Group<f32x16, 6>>(&mut rng);
    check::<Group<f64x8, 3>>(&mut rng);
}
