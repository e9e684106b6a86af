//! Shared test helpers: seeded inputs, finite-difference Jacobians, LU determinants, and a small
//! double-double arithmetic for high-precision references.
#![allow(dead_code)]

pub mod dd;

use flowcore::{Real, SeedableRng, Xoshiro256PlusPlus};

/// Seeded generator for tests.
pub fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// A standard normal f64 draw.
pub fn normal(r: &mut Xoshiro256PlusPlus) -> f64 {
    flowcore::base::normal_pair(r).0
}

/// A uniform draw in [lo, hi).
pub fn uniform(r: &mut Xoshiro256PlusPlus, lo: f64, hi: f64) -> f64 {
    use flowcore::Rng;
    lo + (hi - lo) * ((r.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
}

/// An array of `D` normal draws scaled by `s`, converted to `T`.
pub fn normal_vec<T: Real, const D: usize>(r: &mut Xoshiro256PlusPlus, s: f64) -> [T; D] {
    core::array::from_fn(|_| T::from_f64(s * normal(r)))
}

/// `ln|det A|` of a D×D matrix by LU with partial pivoting (f64).
pub fn log_abs_det<const D: usize>(mut a: [[f64; D]; D]) -> f64 {
    let mut ld = 0.0;
    for k in 0..D {
        let p = (k..D)
            .max_by(|&i, &j| a[i][k].abs().total_cmp(&a[j][k].abs()))
            .unwrap();
        a.swap(k, p);
        let piv = a[k][k];
        ld += piv.abs().ln();
        for i in k + 1..D {
            let f = a[i][k] / piv;
            for j in k..D {
                a[i][j] -= f * a[k][j];
            }
        }
    }
    ld
}

/// Central-difference Jacobian `J[i][j] = ∂f_i/∂z_j` with step `h·max(1, |z_j|)`.
pub fn fd_jacobian<const D: usize>(
    f: impl Fn(&[f64; D]) -> [f64; D],
    z: &[f64; D],
    h: f64,
) -> [[f64; D]; D] {
    let mut j = [[0.0; D]; D];
    for c in 0..D {
        let step = h * z[c].abs().max(1.0);
        let mut zp = *z;
        let mut zm = *z;
        zp[c] += step;
        zm[c] -= step;
        let fp = f(&zp);
        let fm = f(&zm);
        for r in 0..D {
            j[r][c] = (fp[r] - fm[r]) / (2.0 * step);
        }
    }
    j
}

/// Max-norm of an array, as f64.
pub fn max_abs<T: Real, const D: usize>(x: &[T; D]) -> f64 {
    x.iter().fold(0.0f64, |a, v| a.max(v.as_f64().abs()))
}

/// Max-norm of the difference, as f64.
pub fn max_diff<T: Real, const D: usize>(a: &[T; D], b: &[T; D]) -> f64 {
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x.as_f64() - y.as_f64()).abs()))
}

/// Standard normal CDF via erfc.
pub fn norm_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / core::f64::consts::SQRT_2)
}
