//! Hand-written gradients (vector–Jacobian products) of planar layers and flows.
//!
//! ## One layer
//! `x = z + û·h(s)`, `s = wᵀz + b`, `ℓ = ln δ` with `δ = (1 − h′(s)) + h′(s)·(1 + c)`,
//! `c = wᵀû = m(wᵀu)`. Given the upstream gradients `ḡₓ = ∂L/∂x` and `ḡ_ℓ = ∂L/∂ℓ`:
//!
//! * `∂L/∂s = (ḡₓ·û)·h′(s) + ḡ_ℓ·c·h″(s)/δ` (so `∂δ/∂s = c·h″`),
//! * `∂L/∂z = ḡₓ + w·∂L/∂s`, `∂L/∂b = ∂L/∂s`, `∂L/∂w|direct = z·∂L/∂s`,
//! * `∂L/∂û = ḡₓ·h(s)`, `∂L/∂c = ḡ_ℓ·h′(s)/δ`.
//!
//! The per-point kernel ([`Planar::backward_lanes`]) accumulates only these five quantities;
//! the chain through the reparameterisation `û(u, w)` is linear in them, so it is applied once
//! per layer and batch ([`Planar::reparam_vjp`]), not once per point.
//!
//! ## Through the reparameterisation
//! `û = u + r·w` with `x = wᵀu`, `n = ‖w‖²`, `r = (m(x) − x)/n`, and `c = m(x)`. With
//! `ḡ = ∂L/∂û`, `ḡ_c = ∂L/∂c`, `m′ = dm/dx`:
//!
//! * `∂L/∂u = ḡ + w·[(ḡᵀw)(m′ − 1)/n + ḡ_c·m′]`,
//! * `∂L/∂w = ḡ_c·m′·u + r·ḡ + (ḡᵀw)·[(m′ − 1)·u − 2r·w]/n`.
//!
//! They are evaluated with the scaled direction `ŵ = w/max|wᵢ|` (so `n̂ = ‖ŵ‖² ∈ [1, D]`) exactly
//! as [`Constraint::apply`] forms `û = u + κ·ŵ` (`κ = r·max|wᵢ|`):
//! `∂L/∂u = ḡ + ŵ·[(ḡᵀŵ)(m′ − 1)/n̂] + w·ḡ_c·m′` and
//! `∂L/∂w = ḡ_c·m′·u + (1/max|wᵢ|)·[κ·ḡ + (ḡᵀŵ)·((m′ − 1)·u − 2κ·ŵ)/n̂]`: no `‖w‖²` is formed.
//!
//! **At `w = 0`.** `û` has no limit as `w → 0` (for [`Constraint::Smooth`] it tends to
//! `u − e⁻¹·(ŵᵀu)ŵ/n̂`, which depends on the direction of approach, and the layer defines
//! `û = u` at `w = 0` exactly), so the `w`-derivative of `û` does not exist there: near `w = 0`
//! it grows like `1/‖w‖` (like `1/‖w‖²` for [`Constraint::Paper`], whose `û` itself diverges).
//! At `w = 0` exactly the gradient is that of the smooth part, the value the layer uses:
//! `∂L/∂u = ḡ`, `∂L/∂w = ḡ_c·m′(0)·u + z·∂L/∂s` (the `c`-path, since `c = m(wᵀu)` is smooth in
//! `w`, plus the direct term). No division by zero happens anywhere.
//!
//! ## A flow
//! The backward pass of a flow ([`Flow::backward_point`]) needs from the forward pass only the
//! scalar pre-activation `s_k` of every layer (K scalars per point): each layer's input is
//! recovered from its output as `z_{k−1} = z_k − û_k·h(s_k)`.

