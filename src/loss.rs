//! Losses with gradients on batches, importance-sampling diagnostics, and training steps.
//!
//! * **Reverse KL** (variational use; the flow is the sampler `g: z ↦ x`): for `z ~ N(0, I)`,
//!   `L = mean[log p_z(z) − ln|det J_g(z)| + β·U(g(z))]`, which is `KL(q‖π_β) − log Z_β` for
//!   the tempered target `π_β ∝ e^{−βU}` ([`reverse_kl_grad`]).
//! * **Forward KL / NLL** (maximum likelihood; the flow is the normaliser `f: x ↦ z`):
//!   `L = −mean[log p_z(f(x)) + ln|det J_f(x)|]` over data ([`forward_kl_grad`]).
//! * **Diagnostics** ([`IsStats`]): with log importance weights `ln wᵢ = −U(xᵢ) − log q(xᵢ)`,
//!   the ELBO `mean ln w`, the effective sample size fraction `(Σw)²/(n·Σw²)`, the
//!   importance-sampling estimate `log Ẑ = ln mean w`, and `KL(q‖π) = log Z − ELBO` given the
//!   exact `log Z`.
//!
//! Every point's forward and backward pass runs back to back on the stack: the forward pass
//! stores the K pre-activations, the backward pass recovers each layer's input from its output
//! (see [`crate::grad`]). **Bad input** — a NaN or infinite energy, energy gradient, or data
//! point — makes the batch function return [`FlowError::NonFiniteInput`] without producing a
//! gradient; [`Trainer::step`] then leaves the flow and the optimiser untouched and returns
//! the error. Training is a pure function of the seed: the same seed and build give bitwise
//! the same parameters.

use crate::activation::Activation;
use crate::base::StandardNormal;
use crate::energy::Energy;
use crate::error::{FlowError, Result};
use crate::flow::Flow;
use crate::grad::{FlowGrad, LayerAcc};
use crate::optim::Adam;
use crate::real::{Lane, Real};
use crate::simd::batch::normal_lanes;
use crate::simd::{SimdLane, SimdReal};
use num_traits::ToPrimitive;
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn f64_of<T: Real>(x: T) -> f64 {
    ToPrimitive::to_f64(&x).unwrap_or(f64::NAN)
}

/// Streaming importance-sampling statistics over log weights `ln wᵢ` (kept in f64, with a
/// running maximum so nothing overflows).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IsStats {
    n: u64,
    sum: f64,
    max: f64,
    s1: f64,
    s2: f64,
}

impl Default for IsStats {
    fn default() -> Self {
        Self::new()
    }
}

impl IsStats {
    /// No samples yet.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            n: 0,
            sum: 0.0,
            max: f64::NEG_INFINITY,
            s1: 0.0,
            s2: 0.0,
        }
    }

    /// Adds one log weight (must be finite; non-finite values are the caller's to reject).
    pub fn push(&mut self, lw: f64) {
        self.n += 1;
        self.sum += lw;
        if lw > self.max {
            let r = libm::exp(self.max - lw);
            self.s1 = self.s1 * r + 1.0;
            self.s2 = self.s2 * r * r + 1.0;
            self.max = lw;
        } else {
            let e = libm::exp(lw - self.max);
            self.s1 += e;
            self.s2 += e * e;
        }
    }

    /// Merges another set of samples.
    pub fn merge(&mut self, o: &IsStats) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *o;
            return;
        }
        let m = self.max.max(o.max);
        let (ra, rb) = (libm::exp(self.max - m), libm::exp(o.max - m));
        self.s1 = self.s1 * ra + o.s1 * rb;
        self.s2 = self.s2 * ra * ra + o.s2 * rb * rb;
        self.max = m;
        self.n += o.n;
        self.sum += o.sum;
    }

    /// Number of samples.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.n
    }

    /// ELBO `= mean ln w = E_q[−U − log q]`.
    #[must_use]
    pub fn elbo(&self) -> f64 {
        self.sum / self.n as f64
    }

    /// Effective sample size as a fraction of `n`: `(Σw)²/(n·Σw²)` in `(0, 1]`.
    #[must_use]
    pub fn ess_fraction(&self) -> f64 {
        self.s1 * self.s1 / (self.n as f64 * self.s2)
    }

    /// Importance-sampling estimate of `log Z`: `ln((1/n)·Σ w)`.
    #[must_use]
    pub fn log_z(&self) -> f64 {
        self.max + libm::log(self.s1 / self.n as f64)
    }

    /// `KL(q‖π) = log Z − ELBO` with the exact `log Z` of the target.
    #[must_use]
    pub fn kl(&self, log_z: f64) -> f64 {
        log_z - self.elbo()
    }
}

