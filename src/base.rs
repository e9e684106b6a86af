//! The base distribution `N(0, I_D)` and the Gaussian sampler.

use crate::real::Real;
use core::marker::PhantomData;
use rand_core::Rng;

/// The standard normal distribution on `[T; D]`: `log p(z) = −½‖z‖² − (D/2)·ln(2π)`.
///
/// ```
/// use flowcore::{StandardNormal, Xoshiro256PlusPlus, SeedableRng};
/// let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
/// let base = StandardNormal::<f64, 3>::new();
/// let z = base.sample(&mut rng);
/// let lp = base.log_prob(&z);
/// assert!(lp < -3.0 * 0.9189);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StandardNormal<T, const D: usize> {
    _t: PhantomData<T>,
}

impl<T: Real, const D: usize> StandardNormal<T, D> {
    /// The distribution.
    #[must_use]
    pub const fn new() -> Self {
        Self { _t: PhantomData }
    }

    /// `log p(z)`. NaN in `z` gives NaN; an infinite entry gives `−∞`.
    #[inline]
    #[must_use]
    pub fn log_prob(&self, z: &[T; D]) -> T {
        let mut q = T::ZERO;
        for v in z {
            q = v.madd(*v, q);
        }
        -(T::HALF * q) - T::from_usize(D) * T::HALF_LN_2PI
    }

    /// One draw, `D` independent standard normal coordinates (Box–Muller in f64, see
    /// [`normal_pair`]).
    #[inline]
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> [T; D] {
        let mut z = [T::ZERO; D];
        let mut i = 0;
        while i < D {
            let (a, b) = normal_pair(rng);
            z[i] = T::from_f64(a);
            if i + 1 < D {
                z[i + 1] = T::from_f64(b);
            }
            i += 2;
        }
        z
    }
}

/// A uniform double in `(0, 1]` with 53 random bits: `(k + 1)·2⁻⁵³`, `k` the top 53 bits of a
/// `u64` draw.
#[inline]
pub fn uniform_open0<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    ((rng.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Two independent standard normal doubles by the Box–Muller transform:
/// `r = √(−2 ln u₁)`, `(r cos 2πu₂, r sin 2πu₂)`, with `u₁ ∈ (0, 1]` and `u₂ ∈ [0, 1)` of 53 bits
/// each, evaluated with `libm` in f64. The largest value it can return is
/// `√(106 ln 2) ≈ 8.57`, a tail probability of 1e−17, below what any test can see; the
/// accuracy is that of libm's `log`, `sqrt`, `sin` and `cos` (≤ 1 ulp each).
#[inline]
pub fn normal_pair<R: Rng + ?Sized>(rng: &mut R) -> (f64, f64) {
    let u1 = uniform_open0(rng);
    let u2 = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    let r = libm::sqrt(-2.0 * libm::log(u1));
    let (s, c) = libm::sincos(core::f64::consts::TAU * u2);
    (r * c, r * s)
}