//!
//! ```
//! use flowcore::grad::LayerAcc;
//! use flowcore::{Flow, Planar};
//! let flow = Flow::new([Planar::<f64, 2>::new([0.5, -0.3], [1.0, 0.4], 0.1)?; 3]);
//! // L = x₀ + ln|det J_g(z)| at one point: forward (storing the pre-activations), backward.
//! let z = [0.2f64, -0.7];
//! let (mut x, mut s) = (z, [0.0; 3]);
//! let _ld = flow.forward_store(&mut x, &mut s);
//! let (mut gx, mut acc) = ([1.0, 0.0], [LayerAcc::zero(); 3]);
//! flow.backward_point(&mut x, &s, &mut gx, 1.0, &mut acc);
//! assert!((x[0] - z[0]).abs() < 1e-15);      // the input, recovered from the output
//! let g = flow.reparam_vjp(&acc);            // ∂L/∂(u, w, b) of every layer
//! let mut p = [0.0f64; 15];
//! flow.write_params(&mut p)?;
//! let h = 1e-6;
//! p[2 * 5 + 4] += h;                         // b of layer 3
//! let f2 = flow.with_params(&p)?;
//! let (x2, ld2) = f2.forward_and_log_det(&z);
//! let (x1, ld1) = flow.forward_and_log_det(&z);
//! assert!(((x2[0] + ld2 - x1[0] - ld1) / h - g.layers[2].b).abs() < 1e-5);
//! # Ok::<(), flowcore::FlowError>(())
//! ```

use crate::activation::Activation;
use crate::constraint::Constraint;
use crate::error::{FlowError, Result};
use crate::flow::Flow;
use crate::planar::Planar;
use crate::real::{Lane, Real};

/// Accumulated per-layer sums of the quantities the reparameterisation chain needs
/// (see the [module docs](self)): `∂L/∂û`, `∂L/∂c`, `∂L/∂w` (direct part) and `∂L/∂b`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerAcc<L, const D: usize> {
    /// `Σ ∂L/∂û`.
    pub g_uhat: [L; D],
    /// `Σ ∂L/∂c`, `c = wᵀû`.
    pub g_c: L,
    /// `Σ z·∂L/∂s` (the direct part of `∂L/∂w`).
    pub g_w: [L; D],
    /// `Σ ∂L/∂s = ∂L/∂b`.
    pub g_b: L,
}

impl<L: Lane, const D: usize> LayerAcc<L, D> {
    /// All zero.
    #[must_use]
    pub fn zero() -> Self {
        let z = L::splat(<L::Scalar as Real>::ZERO);
        Self {
            g_uhat: [z; D],
            g_c: z,
            g_w: [z; D],
            g_b: z,
        }
    }
}

/// The gradient of a loss with respect to one layer's free parameters `(u, w, b)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerGrad<T, const D: usize> {
    /// `∂L/∂u`.
    pub u: [T; D],
    /// `∂L/∂w`.
    pub w: [T; D],
    /// `∂L/∂b`.
    pub b: T,
}

impl<T: Real, const D: usize> LayerGrad<T, D> {
    /// All zero.
    #[must_use]
    pub fn zero() -> Self {
        Self {
            u: [T::ZERO; D],
            w: [T::ZERO; D],
            b: T::ZERO,
        }
    }

    /// `true` if every entry is finite.
    #[must_use]
    pub fn is_finite(&self) -> bool {
        self.b.is_finite() && self.u.iter().chain(self.w.iter()).all(|v| v.is_finite())
    }
}

/// The gradient of a loss with respect to all free parameters of a [`Flow`], layer by layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowGrad<T, const D: usize, const K: usize> {
    /// One gradient per layer (first applied first).
    pub layers: [LayerGrad<T, D>; K],
}

impl<T: Real, const D: usize, const K: usize> FlowGrad<T, D, K> {
    /// All zero.
    #[must_use]
    pub fn zero() -> Self {
        Self {
            layers: [LayerGrad::zero(); K],
        }
    }

    /// `true` if every entry is finite.
    #[must_use]
    pub fn is_finite(&self) -> bool {
        self.layers.iter().all(LayerGrad::is_finite)
    }
}

