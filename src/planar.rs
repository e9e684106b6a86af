//! One planar layer `g(z) = z + û·h(wᵀz + b)`, its log-det and its exact inverse.

use crate::activation::{Activation, Tanh};
use crate::constraint::Constraint;
use crate::error::{FlowError, Result};
use crate::real::{Lane, Real};

/// A planar layer on `[T; D]` (Rezende & Mohamed 2015):
///
/// `g(z) = z + û·h(s)`, `s = wᵀz + b`, `log|det J_g(z)| = ln(1 + wᵀû·h′(s))`.
///
/// The layer keeps its free parameters `(u, w, b)` and the [`Constraint`] that maps `u` to `û`
/// with `wᵀû > −1`, so it is invertible by construction. The log-det is evaluated as
/// `ln((1 − h′(s)) + h′(s)·(1 + wᵀû))` (for tanh: `ln(tanh²s + sech²s·(1 + wᵀû))`) with
/// `1 + wᵀû` carried to full relative accuracy, so it stays finite and accurate as
/// `wᵀû → −1` where `1 + fl(wᵀû)·sech²` would give `−∞`.
///
/// ```
/// use flowcore::Planar;
/// let layer = Planar::<f64, 2>::new([0.5, -1.0], [2.0, 0.3], 0.1)?;
/// let z = [0.3, -0.7];
/// let (x, ld) = layer.forward_and_log_det(&z);
/// let (z2, ld_inv) = layer.inverse_and_log_det(&x)?;
/// assert!((z2[0] - z[0]).abs() < 1e-15 && (z2[1] - z[1]).abs() < 1e-15);
/// assert!((ld + ld_inv).abs() < 1e-15);
/// # Ok::<(), flowcore::FlowError>(())
/// ```
///
/// **NaN policy.** Constructors reject non-finite parameters. [`Planar::forward`] and
/// [`Planar::log_det`] take any input: a NaN or infinite coordinate makes the outputs NaN (or
/// infinite) as IEEE arithmetic carries it, never a panic. [`Planar::inverse`] checks its input
/// and returns [`FlowError::NonFiniteInput`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Planar<T: Real, const D: usize, A: Activation<T> = Tanh> {
    u: [T; D],
    w: [T; D],
    b: T,
    u_hat: [T; D],
    c: T,
    cp1: T,
    constraint: Constraint<T>,
    act: A,
}

impl<T: Real, const D: usize> Planar<T, D, Tanh> {
    /// A tanh layer with the default [`Constraint::Smooth`] reparameterisation of `u`.
    ///
    /// # Errors
    /// [`FlowError::NonFiniteParameter`] if any parameter is NaN or ±∞, or `wᵀu` overflows.
    pub fn new(u: [T; D], w: [T; D], b: T) -> Result<Self> {
        Self::with(u, w, b, Constraint::Smooth, Tanh)
    }

    /// The identity layer (`u = w = 0`, `b = 0`).
    #[must_use]
    pub fn identity() -> Self {
        let z = [T::ZERO; D];
        Self {
            u: z,
            w: z,
            b: T::ZERO,
            u_hat: z,
            c: T::ZERO,
            cp1: T::ONE,
            constraint: Constraint::Smooth,
            act: Tanh,
        }
    }
}

impl<T: Real, const D: usize, A: Activation<T>> Planar<T, D, A> {
    /// A layer with the given constraint and activation.
    ///
    /// # Errors
    /// [`FlowError::NonFiniteParameter`] for non-finite `u`, `w`, `b`, or an overflowing `wᵀu`
    /// or `û`; [`FlowError::InvalidArgument`] for a bad projection margin;
    /// [`FlowError::NotInvertible`] for [`Constraint::Unconstrained`] with `wᵀu ≤ −1`.
    pub fn with(u: [T; D], w: [T; D], b: T, constraint: Constraint<T>, act: A) -> Result<Self> {
        const { assert!(D > 0, "a planar layer needs D ≥ 1") };
        if !b.is_finite() {
            return Err(FlowError::NonFiniteParameter);
        }
        let (u_hat, c, cp1) = constraint.apply(&u, &w)?;
        Ok(Self {
            u,
            w,
            b,
            u_hat,
            c,
            cp1,
            constraint,
            act,
        })
    }

    /// The free parameter `u` (before the constraint).
    #[inline]
    #[must_use]
    pub fn u(&self) -> &[T; D] {
        &self.u
    }
    /// The direction `w`.
    #[inline]
    #[must_use]
    pub fn w(&self) -> &[T; D] {
        &self.w
    }
    /// The bias `b`.
    #[inline]
    #[must_use]
    pub fn b(&self) -> T {
        self.b
    }
    /// The constrained `û` the layer applies.
    #[inline]
    #[must_use]
    pub fn u_hat(&self) -> &[T; D] {
        &self.u_hat
    }
    /// `wᵀû = m(wᵀu)`.
    #[inline]
    #[must_use]
    pub fn w_dot_u_hat(&self) -> T {
        self.c
    }
    /// `1 + wᵀû`, to full relative accuracy (never below the smallest positive normal).
    #[inline]
    #[must_use]
    pub fn one_plus_w_dot_u_hat(&self) -> T {
        self.cp1
    }
    /// The constraint in use.
    #[inline]
    #[must_use]
    pub fn constraint(&self) -> Constraint<T> {
        self.constraint
    }
    /// The activation.
    #[inline]
    #[must_use]
    pub fn activation(&self) -> &A {
        &self.act
    }

