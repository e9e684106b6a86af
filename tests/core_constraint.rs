//! The invertibility constraint on random and adversarial (u, w).

use crate::support::{self, max_diff, normal_vec};
use flowcore::{Constraint, FlowError, Planar, Real, Tanh};

fn constraints<T: Real>() -> [Constraint<T>; 3] {
    [
        Constraint::Smooth,
        Constraint::Paper,
        Constraint::projected(),
    ]
}

/// "Invertible as computed": 1 + wᵀû carried > 0, the det factor is positive and its log finite
/// at every pre-activation (including s = 0, where it is smallest for wᵀû < 0), the inverse
/// converges within its bound, and g(f(x)) = x to round-off (that residual is not amplified by
/// the conditioning, so it holds however close to −1 wᵀû is).
fn assert_invertible<T: Real, const D: usize>(
    l: &Planar<T, D, Tanh>,
    r: &mut flowcore::Xoshiro256PlusPlus,
) {
    assert!(l.one_plus_w_dot_u_hat() > T::ZERO, "{l:?}");
    assert!(l.w_dot_u_hat() >= -T::ONE);
    for s in [0.0, 1e-30, 1e-3, 0.5, 3.0, 40.0, 1e10] {
        for sg in [1.0, -1.0] {
            let ld = l.log_det_at(T::from_f64(sg * s));
            assert!(ld.is_finite(), "log det at s={s}: {ld:?} for {l:?}");
        }
    }
    for _ in 0..20 {
        let x = normal_vec::<T, D>(r, 3.0);
        let y = l.preactivation(&x);
        if !y.is_finite() {
            assert_eq!(l.inverse(&x), Err(flowcore::FlowError::NonFiniteInput));
            continue;
        }
        let (alpha_it, z) = (l.solve_preactivation(y).unwrap().1, l.inverse(&x).unwrap());
        assert!(alpha_it <= Tanh::max_iter::<T>());
        let x2 = l.forward(&z);
        let tol = crate::core_planar::roundtrip_bound(l, &x, false);
        let err = max_diff(&x, &x2);
        assert!(err <= tol, "g(f(x)) err {err:e} > {tol:e} for {l:?}");
    }
}

fn adversarial<T: Real, const D: usize>(seed: u64, huge: f64, tiny: f64) {
    let mut r = support::rng(seed);
    for c in constraints::<T>() {
        let u = normal_vec::<T, D>(&mut r, 1.0);
        // w = 0: a translation; û = u, wᵀû = 0.
        let l = Planar::with(u, [T::ZERO; D], T::HALF, c, Tanh).unwrap();
        assert_eq!(l.u_hat(), &u);
        assert_invertible(&l, &mut r);
        // ‖w‖ tiny (‖w‖² underflows in f32) and huge (‖w‖² overflows in f32).
        for s in [tiny, 1.0 / tiny] {
            let w = normal_vec::<T, D>(&mut r, s);
            match Planar::with(u, w, T::HALF, c, Tanh) {
                Ok(l) => assert_invertible(&l, &mut r),
                // Only the paper's form can overflow (‖û‖ ≈ 0.307/‖w‖).
                Err(e) => {
                    assert!(matches!(c, Constraint::Paper) && e == FlowError::NonFiniteParameter)
                }
            }
        }
        // wᵀu = −1 exactly: w = e₁, u = −e₁ (+ noise off the first axis).
        let mut w = [T::ZERO; D];
        w[0] = T::ONE;
        let mut u2 = u;
        u2[0] = -T::ONE;
        let l = Planar::with(u2, w, T::ZERO, c, Tanh).unwrap();
        assert_invertible(&l, &mut r);
        // Huge u, both signs of wᵀu.
        for sign in [1.0, -1.0] {
            let mut u3 = normal_vec::<T, D>(&mut r, huge);
            u3[0] = T::from_f64(sign * huge);
            let w3 = normal_vec::<T, D>(&mut r, 1.0);
            match Planar::with(u3, w3, T::ZERO, c, Tanh) {
                Ok(l) => assert_invertible(&l, &mut r),
                Err(e) => assert_eq!(
                    e,
                    FlowError::NonFiniteParameter,
                    "only an overflowing wᵀu may fail"
                ),
            }
        }
    }
    // Unconstrained: wᵀu = −1 exactly is rejected; −1 + 1 ulp is accepted and invertible.
    let mut w = [T::ZERO; D];
    w[0] = T::ONE;
    let mut u = [T::ZERO; D];
    u[0] = -T::ONE;
    assert_eq!(
        Planar::with(u, w, T::ZERO, Constraint::Unconstrained, Tanh).unwrap_err(),
        FlowError::NotInvertible
    );
    u[0] = -T::ONE + T::EPS / T::TWO;
    let l = Planar::with(u, w, T::ZERO, Constraint::Unconstrained, Tanh).unwrap();
    assert_eq!(l.one_plus_w_dot_u_hat(), T::EPS / T::TWO);
    assert_invertible(&l, &mut r);
}

#[test]
fn adversarial_parameters_give_invertible_layers() {
    adversarial::<f64, 1>(1, 1e300, 1e-30);
    adversarial::<f64, 2>(2, 1e300, 1e-30);
    adversarial::<f64, 8>(3, 1e300, 1e-300);
    adversarial::<f32, 1>(4, 1e30, 1e-30);
    adversarial::<f32, 3>(5, 1e30, 1e-30);
    adversarial::<f32, 16>(6, 1e36, 1e-38);
}

