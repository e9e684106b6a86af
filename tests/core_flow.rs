//! Flows: change of variables by quadrature, flow round trips, sampling consistency.

use crate::support::{self, max_diff, normal, normal_vec};
use flowcore::{Flow, Planar, Real};

/// A random flow whose layers have conditioning κ ≤ `kmax` (layers drawn until they do): the
/// density of a flow of near-singular layers has spikes of height up to Πκ that no fixed grid
/// resolves, so the quadrature tests use moderately conditioned flows.
fn random_flow<T: Real, const D: usize, const K: usize>(
    seed: u64,
    su: f64,
    sw: f64,
    kmax: f64,
) -> Flow<T, D, K> {
    let mut r = support::rng(seed);
    Flow::new(core::array::from_fn(|_| {
        loop {
            let u = normal_vec::<T, D>(&mut r, su);
            let w = normal_vec::<T, D>(&mut r, sw);
            let l = Planar::new(u, w, T::from_f64(normal(&mut r))).unwrap();
            if l.conditioning().as_f64() <= kmax {
                break l;
            }
        }
    }))
}

/// ∫ p_x over a box by the trapezoid rule (tensor product). The density decays like a Gaussian
/// (planar layers move points by at most ‖û‖), so the box truncation is below 1e-12 and the
/// trapezoid error on a smooth integrand is far below the stated tolerances.
fn integrate_2d(f: impl Fn(&[f64; 2]) -> f64, l: f64, h: f64) -> f64 {
    let n = (2.0 * l / h).round() as i64;
    let mut s = 0.0;
    for i in 0..=n {
        let wx = if i == 0 || i == n { 0.5 } else { 1.0 };
        let x = -l + i as f64 * h;
        for j in 0..=n {
            let wy = if j == 0 || j == n { 0.5 } else { 1.0 };
            let y = -l + j as f64 * h;
            s += wx * wy * f(&[x, y]);
        }
    }
    s * h * h
}

#[test]
fn density_2d_integrates_to_one() {
    let flow = random_flow::<f64, 2, 4>(3, 1.0, 1.0, 4.0);
    let sampler = integrate_2d(|x| flow.log_prob(x).unwrap().exp(), 12.0, 0.03);
    assert!(
        (sampler - 1.0).abs() < 1e-5,
        "sampler direction: ∫ = {sampler}"
    );
    let normaliser = integrate_2d(|x| flow.log_prob_normalizing(x).exp(), 12.0, 0.03);
    assert!(
        (normaliser - 1.0).abs() < 1e-5,
        "normaliser direction: ∫ = {normaliser}"
    );
}

#[test]
fn density_1d_integrates_to_one() {
    for seed in 0..5 {
        let flow = random_flow::<f64, 1, 6>(seed, 1.5, 2.0, 4.0);
        let (l, h) = (25.0, 1e-3);
        let n = (2.0 * l / h) as i64;
        let mut s = 0.0;
        for i in 0..=n {
            let x = -l + i as f64 * h;
            let w = if i == 0 || i == n { 0.5 } else { 1.0 };
            s += w * flow.log_prob(&[x]).unwrap().exp();
        }
        let s = s * h;
        assert!((s - 1.0).abs() < 1e-6, "seed {seed}: ∫ = {s}");
    }
}

/// Flow round trips in f64 and f32; the bound is the per-layer bound of the planar tests
/// composed: K · 64 eps · Πκ_k · scale.
fn flow_roundtrip<T: Real, const D: usize>(seed: u64) {
    let flow = random_flow::<T, D, 8>(seed, 0.8, 0.8, 1e3);
    let kappa: f64 = flow
        .layers()
        .iter()
        .map(|l| l.conditioning().as_f64())
        .product();
    let mut r = support::rng(seed + 100);
    for _ in 0..100 {
        let z = normal_vec::<T, D>(&mut r, 1.5);
        let (x, ld) = flow.forward_and_log_det(&z);
        let (z2, ld_inv) = flow.inverse_and_log_det(&x).unwrap();
        let scale = 1.0 + support::max_abs(&x);
        let tol = 8.0 * 64.0 * T::EPS.as_f64() * kappa * scale * D as f64;
        assert!(max_diff(&z, &z2) <= tol, "D={D}: {z:?} vs {z2:?}");
        assert!((ld + ld_inv).as_f64().abs() <= tol * (1.0 + ld.as_f64().abs()));
    }
}

#[test]
fn flow_roundtrip_all() {
    flow_roundtrip::<f64, 1>(1);
    flow_roundtrip::<f64, 2>(2);
    flow_roundtrip::<f64, 3>(3);
    flow_roundtrip::<f64, 8>(4);
    flow_roundtrip::<f64, 16>(5);
    flow_roundtrip::<f32, 1>(6);
    flow_roundtrip::<f32, 2>(7);
    flow_roundtrip::<f32, 3>(8);
    flow_roundtrip::<f32, 8>(9);
    flow_roundtrip::<f32, 16>(10);
}

/// `sample` returns log q(x) = log p_z(z) − Σ ln|det J_g|; recomputing it from x through the
/// exact inverse gives the same value.
#[test]
fn sample_log_q_matches_log_prob() {
    let flow = random_flow::<f64, 3, 6>(11, 1.0, 1.0, 1e3);
    let mut r = support::rng(12);
    for _ in 0..1000 {
        let (x, lq) = flow.sample(&mut r);
        let lp = flow.log_prob(&x).unwrap();
        assert!((lp - lq).abs() < 1e-10 * (1.0 + lq.abs()), "{lp} vs {lq}");
        let (x2, lq2) = flow.sample_normalizing(&mut r).unwrap();
        let lp2 = flow.log_prob_normalizing(&x2);
        assert!(
            (lp2 - lq2).abs() < 1e-10 * (1.0 + lq2.abs()),
            "{lp2} vs {lq2}"
        );
    }
}