    /// The layer's conditioning `κ = 1 / min over s of (1 + wᵀû·h′(s))`: the largest factor by
    /// which the inverse amplifies a perturbation along `û` (1 if `wᵀû ≥ 0`; `1/(1 + wᵀû)` for
    /// tanh with `wᵀû < 0`). Round-trip errors are bounded by a few ulps times `κ`.
    #[must_use]
    pub fn conditioning(&self) -> T {
        let (lo, hi) = self.act.dh_range();
        let dh = if self.c >= T::ZERO { lo } else { hi };
        T::ONE / ((T::ONE - dh) + dh * self.cp1)
    }

    /// The pre-activation `s = wᵀz + b`.
    #[inline]
    #[must_use]
    pub fn preactivation(&self, z: &[T; D]) -> T {
        dot_plus(&self.w, z, self.b)
    }

    /// Applies the layer in place to `D` coordinates held in lanes (one point per lane; a plain
    /// scalar is one lane) and returns the Jacobian determinant `1 + wᵀû·h′(s) > 0` of each lane
    /// (not its log), so that callers can multiply determinants over layers and take one `ln`.
    ///
    /// This is the kernel the scalar path and the SIMD path share.
    #[inline(always)]
    pub fn forward_lanes<L: Lane<Scalar = T>>(&self, z: &mut [L; D]) -> L {
        let mut s = L::splat(self.b);
        for i in 0..D {
            s = z[i].madd(L::splat(self.w[i]), s);
        }
        let (h, dh, om) = self.act.eval(s);
        for i in 0..D {
            z[i] = h.madd(L::splat(self.u_hat[i]), z[i]);
        }
        dh.madd(L::splat(self.cp1), om)
    }

    /// `x = g(z)`.
    #[inline]
    #[must_use]
    pub fn forward(&self, z: &[T; D]) -> [T; D] {
        let mut x = *z;
        let s = self.preactivation(z);
        let h = self.act.h(s);
        for i in 0..D {
            x[i] = h.madd(self.u_hat[i], x[i]);
        }
        x
    }

    /// `(g(z), ln|det J_g(z)|)`.
    #[inline]
    #[must_use]
    pub fn forward_and_log_det(&self, z: &[T; D]) -> ([T; D], T) {
        let mut x = *z;
        let det = self.forward_lanes(&mut x);
        (x, det.ln())
    }

    /// `ln|det J_g(z)| = ln((1 − h′(s)) + h′(s)·(1 + wᵀû))`, `s = wᵀz + b`.
    #[inline]
    #[must_use]
    pub fn log_det(&self, z: &[T; D]) -> T {
        self.log_det_at(self.preactivation(z))
    }

    /// The log-det as a function of the pre-activation `s`.
    #[inline]
    #[must_use]
    pub fn log_det_at(&self, s: T) -> T {
        let (_, dh, om) = self.act.eval(s);
        dh.madd(self.cp1, om).ln()
    }

    /// Solves `α + wᵀû·h(α) = y` for the pre-activation `α` of the point that maps to a point
    /// with `wᵀx + b = y`. Returns `α` and the iterations used (at most
    /// [`Tanh::max_iter`] for tanh, 0 for closed forms).
    ///
    /// # Errors
    /// As [`Activation::solve`].
    pub fn solve_preactivation(&self, y: T) -> Result<(T, u32)> {
        self.act.solve(y, self.c, self.cp1)
    }

    /// `z = g⁻¹(x)`, exactly (to round-off): the scalar equation `α + wᵀû·h(α) = wᵀx + b` is
    /// solved by safeguarded Newton in a bracket, then `z = x − û·h(α)`.
    ///
    /// # Errors
    /// [`FlowError::NonFiniteInput`] if `x` has a NaN or infinite entry or `wᵀx + b` overflows.
    pub fn inverse(&self, x: &[T; D]) -> Result<[T; D]> {
        self.inverse_and_log_det(x).map(|(z, _)| z)
    }

    /// `(g⁻¹(x), ln|det J_{g⁻¹}(x)|)`, where `ln|det J_{g⁻¹}(x)| = −ln|det J_g(g⁻¹(x))|`.
    ///
    /// # Errors
    /// As [`Planar::inverse`].
    pub fn inverse_and_log_det(&self, x: &[T; D]) -> Result<([T; D], T)> {
        if x.iter().any(|v| !v.is_finite()) {
            return Err(FlowError::NonFiniteInput);
        }
        let y = self.preactivation(x);
        let (alpha, _) = self.solve_preactivation(y)?;
        let (h, dh, om) = self.act.eval(alpha);
        let mut z = *x;
        for i in 0..D {
            z[i] = (-h).madd(self.u_hat[i], z[i]);
        }
        Ok((z, -dh.madd(self.cp1, om).ln()))
    }
}

/// `wᵀz + b` with the same operation order as the lane kernel.
#[inline(always)]
pub(crate) fn dot_plus<T: Real, const D: usize>(w: &[T; D], z: &[T; D], b: T) -> T {
    let mut s = b;
    for i in 0..D {
        s = z[i].madd(w[i], s);
    }
    s
}