/// Result of one batch: the mean loss and the importance-sampling statistics of the batch
/// (reverse KL only; empty for forward KL).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchResult {
    /// Mean loss over the batch.
    pub loss: f64,
    /// Importance-sampling statistics of the batch w.r.t. the untempered target `e^{−U}`.
    pub is: IsStats,
}

/// Reverse-KL loss and gradient over `batch` fresh draws `z ~ N(0, I)`, with the target
/// tempered by `beta` (`β = 1`: the target itself). The gradient (of the mean loss) is written
/// to `grad` only on success.
///
/// # Errors
/// [`FlowError::NonFiniteInput`] if the energy or its gradient is not finite at some sample
/// (or a sample overflows); [`FlowError::InvalidArgument`] for `batch = 0`.
pub fn reverse_kl_grad<T, const D: usize, const K: usize, A, E, R>(
    flow: &Flow<T, D, K, A>,
    energy: &E,
    beta: T,
    rng: &mut R,
    batch: usize,
    grad: &mut FlowGrad<T, D, K>,
) -> Result<BatchResult>
where
    T: Real,
    A: Activation<T>,
    E: Energy<T, D> + ?Sized,
    R: Rng + ?Sized,
{
    let base = StandardNormal::<T, D>::new();
    reverse_kl_core(flow, energy, beta, batch, || base.sample(rng), grad)
}

/// [`reverse_kl_grad`] on given base points `zs` (the scalar reference for the batched
/// [`reverse_kl_grad_points_simd`]).
///
/// # Errors
/// As [`reverse_kl_grad`].
pub fn reverse_kl_grad_points<T, const D: usize, const K: usize, A, E>(
    flow: &Flow<T, D, K, A>,
    energy: &E,
    beta: T,
    zs: &[[T; D]],
    grad: &mut FlowGrad<T, D, K>,
) -> Result<BatchResult>
where
    T: Real,
    A: Activation<T>,
    E: Energy<T, D> + ?Sized,
{
    let mut it = zs.iter();
    reverse_kl_core(
        flow,
        energy,
        beta,
        zs.len(),
        || it.next().copied().unwrap_or([T::ZERO; D]),
        grad,
    )
}

fn reverse_kl_core<T, const D: usize, const K: usize, A, E, F>(
    flow: &Flow<T, D, K, A>,
    energy: &E,
    beta: T,
    batch: usize,
    mut draw: F,
    grad: &mut FlowGrad<T, D, K>,
) -> Result<BatchResult>
where
    T: Real,
    A: Activation<T>,
    E: Energy<T, D> + ?Sized,
    F: FnMut() -> [T; D],
{
    if batch == 0 {
        return Err(FlowError::InvalidArgument("batch must be at least 1"));
    }
    let base = StandardNormal::<T, D>::new();
    let mut acc = [LayerAcc::<T, D>::zero(); K];
    let mut is = IsStats::new();
    let mut loss = 0.0f64;
    let mut s = [T::ZERO; K];
    for _ in 0..batch {
        let z = draw();
        let lp = base.log_prob(&z);
        let mut x = z;
        let ld = flow.forward_store(&mut x, &mut s);
        let (u, mut gx) = energy.energy_and_grad(&x);
        let log_q = lp - ld;
        if !(u.is_finite() && log_q.is_finite() && gx.iter().all(|v| v.is_finite())) {
            return Err(FlowError::NonFiniteInput);
        }
        loss += f64_of(log_q + beta * u);
        is.push(-f64_of(u) - f64_of(log_q));
        for v in gx.iter_mut() {
            *v *= beta;
        }
        flow.backward_point(&mut x, &s, &mut gx, -T::ONE, &mut acc);
    }
    *grad = finish(flow, &acc, batch);
    Ok(BatchResult {
        loss: loss / batch as f64,
        is,
    })
}

/// Largest lane count of the SIMD types ([`wide::f32x16`]).
const MAX_LANES: usize = 16;

/// Chunks interleaved through the layers by the batched kernels.
const GROUP: usize = 4;

/// The batched (SIMD) form of [`reverse_kl_grad`]: `L::LANES` points per vector through the
/// forward pass, the energy (scalar, per lane) and the backward pass, in one pass over the batch.
/// The base draws come from the vectorised sampler ([`crate::simd::batch::normal_lanes`]), so
/// they differ from [`reverse_kl_grad`]'s; the gradient of the same points agrees with the
/// scalar reference to the accuracy of the vector math (tested).
///
/// # Errors
/// As [`reverse_kl_grad`].
pub fn reverse_kl_grad_simd<T, const D: usize, const K: usize, A, E, R>(
    flow: &Flow<T, D, K, A>,
    energy: &E,
    beta: T,
    rng: &mut R,
    batch: usize,
    grad: &mut FlowGrad<T, D, K>,
) -> Result<BatchResult>
where
    T: SimdReal,
    A: Activation<T>,
    E: Energy<T, D>,
    R: Rng + ?Sized,
{
    reverse_kl_grad_simd_with(flow, energy, beta, rng, batch, true, grad)
}