impl<T: Real, const D: usize, A: Activation<T>> Planar<T, D, A> {
    /// Backward step of one layer for points held in lanes, given the layer's **output** `x`
    /// and the stored pre-activation `s`:
    ///
    /// * rewrites `x` in place into the layer's input `z = x − û·h(s)`,
    /// * rewrites `gx` (`∂L/∂x` on entry) into `∂L/∂z`,
    /// * adds this point's contributions to `acc`,
    ///
    /// where `g_ld` is `∂L/∂ln|det J|` of this layer (the same for every layer of a flow when
    /// the loss depends on the total log-det).
    #[inline(always)]
    pub fn backward_lanes<L: Lane<Scalar = T>>(
        &self,
        x: &mut [L; D],
        s: L,
        gx: &mut [L; D],
        g_ld: L,
        acc: &mut LayerAcc<L, D>,
    ) {
        let (h, dh, om, d2h) = self.activation().eval_d2(s);
        let det = dh.madd(L::splat(self.one_plus_w_dot_u_hat()), om);
        let gl_over_det = g_ld / det;
        // (ḡₓ·û)
        let mut gu = L::splat(T::ZERO);
        for i in 0..D {
            gu = gx[i].madd(L::splat(self.u_hat()[i]), gu);
        }
        // ∂L/∂s = (ḡₓ·û)·h′ + ḡ_ℓ·c·h″/δ
        let gs = gu.madd(dh, gl_over_det * L::splat(self.w_dot_u_hat()) * d2h);
        for i in 0..D {
            acc.g_uhat[i] = gx[i].madd(h, acc.g_uhat[i]);
            // Recover the input, then use it for the direct w-term.
            x[i] = (-h).madd(L::splat(self.u_hat()[i]), x[i]);
            acc.g_w[i] = x[i].madd(gs, acc.g_w[i]);
            gx[i] = gs.madd(L::splat(self.w()[i]), gx[i]);
        }
        acc.g_c = gl_over_det.madd(dh, acc.g_c);
        acc.g_b += gs;
    }

    /// Forward step that also returns the pre-activation: applies the layer in place and returns
    /// `(s, det)` with `s = wᵀz + b` and `det = 1 + wᵀû·h′(s)` (same operations as
    /// [`Planar::forward_lanes`]).
    #[inline(always)]
    pub fn forward_lanes_s<L: Lane<Scalar = T>>(&self, z: &mut [L; D]) -> (L, L) {
        let mut s = L::splat(self.b());
        for i in 0..D {
            s = z[i].madd(L::splat(self.w()[i]), s);
        }
        let (h, dh, om) = self.activation().eval(s);
        for i in 0..D {
            z[i] = h.madd(L::splat(self.u_hat()[i]), z[i]);
        }
        (s, dh.madd(L::splat(self.one_plus_w_dot_u_hat()), om))
    }

    /// Chains accumulated sums (scalar) through the reparameterisation `û(u, w)`, `c = m(wᵀu)`,
    /// to the gradient with respect to the free parameters `(u, w, b)`. See the
    /// [module docs](self) for the formulas and the `w = 0` convention.
    #[must_use]
    pub fn reparam_vjp(&self, acc: &LayerAcc<T, D>) -> LayerGrad<T, D> {
        let u = self.u();
        let w = self.w();
        let g = &acc.g_uhat;
        let wmax = w.iter().fold(T::ZERO, |a, &v| a.max(v.abs()));
        let (mut gu, mut gw) = (*g, acc.g_w);
        if wmax == T::ZERO {
            // w = 0: û = u, c = 0; only the smooth c-path contributes to ∂/∂w.
            let mp = self.constraint().dm_dx(T::ZERO);
            for i in 0..D {
                gw[i] += acc.g_c * mp * u[i];
            }
            return LayerGrad {
                u: gu,
                w: gw,
                b: acc.g_b,
            };
        }
        let mut wt = [T::ZERO; D];
        let mut n2 = T::ZERO;
        let mut xt = T::ZERO;
        let mut gdot = T::ZERO;
        for i in 0..D {
            wt[i] = w[i] / wmax;
            n2 += wt[i] * wt[i];
            xt += wt[i] * u[i];
            gdot += g[i] * wt[i];
        }
        let x = xt * wmax;
        let mp = self.constraint().dm_dx(x);
        let kappa = reparam_coef(&self.constraint(), x, xt, wmax, n2, self.w_dot_u_hat());
        let a = gdot * (mp - T::ONE) / n2;
        let gcm = acc.g_c * mp;
        let inv = T::ONE / wmax;
        for i in 0..D {
            gu[i] = gu[i] + a * wt[i] + gcm * w[i];
            let inner = kappa * g[i] + gdot * ((mp - T::ONE) * u[i] - T::TWO * kappa * wt[i]) / n2;
            gw[i] = gw[i] + gcm * u[i] + inner * inv;
        }
        LayerGrad {
            u: gu,
            w: gw,
            b: acc.g_b,
        }
    }

