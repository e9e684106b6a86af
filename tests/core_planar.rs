//! Planar layer: round trips with ulp × conditioning bounds, log-det against finite-difference
//! Jacobians and a double-double reference near wᵀû = −1, f32 against f64.

use crate::support::{
    self, dd::Dd, fd_jacobian, log_abs_det, max_abs, max_diff, normal, normal_vec,
};
use flowcore::{Activation, Constraint, LeakyRelu, Planar, Real, Tanh};

/// Random layer with one of the constraints; scales vary so that κ spans 1..~10³.
fn random_layer<T: Real, const D: usize, A: Activation<T>>(
    r: &mut flowcore::Xoshiro256PlusPlus,
    act: A,
    trial: usize,
) -> Planar<T, D, A> {
    let scales = [0.1, 1.0, 3.0];
    let su = scales[trial % 3];
    let sw = scales[(trial / 3) % 3];
    let constraint = match trial % 4 {
        0 | 3 => Constraint::Smooth,
        1 => Constraint::Paper,
        _ => Constraint::projected(),
    };
    let u = normal_vec::<T, D>(r, su);
    let w = normal_vec::<T, D>(r, sw);
    let b = T::from_f64(2.0 * normal(r));
    Planar::with(u, w, b, constraint, act).expect("finite parameters give a layer")
}

/// Error bound of a round trip through the layer at x, in units of eps:
/// the rounding of x itself (‖x‖); of y = wᵀx + b (D + 2 terms of size sy = |b| + Σ|wᵢxᵢ|) and of
/// c·h(α) (|c|·H, H = max(1, |h(α)|)), amplified by the conditioning κ in α and by ‖û‖ in z; of
/// z = x − û·h(α) (‖û‖·H); and the inconsistency between the stored û and wᵀû = c, which is the
/// rounding of that dot product (D·Σ|wᵢûᵢ|), carried by ‖û‖ and κ.
pub fn roundtrip_bound<T: Real, const D: usize, A: Activation<T>>(
    l: &Planar<T, D, A>,
    x: &[T; D],
    with_kappa: bool,
) -> f64 {
    let sy = l.b().as_f64().abs()
        + (0..D)
            .map(|i| (l.w()[i].as_f64() * x[i].as_f64()).abs())
            .sum::<f64>();
    let kappa = if with_kappa {
        l.conditioning().as_f64()
    } else {
        1.0
    };
    let uh = max_abs(l.u_hat());
    let c = l.w_dot_u_hat().as_f64().abs();
    let hh = match l.solve_preactivation(l.preactivation(x)) {
        Ok((a, _)) => l.activation().h(a).as_f64().abs().max(1.0),
        Err(_) => 1.0,
    };
    let cons = D as f64
        * (0..D)
            .map(|i| (l.w()[i].as_f64() * l.u_hat()[i].as_f64()).abs())
            .sum::<f64>();
    8.0 * T::EPS.as_f64()
        * (max_abs(x) + uh * (hh + kappa * ((D as f64 + 2.0) * sy + 2.0 * c * hh + cons * hh)))
}

fn roundtrip<T: Real, const D: usize, A: Activation<T>>(act: A, seed: u64) {
    let mut r = support::rng(seed);
    for trial in 0..300 {
        let l = random_layer::<T, D, A>(&mut r, act, trial);
        // f(g(z)) = z: error amplified by κ.
        let z = normal_vec::<T, D>(&mut r, 2.0);
        let x = l.forward(&z);
        let z2 = l.inverse(&x).unwrap();
        let tol = roundtrip_bound(&l, &x, true);
        let err = max_diff(&z, &z2);
        assert!(
            err <= tol,
            "f(g(z)) D={D} trial {trial}: err {err:e} > tol {tol:e}, layer {l:?}, z {z:?}"
        );
        // g(f(x)) = x: the residual is not amplified by κ.
        let x = normal_vec::<T, D>(&mut r, 3.0);
        let z = l.inverse(&x).unwrap();
        let x2 = l.forward(&z);
        let tol = roundtrip_bound(&l, &x, false);
        let err = max_diff(&x, &x2);
        assert!(
            err <= tol,
            "g(f(x)) D={D} trial {trial}: err {err:e} > tol {tol:e}"
        );
    }
}

macro_rules! roundtrip_all_d {
    ($name:ident, $t:ty, $act:expr) => {
        #[test]
        fn $name() {
            roundtrip::<$t, 1, _>($act, 1);
            roundtrip::<$t, 2, _>($act, 2);
            roundtrip::<$t, 3, _>($act, 3);
            roundtrip::<$t, 8, _>($act, 8);
            roundtrip::<$t, 16, _>($act, 16);
        }
    };
}
roundtrip_all_d!(roundtrip_tanh_f64, f64, Tanh);
roundtrip_all_d!(roundtrip_tanh_f32, f32, Tanh);
roundtrip_all_d!(roundtrip_leaky_f64, f64, LeakyRelu::new(0.2).unwrap());
roundtrip_all_d!(roundtrip_leaky_f32, f32, LeakyRelu::new(0.01f32).unwrap());