/// [`reverse_kl_grad_simd`], with the importance-sampling statistics of the batch computed only
/// if `diagnostics` is set (they cost an `exp` per point; without them the returned
/// [`BatchResult::is`] is empty).
///
/// # Errors
/// As [`reverse_kl_grad`].
pub fn reverse_kl_grad_simd_with<T, const D: usize, const K: usize, A, E, R>(
    flow: &Flow<T, D, K, A>,
    energy: &E,
    beta: T,
    rng: &mut R,
    batch: usize,
    diagnostics: bool,
    grad: &mut FlowGrad<T, D, K>,
) -> Result<BatchResult>
where
    T: SimdReal,
    A: Activation<T>,
    E: Energy<T, D>,
    R: Rng + ?Sized,
{
    reverse_kl_lanes::<T::Simd, T, D, K, A, E, _>(
        flow,
        energy,
        beta,
        batch,
        |z: &mut [T::Simd; D]| {
            let mut i = 0;
            while i < D {
                let (a, b) = normal_lanes::<T::Simd, R>(rng);
                z[i] = a;
                if i + 1 < D {
                    z[i + 1] = b;
                }
                i += 2;
            }
        },
        diagnostics,
        grad,
    )
}

/// [`reverse_kl_grad_simd`] on given base points.
///
/// # Errors
/// As [`reverse_kl_grad`].
pub fn reverse_kl_grad_points_simd<T, const D: usize, const K: usize, A, E>(
    flow: &Flow<T, D, K, A>,
    energy: &E,
    beta: T,
    zs: &[[T; D]],
    grad: &mut FlowGrad<T, D, K>,
) -> Result<BatchResult>
where
    T: SimdReal,
    A: Activation<T>,
    E: Energy<T, D>,
{
    let mut p = 0;
    reverse_kl_lanes::<T::Simd, T, D, K, A, E, _>(
        flow,
        energy,
        beta,
        zs.len(),
        |z: &mut [T::Simd; D]| {
            for (i, zi) in z.iter_mut().enumerate() {
                *zi = T::Simd::from_fn(|j| zs.get(p + j).map_or(T::ZERO, |v| v[i]));
            }
            p += <T::Simd as Lane>::LANES;
        },
        true,
        grad,
    )
}

fn reverse_kl_lanes<L, T, const D: usize, const K: usize, A, E, F>(
    flow: &Flow<T, D, K, A>,
    energy: &E,
    beta: T,
    batch: usize,
    draw: F,
    diagnostics: bool,
    grad: &mut FlowGrad<T, D, K>,
) -> Result<BatchResult>
where
    L: SimdLane<Scalar = T>,
    T: Real,
    A: Activation<T>,
    E: Energy<T, D>,
    F: FnMut(&mut [L; D]),
{
    let p =
        reverse_kl_lanes_acc::<L, T, D, K, A, E, F>(flow, energy, beta, batch, draw, diagnostics)?;
    *grad = finish(flow, &p.acc, batch);
    Ok(BatchResult {
        loss: p.loss / batch as f64,
        is: p.is,
    })
}

/// The un-normalised sums of one (part of a) batch: per-layer accumulators (lanes reduced),
/// the summed loss and the importance-sampling statistics.
#[derive(Clone, Copy, Debug)]
struct Partial<T, const D: usize, const K: usize> {
    acc: [LayerAcc<T, D>; K],
    loss: f64,
    is: IsStats,
}

impl<T: Real, const D: usize, const K: usize> Partial<T, D, K> {
    /// Adds `o` into `self` (the order of calls fixes the rounding: callers add parts in
    /// batch order).
    fn add(&mut self, o: &Self) {
        for (a, b) in self.acc.iter_mut().zip(o.acc.iter()) {
            for i in 0..D {
                a.g_uhat[i] += b.g_uhat[i];
                a.g_w[i] += b.g_w[i];
            }
            a.g_c += b.g_c;
            a.g_b += b.g_b;
        }
        self.loss += o.loss;
        self.is.merge(&o.is);
    }
}

