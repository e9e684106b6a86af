//! The Rezende–Mohamed energies: analytic gradients against finite differences, and log Z by
//! trapezoid quadrature.

use flowcore::base::uniform_open0;
use flowcore::energy::{Energy, RmEnergy, RmKind};
use flowcore::{SeedableRng, Xoshiro256PlusPlus};

const KINDS: [RmKind; 4] = [RmKind::U1, RmKind::U2, RmKind::U3, RmKind::U4];

#[test]
fn gradients_match_finite_differences() {
    // Central differences, h = 1e−5: truncation ≈ h²·|U‴| ≲ 1e−8 for these energies (scales
    // ≥ 0.3, |z| ≤ 6), rounding ≈ eps·|U|/h ≲ 1e−9; tolerance 1e−6 relative to max(|g|, 1).
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    for kind in KINDS {
        for e in [RmEnergy::new(kind), RmEnergy::bare(kind)] {
            for _ in 0..200 {
                let z = [
                    6.0 * (2.0 * uniform_open0(&mut rng) - 1.0),
                    6.0 * (2.0 * uniform_open0(&mut rng) - 1.0),
                ];
                let (u, g) = e.energy_and_grad(&z);
                assert_eq!(u.to_bits(), Energy::<f64, 2>::energy(&e, &z).to_bits());
                for i in 0..2 {
                    let h = 1e-5;
                    let (mut a, mut b) = (z, z);
                    a[i] += h;
                    b[i] -= h;
                    let fd = (e.energy(&a) - e.energy(&b)) / (2.0 * h);
                    assert!(
                        (fd - g[i]).abs() / g[i].abs().max(1.0) < 1e-6,
                        "{e:?} at {z:?}: ∂{i} {} vs {fd}",
                        g[i]
                    );
                }
            }
        }
    }
}

#[test]
fn f32_matches_f64() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
    for kind in KINDS {
        let e = RmEnergy::new(kind);
        for _ in 0..200 {
            let z = [
                4.0 * (2.0 * uniform_open0(&mut rng) - 1.0),
                4.0 * (2.0 * uniform_open0(&mut rng) - 1.0),
            ];
            let z32 = [z[0] as f32, z[1] as f32];
            let z64 = [z32[0] as f64, z32[1] as f64];
            let (u32_, _) = e.energy_and_grad(&z32);
            let (u64_, _) = e.energy_and_grad(&z64);
            // A few ulps of f32 on each of the O(10) operations, relative to max(|U|, 1).
            assert!(
                ((u32_ as f64) - u64_).abs() / u64_.abs().max(1.0) < 1e-5,
                "{kind:?} {z:?}"
            );
        }
    }
}

/// ln ∫∫ e^{−U} over [−l, l]² by the trapezoid rule with spacing h (scaled by the maximum of
/// −U to avoid under/overflow).
fn log_z_trapezoid(e: &RmEnergy, l: f64, h: f64) -> f64 {
    let n = (2.0 * l / h).round() as i64;
    let mut sum = 0.0;
    for i in 0..=n {
        let x = -l + i as f64 * h;
        let wx = if i == 0 || i == n { 0.5 } else { 1.0 };
        let mut row = 0.0;
        for j in 0..=n {
            let y = -l + j as f64 * h;
            let wy = if j == 0 || j == n { 0.5 } else { 1.0 };
            row += wy * (-e.energy(&[x, y])).exp();
        }
        sum += wx * row;
    }
    (sum * h * h).ln()
}

