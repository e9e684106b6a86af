//! Bad input as a user meets it: NaN, ±inf, 1e±38 in f32, subnormals, w = 0, u = 0, D = 1,
//! b = ±1e8, points at 1e30, wᵀû = −1 + 1 ulp.

use crate::support::{self, max_diff};
use flowcore::{Constraint, Flow, FlowError, LeakyRelu, Planar, Real, Tanh};

fn specials<T: Real>() -> [T; 3] {
    [T::nan(), T::infinity(), T::neg_infinity()]
}

fn params_rejected<T: Real>() {
    for v in specials::<T>() {
        assert_eq!(
            Planar::new([v, T::ONE], [T::ONE, T::ONE], T::ZERO).unwrap_err(),
            FlowError::NonFiniteParameter
        );
        assert_eq!(
            Planar::new([T::ONE, T::ONE], [T::ONE, v], T::ZERO).unwrap_err(),
            FlowError::NonFiniteParameter
        );
        assert_eq!(
            Planar::new([T::ONE, T::ONE], [T::ONE, T::ONE], v).unwrap_err(),
            FlowError::NonFiniteParameter
        );
        let m = Constraint::Project { margin: v };
        assert!(matches!(
            Planar::with([T::ONE], [T::ONE], T::ZERO, m, Tanh),
            Err(FlowError::InvalidArgument(_))
        ));
        assert!(LeakyRelu::new(v).is_err());
    }
}

#[test]
fn non_finite_parameters_are_errors() {
    params_rejected::<f32>();
    params_rejected::<f64>();
    // wᵀu overflows: 1e38·1e38 in f32.
    assert_eq!(
        Planar::new([1e38f32, 1e38], [1e38, 0.0], 0.0).unwrap_err(),
        FlowError::NonFiniteParameter
    );
}

fn points_rejected<T: Real>() {
    let l = Planar::new([T::ONE, T::HALF], [T::HALF, -T::ONE], T::ZERO).unwrap();
    let flow = Flow::new([l, l]);
    for v in specials::<T>() {
        assert_eq!(
            l.inverse(&[v, T::ZERO]).unwrap_err(),
            FlowError::NonFiniteInput
        );
        assert_eq!(
            flow.inverse(&[T::ZERO, v]).unwrap_err(),
            FlowError::NonFiniteInput
        );
        assert_eq!(
            flow.log_prob(&[v, v]).unwrap_err(),
            FlowError::NonFiniteInput
        );
    }
    // Forward kernels propagate NaN (documented), they do not panic.
    let x = l.forward(&[T::nan(), T::ZERO]);
    assert!(x[0].is_nan() && x[1].is_nan());
    assert!(l.log_det(&[T::nan(), T::ZERO]).is_nan());
    assert!(flow.log_prob_normalizing(&[T::nan(), T::ZERO]).is_nan());
    // An infinite coordinate: the pre-activation saturates tanh; x keeps the infinity.
    let x = l.forward(&[T::infinity(), T::ZERO]);
    assert!(x[0].is_infinite());
}

#[test]
fn non_finite_points_are_errors_or_propagate() {
    points_rejected::<f32>();
    points_rejected::<f64>();
}