fn reverse_kl_lanes_acc<L, T, const D: usize, const K: usize, A, E, F>(
    flow: &Flow<T, D, K, A>,
    energy: &E,
    beta: T,
    batch: usize,
    mut draw: F,
    diagnostics: bool,
) -> Result<Partial<T, D, K>>
where
    L: SimdLane<Scalar = T>,
    T: Real,
    A: Activation<T>,
    E: Energy<T, D>,
    F: FnMut(&mut [L; D]),
{
    const { assert!(L::LANES <= MAX_LANES) };
    if batch == 0 {
        return Err(FlowError::InvalidArgument("batch must be at least 1"));
    }
    let w = L::LANES;
    let mut acc = [LayerAcc::<L, D>::zero(); K];
    let mut is = IsStats::new();
    let mut loss = 0.0f64;
    let mut s = [[L::splat(T::ZERO); K]; GROUP];
    let mut g = [[T::ZERO; D]; MAX_LANES];
    let mut p = 0;
    let half_ln_2pi_d = T::from_usize(D) * T::HALF_LN_2PI;
    while p < batch {
        // GROUP chunks of LANES points, interleaved through the layers; chunks past the end
        // of the batch are zeros with zero upstream gradient (they contribute nothing).
        let mut x = [[L::splat(T::ZERO); D]; GROUP];
        let mut cnt = [0usize; GROUP];
        for c in 0..GROUP {
            cnt[c] = w.min(batch.saturating_sub(p + c * w));
            if cnt[c] > 0 {
                draw(&mut x[c]);
            }
        }
        let mut lp = [L::splat(T::ZERO); GROUP];
        for c in 0..GROUP {
            let mut q = L::splat(T::ZERO);
            for v in &x[c] {
                q = v.madd(*v, q);
            }
            lp[c] = -(L::splat(T::HALF) * q) - L::splat(half_ln_2pi_d);
        }
        let ld = flow.forward_store_multi(&mut x, &mut s);
        let mut gx = [[L::splat(T::ZERO); D]; GROUP];
        let mut g_ld = [L::splat(T::ZERO); GROUP];
        for c in 0..GROUP {
            let log_q = lp[c] - ld[c];
            let n = cnt[c];
            let valid = L::splat(T::HALF).lt(L::from_fn(|j| if j < n { T::ONE } else { T::ZERO }));
            if let Some((u, gu)) = energy.energy_and_grad_lanes(&x[c]) {
                for j in 0..n {
                    let (uj, lq) = (u.lane(j), log_q.lane(j));
                    if !(uj.is_finite()
                        && lq.is_finite()
                        && gu.iter().all(|v| v.lane(j).is_finite()))
                    {
                        return Err(FlowError::NonFiniteInput);
                    }
                    loss += f64_of(lq + beta * uj);
                    if diagnostics {
                        is.push(-f64_of(uj) - f64_of(lq));
                    }
                }
                let zero = L::splat(T::ZERO);
                gx[c] = core::array::from_fn(|i| valid.select(L::splat(beta) * gu[i], zero));
            } else {
                for (j, gj) in g.iter_mut().enumerate().take(n) {
                    let xj: [T; D] = core::array::from_fn(|i| x[c][i].lane(j));
                    let (u, gu) = energy.energy_and_grad(&xj);
                    let lq = log_q.lane(j);
                    if !(u.is_finite() && lq.is_finite() && gu.iter().all(|v| v.is_finite())) {
                        return Err(FlowError::NonFiniteInput);
                    }
                    loss += f64_of(lq + beta * u);
                    if diagnostics {
                        is.push(-f64_of(u) - f64_of(lq));
                    }
                    *gj = gu;
                }
                gx[c] = core::array::from_fn(|i| {
                    L::from_fn(|j| if j < n { beta * g[j][i] } else { T::ZERO })
                });
            }
            g_ld[c] = valid.select(L::splat(-T::ONE), L::splat(T::ZERO));
        }
        flow.backward_multi(&mut x, &s, &mut gx, &g_ld, &mut acc);
        p += cnt.iter().sum::<usize>();
    }
    // Reduce the lanes in a fixed order (bitwise reproducible).
    let red = |v: L| (0..w).fold(T::ZERO, |a, j| a + v.lane(j));
    let mut sacc = [LayerAcc::<T, D>::zero(); K];
    for (sa, la) in sacc.iter_mut().zip(acc.iter()) {
        for i in 0..D {
            sa.g_uhat[i] = red(la.g_uhat[i]);
            sa.g_w[i] = red(la.g_w[i]);
        }
        sa.g_c = red(la.g_c);
        sa.g_b = red(la.g_b);
    }
    Ok(Partial {
        acc: sacc,
        loss,
        is,
    })
}

/// Draws `z ~ N(0, I)` into `L::LANES` points per vector from `rng`.
fn draw_normal_lanes<L: SimdLane, R: Rng + ?Sized, const D: usize>(rng: &mut R, z: &mut [L; D]) {
    let mut i = 0;
    while i < D {
        let (a, b) = normal_lanes::<L, R>(rng);
        z[i] = a;
        if i + 1 < D {
            z[i + 1] = b;
        }
        i += 2;
    }
}

