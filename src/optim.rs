//! Optimisers on a flow's fixed-size flat parameter vector (no allocation): [`Adam`] (with bias
//! correction) and [`Sgd`], plus a random initialisation.
//!
//! The parameters of a `Flow<T, D, K>` are `P = K·(2D + 1)` scalars in the layout of
//! [`Flow::write_params`]; the optimisers are generic over `P` and check it at run time against
//! the flow (returning [`FlowError::InvalidArgument`] on a mismatch).
//!
//! An update is **all or nothing**: if the gradient has a non-finite entry, or the updated
//! parameters do not make a valid flow, the flow and the optimiser state are left untouched
//! and the error is returned.
//!
//! ```
//! use flowcore::optim::{Adam, init_random};
//! use flowcore::grad::FlowGrad;
//! use flowcore::{SeedableRng, Xoshiro256PlusPlus};
//! let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
//! let mut flow = init_random::<f32, 2, 4, _>(&mut rng);
//! let mut adam = Adam::<f32, 20>::new(1e-3);
//! let before = flow;
//! adam.step(&mut flow, &FlowGrad::zero())?; // a zero gradient moves nothing
//! assert_eq!(flow, before);
//! # Ok::<(), flowcore::FlowError>(())
//! ```

use crate::activation::Activation;
use crate::base::uniform_open0;
use crate::error::{FlowError, Result};
use crate::flow::Flow;
use crate::grad::FlowGrad;
use crate::planar::Planar;
use crate::real::Real;
use rand_core::Rng;

/// Adam (Kingma & Ba 2015) with bias correction, on `P` parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam<T, const P: usize> {
    /// Learning rate (may be changed between steps for a schedule).
    pub lr: T,
    /// First-moment decay, default 0.9.
    pub beta1: T,
    /// Second-moment decay, default 0.999.
    pub beta2: T,
    /// Denominator offset, default 1e−8.
    pub eps: T,
    m: [T; P],
    v: [T; P],
    b1t: T,
    b2t: T,
    t: u64,
}

impl<T: Real, const P: usize> Adam<T, P> {
    /// Adam with the usual defaults `β₁ = 0.9`, `β₂ = 0.999`, `ε = 1e−8`.
    #[must_use]
    pub fn new(lr: T) -> Self {
        Self {
            lr,
            beta1: T::from_f64(0.9),
            beta2: T::from_f64(0.999),
            eps: T::from_f64(1e-8),
            m: [T::ZERO; P],
            v: [T::ZERO; P],
            b1t: T::ONE,
            b2t: T::ONE,
            t: 0,
        }
    }

    /// Number of steps applied so far.
    #[must_use]
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// One Adam update of the flat parameters `p` with gradient `g` (both of length `P`).
    ///
    /// # Errors
    /// [`FlowError::InvalidArgument`] on a length mismatch; [`FlowError::NonFiniteParameter`]
    /// if `g` has a non-finite entry (nothing is changed then).
    pub fn update(&mut self, p: &mut [T], g: &[T]) -> Result<()> {
        if p.len() != P || g.len() != P {
            return Err(FlowError::InvalidArgument(
                "parameter and gradient length must be P",
            ));
        }
        if g.iter().any(|v| !v.is_finite()) {
            return Err(FlowError::NonFiniteParameter);
        }
        self.t += 1;
        self.b1t *= self.beta1;
        self.b2t *= self.beta2;
        let c1 = T::ONE - self.b1t;
        let c2 = T::ONE - self.b2t;
        let step = self.lr / c1;
        let sc2 = c2.sqrt();
        for i in 0..P {
            self.m[i] = self.beta1 * self.m[i] + (T::ONE - self.beta1) * g[i];
            self.v[i] = self.beta2 * self.v[i] + (T::ONE - self.beta2) * g[i] * g[i];
            // lr·m̂/(√v̂ + ε) with m̂ = m/c1, v̂ = v/c2.
            p[i] -= step * self.m[i] / (self.v[i].sqrt() / sc2 + self.eps);
        }
        Ok(())
    }