#[test]
fn random_parameters_give_invertible_layers() {
    let mut r = support::rng(77);
    for trial in 0..2000 {
        let s = 10f64.powf(support::uniform(&mut r, -6.0, 6.0));
        let u = normal_vec::<f32, 3>(&mut r, s);
        let w = normal_vec::<f32, 3>(&mut r, 1.0 / s.sqrt());
        let c = constraints::<f32>()[trial % 3];
        if let Ok(l) = Planar::with(u, w, 0.3, c, Tanh) {
            assert_invertible(&l, &mut r);
        } else {
            assert!(matches!(c, Constraint::Paper));
        }
    }
}

/// The default constraint keeps ‖û − u‖ ≤ ‖u‖ as w → 0; the paper's form blows up like
/// (1 − ln 2)/‖w‖.
#[test]
fn smooth_constraint_stays_bounded_as_w_vanishes() {
    let u = [0.8f64, -0.6];
    for e in [1e-2, 1e-5, 1e-10, 1e-20, 1e-100, 1e-300] {
        let w = [0.6 * e, 0.8 * e];
        let smooth = Planar::new(u, w, 1.0).unwrap();
        let d: f64 = smooth
            .u_hat()
            .iter()
            .zip(&u)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt();
        assert!(d <= 1.0 + 1e-12, "‖û − u‖ = {d} at ‖w‖ = {e}");
        if e >= 1e-100 {
            let paper = Planar::with(u, w, 1.0, Constraint::Paper, Tanh).unwrap();
            let n: f64 = paper.u_hat().iter().map(|a| a * a).sum::<f64>().sqrt();
            let want = (1.0 - 2f64.ln()) / e;
            assert!(
                (n - want).abs() <= 1e-6 * want + 2.0,
                "paper ‖û‖ = {n}, expected ≈ {want}"
            );
        }
    }
}

/// wᵀû = m(wᵀu) holds for the computed û (to the rounding of the dot product).
#[test]
fn w_dot_u_hat_matches_m() {
    let mut r = support::rng(8);
    for trial in 0..1000 {
        let u = normal_vec::<f64, 4>(&mut r, 2.0);
        let w = normal_vec::<f64, 4>(&mut r, 0.7);
        let c = constraints::<f64>()[trial % 3];
        let l = Planar::with(u, w, 0.0, c, Tanh).unwrap();
        let dot: f64 = l.u_hat().iter().zip(&w).map(|(a, b)| a * b).sum();
        let mag: f64 = l.u_hat().iter().zip(&w).map(|(a, b)| (a * b).abs()).sum();
        assert!(
            (dot - l.w_dot_u_hat()).abs() <= 16.0 * f64::EPSILON * (1.0 + mag),
            "{dot} vs {}",
            l.w_dot_u_hat()
        );
        assert!(l.w_dot_u_hat() > -1.0);
    }
}

/// f32 `u`, `w` near 2⁻⁷⁵, so every product wᵢuᵢ is subnormal (found by fuzzing: the refinement
/// step amplified the products' underflow noise by 1/(‖w‖∞·‖ŵ‖²) and moved û along w by as much
/// as u itself). û must match the exact Smooth û, computed in f64 from the same f32 inputs
/// (where nothing is subnormal), to a few ulps of ‖u‖∞.
#[test]
fn smooth_constraint_accurate_when_products_are_subnormal() {
    let a = 2.6469578e-23f32; // ≈ 2⁻⁷⁵
    let mut r = support::rng(31);
    for trial in 0..200 {
        let (mut u, mut w) = ([0.0f32; 8], [0.0f32; 8]);
        if trial == 0 {
            // The fuzzer's input.
            u = [a, -a, -a, -a, -a, -a, -a, -a];
            w = [-a, -a, -a, -a, -a, -a, -a, 7.7e-34];
        } else {
            let (nu, nw) = (
                normal_vec::<f64, 8>(&mut r, 1.0),
                normal_vec::<f64, 8>(&mut r, 1.0),
            );
            let sw = f64::from(a) * 2f64.powi(trial % 9 - 4);
            for i in 0..8 {
                u[i] = (nu[i] * f64::from(a)) as f32;
                w[i] = (nw[i] * sw) as f32;
            }
        }
        let l = Planar::new(u, w, 0.0).unwrap();
        // Exact û in f64 (scaled so nothing underflows): û = u + (m(x) − x)·w/‖w‖².
        let s = 2f64.powi(75);
        let (u64s, w64s): (Vec<f64>, Vec<f64>) = (0..8)
            .map(|i| (f64::from(u[i]) * s, f64::from(w[i]) * s))
            .unzip();
        let x: f64 = (0..8).map(|i| u64s[i] * w64s[i]).sum::<f64>() / (s * s);
        let (m, _) = Constraint::<f64>::Smooth.m(x).unwrap();
        let n2: f64 = w64s.iter().map(|v| v * v).sum::<f64>() / (s * s);
        let umax = u.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
        for i in 0..8 {
            let want = f64::from(u[i]) + (m - x) * (w64s[i] / s) / n2;
            let got = f64::from(l.u_hat()[i]);
            assert!(
                (got - want).abs() <= 64.0 * f64::from(f32::EPSILON) * umax,
                "trial {trial}: û[{i}] = {got:e}, exact {want:e}; u {u:?}, w {w:?}"
            );
        }
        assert!(l.one_plus_w_dot_u_hat() > 0.0);
    }
}