/// The part plan of [`reverse_kl_grad_parts`]: the length of every part but the last (a
/// multiple of the points a batched kernel keeps in flight, so only the last part has a
/// masked tail) and the generator of the first part.
fn part_plan<T: SimdReal, R: Rng + ?Sized>(
    rng: &mut R,
    batch: usize,
    parts: usize,
) -> Result<(usize, Xoshiro256PlusPlus)> {
    if batch == 0 {
        return Err(FlowError::InvalidArgument("batch must be at least 1"));
    }
    if parts == 0 {
        return Err(FlowError::InvalidArgument("parts must be at least 1"));
    }
    let chunk = GROUP * <T::Simd as Lane>::LANES;
    let len = batch.div_ceil(parts).div_ceil(chunk) * chunk;
    Ok((len, Xoshiro256PlusPlus::seed_from_u64(rng.next_u64())))
}

/// [`reverse_kl_grad_simd_with`] with the batch split into `parts` contiguous parts, the
/// unit of work of the multi-threaded step (`par_reverse_kl_grad_parts`, feature
/// `parallel`), computed here one after the other.
///
/// One `u64` is drawn from `rng` per call and seeds a [`Xoshiro256PlusPlus`]; part `i` draws
/// its base points from that generator advanced by `i` [`jump`](Xoshiro256PlusPlus::jump)s
/// (2¹²⁸ draws apart, so the streams never overlap). Parts hold `⌈batch/parts⌉` points rounded
/// up to a multiple of the points in flight (32 for f32 and 16 for f64 on SSE2), the last part
/// the rest (a batch too small for `parts` such parts has fewer). Each part's sums are formed
/// by the batched kernel and the parts are added in batch order, so the result depends on
/// `parts` (and the seed and build) but not on how many threads compute the parts:
/// `par_reverse_kl_grad_parts` returns the same bits.
///
/// # Errors
/// As [`reverse_kl_grad`]; [`FlowError::InvalidArgument`] for `parts = 0`.
#[allow(clippy::too_many_arguments)]
pub fn reverse_kl_grad_parts<T, const D: usize, const K: usize, A, E, R>(
    flow: &Flow<T, D, K, A>,
    energy: &E,
    beta: T,
    rng: &mut R,
    batch: usize,
    parts: usize,
    diagnostics: bool,
    grad: &mut FlowGrad<T, D, K>,
) -> Result<BatchResult>
where
    T: SimdReal,
    A: Activation<T>,
    E: Energy<T, D>,
    R: Rng + ?Sized,
{
    let (len, mut stream) = part_plan::<T, R>(rng, batch, parts)?;
    let mut total: Option<Partial<T, D, K>> = None;
    let mut start = 0;
    while start < batch {
        let n = len.min(batch - start);
        let mut r = stream.clone();
        stream.jump();
        let p = reverse_kl_lanes_acc::<T::Simd, T, D, K, A, E, _>(
            flow,
            energy,
            beta,
            n,
            |z: &mut [T::Simd; D]| draw_normal_lanes(&mut r, z),
            diagnostics,
        )?;
        match total.as_mut() {
            Some(t) => t.add(&p),
            None => total = Some(p),
        }
        start += n;
    }
    let t = total.ok_or(FlowError::InvalidArgument("batch must be at least 1"))?;
    *grad = finish(flow, &t.acc, batch);
    Ok(BatchResult {
        loss: t.loss / batch as f64,
        is: t.is,
    })
}

/// [`reverse_kl_grad_parts`] with the parts computed in parallel on the current rayon pool
/// (use [`rayon::ThreadPool::install`] to choose the thread count). The parts' sums are
/// collected in batch order and added in that order, so the result is bitwise the same as
/// [`reverse_kl_grad_parts`] with the same `parts`, for any number of threads.
///
/// # Errors
/// As [`reverse_kl_grad_parts`] (the error of the first failing part in batch order).
#[cfg(feature = "parallel")]
#[allow(clippy::too_many_arguments)]
pub fn par_reverse_kl_grad_parts<T, const D: usize, const K: usize, A, E, R>(
    flow: &Flow<T, D, K, A>,
    energy: &E,
    beta: T,
    rng: &mut R,
    batch: usize,
    parts: usize,
    diagnostics: bool,
    grad: &mut FlowGrad<T, D, K>,
) -> Result<BatchResult>
where
    T: SimdReal + Send + Sync,
    A: Activation<T> + Sync,
    E: Energy<T, D> + Sync,
    R: Rng + ?Sized,
{
    use rayon::prelude::*;
    use std::vec::Vec;
    let (len, mut stream) = part_plan::<T, R>(rng, batch, parts)?;
    let mut work = Vec::with_capacity(parts);
    let mut start = 0;
    while start < batch {
        let n = len.min(batch - start);
        work.push((n, stream.clone()));
        stream.jump();
        start += n;
    }
    let sums: Vec<Result<Partial<T, D, K>>> = work
        .into_par_iter()
        .map(|(n, mut r)| {
            reverse_kl_lanes_acc::<T::Simd, T, D, K, A, E, _>(
                flow,
                energy,
                beta,
                n,
                |z: &mut [T::Simd; D]| draw_normal_lanes(&mut r, z),
                diagnostics,
            )
        })
        .collect();
    let mut total: Option<Partial<T, D, K>> = None;
    for p in sums {
        let p = p?;
        match total.as_mut() {
            Some(t) => t.add(&p),
            None => total = Some(p),
        }
    }
    let t = total.ok_or(FlowError::InvalidArgument("batch must be at least 1"))?;
    *grad = finish(flow, &t.acc, batch);
    Ok(BatchResult {
        loss: t.loss / batch as f64,
        is: t.is,
    })
}

