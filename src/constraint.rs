//! The invertibility constraint `wᵀû > −1` of a tanh planar layer.
//!
//! A planar layer `g(z) = z + û·h(wᵀz + b)` with `0 ≤ h′ ≤ 1` is invertible iff
//! `1 + wᵀû·h′ > 0` everywhere, i.e. iff `wᵀû ≥ −1` (tanh: `wᵀû > −1` keeps the Jacobian
//! non-singular). Training works on free parameters `u` and maps them to a `û` that satisfies it:
//!
//! `û = u + (m(wᵀu) − wᵀu) · w / ‖w‖²`, so that `wᵀû = m(wᵀu)` with `m > −1`.
//!
//! | constraint | `m(x)` | `1 + wᵀû` | as `‖w‖ → 0` with `u` fixed |
//! |---|---|---|---|
//! | [`Constraint::Smooth`] (default) | `−1 + softplus(x + ln(e − 1))` | `softplus(x + ln(e−1))` | `û → u`: `‖û − u‖ ≤ ‖u‖` always |
//! | [`Constraint::Paper`] | `−1 + softplus(x)` (Rezende & Mohamed 2015, normflows, Pyro, flowjax) | `softplus(x)` | `‖û‖ ≈ 0.307/‖w‖ → ∞` |
//! | [`Constraint::Project`] | `max(x, −1 + margin)` | `max(1 + x, margin)` | `û = u` once `wᵀu ≥ −1 + margin` |
//! | [`Constraint::Unconstrained`] | `x` (error if `x ≤ −1`) | `1 + x` | `û = u` |
//!
//! **Why `Smooth` is the default.** With the paper's `m`, `m(0) = ln 2 − 1 ≈ −0.307 ≠ 0`, so as
//! `w → 0` (a common state at initialisation, or a layer that training switches off) the
//! correction `(m(wᵀu) − wᵀu)·w/‖w‖²` grows like `0.307/‖w‖`: the layer translates every point by
//! `û·tanh(b)`, unboundedly. Shifting the softplus argument by `ln(e − 1)` makes `m(0) = 0` and
//! `m(x) − x` decreasing with slope in `(−1, 0)`, so `|m(x) − x| ≤ |x|` and
//! `‖û − u‖ = |m(x) − x| / ‖w‖ ≤ |wᵀu| / ‖w‖ ≤ ‖u‖`. The map stays smooth and strictly
//! increasing, with the same asymptotes as the paper's (`m(x) → −1` as `x → −∞`, `m(x) ≈ x`
//! up to the constant `ln(e−1) − 1 ≈ −0.459` as `x → ∞`).
//!
//! **Accuracy.** The layer never forms `1 + wᵀû` by adding 1 to a rounded `wᵀû` (which is
//! −1 exactly in f32 once `wᵀu ≲ −17`, so the log-det would be `−∞`). It carries
//! `1 + wᵀû` as its own quantity, computed from `x = wᵀu` to full relative accuracy
//! (`softplus` form above), clamped below at the smallest positive normal float, so
//! `1 + wᵀû·h′ = (1 − h′) + h′·(1 + wᵀû) > 0` for every finite input as computed. The correction
//! is formed from `w / max|wᵢ|` (no `‖w‖²` that can underflow or overflow), and near `x = 0`
//! from `(m(x) − x)/x`, so `w = 0`, `‖w‖ ≈ 1e−30` and `‖w‖ ≈ 1e30` all give valid layers with
//! no division by zero.

use crate::error::{FlowError, Result};
use crate::real::Real;

/// How a layer's free parameter `u` is mapped to `û` with `wᵀû > −1`. See the
/// [module docs](self) for the formulas and the reasons for the default.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Constraint<T> {
    /// `m(x) = −1 + softplus(x + ln(e − 1))`: smooth, `m(0) = 0`, `‖û − u‖ ≤ ‖u‖`. The default.
    #[default]
    Smooth,
    /// The paper's `m(x) = −1 + softplus(x)`, as normflows, Pyro and flowjax use it; for
    /// comparison with those libraries. For `w = 0` exactly the correction has no limit and is
    /// dropped (`û = u`); for tiny `‖w‖` it can overflow, which gives
    /// [`FlowError::NonFiniteParameter`].
    Paper,
    /// Hard projection: `û = u` if `wᵀu ≥ −1 + margin`, else `u` is moved along `w` until
    /// `wᵀû = −1 + margin`. The margin must lie in `[EPS, 1)`; [`Constraint::projected`]
    /// gives the documented default `2⁻¹⁰ ≈ 9.8e−4` (the Jacobian's determinant stays
    /// `≥ margin`, i.e. the log-det `≥ ln(2⁻¹⁰) ≈ −6.9` per layer).
    Project {
        /// Distance kept from the boundary `wᵀû = −1`.
        margin: T,
    },
    /// `û = u`; constructing the layer fails with [`FlowError::NotInvertible`] unless
    /// `1 + wᵀu > 0` as computed.
    Unconstrained,
}

