//! The Gaussian sampler: moments and a Kolmogorov–Smirnov test against the normal CDF.

use crate::support::{self, norm_cdf};
use flowcore::{Real, StandardNormal};

/// KS statistic of `xs` against Φ.
fn ks(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len() as f64;
    xs.iter().enumerate().fold(0.0f64, |d, (i, &x)| {
        let f = norm_cdf(x);
        d.max((f - i as f64 / n).abs())
            .max(((i + 1) as f64 / n - f).abs())
    })
}

/// n = 200000 draws per coordinate. KS: reject at significance 0.001 when √n·D > 1.95.
/// Moments: mean, variance, skewness, excess kurtosis within 5 standard errors
/// (1/√n, √(2/n), √(6/n), √(24/n)); the correlation of the two coordinates within 5/√n.
fn check<T: Real>(seed: u64) {
    let n = 200_000;
    let mut r = support::rng(seed);
    let base = StandardNormal::<T, 2>::new();
    let mut a = std::vec::Vec::with_capacity(n);
    let mut b = std::vec::Vec::with_capacity(n);
    for _ in 0..n {
        let z = base.sample(&mut r);
        a.push(z[0].as_f64());
        b.push(z[1].as_f64());
    }
    let nf = n as f64;
    let corr = a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>() / nf;
    assert!(corr.abs() < 5.0 / nf.sqrt(), "corr {corr}");
    for xs in [&mut a, &mut b] {
        let m = xs.iter().sum::<f64>() / nf;
        let m2 = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / nf;
        let m3 = xs.iter().map(|x| (x - m).powi(3)).sum::<f64>() / nf / m2.powf(1.5);
        let m4 = xs.iter().map(|x| (x - m).powi(4)).sum::<f64>() / nf / (m2 * m2) - 3.0;
        assert!(m.abs() < 5.0 / nf.sqrt(), "mean {m}");
        assert!((m2 - 1.0).abs() < 5.0 * (2.0 / nf).sqrt(), "var {m2}");
        assert!(m3.abs() < 5.0 * (6.0 / nf).sqrt(), "skew {m3}");
        assert!(m4.abs() < 5.0 * (24.0 / nf).sqrt(), "kurt {m4}");
        let d = ks(xs);
        assert!(nf.sqrt() * d < 1.95, "KS √n·D = {}", nf.sqrt() * d);
    }
}

#[test]
fn gaussian_sampler_f64() {
    check::<f64>(1);
}

#[test]
fn gaussian_sampler_f32() {
    check::<f32>(2);
}

#[test]
fn log_density_matches_formula() {
    let base = StandardNormal::<f64, 3>::new();
    let z = [0.3, -1.2, 2.0];
    let want = -0.5 * (0.09 + 1.44 + 4.0) - 1.5 * (2.0 * core::f64::consts::PI).ln();
    assert!((base.log_prob(&z) - want).abs() < 1e-14);
}

#[test]
fn sampling_is_reproducible_for_a_seed() {
    let base = StandardNormal::<f32, 5>::new();
    let (mut r1, mut r2) = (support::rng(9), support::rng(9));
    for _ in 0..100 {
        assert_eq!(base.sample(&mut r1), base.sample(&mut r2));
    }
}