/// Analytic log-det against ln|det| of a central-difference Jacobian (LU), f64.
/// Step h = 1e-5·max(1,|z|): truncation O(h²) ≈ 1e-10 and rounding O(eps/h) ≈ 1e-11 per entry;
/// both amplified by ‖J⁻¹‖ ≤ κ in the log-det, so the tolerance is 1e-7·κ.
fn logdet_vs_fd<const D: usize, A: Activation<f64>>(act: A, seed: u64) {
    let mut r = support::rng(seed);
    for trial in 0..60 {
        let l = random_layer::<f64, D, A>(&mut r, act, trial);
        let z = normal_vec::<f64, D>(&mut r, 1.5);
        let s = l.preactivation(&z);
        if A::dh_range(&act).0 != 1.0
            && s.abs() < 1e-4
            && core::any::type_name::<A>().contains("Leaky")
        {
            continue; // the kink of leaky ReLU: the FD Jacobian straddles it
        }
        let jac = fd_jacobian(|p| l.forward(p), &z, 1e-5);
        let want = log_abs_det(jac);
        let (_, got) = l.forward_and_log_det(&z);
        let tol = 1e-7 * l.conditioning();
        assert!(
            (got - want).abs() <= tol,
            "D={D} trial {trial}: {got} vs fd {want}"
        );
        // ln|det J_f(g(z))| = −ln|det J_g(z)|.
        let x = l.forward(&z);
        let (_, inv_ld) = l.inverse_and_log_det(&x).unwrap();
        let tol =
            64.0 * f64::EPSILON * l.conditioning() * (1.0 + got.abs() + l.w_dot_u_hat().abs());
        assert!(
            (inv_ld + got).abs() <= tol,
            "inverse log-det D={D}: {inv_ld} vs {got}"
        );
    }
}

#[test]
fn log_det_matches_finite_difference_jacobian() {
    logdet_vs_fd::<1, _>(Tanh, 11);
    logdet_vs_fd::<2, _>(Tanh, 12);
    logdet_vs_fd::<3, _>(Tanh, 13);
    logdet_vs_fd::<8, _>(Tanh, 18);
    logdet_vs_fd::<16, _>(Tanh, 116);
    let lr = LeakyRelu::new(0.3).unwrap();
    logdet_vs_fd::<2, _>(lr, 22);
    logdet_vs_fd::<8, _>(lr, 28);
}

/// Reference log-det of the Smooth-constrained layer with wᵀu = x at pre-activation s, in
/// double-double: ln(tanh²s + sech²s·softplus(x + ln(e − 1))), all terms to ~1e-32.
fn logdet_reference(x: f64, s: f64) -> f64 {
    let k = support::dd::e().sub(Dd::new(1.0)).ln();
    let v = Dd::new(x).add(k);
    let cp1 = if v.hi < 0.0 {
        v.exp().ln_1p()
    } else {
        v.add(v.neg().exp().ln_1p())
    };
    let (t, s2) = Dd::new(s).tanh_sech2();
    let det = t.mul(t).add(s2.mul(cp1));
    det.hi.ln() + det.lo / det.hi
}

/// As wᵀu → −∞, 1 + wᵀû = softplus(wᵀu + ln(e−1)) → 0 and the naive 1 + fl(wᵀû)·sech² gives
/// −∞ (f32 once wᵀu ≲ −17, f64 ≲ −37). The crate's form stays within 8 eps·(1 + |ref|) of a
/// double-double reference down to wᵀu = −80 (f64) and −40 (f32).
fn logdet_near_boundary<T: Real>(x_min: f64) {
    let ss = [
        0.0, 1e-30, 1e-20, 1e-12, 1e-8, 1e-5, 1e-3, 0.03, 0.5, 1.0, 3.0, 8.0, 20.0, 60.0,
    ];
    let mut naive_failed = false;
    let mut x = 0.0;
    while x >= x_min {
        let xt = T::from_f64(x);
        let l = Planar::<T, 1>::new([xt], [T::ONE], T::ZERO).unwrap();
        for &s in &ss {
            for sign in [1.0, -1.0] {
                let st = T::from_f64(sign * s);
                let want = logdet_reference(xt.as_f64(), st.as_f64());
                let got = l.log_det_at(st).as_f64();
                let tol = 8.0 * T::EPS.as_f64() * (1.0 + want.abs());
                assert!(
                    (got - want).abs() <= tol,
                    "x={x} s={s}: got {got} want {want} (tol {tol:e})"
                );
                // The naive form every peer uses, in T:
                let (_, s2) = Lane::tanh_sech2(st);
                let naive = (T::ONE + l.w_dot_u_hat() * s2).as_f64().ln();
                // NaN or −∞ (or just far off) counts as failing.
                let naive_ok = (naive - want).abs() <= 1e3 * tol;
                naive_failed |= !naive_ok;
            }
        }
        x -= 2.5;
    }
    assert!(
        naive_failed,
        "the naive form should fail in this range (otherwise the test shows nothing)"
    );
}
use flowcore::Lane;