impl<T: Real> Constraint<T> {
    /// The hard projection with the default margin `2⁻¹⁰`.
    #[must_use]
    pub fn projected() -> Self {
        Constraint::Project {
            margin: T::from_f64(1.0 / 1024.0),
        }
    }

    /// `m(x) = wᵀû` as a function of `x = wᵀu`, with `1 + m(x)` to full relative accuracy.
    /// Returns `(m(x), 1 + m(x))`.
    ///
    /// # Errors
    /// [`FlowError::NonFiniteParameter`] if `x` is not finite; [`FlowError::InvalidArgument`]
    /// for a bad margin; [`FlowError::NotInvertible`] for [`Constraint::Unconstrained`] with
    /// `1 + x ≤ 0`.
    pub fn m(&self, x: T) -> Result<(T, T)> {
        if !x.is_finite() {
            return Err(FlowError::NonFiniteParameter);
        }
        let one = T::ONE;
        let tiny = T::min_positive_value();
        let (m, mp1) = match *self {
            Constraint::Smooth => {
                let mp1 = smooth_one_plus_m(x);
                // Near 0, m = softplus(x + k) − softplus(k) = log1p((1 − 1/e)·expm1(x)) keeps its
                // relative accuracy; elsewhere |m| ≥ 0.26 and mp1 − 1 is accurate.
                let m = if x.abs() <= one {
                    sigma_k::<T>() * x.exp_m1()
                } else {
                    mp1 - one
                };
                let m = if x.abs() <= one { m.ln_1p() } else { m };
                (m, mp1)
            }
            Constraint::Paper => {
                let mp1 = x.softplus();
                (mp1 - one, mp1)
            }
            Constraint::Project { margin } => {
                check_margin(margin)?;
                let floor = margin - one;
                if x < floor {
                    (floor, margin)
                } else {
                    (x, one + x)
                }
            }
            Constraint::Unconstrained => {
                let mp1 = one + x;
                if mp1.is_nan() || mp1 <= T::ZERO {
                    return Err(FlowError::NotInvertible);
                }
                (x, mp1)
            }
        };
        Ok((m, mp1.max(tiny)))
    }

    /// `dm/dx`, the derivative of [`Constraint::m`] (for gradients through the
    /// reparameterisation). `σ(x + ln(e−1))` for `Smooth`, `σ(x)` for `Paper`, and 0 or 1 for
    /// the piecewise-linear ones.
    #[must_use]
    pub fn dm_dx(&self, x: T) -> T {
        match *self {
            Constraint::Smooth => sigmoid(x + T::LN_E_MINUS_1),
            Constraint::Paper => sigmoid(x),
            Constraint::Project { margin } => {
                if x < margin - T::ONE {
                    T::ZERO
                } else {
                    T::ONE
                }
            }
            Constraint::Unconstrained => T::ONE,
        }
    }