/// Extreme but finite values: each gives Ok with a correct result, and the inverse stays
/// within its iteration bound.
fn extremes<T: Real>(big: T, sub: T) {
    let mut r = support::rng(1);
    let cases: [([T; 2], [T; 2], T); 8] = [
        ([T::ONE, T::HALF], [T::HALF, T::ONE], T::from_f64(1e8)),
        ([T::ONE, T::HALF], [T::HALF, T::ONE], T::from_f64(-1e8)),
        ([T::ZERO, T::ZERO], [T::HALF, T::ONE], T::ONE),
        ([T::ONE, -T::ONE], [T::ZERO, T::ZERO], T::ONE),
        ([sub, sub], [sub, -sub], sub),
        ([big, T::ZERO], [sub, T::ZERO], T::ZERO),
        ([T::ONE, T::ONE], [big, T::ZERO], T::ZERO),
        (
            [-T::from_f64(3.0), T::ZERO],
            [T::from_f64(2.0), T::ONE],
            T::HALF,
        ),
    ];
    for (u, w, b) in cases {
        let l = Planar::new(u, w, b).unwrap();
        for x in [
            [T::ZERO, T::ZERO],
            [T::from_f64(1e30), -T::from_f64(1e30)],
            [T::from_f64(0.3), T::from_f64(-2.0)],
            [big, T::ZERO],
        ] {
            let y = l.preactivation(&x);
            if !y.is_finite() {
                assert_eq!(l.inverse(&x).unwrap_err(), FlowError::NonFiniteInput);
                continue;
            }
            let (_, it) = l.solve_preactivation(y).unwrap();
            assert!(it <= Tanh::max_iter::<T>(), "{it} iterations");
            let z = l.inverse(&x).unwrap();
            let x2 = l.forward(&z);
            let tol = crate::core_planar::roundtrip_bound(&l, &x, false);
            assert!(
                max_diff(&x, &x2) <= tol,
                "{u:?} {w:?} {b:?} at {x:?}: {x2:?}"
            );
        }
        let _ = support::normal(&mut r);
    }
}

#[test]
fn extreme_finite_values() {
    extremes::<f32>(1e38, 1e-40);
    extremes::<f64>(1e300, 1e-310);
}

/// wᵀû = −1 + 1 ulp: the most ill-conditioned invertible layer. The inverse converges within
/// its bound for points near and far from the kink, and the pre-activation solves its equation.
fn one_ulp_from_boundary<T: Real>() {
    let u = [-T::ONE + T::EPS / T::TWO];
    let l = Planar::with(u, [T::ONE], T::ZERO, Constraint::Unconstrained, Tanh).unwrap();
    for y in [0.0, 1e-30, -1e-20, 1e-7, 1e-3, 0.1, -1.0, 5.0, 1e10, 1e30] {
        let y = T::from_f64(y);
        let (a, it) = l.solve_preactivation(y).unwrap();
        assert!(it <= Tanh::max_iter::<T>(), "y={y:?}: {it} iterations");
        // Residual check in f64: |α + c·tanh α − y| within a few ulps of the terms.
        let (af, cf) = (a.as_f64(), l.w_dot_u_hat().as_f64());
        let res = af + cf * af.tanh() - y.as_f64();
        let tol = 4.0 * T::EPS.as_f64() * (af.abs() + y.as_f64().abs());
        assert!(
            res.abs() <= tol.max(f64::MIN_POSITIVE),
            "y={y:?}: α={a:?}, residual {res:e}"
        );
    }
}

#[test]
fn boundary_layer_inverse_terminates() {
    one_ulp_from_boundary::<f32>();
    one_ulp_from_boundary::<f64>();
}

#[test]
fn dimension_one_and_zero_params() {
    let l = Planar::<f32, 1>::new([0.0], [0.0], 0.0).unwrap();
    assert_eq!(l.forward(&[2.5]), [2.5]);
    assert_eq!(l.inverse(&[2.5]).unwrap(), [2.5]);
    assert_eq!(l.log_det(&[2.5]), 0.0);
    let id = Flow::<f64, 1, 3>::identity();
    assert_eq!(id.inverse(&[-1.5]).unwrap(), [-1.5]);
}

#[test]
fn errors_display() {
    extern crate std;
    use std::string::ToString;
    for e in [
        FlowError::NonFiniteParameter,
        FlowError::NonFiniteInput,
        FlowError::NotInvertible,
        FlowError::NotConverged,
        FlowError::InvalidArgument("x"),
    ] {
        assert!(!e.to_string().is_empty());
        let _: &dyn core::error::Error = &e;
    }
}
