//! `Flow<T, D, K>`: K planar layers composed, with densities by the change of variables.

use crate::activation::{Activation, Tanh};
use crate::base::StandardNormal;
use crate::error::Result;
use crate::planar::Planar;
use crate::real::Real;
use rand_core::Rng;

/// K planar layers in a fixed array (no allocation), composed as
/// `g = g_K ∘ … ∘ g_1`, with a standard normal base `p_z = N(0, I_D)`.
///
/// A flow can be used in either direction:
///
/// * **as the sampler** `g: z ↦ x` (reverse-KL / variational use, as in Rezende & Mohamed):
///   [`Flow::sample`] draws `z ~ p_z` and returns `x = g(z)` with
///   `log q(x) = log p_z(z) − Σ_k ln|det J_{g_k}|`; the density of any `x` is
///   [`Flow::log_prob`], which needs `f = g⁻¹` and is exact here because every layer has an
///   exact inverse: `log q(x) = log p_z(f(x)) + ln|det J_f(x)|`, with `|det J_f(x)| = 1/|det J_g(f(x))|`.
/// * **as the normaliser** `f: x ↦ z` (forward-KL / maximum-likelihood use): the layers map data
///   to the base, [`Flow::log_prob_normalizing`] is
///   `log p_x(x) = log p_z(f(x)) + ln|det J_f(x)|` with no inverse, and
///   [`Flow::sample_normalizing`] draws `x = f⁻¹(z)` through the exact inverse.
///
/// ```
/// use flowcore::{Flow, Planar, Xoshiro256PlusPlus, SeedableRng};
/// let l1 = Planar::<f64, 2>::new([1.0, 0.5], [0.8, -1.2], 0.3)?;
/// let l2 = Planar::<f64, 2>::new([-0.7, 1.1], [1.5, 0.4], -0.2)?;
/// let flow = Flow::new([l1, l2]);
/// let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
/// let (x, log_q) = flow.sample(&mut rng);
/// // The density of the sample, recomputed through the exact inverse:
/// assert!((flow.log_prob(&x)? - log_q).abs() < 1e-12);
/// # Ok::<(), flowcore::FlowError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flow<T: Real, const D: usize, const K: usize, A: Activation<T> = Tanh> {
    layers: [Planar<T, D, A>; K],
}

impl<T: Real, const D: usize, const K: usize> Flow<T, D, K, Tanh> {
    /// K identity tanh layers.
    #[must_use]
    pub fn identity() -> Self {
        Self {
            layers: [Planar::identity(); K],
        }
    }
}

impl<T: Real, const D: usize, const K: usize, A: Activation<T>> Flow<T, D, K, A> {
    /// The flow `g_K ∘ … ∘ g_1` of the given layers (`layers[0]` is applied first).
    #[must_use]
    pub const fn new(layers: [Planar<T, D, A>; K]) -> Self {
        Self { layers }
    }

    /// The layers, first applied first.
    #[inline]
    #[must_use]
    pub fn layers(&self) -> &[Planar<T, D, A>; K] {
        &self.layers
    }

    /// Replaces layer `k` (validated by its constructor); `false` if `k ≥ K`.
    pub fn set_layer(&mut self, k: usize, layer: Planar<T, D, A>) -> bool {
        match self.layers.get_mut(k) {
            Some(slot) => {
                *slot = layer;
                true
            }
            None => false,
        }
    }

    /// `x = g(z)`. NaN propagates (see [`Planar`]).
    #[must_use]
    pub fn forward(&self, z: &[T; D]) -> [T; D] {
        let mut x = *z;
        for l in &self.layers {
            x = l.forward(&x);
        }
        x
    }

    /// `(g(z), ln|det J_g(z)|)`, the log-det summed over the layers.
    #[must_use]
    pub fn forward_and_log_det(&self, z: &[T; D]) -> ([T; D], T) {
        let mut x = *z;
        let mut ld = T::ZERO;
        for l in &self.layers {
            let (y, d) = l.forward_and_log_det(&x);
            x = y;
            ld += d;
        }
        (x, ld)
    }

    /// `z = g⁻¹(x) = f(x)`, each layer inverted exactly, last layer first.
    ///
    /// # Errors
    /// [`crate::FlowError::NonFiniteInput`] for a non-finite `x` (or an intermediate point that
    /// overflows).
    pub fn inverse(&self, x: &[T; D]) -> Result<[T; D]> {
        self.inverse_and_log_det(x).map(|(z, _)| z)
    }

    /// `(f(x), ln|det J_f(x)|)` with `f = g⁻¹` and `ln|det J_f(x)| = −ln|det J_g(f(x))|`.
    ///
    /// # Errors
    /// As [`Flow::inverse`].
    pub fn inverse_and_log_det(&self, x: &[T; D]) -> Result<([T; D], T)> {
        let mut z = *x;
        let mut ld = T::ZERO;
        for l in self.layers.iter().rev() {
            let (y, d) = l.inverse_and_log_det(&z)?;
            z = y;
            ld += d;
        }
        Ok((z, ld))
    }

    /// Flow as the sampler: `log q(x) = log p_z(f(x)) + ln|det J_f(x)|`, `f = g⁻¹`.
    ///
    /// # Errors
    /// As [`Flow::inverse`].
    pub fn log_prob(&self, x: &[T; D]) -> Result<T> {
        let (z, ld) = self.inverse_and_log_det(x)?;
        Ok(StandardNormal::<T, D>::new().log_prob(&z) + ld)
    }

    /// Flow as the normaliser: the layers map `x` to `z`, and
    /// `log p_x(x) = log p_z(z) + ln|det J(x)|` (no inverse). NaN propagates.
    #[must_use]
    pub fn log_prob_normalizing(&self, x: &[T; D]) -> T {
        let (z, ld) = self.forward_and_log_det(x);
        StandardNormal::<T, D>::new().log_prob(&z) + ld
    }

    /// Flow as the sampler: draws `z ~ N(0, I)` and returns `(x, log q(x))` with `x = g(z)` and
    /// `log q(x) = log p_z(z) − ln|det J_g(z)|`, in one pass.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> ([T; D], T) {
        let base = StandardNormal::<T, D>::new();
        let z = base.sample(rng);
        let (x, ld) = self.forward_and_log_det(&z);
        (x, base.log_prob(&z) - ld)
    }

    /// Flow as the normaliser: draws `z ~ N(0, I)` and returns `(x, log p_x(x))` with
    /// `x = f⁻¹(z)` (exact inverse) and `log p_x(x) = log p_z(z) − ln|det J_f(x)|`.
    ///
    /// # Errors
    /// As [`Flow::inverse`] (only if an intermediate point overflows).
    pub fn sample_normalizing<R: Rng + ?Sized>(&self, rng: &mut R) -> Result<([T; D], T)> {
        let base = StandardNormal::<T, D>::new();
        let z = base.sample(rng);
        let (x, ld_inv) = self.inverse_and_log_det(&z)?;
        Ok((x, base.log_prob(&z) - ld_inv))
    }
}