fn finish<T: Real, const D: usize, const K: usize, A: Activation<T>>(
    flow: &Flow<T, D, K, A>,
    acc: &[LayerAcc<T, D>; K],
    n: usize,
) -> FlowGrad<T, D, K> {
    let mut g = flow.reparam_vjp(acc);
    let inv = T::ONE / T::from_usize(n);
    for l in g.layers.iter_mut() {
        for v in l.u.iter_mut().chain(l.w.iter_mut()) {
            *v *= inv;
        }
        l.b *= inv;
    }
    g
}

/// Forward-KL (negative log-likelihood) loss and gradient over `data`, the flow used as the
/// normaliser (layers map data to the base). The gradient is written to `grad` only on
/// success.
///
/// # Errors
/// [`FlowError::NonFiniteInput`] if a data point (or its image) is not finite;
/// [`FlowError::InvalidArgument`] for empty data.
pub fn forward_kl_grad<T: Real, const D: usize, const K: usize, A: Activation<T>>(
    flow: &Flow<T, D, K, A>,
    data: &[[T; D]],
    grad: &mut FlowGrad<T, D, K>,
) -> Result<f64> {
    if data.is_empty() {
        return Err(FlowError::InvalidArgument("data must not be empty"));
    }
    let base = StandardNormal::<T, D>::new();
    let mut acc = [LayerAcc::<T, D>::zero(); K];
    let mut loss = 0.0f64;
    let mut s = [T::ZERO; K];
    for x in data {
        if x.iter().any(|v| !v.is_finite()) {
            return Err(FlowError::NonFiniteInput);
        }
        let mut z = *x;
        let ld = flow.forward_store(&mut z, &mut s);
        let nll = -(base.log_prob(&z) + ld);
        if !nll.is_finite() {
            return Err(FlowError::NonFiniteInput);
        }
        loss += f64_of(nll);
        // ∂(−log p_z(z))/∂z = z; ∂L/∂ld = −1.
        let mut gz = z;
        flow.backward_point(&mut z, &s, &mut gz, -T::ONE, &mut acc);
    }
    *grad = finish(flow, &acc, data.len());
    Ok(loss / data.len() as f64)
}