    /// The layer with free parameters `(u, w, b)` and this layer's constraint and activation.
    ///
    /// # Errors
    /// As [`Planar::with`].
    pub fn with_params(&self, u: [T; D], w: [T; D], b: T) -> Result<Self> {
        Self::with(u, w, b, self.constraint(), *self.activation())
    }
}

/// `κ` of `û = u + κ·ŵ`, as [`Constraint::apply`] computes it.
fn reparam_coef<T: Real>(c: &Constraint<T>, x: T, xt: T, wmax: T, n2: T, m: T) -> T {
    match c {
        Constraint::Smooth if x.abs() <= T::ONE => {
            let r = if x == T::ZERO {
                -T::ONE / T::E()
            } else {
                (m - x) / x
            };
            r * (xt / n2)
        }
        _ => (m - x) / (wmax * n2),
    }
}

/// Flow-level passes. A point's whole forward/backward state is its `K` pre-activations and two
/// `D`-vectors, on the stack.
impl<T: Real, const D: usize, const K: usize, A: Activation<T>> Flow<T, D, K, A> {
    /// Forward pass that stores the pre-activations: maps `z` (in place) through all layers,
    /// writes `s[k]` for every layer and returns the log-det `ln|det J_g(z)|` summed over the
    /// layers.
    #[inline]
    pub fn forward_store<L: Lane<Scalar = T>>(&self, z: &mut [L; D], s: &mut [L; K]) -> L {
        // The determinants are multiplied and one `ln` is taken per run of layers whose
        // product is guaranteed (by each layer's bounds on 1 + wᵀû·h′) to stay within
        // [2⁻⁶⁰, 2⁶⁰]: no underflow or overflow in f32 or f64, and far fewer logarithms.
        let limit = T::from_f64(1.152_921_504_606_847e18); // 2^60
        let inv_limit = T::ONE / limit;
        let mut ld = L::splat(T::ZERO);
        let mut prod = L::splat(T::ONE);
        let (mut lo, mut hi) = (T::ONE, T::ONE);
        for (k, l) in self.layers().iter().enumerate() {
            let cp1 = l.one_plus_w_dot_u_hat();
            let (a, b) = l.activation().dh_range();
            let (d1, d2) = ((T::ONE - a) + a * cp1, (T::ONE - b) + b * cp1);
            let (dlo, dhi) = (d1.min(d2), d1.max(d2));
            if lo * dlo < inv_limit || hi * dhi > limit {
                ld += prod.vln();
                prod = L::splat(T::ONE);
                lo = T::ONE;
                hi = T::ONE;
            }
            let (sk, det) = l.forward_lanes_s(z);
            s[k] = sk;
            prod *= det;
            lo *= dlo;
            hi *= dhi;
        }
        ld + prod.vln()
    }