#[test]
fn log_z_by_quadrature() {
    // exp(−U) is smooth (analytic in a strip of half-width ≳ 0.2 around the real plane, U1
    // apart from its kink at the origin, where e^{−U1} ≈ 3e−8) and negligible at the box edge
    // (≤ e^{−40}), so the trapezoid rule converges geometrically: the spacings 1/16 and 1/32
    // must agree to 1e−9 and the boxes [−24, 24]² and [−32, 32]² likewise; the published values
    // are rounded to 1e−7, so the result must match them to 6e−8.
    let expected = [1.8775016, 2.8501378, 3.4097196, 3.4759752];
    for (kind, want) in KINDS.into_iter().zip(expected) {
        let e = RmEnergy::new(kind);
        let coarse = log_z_trapezoid(&e, 24.0, 1.0 / 16.0);
        let fine = log_z_trapezoid(&e, 24.0, 1.0 / 32.0);
        let big = log_z_trapezoid(&e, 32.0, 1.0 / 16.0);
        assert!(
            (coarse - fine).abs() < 1e-9,
            "{kind:?}: spacing {coarse} vs {fine}"
        );
        assert!(
            (coarse - big).abs() < 1e-9,
            "{kind:?}: box {coarse} vs {big}"
        );
        assert!(
            (fine - want).abs() < 6e-8,
            "{kind:?}: log Z {fine} vs {want}"
        );
        assert!((e.log_z().unwrap() - fine).abs() < 6e-8);
    }
}

#[test]
fn lane_energies_match_scalar() {
    // The vector exp/ln/sqrt/sin_cos are within a few ulps of libm. f64: lanes and scalar agree
    // to 1e−12 relative to max(|value|, 1). f32: the gradients of U3/U4 cancel large terms
    // (|p/σ| up to ≈ 60), so both f32 forms carry absolute errors of ~1e−4; the lanes are
    // checked against the f64 value: error at most 4× the scalar f32 form's own error plus
    // 2e−5·max(|value|, 1).
    use flowcore::simd::SimdLane;
    use wide::{f32x8, f64x4};
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(6);
    for kind in KINDS {
        for e in [RmEnergy::new(kind), RmEnergy::bare(kind)] {
            for _ in 0..100 {
                let pts: Vec<[f64; 2]> = (0..8)
                    .map(|_| {
                        [
                            6.0 * (2.0 * uniform_open0(&mut rng) - 1.0),
                            6.0 * (2.0 * uniform_open0(&mut rng) - 1.0),
                        ]
                    })
                    .collect();
                let x64 = [f64x4::from_fn(|j| pts[j][0]), f64x4::from_fn(|j| pts[j][1])];
                let (u, g) = e.energy_and_grad_lanes(&x64).unwrap();
                for j in 0..4 {
                    let (us, gs) = e.energy_and_grad(&pts[j]);
                    assert!(
                        (u.lane(j) - us).abs() < 1e-12 * us.abs().max(1.0),
                        "{e:?} f64 U"
                    );
                    for i in 0..2 {
                        assert!(
                            (g[i].lane(j) - gs[i]).abs() < 1e-12 * gs[i].abs().max(1.0),
                            "{e:?} f64 ∇U"
                        );
                    }
                }
                let x32 = [
                    f32x8::from_fn(|j| pts[j][0] as f32),
                    f32x8::from_fn(|j| pts[j][1] as f32),
                ];
                let (u, g) = e.energy_and_grad_lanes(&x32).unwrap();
                for j in 0..8 {
                    let p = [pts[j][0] as f32, pts[j][1] as f32];
                    let (us, gs) = e.energy_and_grad(&p);
                    let (ur, gr) = e.energy_and_grad(&[p[0] as f64, p[1] as f64]);
                    let ok = |lane: f32, scalar: f32, exact: f64| {
                        (lane as f64 - exact).abs()
                            <= 4.0 * (scalar as f64 - exact).abs() + 2e-5 * exact.abs().max(1.0)
                    };
                    assert!(
                        ok(u.lane(j), us, ur),
                        "{e:?} f32 U {} vs {us} vs {ur}",
                        u.lane(j)
                    );
                    for i in 0..2 {
                        assert!(
                            ok(g[i].lane(j), gs[i], gr[i]),
                            "{e:?} f32 ∇U {} vs {} vs {}",
                            g[i].lane(j),
                            gs[i],
                            gr[i]
                        );
                    }
                }
            }
        }
    }
}