/// The batched (SIMD) form of [`forward_kl_grad`]: the data are loaded `L::LANES` points per
/// vector, `4` vectors interleaved through the layers, forward and backward in one pass. The
/// result agrees with [`forward_kl_grad`] to the accuracy of the vector math (tested).
///
/// # Errors
/// As [`forward_kl_grad`].
pub fn forward_kl_grad_simd<T: SimdReal, const D: usize, const K: usize, A: Activation<T>>(
    flow: &Flow<T, D, K, A>,
    data: &[[T; D]],
    grad: &mut FlowGrad<T, D, K>,
) -> Result<f64> {
    type V<T> = <T as SimdReal>::Simd;
    if data.is_empty() {
        return Err(FlowError::InvalidArgument("data must not be empty"));
    }
    if data.iter().any(|x| x.iter().any(|v| !v.is_finite())) {
        return Err(FlowError::NonFiniteInput);
    }
    let w = <V<T> as Lane>::LANES;
    let n = data.len();
    let mut acc = [LayerAcc::<V<T>, D>::zero(); K];
    let mut s = [[V::<T>::splat(T::ZERO); K]; GROUP];
    let mut loss = 0.0f64;
    let half_ln_2pi_d = T::from_usize(D) * T::HALF_LN_2PI;
    let mut p = 0;
    while p < n {
        let mut z = [[V::<T>::splat(T::ZERO); D]; GROUP];
        let mut cnt = [0usize; GROUP];
        for c in 0..GROUP {
            let base = p + c * w;
            cnt[c] = w.min(n.saturating_sub(base));
            for (i, zi) in z[c].iter_mut().enumerate() {
                *zi = V::<T>::from_fn(|j| {
                    data.get(base + j)
                        .filter(|_| j < cnt[c])
                        .map_or(T::ZERO, |x| x[i])
                });
            }
        }
        let ld = flow.forward_store_multi(&mut z, &mut s);
        let mut gz = z;
        let mut g_ld = [V::<T>::splat(T::ZERO); GROUP];
        for c in 0..GROUP {
            let mut q = V::<T>::splat(T::ZERO);
            for v in &z[c] {
                q = v.madd(*v, q);
            }
            let nll = V::<T>::splat(T::HALF) * q + V::<T>::splat(half_ln_2pi_d) - ld[c];
            for j in 0..cnt[c] {
                let v = nll.lane(j);
                if !v.is_finite() {
                    return Err(FlowError::NonFiniteInput);
                }
                loss += f64_of(v);
            }
            let m = cnt[c];
            let valid = V::<T>::splat(T::HALF)
                .lt(V::<T>::from_fn(|j| if j < m { T::ONE } else { T::ZERO }));
            for gi in gz[c].iter_mut() {
                *gi = valid.select(*gi, V::<T>::splat(T::ZERO));
            }
            g_ld[c] = valid.select(V::<T>::splat(-T::ONE), V::<T>::splat(T::ZERO));
        }
        flow.backward_multi(&mut z, &s, &mut gz, &g_ld, &mut acc);
        p += cnt.iter().sum::<usize>();
    }
    let red = |v: V<T>| (0..w).fold(T::ZERO, |a, j| a + v.lane(j));
    let mut sacc = [LayerAcc::<T, D>::zero(); K];
    for (sa, la) in sacc.iter_mut().zip(acc.iter()) {
        for i in 0..D {
            sa.g_uhat[i] = red(la.g_uhat[i]);
            sa.g_w[i] = red(la.g_w[i]);
        }
        sa.g_c = red(la.g_c);
        sa.g_b = red(la.g_b);
    }
    *grad = finish(flow, &sacc, n);
    Ok(loss / n as f64)
}

/// Mean NLL `−mean log p_x(x)` of `data` under the flow as normaliser (no gradient).
#[must_use]
pub fn mean_nll<T: Real, const D: usize, const K: usize, A: Activation<T>>(
    flow: &Flow<T, D, K, A>,
    data: &[[T; D]],
) -> f64 {
    let s: f64 = data
        .iter()
        .map(|x| -f64_of(flow.log_prob_normalizing(x)))
        .sum();
    s / data.len() as f64
}

/// Importance-sampling statistics of `n` fresh samples of the flow (as sampler) against the
/// target `e^{−U}`; samples with a non-finite energy count as weight 0 (`ln w = −∞` is skipped
/// and counted in the second value returned).
pub fn is_diagnostics<T, const D: usize, const K: usize, A, E, R>(
    flow: &Flow<T, D, K, A>,
    energy: &E,
    rng: &mut R,
    n: usize,
) -> (IsStats, usize)
where
    T: Real,
    A: Activation<T>,
    E: Energy<T, D> + ?Sized,
    R: Rng + ?Sized,
{
    let mut is = IsStats::new();
    let mut bad = 0;
    for _ in 0..n {
        let (x, log_q) = flow.sample(rng);
        let lw = -f64_of(energy.energy(&x)) - f64_of(log_q);
        if lw.is_finite() {
            is.push(lw);
        } else {
            bad += 1;
        }
    }
    (is, bad)
}