    /// [`Flow::forward_store`] for `G` independent chunks at once, layer by layer, so that the
    /// chunks' dependency chains (dot product → tanh → update) overlap in the pipeline. Each
    /// chunk's results are bitwise those of [`Flow::forward_store`].
    #[inline]
    pub fn forward_store_multi<L: Lane<Scalar = T>, const G: usize>(
        &self,
        z: &mut [[L; D]; G],
        s: &mut [[L; K]; G],
    ) -> [L; G] {
        let limit = T::from_f64(1.152_921_504_606_847e18); // 2^60
        let inv_limit = T::ONE / limit;
        let mut ld = [L::splat(T::ZERO); G];
        let mut prod = [L::splat(T::ONE); G];
        let (mut lo, mut hi) = (T::ONE, T::ONE);
        for (k, l) in self.layers().iter().enumerate() {
            let cp1 = l.one_plus_w_dot_u_hat();
            let (a, b) = l.activation().dh_range();
            let (d1, d2) = ((T::ONE - a) + a * cp1, (T::ONE - b) + b * cp1);
            let (dlo, dhi) = (d1.min(d2), d1.max(d2));
            if lo * dlo < inv_limit || hi * dhi > limit {
                for g in 0..G {
                    ld[g] += prod[g].vln();
                    prod[g] = L::splat(T::ONE);
                }
                lo = T::ONE;
                hi = T::ONE;
            }
            for g in 0..G {
                let (sk, det) = l.forward_lanes_s(&mut z[g]);
                s[g][k] = sk;
                prod[g] *= det;
            }
            lo *= dlo;
            hi *= dhi;
        }
        for g in 0..G {
            ld[g] += prod[g].vln();
        }
        ld
    }

    /// [`Flow::backward_point`] for `G` independent chunks at once (interleaved layer by layer);
    /// the accumulators receive the chunks' contributions in chunk order, so the sums are
    /// bitwise those of calling [`Flow::backward_point`] chunk after chunk.
    #[inline]
    pub fn backward_multi<L: Lane<Scalar = T>, const G: usize>(
        &self,
        x: &mut [[L; D]; G],
        s: &[[L; K]; G],
        gx: &mut [[L; D]; G],
        g_ld: &[L; G],
        acc: &mut [LayerAcc<L, D>; K],
    ) {
        for k in (0..K).rev() {
            let l = &self.layers()[k];
            for g in 0..G {
                l.backward_lanes(&mut x[g], s[g][k], &mut gx[g], g_ld[g], &mut acc[k]);
            }
        }
    }

    /// Backward pass for one point (or one lane-chunk of points): `x` is the flow's output, `s`
    /// the stored pre-activations, `gx` the loss gradient at the output and `g_ld` the gradient
    /// with respect to the total log-det. On return `x` holds the recovered input and `gx` the
    /// gradient with respect to the input; `acc[k]` has gained this point's contributions.
    #[inline]
    pub fn backward_point<L: Lane<Scalar = T>>(
        &self,
        x: &mut [L; D],
        s: &[L; K],
        gx: &mut [L; D],
        g_ld: L,
        acc: &mut [LayerAcc<L, D>; K],
    ) {
        for k in (0..K).rev() {
            self.layers()[k].backward_lanes(x, s[k], gx, g_ld, &mut acc[k]);
        }
    }

    /// Converts accumulated sums into the gradient with respect to every layer's `(u, w, b)`.
    #[must_use]
    pub fn reparam_vjp(&self, acc: &[LayerAcc<T, D>; K]) -> FlowGrad<T, D, K> {
        let mut g = FlowGrad::zero();
        for k in 0..K {
            g.layers[k] = self.layers()[k].reparam_vjp(&acc[k]);
        }
        g
    }

    /// Number of free parameters, `K·(2D + 1)`.
    pub const NUM_PARAMS: usize = K * (2 * D + 1);

    /// Writes the free parameters into `out` as `[u₁, w₁, b₁, u₂, w₂, b₂, …]` (layer by layer,
    /// `2D + 1` values each).
    ///
    /// # Errors
    /// [`FlowError::InvalidArgument`] if `out.len() != K·(2D + 1)`.
    pub fn write_params(&self, out: &mut [T]) -> Result<()> {
        if out.len() != Self::NUM_PARAMS {
            return Err(FlowError::InvalidArgument(
                "parameter slice length must be K·(2D+1)",
            ));
        }
        for (l, chunk) in self.layers().iter().zip(out.chunks_exact_mut(2 * D + 1)) {
            chunk[..D].copy_from_slice(l.u());
            chunk[D..2 * D].copy_from_slice(l.w());
            chunk[2 * D] = l.b();
        }
        Ok(())
    }

    /// The free parameters as a fixed-size array (`P` must equal `K·(2D + 1)`; checked at
    /// compile time).
    #[must_use]
    pub fn to_params<const P: usize>(&self) -> [T; P] {
        const { assert!(P == K * (2 * D + 1), "P must be K·(2D+1)") };
        let mut out = [T::ZERO; P];
        // Length checked at compile time above.
        let _ = self.write_params(&mut out);
        out
    }