#[test]
fn log_det_accurate_as_w_dot_u_hat_tends_to_minus_one() {
    logdet_near_boundary::<f64>(-80.0);
    logdet_near_boundary::<f32>(-40.0);
}

/// f32 results against the same layer in f64: forward and log-det to a few ulps of f32 times
/// the size of the terms; the inverse additionally times κ.
#[test]
fn f32_agrees_with_f64() {
    let mut r = support::rng(99);
    for trial in 0..500 {
        let l64 = random_layer::<f64, 3, Tanh>(&mut r, Tanh, trial);
        let u: [f32; 3] = l64.u().map(|v| v as f32);
        let w: [f32; 3] = l64.w().map(|v| v as f32);
        let l32 = Planar::with(u, w, l64.b() as f32, l64.constraint().map_f32(), Tanh).unwrap();
        // Same parameters in f64 (the f32 values, exactly).
        let l64 = Planar::with(
            u.map(f64::from),
            w.map(f64::from),
            f64::from(l64.b() as f32),
            l32.constraint().map_f64(),
            Tanh,
        )
        .unwrap();
        let z32: [f32; 3] = normal_vec(&mut r, 2.0);
        let z64 = z32.map(f64::from);
        let (x32, ld32) = l32.forward_and_log_det(&z32);
        let (x64, ld64) = l64.forward_and_log_det(&z64);
        let e = f32::EPSILON as f64;
        let scale = max_abs(&z64)
            + max_abs(l64.u_hat()) * (1.0 + 8.0 * (1.0 + max_abs(l64.w()) * max_abs(&z64)));
        assert!(
            max_diff(&x32.map(f64::from), &x64) <= 8.0 * e * scale,
            "trial {trial}"
        );
        let ld_tol = 16.0
            * e
            * l64.conditioning()
            * (1.0 + l64.w_dot_u_hat().abs())
            * (1.0 + 4.0 * max_abs(l64.w()) * max_abs(&z64));
        assert!(
            (f64::from(ld32) - ld64).abs() <= ld_tol,
            "trial {trial}: {ld32} vs {ld64}"
        );
        let i32 = l32.inverse(&x32).unwrap().map(f64::from);
        let i64 = l64.inverse(&x32.map(f64::from)).unwrap();
        let tol = roundtrip_bound(&l32, &x32, true);
        assert!(max_diff(&i32, &i64) <= tol, "inverse trial {trial}");
    }
}

/// Conversions of a constraint between f32 and f64, for the comparison above.
trait MapConstraint {
    fn map_f32(self) -> Constraint<f32>;
    fn map_f64(self) -> Constraint<f64>;
}
impl<T: Real> MapConstraint for Constraint<T> {
    fn map_f32(self) -> Constraint<f32> {
        match self {
            Constraint::Smooth => Constraint::Smooth,
            Constraint::Paper => Constraint::Paper,
            Constraint::Project { margin } => Constraint::Project {
                margin: margin.as_f64() as f32,
            },
            Constraint::Unconstrained => Constraint::Unconstrained,
        }
    }
    fn map_f64(self) -> Constraint<f64> {
        match self {
            Constraint::Smooth => Constraint::Smooth,
            Constraint::Paper => Constraint::Paper,
            Constraint::Project { margin } => Constraint::Project {
                margin: margin.as_f64(),
            },
            Constraint::Unconstrained => Constraint::Unconstrained,
        }
    }
}

/// The inverse's iteration count stays within its bound, and typical counts are small.
#[test]
fn inverse_iterations_bounded() {
    let mut r = support::rng(5);
    let mut worst = 0;
    let mut total = 0u64;
    let n = 4000;
    for trial in 0..n {
        let l = random_layer::<f64, 2, Tanh>(&mut r, Tanh, trial);
        let y = 10f64.powf(support::uniform(&mut r, -8.0, 8.0))
            * if trial % 2 == 0 { 1.0 } else { -1.0 };
        let (_, it) = l.solve_preactivation(y).unwrap();
        worst = worst.max(it);
        total += u64::from(it);
    }
    assert!(worst <= Tanh::max_iter::<f64>());
    std::eprintln!(
        "inverse iterations: mean {:.2}, worst {worst}",
        total as f64 / n as f64
    );
    let mean = total as f64 / n as f64;
    assert!(mean < 4.0, "mean iterations {mean} (worst {worst})");
}