    /// Maps `(u, w)` to `(û, wᵀû, 1 + wᵀû)`.
    ///
    /// # Errors
    /// [`FlowError::NonFiniteParameter`] if `u` or `w` has a non-finite entry, or `wᵀu` or `û`
    /// overflows; the errors of [`Constraint::m`].
    pub fn apply<const D: usize>(&self, u: &[T; D], w: &[T; D]) -> Result<([T; D], T, T)> {
        if u.iter().chain(w.iter()).any(|v| !v.is_finite()) {
            return Err(FlowError::NonFiniteParameter);
        }
        let wmax = w.iter().fold(T::ZERO, |a, &v| a.max(v.abs()));
        if wmax == T::ZERO {
            // w = 0: wᵀû = 0 whatever û is; the layer is the translation z + u·h(b).
            if let Constraint::Project { margin } = *self {
                check_margin(margin)?;
            }
            return Ok((*u, T::ZERO, T::ONE));
        }
        // Scaled direction: ŵ = w / max|wᵢ| has max entry 1, so n2 = ‖ŵ‖² ∈ [1, D].
        let mut wt = [T::ZERO; D];
        let mut n2 = T::ZERO;
        let mut xt = T::ZERO;
        for i in 0..D {
            wt[i] = w[i] / wmax;
            n2 += wt[i] * wt[i];
            xt += wt[i] * u[i];
        }
        // wᵀu from w itself where it is finite: ŵ = w/max|wᵢ| flushes to 0 every wᵢ below
        // max|wᵢ|·2⁻¹⁴⁹ (f32), whose terms can still matter when u is large (found by fuzzing).
        let mut x = T::ZERO;
        for i in 0..D {
            x = w[i].madd(u[i], x);
        }
        if !x.is_finite() {
            x = xt * wmax;
        }
        let (m, mp1) = self.m(x)?;
        // û = u + coef·ŵ with coef = (m(x) − x)/(wmax·n2) = ((m(x) − x)/x)·(xt/n2).
        let coef = match self {
            Constraint::Smooth if x.abs() <= T::ONE => {
                // (m − x)/x = −1/e + O(x) as x → 0. Below eps that limit is exact to rounding, and
                // it must be taken there: for subnormal x, m and x are quantised at the smallest
                // subnormal and their ratio is off by up to 50 % (found by fuzzing, f32 u, w
                // near 2⁻⁷⁵); the size of the correction comes from the scaled xt alone.
                let r = if x.abs() <= T::EPS {
                    -T::ONE / T::E()
                } else {
                    (m - x) / x
                };
                r * (xt / n2)
            }
            _ => (m - x) / (wmax * n2),
        };
        let mut uh = [T::ZERO; D];
        for i in 0..D {
            uh[i] = u[i] + coef * wt[i];
        }
        // Refinement: when u is large along w, u + coef·ŵ cancels and leaves rounding noise of
        // size eps·|u| along w, so the stored û would not satisfy wᵀû = m. Two correction steps
        // û += ((m − wᵀû)/(wmax·n2))·ŵ make wᵀû = m up to the rounding of the dot product of the
        // corrected û (eps·Σ|wᵢûᵢ|), whatever the size of u.
        //
        // A legitimate step only repairs that rounding: |r| ≤ ~D·eps·(max|uᵢ| + |coef|) (the
        // rounding of u + coef·ŵ plus that of the dot, in units of ŵ). A larger residual means
        // that `m − wᵀû` is itself noise, which happens when the products wᵢûᵢ or wᵀu are
        // subnormal (‖w‖, ‖u‖ ~ 2⁻⁷⁵ in f32): each product then carries an absolute error up to
        // half the smallest subnormal, and dividing by wmax·n2 would amplify it into a move of û
        // as large as u itself (found by fuzzing). Such a step is skipped: the error it leaves in
        // wᵀû is of the size of the smallest subnormal, far below the rounding of 1 + wᵀû.
        let umax = u.iter().fold(T::ZERO, |a, &v| a.max(v.abs()));
        let step_bound = T::from_usize(8 * D) * T::EPS * (umax + coef.abs());
        for _ in 0..2 {
            // wᵀû as the kernels will see it (with w itself), scaled form if that overflows.
            let mut dot = T::ZERO;
            for i in 0..D {
                dot = w[i].madd(uh[i], dot);
            }
            if !dot.is_finite() {
                dot = T::ZERO;
                for i in 0..D {
                    dot = wt[i].madd(uh[i], dot);
                }
                dot *= wmax;
            }
            let r = ((m - dot) / wmax) / n2;
            if !r.is_finite() || r == T::ZERO || r.abs() > step_bound {
                break;
            }
            for i in 0..D {
                uh[i] = r.madd(wt[i], uh[i]);
            }
        }
        if !coef.is_finite() || uh.iter().any(|v| !v.is_finite()) {
            return Err(FlowError::NonFiniteParameter);
        }
        Ok((uh, m, mp1))
    }
}

fn check_margin<T: Real>(margin: T) -> Result<()> {
    if margin >= T::EPS && margin < T::ONE {
        Ok(())
    } else {
        Err(FlowError::InvalidArgument(
            "projection margin must be in [EPS, 1)",
        ))
    }
}

/// σ(ln(e−1)) = 1 − 1/e.
fn sigma_k<T: Real>() -> T {
    T::ONE - T::ONE / T::E()
}

/// Logistic function σ(x) = 1/(1 + e^{−x}), without overflow.
pub(crate) fn sigmoid<T: Real>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
}

/// `softplus(x + ln(e−1))` without rounding `x + ln(e−1)`:
/// `log1p((e−1)·eˣ)` for `x ≤ 0`, `x + ln(e−1) + log1p(e^{−x}/(e−1))` for `x > 0`.
fn smooth_one_plus_m<T: Real>(x: T) -> T {
    let em1 = T::E() - T::ONE;
    if x <= T::ZERO {
        (em1 * x.exp()).ln_1p()
    } else {
        x + T::LN_E_MINUS_1 + ((-x).exp() / em1).ln_1p()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_m_vanishes_at_zero_and_is_accurate_nearby() {
        let c = Constraint::<f64>::Smooth;
        let (m, mp1) = c.m(0.0).unwrap();
        assert!(m.abs() < 1e-16 && (mp1 - 1.0).abs() < 2e-16);
        let (m, _) = c.m(1e-20).unwrap();
        let want = (1.0 - (-1.0f64).exp()) * 1e-20;
        assert!(((m - want) / want).abs() < 4e-16, "{m} {want}");
    }

    #[test]
    fn margin_validated() {
        assert!(Constraint::Project { margin: 0.0f32 }.m(0.0).is_err());
        assert!(Constraint::Project { margin: 1.0f32 }.m(0.0).is_err());
        assert!(Constraint::<f32>::projected().m(-5.0).is_ok());
    }
}