    /// A flow with the same constraints and activations and the free parameters read from
    /// `p` (layout of [`Flow::write_params`]). Every layer is validated; on error `self` is
    /// unchanged.
    ///
    /// # Errors
    /// [`FlowError::InvalidArgument`] for a wrong length; the errors of [`Planar::with`].
    pub fn with_params(&self, p: &[T]) -> Result<Self> {
        if p.len() != Self::NUM_PARAMS {
            return Err(FlowError::InvalidArgument(
                "parameter slice length must be K·(2D+1)",
            ));
        }
        let mut layers = *self.layers();
        for (l, chunk) in layers.iter_mut().zip(p.chunks_exact(2 * D + 1)) {
            let mut u = [T::ZERO; D];
            let mut w = [T::ZERO; D];
            u.copy_from_slice(&chunk[..D]);
            w.copy_from_slice(&chunk[D..2 * D]);
            *l = l.with_params(u, w, chunk[2 * D])?;
        }
        Ok(Flow::new(layers))
    }
}

impl<T: Real, const D: usize, const K: usize> FlowGrad<T, D, K> {
    /// Writes the gradient in the layout of [`Flow::write_params`].
    ///
    /// # Errors
    /// [`FlowError::InvalidArgument`] if `out.len() != K·(2D + 1)`.
    pub fn write_flat(&self, out: &mut [T]) -> Result<()> {
        if out.len() != K * (2 * D + 1) {
            return Err(FlowError::InvalidArgument(
                "gradient slice length must be K·(2D+1)",
            ));
        }
        for (l, chunk) in self.layers.iter().zip(out.chunks_exact_mut(2 * D + 1)) {
            chunk[..D].copy_from_slice(&l.u);
            chunk[D..2 * D].copy_from_slice(&l.w);
            chunk[2 * D] = l.b;
        }
        Ok(())
    }
}

impl<T: Real, const D: usize, const K: usize, A: Activation<T>> Flow<T, D, K, A> {
    /// Writes the free parameters as a Rust `const` item, every value spelled by its bit
    /// pattern (`f32::from_bits(0x…)`), so a `no_std` program that includes it and calls
    /// [`Flow::with_params`] gets this flow back bit for bit:
    ///
    /// ```text
    /// pub const NAME: [f32; P] = [f32::from_bits(0x3f800000), …];
    /// ```
    ///
    /// # Errors
    /// Those of the writer.
    pub fn write_rust_const<W: core::fmt::Write>(
        &self,
        name: &str,
        out: &mut W,
    ) -> core::fmt::Result {
        let ty = if T::BITS == 32 { "f32" } else { "f64" };
        let p = Self::NUM_PARAMS;
        writeln!(
            out,
            "/// Planar flow parameters: K = {K} layers of [u (D = {D}), w (D), b], as read by `Flow::with_params`."
        )?;
        writeln!(out, "pub const {name}: [{ty}; {p}] = [")?;
        for l in self.layers() {
            write!(out, "   ")?;
            for v in l
                .u()
                .iter()
                .chain(l.w().iter())
                .chain(core::iter::once(&l.b()))
            {
                write!(out, " {ty}::from_bits(0x{:x}),", v.to_ordered_bits())?;
            }
            writeln!(out)?;
        }
        writeln!(out, "];")
    }
}

/// The raw IEEE bit pattern of a scalar, widened to `u64`.
trait RawBits {
    fn to_ordered_bits(self) -> u64;
}

impl<T: Real> RawBits for T {
    fn to_ordered_bits(self) -> u64 {
        // Undo the order-preserving map of `to_ordered` to get the IEEE bits back.
        let k = self.to_ordered();
        let sign = 1u64 << (T::BITS - 1);
        if k & sign != 0 {
            k & !sign
        } else {
            !k & (if T::BITS == 64 {
                u64::MAX
            } else {
                (1u64 << 32) - 1
            })
        }
    }
}