    /// One update of a flow's parameters, all or nothing (see the [module docs](self)).
    ///
    /// # Errors
    /// [`FlowError::InvalidArgument`] if `P ≠ K·(2D + 1)`; [`FlowError::NonFiniteParameter`]
    /// for a non-finite gradient or updated parameters that do not make a valid layer.
    pub fn step<const D: usize, const K: usize, A: Activation<T>>(
        &mut self,
        flow: &mut Flow<T, D, K, A>,
        grad: &FlowGrad<T, D, K>,
    ) -> Result<()> {
        let mut p = [T::ZERO; P];
        let mut g = [T::ZERO; P];
        flow.write_params(&mut p)?;
        grad.write_flat(&mut g)?;
        let mut next = *self;
        next.update(&mut p, &g)?;
        *flow = flow.with_params(&p)?;
        *self = next;
        Ok(())
    }
}

/// Plain stochastic gradient descent, `p ← p − lr·g`, on `P` parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd<T, const P: usize> {
    /// Learning rate.
    pub lr: T,
}

impl<T: Real, const P: usize> Sgd<T, P> {
    /// SGD with the given learning rate.
    #[must_use]
    pub fn new(lr: T) -> Self {
        Self { lr }
    }

    /// `p ← p − lr·g`.
    ///
    /// # Errors
    /// As [`Adam::update`].
    pub fn update(&self, p: &mut [T], g: &[T]) -> Result<()> {
        if p.len() != P || g.len() != P {
            return Err(FlowError::InvalidArgument(
                "parameter and gradient length must be P",
            ));
        }
        if g.iter().any(|v| !v.is_finite()) {
            return Err(FlowError::NonFiniteParameter);
        }
        for i in 0..P {
            p[i] -= self.lr * g[i];
        }
        Ok(())
    }

    /// One update of a flow's parameters, all or nothing.
    ///
    /// # Errors
    /// As [`Adam::step`].
    pub fn step<const D: usize, const K: usize, A: Activation<T>>(
        &self,
        flow: &mut Flow<T, D, K, A>,
        grad: &FlowGrad<T, D, K>,
    ) -> Result<()> {
        let mut p = [T::ZERO; P];
        let mut g = [T::ZERO; P];
        flow.write_params(&mut p)?;
        grad.write_flat(&mut g)?;
        self.update(&mut p, &g)?;
        *flow = flow.with_params(&p)?;
        Ok(())
    }
}

/// A random tanh flow with the default constraint: `u ~ U(−a√2, a√2)`,
/// `w ~ U(−a√(2/D), a√(2/D))` per coordinate, `b = 0`, with `a = scale`. `scale = 1` is the
/// normflows initialisation; smaller scales start closer to the identity.
pub fn init_random_scaled<T: Real, const D: usize, const K: usize, R: Rng + ?Sized>(
    rng: &mut R,
    scale: f64,
) -> Flow<T, D, K> {
    let lu = core::f64::consts::SQRT_2 * scale;
    let lw = libm::sqrt(2.0 / D as f64) * scale;
    let mut f = Flow::identity();
    for k in 0..K {
        let mut u = [T::ZERO; D];
        let mut w = [T::ZERO; D];
        for i in 0..D {
            u[i] = T::from_f64(lu * (2.0 * uniform_open0(rng) - 1.0));
            w[i] = T::from_f64(lw * (2.0 * uniform_open0(rng) - 1.0));
        }
        // Finite, bounded parameters always give a valid Smooth layer.
        if let Ok(l) = Planar::new(u, w, T::ZERO) {
            f.set_layer(k, l);
        }
    }
    f
}

/// [`init_random_scaled`] with the normflows scale 1.
pub fn init_random<T: Real, const D: usize, const K: usize, R: Rng + ?Sized>(
    rng: &mut R,
) -> Flow<T, D, K> {
    init_random_scaled(rng, 1.0)
}
