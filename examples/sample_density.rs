//! Builds a planar flow, samples from it, evaluates its density in both directions, and checks
//! the identities the crate rests on. Exits with status 1 if any check fails.
//!
//! `cargo run --release --example sample_density`

use flowcore::{Flow, Planar, Real, SeedableRng, StandardNormal, Xoshiro256PlusPlus};

/// A K-layer flow with parameters drawn from a seeded generator.
fn make_flow<T: Real, const D: usize, const K: usize>(seed: u64) -> Flow<T, D, K> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let base = StandardNormal::<f64, D>::new();
    Flow::new(core::array::from_fn(|_| {
        let u = base.sample(&mut rng).map(|v| T::from_f64(0.9 * v));
        let w = base
            .sample(&mut rng)
            .map(|v| T::from_f64(0.9 * v / (D as f64).sqrt()));
        let b = T::from_f64(base.sample(&mut rng)[0]);
        Planar::new(u, w, b).expect("finite parameters")
    }))
}

struct Report {
    failed: bool,
}

impl Report {
    fn check(&mut self, what: &str, value: f64, bound: f64, eps: f64) {
        let ok = value <= bound;
        self.failed |= !ok;
        println!(
            "  [{}] {what}: {value:.3e} = {:.0} eps (bound {bound:.1e})",
            if ok { "ok" } else { "FAIL" },
            value / eps
        );
    }
}

fn identities<T: Real, const D: usize, const K: usize>(r: &mut Report, name: &str, n: usize) {
    let flow = make_flow::<T, D, K>(7);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let (mut rt, mut lp_err, mut norm_err) = (0.0f64, 0.0f64, 0.0f64);
    let mut mean = [0.0f64; D];
    for _ in 0..n {
        // Sampler direction: x = g(z), log q(x) from the forward pass.
        let (x, log_q) = flow.sample(&mut rng);
        // Density of the same x through the exact inverse f = g⁻¹.
        let lp = flow.log_prob(&x).expect("finite sample");
        lp_err = lp_err.max((lp - log_q).as_f64().abs() / (1.0 + log_q.as_f64().abs()));
        let z = flow.inverse(&x).expect("finite sample");
        let x2 = flow.forward(&z);
        for i in 0..D {
            rt = rt.max((x2[i] - x[i]).as_f64().abs() / (1.0 + x[i].as_f64().abs()));
            mean[i] += x[i].as_f64() / n as f64;
        }
        // Normaliser direction: the same layers read as f: x ↦ z, sampled through the inverse.
        let (xn, log_p) = flow.sample_normalizing(&mut rng).expect("finite sample");
        let lpn = flow.log_prob_normalizing(&xn);
        norm_err = norm_err.max((lpn - log_p).as_f64().abs() / (1.0 + log_p.as_f64().abs()));
    }
    // Error bounds: every layer adds O(eps) relative error, which the layers after it carry with
    // their Lipschitz constants L_k ≤ 1 + ‖û_k‖∞·‖w_k‖₁; the density through the inverse also
    // carries the conditioning κ_k of each inverted layer.
    let eps = T::EPS.as_f64();
    let lip: f64 = flow
        .layers()
        .iter()
        .map(|l| {
            let uh = l
                .u_hat()
                .iter()
                .fold(0.0f64, |m, v| m.max(v.as_f64().abs()));
            1.0 + uh * l.w().iter().map(|v| v.as_f64().abs()).sum::<f64>()
        })
        .product();
    let kappa: f64 = flow
        .layers()
        .iter()
        .map(|l| l.conditioning().as_f64())
        .product();
    let k = K as f64;
    println!(
        "{name}: D = {D}, K = {K}, {n} samples; Π L_k = {lip:.3e}, Π κ_k = {kappa:.3e}; sample mean {mean:.3?}"
    );
    r.check("max rel |g(f(x)) − x|", rt, 8.0 * k * eps * lip, eps);
    r.check(
        "max rel |log q(x) from sampling − log q(x) via the exact inverse|",
        lp_err,
        8.0 * k * eps * lip * kappa,
        eps,
    );
    r.check(
        "max rel |log p(x) normaliser direction − sampled log p|",
        norm_err,
        8.0 * k * eps * lip * kappa,
        eps,
    );
}

fn main() {
    let mut r = Report { failed: false };
    identities::<f64, 2, 16>(&mut r, "f64", 20_000);
    identities::<f32, 2, 16>(&mut r, "f32", 20_000);
    identities::<f64, 8, 32>(&mut r, "f64", 5_000);

    // Change of variables: the flow's density integrates to 1 (trapezoid rule on [−L, L]²).
    let flow = make_flow::<f64, 2, 8>(3);
    let (l, h) = (12.0, 0.03);
    let n = (2.0 * l / h) as i64;
    let mut s = 0.0;
    for i in 0..=n {
        for j in 0..=n {
            let w =
                if i == 0 || i == n { 0.5 } else { 1.0 } * if j == 0 || j == n { 0.5 } else { 1.0 };
            let x = [-l + i as f64 * h, -l + j as f64 * h];
            s += w * flow.log_prob(&x).expect("finite grid point").exp();
        }
    }
    println!(
        "quadrature: ∫ q(x) dx over [−12, 12]², K = 8 = {:.9}",
        s * h * h
    );
    r.check("|∫ q − 1|", (s * h * h - 1.0).abs(), 1e-4, f64::EPSILON);
    if r.failed {
        println!("some identities FAILED");
        std::process::exit(1);
    }
    println!("all identities hold");
}