/// A reverse-KL trainer: flow, Adam state, RNG, step count and the annealing schedule
/// `β_t = min(1, β₀ + t/anneal_steps)` (no annealing when `anneal_steps = 0`).
///
/// ```
/// use flowcore::energy::{RmEnergy, RmKind};
/// use flowcore::loss::Trainer;
/// use flowcore::optim::init_random;
/// use flowcore::{SeedableRng, Xoshiro256PlusPlus};
/// let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
/// let flow = init_random::<f32, 2, 8, _>(&mut rng);
/// let mut t = Trainer::<_, 2, 8, 40, _, _>::new(flow, 1e-2, rng);
/// let target = RmEnergy::new(RmKind::U1);
/// for _ in 0..20 {
///     t.step(&target, 64)?;
/// }
/// # Ok::<(), flowcore::FlowError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Trainer<T: Real, const D: usize, const K: usize, const P: usize, A: Activation<T>, R> {
    /// The flow being trained.
    pub flow: Flow<T, D, K, A>,
    /// The optimiser.
    pub adam: Adam<T, P>,
    /// The random generator for the base samples.
    pub rng: R,
    /// Annealing length in steps (0: none).
    pub anneal_steps: u64,
    /// Initial inverse temperature of the annealing.
    pub beta0: f64,
    /// Number of accepted steps.
    pub step_count: u64,
    /// Number of rejected steps (bad input).
    pub rejected: u64,
    /// Use the batched SIMD gradient ([`reverse_kl_grad_simd`], the default) or the scalar
    /// reference ([`reverse_kl_grad`]).
    pub simd: bool,
    /// Compute the batch's importance-sampling statistics in [`Trainer::step`] (default
    /// `true`; the SIMD path skips them when `false`, saving an `exp` per point).
    pub diagnostics: bool,
    /// Split each batch into this many parts ([`reverse_kl_grad_parts`]; default 1: one
    /// [`reverse_kl_grad_simd`] pass). `Trainer::par_step` (feature `parallel`) computes the
    /// parts on the rayon pool and gives the same bits as [`Trainer::step`] for any thread
    /// count; 1 and `parts > 1` draw different base points.
    pub parts: usize,
}

impl<T: SimdReal, const D: usize, const K: usize, const P: usize, A: Activation<T>, R: Rng>
    Trainer<T, D, K, P, A, R>
{
    /// A trainer with Adam at learning rate `lr` and no annealing.
    pub fn new(flow: Flow<T, D, K, A>, lr: f64, rng: R) -> Self {
        Self {
            flow,
            adam: Adam::new(T::from_f64(lr)),
            rng,
            anneal_steps: 0,
            beta0: 1.0,
            step_count: 0,
            rejected: 0,
            simd: true,
            diagnostics: true,
            parts: 1,
        }
    }

    /// The inverse temperature of the next step.
    #[must_use]
    pub fn beta(&self) -> f64 {
        if self.anneal_steps == 0 {
            1.0
        } else {
            (self.beta0 + self.step_count as f64 / self.anneal_steps as f64).min(1.0)
        }
    }

    /// One reverse-KL step on a batch of `batch` fresh samples: gradient, then Adam. On error
    /// (bad energy values, non-finite gradient, invalid update) the flow and optimiser are
    /// unchanged, the rejection is counted and the error returned.
    ///
    /// # Errors
    /// As [`reverse_kl_grad`] and [`Adam::step`].
    pub fn step<E: Energy<T, D>>(&mut self, energy: &E, batch: usize) -> Result<BatchResult> {
        let mut g = FlowGrad::zero();
        let beta = T::from_f64(self.beta());
        let r = if self.simd && self.parts > 1 {
            reverse_kl_grad_parts(
                &self.flow,
                energy,
                beta,
                &mut self.rng,
                batch,
                self.parts,
                self.diagnostics,
                &mut g,
            )
        } else if self.simd {
            reverse_kl_grad_simd_with(
                &self.flow,
                energy,
                beta,
                &mut self.rng,
                batch,
                self.diagnostics,
                &mut g,
            )
        } else {
            reverse_kl_grad(&self.flow, energy, beta, &mut self.rng, batch, &mut g)
        };
        self.apply(r, &g)
    }

    /// [`Trainer::step`] with the batch's parts ([`Trainer::parts`]) computed in parallel on the
    /// current rayon pool ([`par_reverse_kl_grad_parts`]): bitwise the same result as
    /// [`Trainer::step`], for any number of threads. With `parts = 1` (or the scalar path) it
    /// is [`Trainer::step`].
    ///
    /// # Errors
    /// As [`Trainer::step`].
    #[cfg(feature = "parallel")]
    pub fn par_step<E: Energy<T, D> + Sync>(
        &mut self,
        energy: &E,
        batch: usize,
    ) -> Result<BatchResult>
    where
        T: Send + Sync,
        A: Sync,
    {
        if !(self.simd && self.parts > 1) {
            return self.step(energy, batch);
        }
        let mut g = FlowGrad::zero();
        let beta = T::from_f64(self.beta());
        let r = par_reverse_kl_grad_parts(
            &self.flow,
            energy,
            beta,
            &mut self.rng,
            batch,
            self.parts,
            self.diagnostics,
            &mut g,
        );
        self.apply(r, &g)
    }

    /// Applies Adam with `g` if `r` is a success; counts the step or the rejection.
    fn apply(&mut self, r: Result<BatchResult>, g: &FlowGrad<T, D, K>) -> Result<BatchResult> {
        let r = r.and_then(|r| self.adam.step(&mut self.flow, g).map(|()| r));
        match r {
            Ok(r) => {
                self.step_count += 1;
                Ok(r)
            }
            Err(e) => {
                self.rejected += 1;
                Err(e)
            }
        }
    }
}
