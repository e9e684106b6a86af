//! The batched API on [`Flow`]: whole batches over caller-owned buffers (no allocation).
//!
//! **Layouts.** The `*_batch` functions take points as `&[[T; D]]` (array of structures) and
//! write `&mut [[T; D]]` and `&mut [T]` of the same length `N` (any `N`, `0` included). The
//! `*_soa` and `*_lanes` functions take structure-of-arrays chunks `[L; D]`: coordinate `i` of
//! `L::LANES` points in one vector (`L` any [`SimdLane`] of scalar `T`).
//!
//! **Log-dets without a `ln` per layer.** Each chunk multiplies the layers' determinant factors
//! `1 + wᵀû·h′(s)` and takes one `ln` per group of layers. The groups are planned from the
//! layers' parameters before the pass: every factor lies in `[min(1, 1 + wᵀû), max(1, 1 + wᵀû)]`
//! (tanh), so a group is closed before its product could leave `[2^−60, 2^60]` (f32) or
//! `[2^−480, 2^480]` (f64): the product can neither underflow nor overflow, and typical flows
//! need one to three `ln` per point for K = 32.
//!
//! **One pass over the batch.** Each group of chunks goes through all `K` layers before the
//! next is loaded. For `D < 8` a chunk's coordinates stay in registers. For `D ≥ 8` they would
//! not fit (two f32x16 chunks at `D = 16` are the whole register file), so the chunks live in
//! the stack frame (L1) and each layer is one fused sweep over the coordinates: `zᵢ += ûᵢ·h`
//! and, from the updated `zᵢ`, the next layer's `wᵀz + b` (inverse: `xᵢ −= ûᵢ·h` and the
//! previous layer's `wᵀx + b`). Every kernel forms `wᵀz + b` in the scalar reference's serial
//! order, so it overflows exactly where the scalar's does.
//!
//! **Accuracy (stated bounds, asserted by `tests/batch.rs`).** The kernels run the scalar
//! reference's formulas with the vector math of [`crate::simd::math`] (≤ 4 ulp) in place of
//! `libm` (≤ 1 ulp) and with fused multiply-adds where the target has them; for tanh the
//! forward kernels take each determinant factor as the quotient `n/d²` of
//! [`crate::simd::math::tanh_det`] (≤ 6 ulp) and divide the products once per `ln`, and the
//! inverse forms its Newton / Halley steps from the same pieces (one division per iteration). Per layer that
//! gives a few ulps; over `K` layers the SIMD and scalar results agree to
//! `16·K·ε·(1 + |value|)` times the conditioning of the layers (1 for the forward direction
//! of well-conditioned flows; the product of the layers' [`crate::Planar::conditioning`] for
//! the inverse), where `ε` is the machine epsilon.
//!
//! **NaN and non-finite input.** No operation mixes lanes, so a NaN point never changes its
//! neighbours' results. The forward kernels propagate NaN like the scalar ones. The inverse
//! kernels ([`Flow::inverse_batch`], [`Flow::log_prob_batch`]) write NaN for every point whose
//! scalar inverse would fail (a non-finite coordinate, or an intermediate `wᵀx + b` that
//! overflows) and return the number of such points.
//!
//! **The lane-wise inverse.** Each layer solves `α + wᵀû·h(α) = wᵀx + b` in all lanes at once.
//! For tanh: plain Newton (f32) or Halley (f64) iterations from `y/(1 + c)`, with no bracket
//! and no per-lane branches, for at most [`FAST_ITERS`] iterations (the first, untested one on
//! a cheaper `exp` of relative accuracy 3e−5 / 1e−6, which the next iterations correct and
//! certify: [`crate::simd::math::expm1_exp4_m2abs_rough`]); from the second one on, a
//! lane is finished at the first iterate whose step shows the next iterate exact to rounding
//! (a bound on the quadratic / cubic convergence), so its result does not depend on its
//! neighbours. f32 layers with `−1 < wᵀû ≤ 1` on x86-64 FMA builds iterate on the forward
//! kernels' rational `tanh` instead of `exp` ([`LaneSolve::solve_lanes_det`]): the same
//! method, start, budget and test. Lanes not finished by then (near-singular layers, huge arguments, overshoots)
//! are solved by Newton's method safeguarded by a bracket (`[lo, hi]` narrowed branch-free
//! with selects from the sign of the residual; a step that leaves the bracket is replaced by
//! its midpoint), with a budget of [`LaneSolve::LANE_BUDGET`] iterations; a lane still open
//! after that (none in the tests) is finished by the scalar solver
//! [`crate::Activation::solve`], so it gives exactly the scalar reference's root.

use crate::activation::{Activation, LeakyRelu, Tanh};
use crate::error::{FlowError, Result};
use crate::flow::Flow;
use crate::planar::Planar;
use crate::real::{Lane, Real};
use crate::simd::lanes::SSE_ONLY;
use crate::simd::{Group, SimdLane, SimdReal};
use num_traits::Float;
use rand_core::Rng;

/// Iterations of the plain lane-wise Newton method for [`Tanh`] (f32, f64) before a chunk
/// falls back to the bracketed one.
pub const FAST_ITERS: (u32, u32) = (3, 4);

/// An activation whose inverse `α + c·h(α) = y` can be solved in all lanes at once.
pub trait LaneSolve<T: Real>: Activation<T> {
    /// Iteration budget of the lane-wise solver before unconverged lanes fall back to
    /// [`Activation::solve`] (0 for closed forms).
    const LANE_BUDGET: u32;

    /// The root `α` of `α + c·h(α) = y` in every lane (finite `y` lanes, `cp1 = 1 + c > 0`),
    /// with `(h(α), h′(α), 1 − h′(α))` as [`Activation::eval`] gives them (to a few ulps). A lane
    /// the scalar solver would reject gives NaN.
    /// `M` chunks are solved together (independent dependency chains, for ILP).
    fn solve_lanes<L: SimdLane<Scalar = T>, const M: usize>(
        &self,
        y: [L; M],
        c: T,
        cp1: T,
    ) -> [[L; 4]; M];

    /// [`LaneSolve::solve_lanes`] with the kernel's hint `est_quot`: whether the solver may
    /// take its quotients from [`SimdLane::quot_wide`] (a reciprocal estimate on some targets,
    /// a division elsewhere) rather than divide. The batched inverse passes `D < 8`: there the
    /// division is on the critical path, while for `D ≥ 8` it hides behind the sweeps and the
    /// estimate's extra operations cost more. The hint depends on the flow's shape only, so a
    /// point's results do not depend on the batch it is in. The default ignores it.
    #[inline(always)]
    fn solve_lanes_hinted<L: SimdLane<Scalar = T>, const M: usize>(
        &self,
        y: [L; M],
        c: T,
        cp1: T,
        est_quot: bool,
    ) -> [[L; 4]; M] {
        let _ = est_quot;
        self.solve_lanes(y, c, cp1)
    }

    /// [`LaneSolve::solve_lanes_hinted`] for the batched inverse, which needs of `h′` only the
    /// layer's determinant factor: `[α, h(α), 1 + c·h′(α)]` per chunk, the factor to a few ulps
    /// relative to itself (a lane the scalar solver would reject gives NaN, as there). The
    /// default forms it from [`LaneSolve::solve_lanes_hinted`] as `(1 + c)·h′ + (1 − h′)`.
    #[inline(always)]
    fn solve_lanes_det<L: SimdLane<Scalar = T>, const M: usize>(
        &self,
        y: [L; M],
        c: T,
        cp1: T,
        est_quot: bool,
    ) -> [[L; 3]; M] {
        det_of_solve(self.solve_lanes_hinted(y, c, cp1, est_quot), cp1)
    }
}

/// `[α, h, (1 + c)·h′ + (1 − h′)]` from [`LaneSolve::solve_lanes`]'s `[α, h, h′, 1 − h′]`.
#[inline(always)]
fn det_of_solve<T: Real, L: SimdLane<Scalar = T>, const M: usize>(
    r: [[L; 4]; M],
    cp1: T,
) -> [[L; 3]; M] {
    let cp1 = L::splat(cp1);
    r.map(|[a, h, dh, om]| [a, h, dh.madd(cp1, om)])
}

impl<T: Real> LaneSolve<T> for Tanh {
    /// 16 for f32, 24 for f64 (lanes typically converge in 2 to 4).
    const LANE_BUDGET: u32 = if T::BITS == 32 { 16 } else { 24 };

    /// Newton's (f32) or Halley's (f64) method from `y/(1 + c)`, lane-wise, for at most
    /// [`FAST_ITERS`] iterations (no bracket, no per-lane branches). The first iteration runs
    /// on a cheaper `exp` ([`crate::simd::math::expm1_exp4_m2abs_rough`]) and is not tested;
    /// from the second on, a lane finishes at the first iterate whose step `δ` shows the next
    /// iterate exact to rounding: `G·δ² ≤ ε·min(|α|, 1)/2` (Newton) with
    /// `G = ½·max|h″|·(1 + |c|/min(1, 1 + c))` bounding `|F″/(2F′)|`, `C₃·|δ|³ ≤ ε·min(|α|, 1)/2`
    /// (Halley, `C₃` below), or `|δ| < 2ε|α|`. It returns `α − δ` with `h, h′` carried there by
    /// second-order Taylor updates (error below rounding by the same criterion), so the root
    /// costs no extra `tanh`. Chunks with a lane not finished by then (or gone non-finite:
    /// the step can overshoot when `1 + c` is small) are solved again, those lanes only, by
    /// Newton's method in a bracket (see [`LaneSolve::LANE_BUDGET`]). Takes Newton's quotient
    /// from [`SimdLane::quot_wide`] (see [`LaneSolve::solve_lanes_hinted`]).
    #[inline(always)]
    fn solve_lanes<L: SimdLane<Scalar = T>, const M: usize>(
        &self,
        y: [L; M],
        c: T,
        cp1: T,
    ) -> [[L; 4]; M] {
        self.solve_lanes_hinted(y, c, cp1, true)
    }

    /// f32 layers with `−1 < c ≤ 1` on x86-64 FMA builds
    /// ([`crate::simd::math::TANH_DET_NEAR_RATIONAL`]): Newton's method as in
    /// [`LaneSolve::solve_lanes`] (same start, iteration budget, test and fallback), on the
    /// forward kernels' rational `tanh` (≤ 3.69 ulp) instead of `exp`: `F = α − y + c·t`,
    /// `F′ = (1 + c) − c·t²` (two non-negative terms for `c ∈ [−1, 1]`: no cancellation),
    /// both divided by `s = min(1, 1 + c)` so that the divisor `F′/s ≥ 1` suits
    /// [`SimdLane::quot_wide`] for every such `c` (for `c > 0` it can be `1 − 2⁻²²·c` where
    /// `|t|` rounds an ulp above 1: the estimate's relative error bounds do not depend on
    /// `|d| ≥ 1`, which keeps the quotient's magnitude at most the numerator's; a quotient
    /// that overflows fails the step test and goes to the fallback). The root's `h` is carried from `t` as in
    /// the other path and the factor is `(1 + c) − c·h²`, which is accurate relative to
    /// itself as in the forward kernels (`simd::math::tanh_det_near`). About 26 vector
    /// operations per iteration against 35, and a shorter finish: the f32 inverse took 0.94×
    /// the time at D = 2 (`log_prob` 0.94×), 0.95× at D = 1, 0.84× at D = 8 and 0.85× at
    /// D = 16 (`log_prob` 0.85×; native, Intel host of 2026-12-04, alternated runs). Accuracy
    /// (`tests/batch.rs`, `solve_lanes_det_agrees_with_f64`): `α` to `2ε·(|α| + (|α| +
    /// 8|c·h|)/F′)` (`ε` the unit roundoff; the scaling by `1/s` rounds `y/s`, which is
    /// half an ulp of `y` more than the other path's residual). Other layers and types: the
    /// default.
    #[inline(always)]
    fn solve_lanes_det<L: SimdLane<Scalar = T>, const M: usize>(
        &self,
        y: [L; M],
        c: T,
        cp1: T,
        est_quot: bool,
    ) -> [[L; 3]; M] {
        // 1 + c ≥ 2^−100 keeps F′/s ≤ 2/(1 + c) within `quot_wide`'s range.
        let near = rational_near(c) && c != T::ZERO && cp1 >= T::from_f64(7.888609052210118e-31);
        if near {
            self.solve_near(y, c, cp1, est_quot)
        } else {
            det_of_solve(self.solve_lanes_hinted(y, c, cp1, est_quot), cp1)
        }
    }

    fn solve_lanes_hinted<L: SimdLane<Scalar = T>, const M: usize>(
        &self,
        y: [L; M],
        c: T,
        cp1: T,
        est_quot: bool,
    ) -> [[L; 4]; M] {
        if c == T::ZERO {
            return y.map(|y| {
                let (h, dh, om) = self.eval(y);
                [y, h, dh, om]
            });
        }
        let one = L::splat(T::ONE);
        let two = L::splat(T::TWO);
        let cv = L::splat(c);
        let cp1v = L::splat(cp1);
        let tol = L::splat(T::TWO * T::EPS);
        // Halley's step δ = F·F′/(F′² − F·F″/2), F″/2 = c·h″/2 = −c·h·h′. Its next iterate's
        // error is at most C₃·|δ|³ with C₃ = (max|F″|/2m)² + max|F‴|/6m, m = min(1, 1 + c) ≤ F′
        // (max|tanh″| = 4/(3√3) ≤ 0.77, max|tanh‴| = 2); 0.7 more covers the third-order
        // terms of the carry of h, h′ to the root (max|tanh⁽⁴⁾|/6 ≤ 0.7).
        let r = c.abs() / cp1.min(T::ONE);
        let c3 = T::from_f64(0.385 * 0.385) * r * r + T::from_f64(1.0 / 3.0) * r + T::from_f64(0.7);
        let ctol = L::splat(T::HALF * T::EPS / c3);
        // f32: Newton's method (measured faster there: both take two iterations on typical
        // inputs); its next error is at most G·δ² with G = 0.385·(1 + |c|/m) ≥ max|F″|/2m,
        // 0.385 also bounding the carry's second-order terms.
        let halley = T::BITS == 64;
        let qtol = L::splat(T::HALF * T::EPS / (T::from_f64(0.385) * (T::ONE + r)));
        let inv = L::splat(T::ONE / cp1);
        // Newton's quotient by `SimdLane::quot_wide` (a reciprocal estimate on some targets)
        // where its range holds: `n = e² + (1 + c)·4E ≥ 1` for `1 + c ≥ ½` (`n ≥ (1 − E)² + 2E
        // = 1 + E²`) and `n ≤ 1 + 4·(1 + c) ≤ 2^120` for `1 + c ≤ 2^100`. With `n ≥ 1` the
        // estimate's error bounds hold for every finite numerator, subnormal ones included;
        // a numerator that overflows gives a NaN step (a division: ±∞), and the lane is
        // solved by the bracketed fallback. Only with `est_quot` (the batched inverse: for
        // D < 8, where the f32 inverse took 0.92–0.93× the time at D = 2 on an Intel host with
        // AVX-512 FP16, against 1.01× / 1.02× at D = 8 / 16).
        let wide_q = est_quot && cp1 >= T::HALF && cp1 <= T::from_f64(1.2676506002282294e30);
        let mut a: [L; M] = core::array::from_fn(|m| y[m] * inv);
        // One iteration at α: [α, δ, −e·sgn α, 2 + e, 4E]. With d = 2 + e, h = ed/d
        // (ed = −e·sgn α), h′ = 4E/d² and n = e² + (1 + c)·4E: F = α + c·h − y = Fd/d with
        // Fd = (α − y)·d + c·ed, F′ = 1 + c·h′ = n/d² (both terms of n non-negative: no
        // cancellation as c → −1). Newton: δ = F/F′ = Fd·d/n; Halley:
        // δ = F·F′/(F′² + F·c·h·h′) = Fd·n·d/(n² + Fd·c·ed·4E). One division per iteration.
        let step = |a: L, y: L, (e, ex4): (L, L)| {
            let d = e + two;
            let ed = (-e).vcopysign(a);
            let n = e.madd(e, ex4 * cp1v);
            let fd = (a - y).madd(d, cv * ed);
            let st = if halley {
                (fd * n * d) / (fd * (cv * ed)).madd(ex4, n * n)
            } else if wide_q {
                (fd * d).quot_wide(n)
            } else {
                (fd * d) / n
            };
            [a, st, ed, d, ex4]
        };
        // Whether the next iterate α − δ is exact to rounding (see above).
        let small = |a: L, st: L| {
            let aa = a.vabs();
            let sa = st.vabs();
            let conv = if halley {
                (sa * sa * sa).le(ctol * aa.vmin(one))
            } else {
                (sa * sa).le(qtol * aa.vmin(one))
            };
            // `<`, not `≤`: an infinite α with an infinite step (an overflow on the way) must
            // not pass (∞ ≤ ∞), its lane goes to the bracketed fallback (a fuzz-replay finding).
            sa.lt(tol * aa).or(conv)
        };
        // The first iteration is not tested (one step from the start rarely suffices for a
        // whole group of chunks), so it takes `e` and `4E` to a relative 3e−5 (f32) / 1e−6
        // (f64) only ([`crate::simd::math::expm1_exp4_m2abs_rough`]): its error is corrected
        // and the result certified by the accurate iterations that follow, and it stays far
        // below the test's threshold on the next step (|δ| ≲ 4e−4·√min(|α|, 1) / 5e−6).
        for m in 0..M {
            let r = crate::simd::math::expm1_exp4_m2abs_rough(a[m]);
            a[m] -= step(a[m], y[m], r)[1];
        }
        // Per lane, once converged: [α, δ, −e·sgn α, 2 + e, 4E] (e = expm1(−2|α|), E = e^{−2|α|})
        // of the first iteration (from the second on) whose step passes the test, so a lane's
        // result does not depend on how long its neighbours take; h(α) = (−e·sgn α)/(2 + e)
        // and h′(α) = 4E/(2 + e)² are formed once, after the loop. The second iteration
        // records every lane (none has finished before; one not finished now is overwritten
        // when it does, or solved again by the bracketed fallback), so no selects.
        let mut out = [[one; 5]; M];
        let mut done = [one.lt(one); M];
        let mut all = true;
        for m in 0..M {
            let r = crate::simd::math::expm1_exp4_m2abs(a[m]);
            out[m] = step(a[m], y[m], r);
            done[m] = small(a[m], out[m][1]);
            all &= done[m].all();
            a[m] -= out[m][1];
        }
        let fast = if T::BITS == 32 {
            FAST_ITERS.0
        } else {
            FAST_ITERS.1
        };
        let mut it = 2;
        while !all && it < fast {
            all = true;
            for m in 0..M {
                let r = crate::simd::math::expm1_exp4_m2abs(a[m]);
                let s = step(a[m], y[m], r);
                let ok = small(a[m], s[1]);
                let fin = ok.and(done[m].not());
                let o = &mut out[m];
                for (o, s) in o.iter_mut().zip(s) {
                    *o = fin.select(s, *o);
                }
                done[m] = done[m].or(ok);
                all &= done[m].all();
                a[m] -= s[1];
            }
            it += 1;
        }
        // h(α − δ) = h − h′δ + h″δ²/2 and h′(α − δ) = h′ − h″δ + h‴δ²/2 with h″ = −2hh′,
        // h‴ = 2h′(2h² − h′): error O(δ³), within rounding by the test above.
        // The carry uses δ clamped to [−1, 1]: a step accepted by |δ| < 2ε|α| can be huge in
        // absolute terms when |α| is (then |α| ≥ 1/(2ε) and h′ = 0, h = ±1 exactly, so the
        // carry must change nothing), and the unclamped δ² overflowed, giving 0·∞ = NaN in h′
        // (a fuzz finding: f64, x = 1e270).
        let finish = |[a, d, h, dh]: [L; 4]| {
            let dc = d.vmax(-one).vmin(one);
            let hd = h * dc;
            let hn = (-(dh * dc)).madd(one + hd, h);
            let q = (two * h).madd(h, -dh) * dc;
            let dhn = dh * (two * hd).madd(one, q * dc);
            let dhn = dhn + dh;
            [a - d, hn, dhn, hn * hn]
        };
        core::array::from_fn(|m| {
            let [a, st, ed, d, ex4] = out[m];
            // `d = 2 + e ∈ [1, 2]`: the forward kernels' quotient (see `SimdLane::quot_small`).
            let rinv = one.quot_small(d);
            let r = finish([a, st, ed * rinv, ex4 * (rinv * rinv)]);
            if done[m].all() {
                r
            } else {
                // Lanes not converged (or non-finite: Halley's step can overshoot when
                // 1 + c is small): the bracketed solver, for those lanes only.
                let b = tanh_solve_bracketed::<T, L>(self, y[m], c, cp1);
                let d = done[m];
                [
                    d.select(r[0], b[0]),
                    d.select(r[1], b[1]),
                    d.select(r[2], b[2]),
                    d.select(r[3], b[3]),
                ]
            }
        })
    }
}

impl Tanh {
    /// The rational path of [`Tanh`]'s [`LaneSolve::solve_lanes_det`] (f32, `−1 < c ≤ 1`,
    /// `c ≠ 0`, `1 + c ≥ 2^−100`).
    #[inline(always)]
    fn solve_near<T: Real, L: SimdLane<Scalar = T>, const M: usize>(
        &self,
        y: [L; M],
        c: T,
        cp1: T,
        est_quot: bool,
    ) -> [[L; 3]; M] {
        let one = L::splat(T::ONE);
        let tol = L::splat(T::TWO * T::EPS);
        let r = c.abs() / cp1.min(T::ONE);
        let qtol = L::splat(T::HALF * T::EPS / (T::from_f64(0.385) * (T::ONE + r)));
        // s = min(1, 1 + c): F/s = t·(c/s) + (α·(1/s) − y/s), F′/s = t²·(−c/s) + (1 + c)/s,
        // with (1 + c)/s = 1 exactly for c < 0 (F′/s ≥ 1 by construction), and every scaling
        // the identity for c > 0.
        let (inv_s, a_s) = if c < T::ZERO {
            (T::ONE / cp1, T::ONE)
        } else {
            (T::ONE, cp1)
        };
        let (cs, bs, a_s, inv_sv) = (
            L::splat(c * inv_s),
            L::splat(-c * inv_s),
            L::splat(a_s),
            L::splat(inv_s),
        );
        let ys: [L; M] = core::array::from_fn(|m| -(y[m] * inv_sv));
        let step = |a: L, ys: L| {
            let t = crate::simd::math::tanh_rational(a);
            let f = t.madd(cs, a.madd(inv_sv, ys));
            let fp = (t * t).madd(bs, a_s);
            let st = if est_quot { f.quot_wide(fp) } else { f / fp };
            [a, st, t]
        };
        let small = |a: L, st: L| {
            let aa = a.vabs();
            let sa = st.vabs();
            // `<` as in the other path: `α = −∞` with `δ = −∞` must not pass. It happened here:
            // f32, `1 + c = 2.5e−18`, `y = 3961`, where `α·(1/s)` overflowed (fuzz replay).
            sa.lt(tol * aa).or((sa * sa).le(qtol * aa.vmin(one)))
        };
        let inv = L::splat(T::ONE / cp1);
        let mut a: [L; M] = core::array::from_fn(|m| y[m] * inv);
        for m in 0..M {
            a[m] -= step(a[m], ys[m])[1];
        }
        let mut out = [[one; 3]; M];
        let mut done = [one.lt(one); M];
        let mut all = true;
        for m in 0..M {
            out[m] = step(a[m], ys[m]);
            done[m] = small(a[m], out[m][1]);
            all &= done[m].all();
            a[m] -= out[m][1];
        }
        let mut it = 2;
        while !all && it < FAST_ITERS.0 {
            all = true;
            for m in 0..M {
                let s = step(a[m], ys[m]);
                let ok = small(a[m], s[1]);
                let fin = ok.and(done[m].not());
                let o = &mut out[m];
                for (o, s) in o.iter_mut().zip(s) {
                    *o = fin.select(s, *o);
                }
                done[m] = done[m].or(ok);
                all &= done[m].all();
                a[m] -= s[1];
            }
            it += 1;
        }
        let (cv, cp1v) = (L::splat(c), L::splat(cp1));
        core::array::from_fn(|m| {
            let [a, d, t] = out[m];
            // h(α − δ) = h − h′δ − h·h′δ² (δ clamped as in the other path), h′ = 1 − t².
            let dc = d.vmax(-one).vmin(one);
            let dh = (-t).madd(t, one);
            let hn = (-(dh * dc)).madd(t.madd(dc, one), t);
            let r = [a - d, hn, (hn * hn).madd(-cv, cp1v)];
            if done[m].all() {
                r
            } else {
                let [b] = det_of_solve([tanh_solve_bracketed::<T, L>(self, y[m], c, cp1)], cp1);
                let d = done[m];
                [
                    d.select(r[0], b[0]),
                    d.select(r[1], b[1]),
                    d.select(r[2], b[2]),
                ]
            }
        })
    }
}

/// Newton's method in a bracket, lane-wise, for one chunk (the fallback of
/// [`Tanh`]'s [`LaneSolve::solve_lanes`]). A lane stops when the Newton step `δ` is so
/// small that the next iterate is exact to rounding (as in the fast path), or `|δ| ≤ 2ε|α|`,
/// or a zero residual, or a bracket of adjacent floats; it returns `α − δ` with `h, h′`
/// carried there to first order. Budget [`LaneSolve::LANE_BUDGET`]; lanes still open after
/// it are finished by the scalar solver.
#[inline(never)]
fn tanh_solve_bracketed<T: Real, L: SimdLane<Scalar = T>>(
    act: &Tanh,
    y: L,
    c: T,
    cp1: T,
) -> [L; 4] {
    const M: usize = 1;
    let y = [y];
    let zero = L::splat(T::ZERO);
    let one = L::splat(T::ONE);
    let big = L::splat(T::max_value());
    let cv = L::splat(c);
    let cp1v = L::splat(cp1);
    let half = L::splat(T::HALF);
    let tol = L::splat(T::TWO * T::EPS);
    // 0.385 ≥ max|tanh″|/2 = 2/(3√3).
    let g = T::from_f64(0.385) * (T::ONE + c.abs() / cp1.min(T::ONE));
    let qtol = L::splat(T::HALF * T::EPS / g);
    let mut lo = [zero; M];
    let mut hi = [zero; M];
    let mut a = [zero; M];
    for m in 0..M {
        let y = y[m];
        (lo[m], hi[m]) = if c > T::ZERO {
            ((y - cv).vmax(y.vmin(zero)), (y + cv).vmin(y.vmax(zero)))
        } else {
            let pos = zero.lt(y);
            (
                pos.select(y, (y + cv).vmax(-big)),
                pos.select((y - cv).vmin(big), y),
            )
        };
        let a0 = y * L::splat(T::ONE / cp1);
        let inside = lo[m].lt(a0).and(a0.lt(hi[m]));
        let start = if c < T::ZERO {
            zero.lt(y).select(hi[m], lo[m])
        } else {
            lo[m] * half + hi[m] * half
        };
        a[m] = inside.select(a0, start);
    }
    // (A bracket of one point, lo = hi, ends in the first iteration as "collapsed".)
    let mut done = [zero.lt(zero); M];
    // Per lane, once finished: [α, δ, h(α), h′(α)].
    let mut out = [[zero; 4]; M];
    let two = L::splat(T::TWO);
    let finish = |[a, d, h, dh]: [L; 4]| {
        let hn = dh.madd(-d, h);
        [a - d, hn, (two * h * dh).madd(d, dh), hn * hn]
    };
    for _ in 0..<Tanh as LaneSolve<T>>::LANE_BUDGET {
        let mut all = true;
        for m in 0..M {
            let (h, dh, om) = act.eval(a[m]);
            let f = (a[m] - y[m]) + cv * h;
            let df = om + dh * cp1v;
            let fneg = f.lt(zero);
            let fpos = zero.lt(f);
            lo[m] = fneg.select(a[m], lo[m]);
            hi[m] = fpos.select(a[m], hi[m]);
            let step = f / df;
            let cand = a[m] - step;
            let ins = lo[m].lt(cand).and(cand.lt(hi[m]));
            let mid = lo[m] * half + hi[m] * half;
            let small = step
                .vabs()
                .le(tol * a[m].vabs())
                .or(ins.and((step * step).le(qtol * a[m].vabs().vmin(one))));
            let collapsed = mid.eq_mask(lo[m]).or(mid.eq_mask(hi[m]));
            // Lanes ending now: at α − δ (δ = 0 for collapsed brackets; a zero residual
            // gives δ = 0 and `small`). The first-order updates of `h, h′` to α − δ are
            // made once, after the loop, from the recorded `(α, δ, h, h′)`.
            let fin = done[m].not().and(small.or(collapsed));
            let d = small.and(ins).select(step, zero);
            let o = &mut out[m];
            *o = [
                fin.select(a[m], o[0]),
                fin.select(d, o[1]),
                fin.select(h, o[2]),
                fin.select(dh, o[3]),
            ];
            let next = ins.select(cand, mid);
            a[m] = done[m].select(a[m], next);
            done[m] = done[m].or(fin);
            all &= done[m].all();
        }
        if all {
            return out.map(finish)[0];
        }
    }
    let out = out.map(finish);
    // Lanes still open after the budget: the scalar solver (never reached in the tests).
    let r: [[L; 4]; M] = core::array::from_fn(|m| {
        let (done, out) = (done[m], out[m]);
        let alpha = L::from_fn(|j| {
            if done.lane(j).is_nan() {
                out[0].lane(j)
            } else {
                match act.solve(y[m].lane(j), c, cp1) {
                    Ok((r, _)) => r,
                    Err(_) => T::nan(),
                }
            }
        });
        let (h, dh, om) = act.eval(alpha);
        [
            alpha,
            done.select(out[1], h),
            done.select(out[2], dh),
            done.select(out[3], om),
        ]
    });
    r[0]
}

impl<T: Real> LaneSolve<T> for LeakyRelu<T> {
    const LANE_BUDGET: u32 = 0;

    #[inline(always)]
    fn solve_lanes<L: SimdLane<Scalar = T>, const M: usize>(
        &self,
        y: [L; M],
        _c: T,
        cp1: T,
    ) -> [[L; 4]; M] {
        y.map(|y| {
            let (_, dh, om) = self.eval(y);
            let alpha = y / (om + dh * L::splat(cp1));
            // A root beyond the float range (`1 + c` tiny) is rejected by the scalar solver
            // (`NonFiniteInput`): NaN here, as the trait requires (it gave ±∞, and the
            // inverse a silent ±∞: a fuzz finding, f32, `1 + c` = 1.2e−38).
            let alpha = alpha.finite_mask().select(alpha, L::splat(T::nan()));
            let (h, dh, om) = self.eval(alpha);
            [alpha, h, dh, om]
        })
    }
}

/// What the forward kernels plan from the parameters before a pass.
struct FwdPlan<const K: usize> {
    /// `flush[k]`: take the `ln` of the det product after layer `k` (see [`ln_plan`]).
    flush: [bool; K],
    /// Whether the pass multiplies split factors `n/d²` ([`Activation::eval_det`]): for
    /// activations with [`Activation::SPLIT_DET`] whose layers all have `1 + wᵀû ≤ 2^60`
    /// (f32) / `2^500` (f64), so that `4·(1 + wᵀû)` cannot overflow.
    split: bool,
    /// `near[k]`: layer `k` takes [`Activation::eval_det_near`] (with `split`: activations
    /// with [`Activation::NEAR_DET`], f32, `−1 ≤ wᵀû ≤` [`NEAR_MAX`]).
    near: [bool; K],
}

/// The largest `wᵀû` for which the forward kernels take a layer's determinant factor as
/// `1 + wᵀû − wᵀû·tanh²` ([`Activation::eval_det_near`], `simd::math::tanh_det_near`): its
/// relative error is at most `(2 + 16·|wᵀû|)·ε` (`ε = 2⁻²⁴`), within the per-layer allowance
/// `(4D + 16)·ε` of the scalar bounds (`check`) for every `D`; beyond it the subtraction may
/// cancel more and the layer takes the `n/d²` form.
pub(crate) const NEAR_MAX: f64 = 1.0;

/// Whether the batched inverse takes its AVX2 form: builds with AVX2 and without AVX-512
/// (16 vector registers, `simd::lanes::AVX2_ONLY`) and `D ≤ 4` solve 3 chunks per pass
/// (`Flow::inv_drive`) as one `Group` (`Flow::inv_group`). One predicate for both choices,
/// which were measured together (Zen 3 host of 2026-12-04).
const fn avx2_small_inverse<const D: usize>() -> bool {
    crate::simd::lanes::AVX2_ONLY && D <= 4
}

/// Whether a tanh layer with `wᵀû = c` may take the rational `tanh` of
/// `simd::math::tanh_det_near`: f32, x86-64 FMA builds, `−1 ≤ c ≤` [`NEAR_MAX`] (the forward
/// kernels' plan, the inverse's solver and its choice of chunks per pass add their own
/// conditions).
#[inline]
fn rational_near<T: Real>(c: T) -> bool {
    T::BITS == 32
        && crate::simd::math::TANH_DET_NEAR_RATIONAL
        && c >= -T::ONE
        && c <= T::from_f64(NEAR_MAX)
}

fn fwd_plan<T: Real, const D: usize, const K: usize, A: Activation<T>>(
    layers: &[Planar<T, D, A>; K],
) -> FwdPlan<K> {
    let cap = T::from_f64(if T::BITS == 32 {
        1.152921504606847e18
    } else {
        3.273390607896142e150
    });
    let split = A::SPLIT_DET
        && layers.iter().all(|l| {
            let c = l.one_plus_w_dot_u_hat();
            c.is_finite() && c <= cap
        });
    let near = core::array::from_fn(|k| {
        let c = layers[k].w_dot_u_hat();
        split && A::NEAR_DET && rational_near(c)
    });
    FwdPlan {
        split,
        flush: ln_plan(layers, split),
        near,
    }
}

/// Whether the kernels fuse a layer's update `zᵢ += ûᵢ·h` with the next layer's `wᵀz + b` in
/// one sweep over the coordinates (see `Flow::fwd_pass`): for `D ≥ 8`. For small `D` the
/// chunks stay in registers and the per-chunk order (sum, activation, update) measured 5–8 %
/// faster (f32, D = 2).
const fn fuse_sweeps<const D: usize>() -> bool {
    D >= 8
}

/// With `fused`, the chunks through [`core::hint::black_box`]: an optimisation barrier that
/// makes the compiler keep them in the stack frame across it. Once per layer, it keeps the
/// fused sweeps in memory where the compiler would otherwise unroll them fully and keep the
/// coordinates in registers, spilling most of them (f32 D = 8 `forward_batch`: 0.50–0.54 ns
/// per point-layer with it, 0.73–0.82 without; f64 0.98–1.02 against 1.38–1.43; neutral for
/// `forward_log_det_batch` and the inverse, where the compiler already chose the stack frame).
#[inline(always)]
fn in_frame<X>(fused: bool, x: &mut X) -> &mut X {
    if fused { core::hint::black_box(x) } else { x }
}

/// `wᵀz + b` in lanes, in the scalar reference's order ([`Planar::preactivation`]): `b`, then
/// one fused multiply-add per coordinate.
#[inline(always)]
fn preact_lanes<T: Real, L: Lane<Scalar = T>, const D: usize>(w: &[T; D], b: T, z: &[L; D]) -> L {
    let mut s = L::splat(b);
    for i in 0..D {
        s = z[i].madd(L::splat(w[i]), s);
    }
    s
}

/// Log-det flush plan: `flush[k]` says "take the `ln` of the product after layer `k`".
fn ln_plan<T: Real, const D: usize, const K: usize, A: Activation<T>>(
    layers: &[Planar<T, D, A>; K],
    split: bool,
) -> [bool; K] {
    // Products stay within [2^−limit, 2^limit]: normal numbers, a factor 2^7 (f32) / 2^23
    // (f64) from overflow. With split factors n/d² the numerators' product also carries
    // d² ≤ 4 per layer (2 more bits up), and the denominators' product is at most 2^(limit/2).
    let limit = T::from_f64(if T::BITS == 32 { 120.0 } else { 1000.0 });
    let grow = if split { T::TWO } else { T::ZERO };
    let mut flush = [false; K];
    let (mut up, mut down) = (T::ZERO, T::ZERO);
    for (k, l) in layers.iter().enumerate() {
        let (dlo, dhi) = l.activation().dh_range();
        let cp1 = l.one_plus_w_dot_u_hat();
        let fa = (T::ONE - dlo) + dlo * cp1;
        let fb = (T::ONE - dhi) + dhi * cp1;
        let lu = Float::log2(fa.max(fb)).max(T::ZERO) + grow;
        let ld = Float::log2(fa.min(fb)).min(T::ZERO);
        if k > 0 && (up + lu > limit || down + ld < -limit || !(lu.is_finite() && ld.is_finite())) {
            flush[k - 1] = true;
            up = T::ZERO;
            down = T::ZERO;
        }
        up += lu;
        down += ld;
    }
    if K > 0 {
        flush[K - 1] = true;
    }
    flush
}

/// AoS → SoA for one chunk. A full chunk with `LANES | D` is transposed in `LANES × LANES`
/// tiles in registers where the target allows ([`SimdLane::FAST_TILE`]); otherwise lane by
/// lane (the compiler's per-lane inserts cost about 0.45 ns per point-layer at D = 16, K = 32).
#[inline(always)]
fn load<T: Real, L: SimdLane<Scalar = T>, const D: usize>(pts: &[[T; D]]) -> [L; D] {
    let w = L::LANES;
    if L::FAST_TILE && D.is_multiple_of(w) && pts.len() == w {
        let mut c = [L::splat(T::ZERO); D];
        for (t, ct) in c.chunks_exact_mut(w).enumerate() {
            L::load_tile(pts, t * w, ct);
        }
        return c;
    }
    if pts.len() == w {
        // A full chunk as one flat slice of known length: the compiler turns the strided
        // gathers into vector loads and permutes (D = 2, AVX-512: two `vpermt2ps`).
        let flat = pts.as_flattened();
        return core::array::from_fn(|i| L::from_fn(|j| flat[j * D + i]));
    }
    core::array::from_fn(|i| L::from_fn(|j| if j < pts.len() { pts[j][i] } else { T::ZERO }))
}

#[inline(always)]
fn store<T: Real, L: SimdLane<Scalar = T>, const D: usize>(c: &[L; D], out: &mut [[T; D]]) {
    let w = L::LANES;
    if L::FAST_TILE && D.is_multiple_of(w) && out.len() == w {
        for (t, ct) in c.chunks_exact(w).enumerate() {
            L::store_tile(ct, out, t * w);
        }
        return;
    }
    if out.len() == w {
        let flat = out.as_flattened_mut();
        for (i, ci) in c.iter().enumerate() {
            for j in 0..w {
                flat[j * D + i] = ci.lane(j);
            }
        }
        return;
    }
    for i in 0..D {
        for (j, p) in out.iter_mut().enumerate() {
            p[i] = c[i].lane(j);
        }
    }
}

/// Software prefetch of the points the driver takes next, spread over the layers of the
/// current group: while a group of chunks goes through the `K` layers, [`Ahead::layer`] hints
/// a few cache lines of the next group's input (`prefetcht0`) and of the output rows it will
/// write (`prefetchw` where the target has it, so the stores find their lines owned), about
/// one group ahead. Only where a point fills a cache line (`D · size_of::<T>() ≥ 64`: f32
/// `D ≥ 16`, f64 `D ≥ 8`); for smaller points the hardware prefetchers keep up (f32 D = 2
/// and 8, f64 D = 2: 1.00–1.02× the time with the hints).
///
/// Measured (Intel host of 2026-12-04, 2 MiB L2 per core, native build, N = 65536, K = 32:
/// input and output 4 MiB each): forward+log-det f32 D = 16 0.89× the time, `forward` 0.89×,
/// f64 D = 16 0.95×, f64 D = 8 0.96×; the input or the output hinted alone 0.98× / 0.94×
/// (f32 D = 16); one group ahead was as good as two or three; hints for a whole group at
/// once, before its layers, gained nothing (the line-fill buffers saturate). At N = 4096
/// (in L2) 1.01×. The sampler (output only) f32 D = 16 0.97×, the inverse (both) 0.97×
/// (f64 0.97×), `log_prob` (input only) 0.99×. Default (SSE2) build, where the write hint is
/// a read prefetch: f64 D = 16 0.95×, f32 D = 16 1.01×.
#[derive(Clone, Copy)]
struct Ahead<'a, T> {
    /// The next group's input, flattened (empty: no hints).
    src: &'a [T],
    /// The next group's output rows, flattened (empty: no hints).
    dst: &'a [T],
    /// Cache lines hinted per layer, of each slice.
    per_layer: usize,
}

impl<'a, T: Real> Ahead<'a, T> {
    /// No hints.
    const NONE: Self = Self {
        src: &[],
        dst: &[],
        per_layer: 0,
    };
    /// Cache line size assumed (x86-64).
    const LINE: usize = 64;

    /// Hints for the points `from..from + cnt` of `src` and `dst` (clipped to their lengths;
    /// `dst` may be empty), spread over `layers` layers.
    #[inline(always)]
    fn new<const D: usize>(
        src: &'a [[T; D]],
        dst: &'a [[T; D]],
        from: usize,
        cnt: usize,
        layers: usize,
    ) -> Self {
        let size = core::mem::size_of::<T>();
        if !cfg!(target_arch = "x86_64") || D * size < Self::LINE || layers == 0 {
            return Self::NONE;
        }
        let cut = |s: &'a [[T; D]]| {
            let s = s.as_flattened();
            let lo = from.saturating_mul(D).min(s.len());
            let hi = from.saturating_add(cnt).saturating_mul(D).min(s.len());
            &s[lo..hi]
        };
        let lines = cnt.saturating_mul(D * size).div_ceil(Self::LINE);
        Self {
            src: cut(src),
            dst: cut(dst),
            per_layer: lines.div_ceil(layers),
        }
    }

    /// The hints of layer `k`.
    #[inline(always)]
    fn layer(&self, k: usize) {
        let step = Self::LINE / core::mem::size_of::<T>();
        for l in k * self.per_layer..(k + 1) * self.per_layer {
            let i = l * step;
            if let Some(v) = self.src.get(i) {
                hint::<false, T>(v);
            }
            if let Some(v) = self.dst.get(i) {
                hint::<true, T>(v);
            }
        }
    }
}

/// A prefetch of the cache line holding `v`: for reading (`prefetcht0`), or with `WRITE` for
/// writing (`prefetchw` on targets with `prfchw`; LLVM lowers the hint to a read prefetch or
/// nothing elsewhere). A no-op off x86-64.
#[inline(always)]
fn hint<const WRITE: bool, T>(v: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_ET0, _MM_HINT_T0, _mm_prefetch};
        let a: *const i8 = (v as *const T).cast();
        // SAFETY: `prefetcht0` / `prefetchw` (SSE, in every x86-64 target; the write hint is
        // lowered per target) only hint the cache: no architectural memory access, no fault,
        // for any address; `a` points into a live reference anyway. Measured: see `Ahead`.
        #[allow(unsafe_code)]
        unsafe {
            if WRITE {
                _mm_prefetch::<_MM_HINT_ET0>(a)
            } else {
                _mm_prefetch::<_MM_HINT_T0>(a)
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

#[inline(always)]
fn store1<T: Real, L: SimdLane<Scalar = T>>(v: L, out: &mut [T]) {
    v.write_lanes(out);
}

/// `log p_z(z) = −½‖z‖² − (D/2)·ln 2π` in lanes (same operation order as the scalar).
#[inline(always)]
fn base_lp<T: Real, L: Lane<Scalar = T>, const D: usize>(z: &[L; D]) -> L {
    let mut q = L::splat(T::ZERO);
    for v in z {
        q = v.madd(*v, q);
    }
    -(L::splat(T::HALF) * q) - L::splat(T::from_usize(D) * T::HALF_LN_2PI)
}

fn check_len(a: usize, b: usize) -> Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(FlowError::InvalidArgument(
            "batch buffers must have the same length",
        ))
    }
}

/// How the forward kernels interleave chunks (`Flow::fwd_pass`): `(M, G)`, `M` chunks per
/// pass (independent dependency chains for the out-of-order core: the layer's own chain, the
/// `exp` polynomial and a division, is long), taken through each layer in groups of `G`
/// (each group's activation as one [`Group`] lane, issued step by step, then its sweep), so
/// that one group's sweep or division tail overlaps the next group's activation.
///
/// Measured (native build, `forward_log_det`, K = 32; paired alternated runs, ratios of the
/// fastest repetitions):
///
/// * Zen 4 host of 2026-12-03, against one group (`G = M`): f64 D = 2 (6, 3) 0.88× the time
///   of (6, 6), (6, 2) 0.88×, (4, 2) 0.89×, (8, 2) 0.88×; f32 D = 16 (4, 2) 0.88× the time of
///   (6, 6), (6, 2) 0.88×, (6, 3) 0.92×; f64 D = 16 (4, 2) and (6, 3) 0.89×, (6, 2) 0.91×;
///   f64 D = 8 (4, 2) and (6, 3) 0.89×; not for f32 D = 2 ((8, 2) 0.93–0.97×, (4, 2) 1.0×,
///   (6, 3) 1.14×, (8, 4) 1.14×) or f32 D = 8 ((6, 2) 1.02×, (4, 2) 1.03×, (6, 3) 1.22×).
/// * Earlier, one group (`G = M`): on the Zen 5 machine of 2026-11-25, chunks in registers
///   (`D < 8`): 6 for `D ≤ 2` (f32 D = 2: 0.29 ns against 0.37 with 4; 5: 0.30–0.32, 7: 0.34,
///   8: 0.33; D = 1 15 % faster than 4; Intel host of 2026-12-02, f32 D = 2: 0.53 against 0.62
///   with 4, 0.55 with 5 or 7, 0.54 with 8), 4 for other `D ≤ 4` (6 was 3–5 % slower for f32
///   D = 3 on Zen 5), 2 above (the state fills the registers); fused sweeps
///   ([`fuse_sweeps`]): 6 for `D = 8` (f32 0.51–0.53 against 0.61 with 3, 0.69 with 4, 0.57
///   with 8).
/// * Xeon host of 2026-12-04 (two 512-bit pipes that execute every vector operation; built
///   for it, `simd::lanes::INTEL_AVX512FP16`), against (4, 2): f32 D = 16 (6, 3) 0.926× and
///   0.921× (two series), (6, 2) 1.00×, (8, 2) 1.02×, and (9, 3) 1.04×, (3, 3) 1.05× the
///   time of (6, 3); f64 D = 8 (6, 3) 0.918×, f64 D = 16 (6, 3) 1.009×; f32 D = 8 (6, 3)
///   1.42× the time of (6, 6). So f64 D = 8 takes (6, 3) everywhere (equal
///   on Zen 4) and f32 D > 8 takes (6, 3) where the build targets such a core (on Zen 4 it
///   was 1.05× the time of (4, 2)).
/// * The same host, second session, after the fused sweep's store-forwarding stall was
///   removed (`fwd_pass`), against the shapes above (4 rounds): f64 D = 16 (8, 4) 0.929× and
///   0.938× the time of (4, 2) (two series; `forward` 0.948×, `log_prob_normalizing` 0.910×,
///   `sample` 0.946×), (6, 6) 0.943×, (6, 3) 0.959×, (8, 8) 0.992×, (6, 2) 1.007×, (8, 2)
///   1.040×, so f64 D > 8 takes (8, 4) on builds for such a core (not measured on Zen 4);
///   f32 D = 16 (6, 6) 1.003×, (8, 8) 1.010×, (4, 4) 1.021×, (8, 4) 1.055×, (4, 2) 1.088×,
///   (6, 2) 1.113× the time of (6, 3), kept; f32 D = 8 (8, 4) 1.045×, (6, 3) 1.062×, (6, 2)
///   1.160×, (4, 2) 1.216× the time of (6, 6), kept; f64 D = 8 (8, 4) 1.005×, (4, 2)
///   1.008×, (6, 2) 1.054×, (6, 6) 1.070× the time of (6, 3), kept.
/// * The same host, third session, with the rational `tanh` of `tanh_det_near` (a shorter
///   activation): f32 D = 16 (4, 4) 0.951×, 0.969×, 0.978× the time of (6, 3) (three series;
///   `log_prob_normalizing` 0.959×, `sample` 0.978×, `forward` 1.018×), (6, 6) 0.974×,
///   0.970×, 0.982×, (8, 4) 1.052×, (6, 2) 1.050×, (4, 2) 1.054×, (2, 2) 1.445×: f32 D > 8
///   takes (4, 4) on builds for such a core.
/// * AMD EPYC Zen 3 host of 2026-12-04 (AVX2 and FMA, no AVX-512: 16 vector registers of 256
///   bits; built for it, `simd::lanes::AVX2_ONLY`), native, alternated runs, 3-4 rounds:
///   f32 D = 16 (4, 4) 0.897×, (8, 4) 0.880×, (12, 4) 0.898×, (16, 4) 0.901×, (8, 2) 0.988×,
///   (6, 6) 0.999×, (8, 8) 1.120× the time of (4, 2), and in a second series (8, 4) 0.971×,
///   (12, 4) 0.982×, (6, 3) 1.003×, (6, 6) 1.240× the time of (4, 4); f32 D = 8 (8, 4)
///   0.871×, (6, 3) 0.914×, (4, 4) 0.969×, (4, 2) 1.076× the time of (6, 6); f64 D = 16
///   (6, 3) 0.853×, (8, 4) 0.879×, (4, 4) 0.886× the time of (4, 2); f64 D = 8 (4, 4)
///   0.986×, (8, 4) 1.024×, (6, 6) 1.118× the time of (6, 3), kept; D = 2 kept (f32 (8, 4)
///   1.017×, (6, 3) 1.026×, (4, 4) 1.216× the time of (6, 6); f64 (6, 6) 0.992×, (8, 4)
///   0.999×, (4, 4) 1.065× the time of (6, 3)). So the fused sweeps take (8, 4) for f32 and
///   f64 D > 8 (6, 3) on such builds.
/// * The same Zen 3 host, 2026-12-05, the **default build** (x86-64 baseline: SSE2, no FMA;
///   `simd::lanes::SSE_ONLY`), which no earlier tuning had measured: `forward_log_det` with
///   (6, 3) against the shapes above, alternated runs in one binary, 3–4 rounds: f32 D = 1
///   0.95–0.98×, D = 2 0.93–0.95×, D = 3 0.94–0.96×, D = 8 0.94×, D = 16 **0.906×**; f64 D = 3
///   0.90×, D = 16 0.93× ((8, 4) 0.93–0.96× at f32, 0.94× at f64 D = 16; (4, 4), (4, 2),
///   (2, 2) slower; f64 D ≤ 2 and D = 8 had (6, 3) already). `log_prob_normalizing` alike
///   (0.93–0.97× at f32 D ≤ 8, 0.89× at D = 16, 0.93× at f64 D = 3 and 16). `forward` (no
///   log-det) only at D = 16: 0.868× f32, 0.896× f64, but 1.10–1.23× *slower* at f32 D = 1,
///   2, 3 and 8 (its lighter layer keeps more chunks busy) and 1.00–1.02× at f64 D = 3; the
///   sampler within noise (0.99–1.05×). So such builds take (6, 3) for the kernels with a
///   log-det at every D outside 4 < D < 8, and for `forward` at D > 8.
const fn fwd_shape<const D: usize>(bits: u32, log_det: bool) -> (usize, usize) {
    use crate::simd::lanes::{AMD_ZEN5, AVX2_ONLY, INTEL_AVX512FP16};
    let f64 = bits == 64;
    if SSE_ONLY && (D <= 4 || D >= 8) && (log_det || D > 8) {
        (6, 3)
    } else if AMD_ZEN5 {
        zen5_shape::<D>(f64)
    } else if D <= 2 {
        if f64 { (6, 3) } else { (6, 6) }
    } else if D <= 4 {
        (4, 4)
    } else if !fuse_sweeps::<D>() {
        (2, 2)
    } else if AVX2_ONLY && !f64 {
        (8, 4)
    } else if D <= 8 && !f64 {
        (6, 6)
    } else if D <= 8 || AVX2_ONLY {
        (6, 3)
    } else if INTEL_AVX512FP16 && !f64 {
        (4, 4)
    } else if INTEL_AVX512FP16 {
        (8, 4)
    } else {
        (4, 2)
    }
}

/// The shapes of [`fwd_shape`] in builds for AMD cores with full-width AVX-512 (Zen 5 and
/// later, `simd::lanes::AMD_ZEN5`): 32 vector registers and two FMA pipes that take a `zmm`
/// operation whole, so more chunks pay than on Zen 4, where the shapes were tuned.
///
/// Measured on the Zen 5 host of 2026-12-05 (native build, K = 32, N = 65536, 3–5 rounds of
/// alternated shapes in one binary, fastest of 9 repetitions; ratios to the shape the build
/// took before, per round): `forward_log_det` f32 D = 16 (8, 4) 0.868–0.898× the time of
/// (4, 2), (4, 4) 0.886–0.901×, (6, 3) 0.917–0.939×, (12, 4) and (16, 4) 1.01–1.02× the time
/// of (8, 4); `forward` 0.861–0.869×, `log_prob_normalizing` 0.881–0.903×; f64 D = 16 (8, 4)
/// 0.820–0.829×, (4, 4) 0.850–0.875×; D = 12 (8, 4) 0.87–0.90× (f32), 0.90–0.91× (f64) the
/// time of (4, 2); D = 24 (4, 4) 0.97× the time of (8, 4) (f32); D = 32 (4, 4) 0.88–0.89×
/// (f32), 0.83–0.88× (f64) the time of (4, 2), where (8, 4) took 0.94–0.96× and 0.90–0.91×.
/// D = 8: f32 (8, 4) 0.914–0.940× the time of (6, 6); f64 (6, 6) 0.886–0.895× the time of
/// (6, 3), (8, 4) 0.92×. D ≤ 4, against (6, 6) (f32) or (6, 3) (f64 D ≤ 2) or (4, 4) (D = 3,
/// 4): f32 D = 1 (8, 8) 0.95×, D = 2 0.93–0.97× (`forward` 0.89–0.90×; (12, 4), (10, 10),
/// (16, 4) alike), D = 3 0.77–0.78×, D = 4 0.84–0.85×; f64 D = 1 (8, 8) 0.81×, D = 2
/// 0.80–0.82× (`forward` 0.88× the time of (6, 6)), D = 3 0.78–0.80× ((6, 6) 0.80–0.82×),
/// D = 4 (6, 6) 0.80–0.81× ((8, 8) 0.87×). 4 < D < 8, where the other builds take (2, 2):
/// (6, 6) 0.57–0.60× (f32 D = 5, 6; one round 0.74×), 0.50–0.53× (f64 D = 5) the time of
/// (2, 2); against (6, 6), (8, 8) 0.93× at f32 D = 5 but 1.01–1.07× at f32 D = 6, 7 and f64
/// D = 5, 6.
const fn zen5_shape<const D: usize>(f64: bool) -> (usize, usize) {
    if D <= 3 || D == 4 && !f64 {
        (8, 8)
    } else if D < 8 || D == 8 && f64 {
        (6, 6)
    } else if D <= 16 {
        (8, 4)
    } else {
        (4, 4)
    }
}

/// Calls `$call::<M, G>` for the shape `$shape` of [`fwd_shape`].
macro_rules! by_shape {
    ($shape:expr, |$m:ident, $g:ident| $call:expr) => {
        match $shape {
            (6, 6) => {
                const $m: usize = 6;
                const $g: usize = 6;
                $call
            }
            (6, 3) => {
                const $m: usize = 6;
                const $g: usize = 3;
                $call
            }
            (4, 4) => {
                const $m: usize = 4;
                const $g: usize = 4;
                $call
            }
            (4, 2) => {
                const $m: usize = 4;
                const $g: usize = 2;
                $call
            }
            (8, 4) => {
                const $m: usize = 8;
                const $g: usize = 4;
                $call
            }
            (8, 8) => {
                const $m: usize = 8;
                const $g: usize = 8;
                $call
            }
            // (2, 2): `fwd_shape` returns no other shape (`tests::shapes_are_dispatched`).
            _ => {
                const $m: usize = 2;
                const $g: usize = 2;
                $call
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::{Fwd, fwd_plan, fwd_shape};
    use crate::flow::Flow;
    use crate::planar::Planar;
    use crate::real::{Lane, Real};
    use crate::simd::SimdReal;

    /// Every shape some build's `fwd_shape` returns.
    const SHAPES: [(usize, usize); 7] = [(6, 6), (6, 3), (4, 4), (4, 2), (8, 4), (8, 8), (2, 2)];

    /// Every shape `fwd_shape` returns has its own arm in `by_shape` (the last arm takes
    /// (2, 2) and anything else), and `G` divides `M`.
    #[test]
    fn shapes_are_dispatched() {
        macro_rules! each_d {
            ($($d:literal),*) => {
                for (bits, ld) in [(32, false), (32, true), (64, false), (64, true)] {
                    $(
                        let (m, g) = fwd_shape::<$d>(bits, ld);
                        assert!(
                            SHAPES.contains(&(m, g)),
                            "D = {}, {bits} bits, log-det {ld}: ({m}, {g})", $d
                        );
                        assert!(m.is_multiple_of(g));
                    )*
                }
            };
        }
        each_d!(1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 32, 64);
    }

    /// Every shape that some build's `fwd_shape` chooses, run on this build (each build's tests
    /// otherwise reach only its own shapes): the forward kernels with and without the log-det,
    /// against the scalar reference, at D = 2 (chunks in registers), 5 (in registers, the
    /// state filling them) and 16 (fused sweeps), over two full passes and a remainder.
    /// Tolerance as in `tests/batch.rs`: `16·K·ε·(1 + |x|)`.
    #[test]
    fn every_shape_agrees_with_scalar() {
        fn check<T: Real + SimdReal, const D: usize>() {
            const K: usize = 6;
            // A small LCG keeps the test free of the crate's own generators.
            let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (D as u64);
            let mut next = move || {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            };
            let sd = 1.5 / libm::sqrt(D as f64);
            let flow: Flow<T, D, K> = Flow::new(core::array::from_fn(|_| {
                let u = core::array::from_fn(|_| T::from_f64(sd * next()));
                let w = core::array::from_fn(|_| T::from_f64(sd * next()));
                Planar::new(u, w, T::from_f64(next())).unwrap()
            }));
            let lanes = <T::Simd as Lane>::LANES;
            const N: usize = 2 * 8 * 16 + 5;
            let n = 2 * 8 * lanes + 5;
            let mut z = [[T::ZERO; D]; N];
            for p in z.iter_mut().take(n) {
                *p = core::array::from_fn(|_| T::from_f64(2.5 * next()));
            }
            let z = &z[..n];
            let plan = fwd_plan(flow.layers());
            let tol = 16.0 * K as f64 * T::EPS.as_f64();
            let close = |got: T, want: T| {
                let (g, w) = (got.as_f64(), want.as_f64());
                (g - w).abs() <= tol * (1.0 + w.abs())
            };
            for shape in SHAPES {
                for ld_too in [true, false] {
                    let mut x = [[T::ZERO; D]; N];
                    let mut ld = [T::ZERO; N];
                    let (x, ld) = (&mut x[..n], &mut ld[..n]);
                    if ld_too {
                        by_shape!(shape, |M, G| flow.fwd_drive_m::<T::Simd, M, G, true>(
                            Fwd::PointsLogDet,
                            z,
                            x,
                            ld,
                            &plan
                        ));
                    } else {
                        by_shape!(shape, |M, G| flow.fwd_drive_m::<T::Simd, M, G, false>(
                            Fwd::Points,
                            z,
                            x,
                            ld,
                            &plan
                        ));
                    }
                    for p in 0..n {
                        let (xr, ldr) = flow.forward_and_log_det(&z[p]);
                        for i in 0..D {
                            assert!(
                                close(x[p][i], xr[i]),
                                "{shape:?} D = {D} p = {p} i = {i}: {:?} vs {:?}",
                                x[p][i].as_f64(),
                                xr[i].as_f64()
                            );
                        }
                        assert!(
                            !ld_too || close(ld[p], ldr),
                            "{shape:?} D = {D} p = {p} log-det: {:?} vs {:?}",
                            ld[p].as_f64(),
                            ldr.as_f64()
                        );
                    }
                }
            }
        }
        check::<f32, 2>();
        check::<f32, 5>();
        check::<f32, 16>();
        check::<f64, 2>();
        check::<f64, 5>();
        check::<f64, 16>();
    }
}

/// What the forward driver writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fwd {
    Points,
    PointsLogDet,
    LogProbNormalizing,
}

impl<T: Real, const D: usize, const K: usize, A: Activation<T>> Flow<T, D, K, A> {
    /// Applies all layers to `M` interleaved chunks (independent dependency chains, for ILP);
    /// returns `ln|det J_g|` per lane if `LD`.
    #[inline(always)]
    fn fwd_group<L: SimdLane<Scalar = T>, const M: usize, const G: usize, const LD: bool>(
        &self,
        z: &mut [[L; D]; M],
        plan: &FwdPlan<K>,
        ahead: &Ahead<'_, T>,
    ) -> [L; M] {
        if !A::SPLIT_DET {
            self.fwd_pass::<L, M, G, LD, false>(z, plan, ahead)
        } else if plan.split {
            self.fwd_pass::<L, M, G, LD, true>(z, plan, ahead)
        } else {
            self.fwd_pass_cold::<L, M, G, LD>(z, plan, ahead)
        }
    }

    /// The direct determinant factors out of line, for activations with
    /// [`Activation::SPLIT_DET`] whose flow has a layer with a huge `1 + wᵀû` (rare), so the
    /// hot path's code is laid out as without it.
    #[cold]
    #[inline(never)]
    fn fwd_pass_cold<L: SimdLane<Scalar = T>, const M: usize, const G: usize, const LD: bool>(
        &self,
        z: &mut [[L; D]; M],
        plan: &FwdPlan<K>,
        ahead: &Ahead<'_, T>,
    ) -> [L; M] {
        self.fwd_pass::<L, M, G, LD, false>(z, plan, ahead)
    }

    /// The forward pass over `M` chunks, per layer in groups of `G` chunks (`G` divides `M`;
    /// see [`fwd_shape`]): for each group, the activation of its chunks as one [`Group`] lane
    /// (every operation of the vector math issued for all `G` chunks before the next: f32
    /// D = 2 0.57 → 0.53 ns per point-layer on the Intel host of 2026-12-02, against the
    /// chunk-by-chunk order, whose chains overlapped only as far as the scheduler's window
    /// reached), then one sweep over the coordinates that applies the layer (`zᵢ += ûᵢ·h`)
    /// and, with the fused sweeps, at once sums the next layer's `wᵀz + b` from the updated
    /// `zᵢ` (in the scalar reference's order, so the sums overflow exactly where the scalar's
    /// do). A group's sweep and the next group's activation are independent, and so are a
    /// group's next activation and the later groups' work on this layer, so with `G < M` the
    /// out-of-order core overlaps them (on the Zen 4 host of 2026-12-03: f32 D = 16 and f64
    /// D = 2, 8, 16 about 11 % faster with two groups than with one). For large `D` the
    /// compiler keeps the chunks' coordinates in the stack frame (L1) rather than in
    /// registers: the sweep is then one load, two fused multiply-adds and one store per
    /// coordinate and chunk, nothing is spilled. (Keeping `2 × 16` coordinates in the 32
    /// vector registers at `D = 16`, with the update and the next sum in separate sweeps,
    /// spilled half the state and ran at 1.0–1.1 ns per point-layer against 0.59 for this
    /// form.)
    ///
    /// With `SPLIT` the factors are taken as `n/d²` ([`Activation::eval_det`]): the numerators
    /// and denominators are multiplied separately and divided once per `ln`; layers the plan
    /// marks `near` (f32 tanh, `−1 ≤ wᵀû ≤` [`NEAR_MAX`], x86-64 FMA builds) take their factor
    /// whole from [`Activation::eval_det_near`] (a rational `tanh`, no `exp`; f32 D = 2
    /// forward+log-det 0.85× the time, D = 16 0.94×, native, Intel host of 2026-12-04) and
    /// multiply only the numerators' product (a branch per layer, the same for every lane).
    #[inline(always)]
    fn fwd_pass<
        L: SimdLane<Scalar = T>,
        const M: usize,
        const G: usize,
        const LD: bool,
        const SPLIT: bool,
    >(
        &self,
        z: &mut [[L; D]; M],
        plan: &FwdPlan<K>,
        ahead: &Ahead<'_, T>,
    ) -> [L; M] {
        const { assert!(G > 0 && M.is_multiple_of(G), "G must divide M") };
        let one = L::splat(T::ONE);
        let mut ld = [L::splat(T::ZERO); M];
        let layers = self.layers();
        let Some(first) = layers.first() else {
            return ld;
        };
        let mut prod = [one; M];
        let mut dprod = [one; M];
        let fused = fuse_sweeps::<D>();
        let mut s: [L; M] = if fused {
            core::array::from_fn(|m| preact_lanes(first.w(), first.b(), &z[m]))
        } else {
            [one; M]
        };
        for (k, (layer, &fl)) in layers.iter().zip(&plan.flush).enumerate() {
            let z = in_frame(fused, z);
            ahead.layer(k);
            let cp1 = layer.one_plus_w_dot_u_hat();
            let near = SPLIT && plan.near[k];
            let u = layer.u_hat();
            let next = layers.get(k + 1);
            // The chunks in groups of G, each taken through the layer (activation, then its
            // sweep) before the next group: a group's sweep and the next group's activation
            // are independent, and so are a group's next activation and the other groups'
            // work of this layer, so the out-of-order core overlaps them.
            let mut o = 0;
            while o + G <= M {
                if !fused {
                    for j in 0..G {
                        s[o + j] = preact_lanes(layer.w(), layer.b(), &z[o + j]);
                    }
                }
                let sg: [L; G] = core::array::from_fn(|j| s[o + j]);
                // The activation of the G chunks as one `Group` lane: step by step (see `group`).
                let (Group(h), Group(n), Group(d)) = if near {
                    let c = Group::splat(layer.w_dot_u_hat());
                    let (h, f) = layer
                        .activation()
                        .eval_det_near(Group(sg), c, Group::splat(cp1));
                    (h, f, Group::splat(T::ONE))
                } else if SPLIT {
                    layer.activation().eval_det(Group(sg), Group::splat(cp1))
                } else {
                    let (hm, dh, om) = layer.activation().eval(Group(sg));
                    (hm, dh.madd(Group::splat(cp1), om), Group::splat(T::ONE))
                };
                if LD {
                    for j in 0..G {
                        prod[o + j] *= n[j];
                        if SPLIT && !near {
                            dprod[o + j] *= d[j];
                        }
                    }
                }
                if !fused {
                    for j in 0..G {
                        for i in 0..D {
                            z[o + j][i] = h[j].madd(L::splat(u[i]), z[o + j][i]);
                        }
                    }
                } else if let Some(next) = next {
                    let w = next.w();
                    // The next sums in a local array, copied into `s` after the sweep: with
                    // `s[o + j] = splat(b)` before it, the compiler stored the splat as two
                    // 256-bit halves and read it back as one 512-bit value, a failed
                    // store-to-load forwarding per group and layer (Intel host, native, f32
                    // D = 16 forward+log-det 0.956x the time, `forward` 0.884x, f64 D = 8
                    // and 16 0.955x / 0.963x; bit-for-bit the same results).
                    let mut sn = [L::splat(next.b()); G];
                    for i in 0..D {
                        let (ui, wi) = (L::splat(u[i]), L::splat(w[i]));
                        for j in 0..G {
                            let zi = h[j].madd(ui, z[o + j][i]);
                            z[o + j][i] = zi;
                            sn[j] = zi.madd(wi, sn[j]);
                        }
                    }
                    s[o..o + G].copy_from_slice(&sn);
                } else {
                    for i in 0..D {
                        let ui = L::splat(u[i]);
                        for j in 0..G {
                            z[o + j][i] = h[j].madd(ui, z[o + j][i]);
                        }
                    }
                }
                o += G;
            }
            if LD && fl {
                let (p, dp) = (Group(prod), Group(dprod));
                let Group(l) = if SPLIT { p / (dp * dp) } else { p }.vln();
                for m in 0..M {
                    ld[m] += l[m];
                }
                prod = [one; M];
                dprod = [one; M];
            }
        }
        ld
    }

    // Kept out of line in builds for Zen 5 (`simd::lanes::AMD_ZEN5`, the same condition): there,
    // inlined into `fwd_drive`, f64 D = 1, 2, 3 took 1.18×, 1.11–1.13×, 1.10× the time of this
    // function called (`forward_log_det`, 2026-12-05; f32 and D = 16 within noise). Out of
    // line, the default build's f32 D = 2 took 1.12× the time (`x86-64-v3`: 0.96–1.01×, same
    // host), so the other builds keep it inlined.
    #[cfg_attr(
        all(
            target_arch = "x86_64",
            target_feature = "avx512f",
            target_feature = "avxvnni",
            not(target_feature = "avx512fp16")
        ),
        inline(never)
    )]
    fn fwd_drive_m<L: SimdLane<Scalar = T>, const M: usize, const G: usize, const LD: bool>(
        &self,
        mode: Fwd,
        z: &[[T; D]],
        x: &mut [[T; D]],
        out: &mut [T],
        plan: &FwdPlan<K>,
    ) {
        let n = z.len();
        let w = L::LANES;
        let step = M * w;
        let mut p = 0;
        let emit =
            |p: usize, cnt: usize, c: &[L; D], ld: L, x: &mut [[T; D]], out: &mut [T]| match mode {
                Fwd::Points => store(c, &mut x[p..p + cnt]),
                Fwd::PointsLogDet => {
                    store(c, &mut x[p..p + cnt]);
                    store1(ld, &mut out[p..p + cnt]);
                }
                Fwd::LogProbNormalizing => store1(base_lp(c) + ld, &mut out[p..p + cnt]),
            };
        while p + step <= n {
            let mut c: [[L; D]; M] = core::array::from_fn(|m| load(&z[p + m * w..p + (m + 1) * w]));
            let dst: &[[T; D]] = if mode == Fwd::LogProbNormalizing {
                &[]
            } else {
                x
            };
            let ahead = Ahead::new(z, dst, p + step, step, K);
            let ld = self.fwd_group::<L, M, G, LD>(&mut c, plan, &ahead);
            for m in 0..M {
                emit(p + m * w, w, &c[m], ld[m], x, out);
            }
            p += step;
        }
        while p < n {
            let cnt = w.min(n - p);
            let mut c = [load(&z[p..p + cnt])];
            let ld = self.fwd_group::<L, 1, 1, LD>(&mut c, plan, &Ahead::NONE);
            emit(p, cnt, &c[0], ld[0], x, out);
            p += cnt;
        }
    }

    fn fwd_drive<L: SimdLane<Scalar = T>, const LD: bool>(
        &self,
        mode: Fwd,
        z: &[[T; D]],
        x: &mut [[T; D]],
        out: &mut [T],
    ) {
        let plan = fwd_plan(self.layers());
        // Chunks interleaved per layer: see `fwd_shape`.
        by_shape!(fwd_shape::<D>(T::BITS, LD), |M, G| self
            .fwd_drive_m::<L, M, G, LD>(mode, z, x, out, &plan))
    }

    /// `x[n] = g(z[n])` for every point, `L::LANES` points at a time.
    ///
    /// ```
    /// use flowcore::{Flow, Planar};
    /// let flow = Flow::new([Planar::<f64, 3>::new([0.5, 1.0, -0.2], [1.0, 0.0, 2.0], 0.1)?]);
    /// let z = [[0.1, 0.2, 0.3]; 5];
    /// let mut x = [[0.0; 3]; 5];
    /// flow.forward_batch(&z, &mut x)?;
    /// assert!((x[4][2] - flow.forward(&z[4])[2]).abs() < 1e-14);
    /// # Ok::<(), flowcore::FlowError>(())
    /// ```
    ///
    /// # Errors
    /// [`FlowError::InvalidArgument`] if `z` and `x` differ in length.
    pub fn forward_batch(&self, z: &[[T; D]], x: &mut [[T; D]]) -> Result<()>
    where
        T: SimdReal,
    {
        check_len(z.len(), x.len())?;
        self.fwd_drive::<T::Simd, false>(Fwd::Points, z, x, &mut []);
        Ok(())
    }

    /// `x[n] = g(z[n])` and `log_det[n] = ln|det J_g(z[n])|`.
    ///
    /// # Errors
    /// [`FlowError::InvalidArgument`] if the buffers differ in length.
    pub fn forward_log_det_batch(
        &self,
        z: &[[T; D]],
        x: &mut [[T; D]],
        log_det: &mut [T],
    ) -> Result<()>
    where
        T: SimdReal,
    {
        check_len(z.len(), x.len())?;
        check_len(z.len(), log_det.len())?;
        self.fwd_drive::<T::Simd, true>(Fwd::PointsLogDet, z, x, log_det);
        Ok(())
    }

    /// Flow as the normaliser: `out[n] = log p_z(f(x[n])) + ln|det J_f(x[n])|` with the layers
    /// mapping `x → z` (see [`Flow::log_prob_normalizing`]). NaN propagates per point.
    ///
    /// # Errors
    /// [`FlowError::InvalidArgument`] if the buffers differ in length.
    pub fn log_prob_normalizing_batch(&self, x: &[[T; D]], out: &mut [T]) -> Result<()>
    where
        T: SimdReal,
    {
        check_len(x.len(), out.len())?;
        self.fwd_drive::<T::Simd, true>(Fwd::LogProbNormalizing, x, &mut [], out);
        Ok(())
    }

    /// Lanes-native forward: applies all layers to one chunk in place.
    #[inline]
    pub fn forward_lanes<L: Lane<Scalar = T>>(&self, z: &mut [L; D]) {
        for l in self.layers() {
            l.forward_lanes(z);
        }
    }

    /// Lanes-native forward + log-det of one chunk: applies all layers in place and returns
    /// `ln|det J_g|` per lane. (Plans the `ln` groups on every call: for many chunks use
    /// [`Flow::forward_log_det_soa`].)
    pub fn forward_log_det_lanes<L: SimdLane<Scalar = T>>(&self, z: &mut [L; D]) -> L {
        let plan = fwd_plan(self.layers());
        let mut c = [*z];
        let ld = self.fwd_group::<L, 1, 1, true>(&mut c, &plan, &Ahead::NONE);
        *z = c[0];
        ld[0]
    }

    /// Lanes-native forward + log-det over many chunks, in place: `z[c]` holds chunk `c`
    /// (structure of arrays), `log_det[c]` receives its log-dets.
    ///
    /// # Errors
    /// [`FlowError::InvalidArgument`] if `z` and `log_det` differ in length.
    pub fn forward_log_det_soa<L: SimdLane<Scalar = T>>(
        &self,
        z: &mut [[L; D]],
        log_det: &mut [L],
    ) -> Result<()> {
        check_len(z.len(), log_det.len())?;
        let plan = fwd_plan(self.layers());
        by_shape!(fwd_shape::<D>(T::BITS, true), |M, G| self
            .soa_m::<L, M, G>(z, log_det, &plan));
        Ok(())
    }

    fn soa_m<L: SimdLane<Scalar = T>, const M: usize, const G: usize>(
        &self,
        z: &mut [[L; D]],
        log_det: &mut [L],
        plan: &FwdPlan<K>,
    ) {
        let mut zc = z.chunks_exact_mut(M);
        let mut lc = log_det.chunks_exact_mut(M);
        for (zz, ll) in (&mut zc).zip(&mut lc) {
            let mut c: [[L; D]; M] = core::array::from_fn(|m| zz[m]);
            let ld = self.fwd_group::<L, M, G, true>(&mut c, plan, &Ahead::NONE);
            zz.copy_from_slice(&c);
            ll.copy_from_slice(&ld);
        }
        for (zz, ll) in zc.into_remainder().iter_mut().zip(lc.into_remainder()) {
            let mut c = [*zz];
            *ll = self.fwd_group::<L, 1, 1, true>(&mut c, plan, &Ahead::NONE)[0];
            *zz = c[0];
        }
    }

    /// Batched sampling, flow as the sampler: draws `z ~ N(0, I)` (vectorised Box–Muller, see
    /// [`normal_lanes`]) and writes `x[n] = g(z)` and `log_q[n] = log p_z(z) − ln|det J_g(z)|`.
    /// The draws differ from [`Flow::sample`]'s (another use of the generator's output) but
    /// have the same distribution.
    ///
    /// # Errors
    /// [`FlowError::InvalidArgument`] if the buffers differ in length.
    pub fn sample_batch<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        x: &mut [[T; D]],
        log_q: &mut [T],
    ) -> Result<()>
    where
        T: SimdReal,
    {
        check_len(x.len(), log_q.len())?;
        let plan = fwd_plan(self.layers());
        by_shape!(fwd_shape::<D>(T::BITS, true), |M, G| self
            .sample_m::<M, G, R>(rng, x, log_q, &plan));
        Ok(())
    }

    /// [`Flow::sample_batch`] with `M` chunks per pass; the chunks draw their normals in
    /// order, so the output does not depend on `M`.
    fn sample_m<const M: usize, const G: usize, R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        x: &mut [[T; D]],
        log_q: &mut [T],
        plan: &FwdPlan<K>,
    ) where
        T: SimdReal,
    {
        let w = <T::Simd as Lane>::LANES;
        let n = x.len();
        let draw = |rng: &mut R| {
            let mut z = [<T::Simd as Lane>::splat(T::ZERO); D];
            let mut i = 0;
            while i < D {
                let (a, b) = normal_lanes::<T::Simd, R>(rng);
                z[i] = a;
                if i + 1 < D {
                    z[i + 1] = b;
                }
                i += 2;
            }
            z
        };
        let mut p = 0;
        while p + M * w <= n {
            let mut c: [[T::Simd; D]; M] = core::array::from_fn(|_| draw(rng));
            let lp: [T::Simd; M] = core::array::from_fn(|m| base_lp(&c[m]));
            let ahead = Ahead::new(&[], x, p + M * w, M * w, K);
            let ld = self.fwd_group::<T::Simd, M, G, true>(&mut c, plan, &ahead);
            for m in 0..M {
                let q = p + m * w;
                store(&c[m], &mut x[q..q + w]);
                store1(lp[m] - ld[m], &mut log_q[q..q + w]);
            }
            p += M * w;
        }
        while p < n {
            let cnt = w.min(n - p);
            let mut c = [draw(rng)];
            let lp = base_lp(&c[0]);
            let ld = self.fwd_group::<T::Simd, 1, 1, true>(&mut c, plan, &Ahead::NONE);
            store(&c[0], &mut x[p..p + cnt]);
            store1(lp - ld[0], &mut log_q[p..p + cnt]);
            p += cnt;
        }
    }
}

impl<T: Real, const D: usize, const K: usize, A: LaneSolve<T>> Flow<T, D, K, A> {
    /// Lanes-native inverse of one chunk, in place: `x ← g⁻¹(x)`; returns
    /// `(ln|det J_{g⁻¹}(x)|, failed)` where `failed` is a mask of the lanes whose scalar inverse
    /// would fail (non-finite input or intermediate overflow): their outputs are NaN.
    pub fn inverse_log_det_lanes<L: SimdLane<Scalar = T>>(&self, x: &mut [L; D]) -> (L, L) {
        let flush = ln_plan(self.layers(), false);
        let mut c = [*x];
        let (ld, bad) = self.inv_group(&mut c, &flush, &Ahead::NONE);
        *x = c[0];
        (ld[0], bad[0])
    }

    #[inline(always)]
    fn inv_group<L: SimdLane<Scalar = T>, const M: usize>(
        &self,
        x: &mut [[L; D]; M],
        flush: &[bool; K],
        ahead: &Ahead<'_, T>,
    ) -> ([L; M], [L; M]) {
        let zero = L::splat(T::ZERO);
        let one = L::splat(T::ONE);
        let mut bad = [zero.lt(zero); M];
        for m in 0..M {
            for v in x[m].iter() {
                bad[m] = bad[m].or(v.finite_mask().not());
            }
        }
        let mut ld = [zero; M];
        let mut prod = [one; M];
        let layers = self.layers();
        let fused = fuse_sweeps::<D>();
        // `wᵀx + b` of the layer being inverted, in the scalar's order (see `Flow::fwd_pass`
        // for the fused sweeps).
        let mut y = [zero; M];
        if let (true, Some(last)) = (fused, layers.last()) {
            y = core::array::from_fn(|m| preact_lanes(last.w(), last.b(), &x[m]));
        }
        for k in (0..K).rev() {
            let x = in_frame(fused, x);
            ahead.layer(K - 1 - k);
            let layer = &layers[k];
            let u = layer.u_hat();
            let cp1 = layer.one_plus_w_dot_u_hat();
            for m in 0..M {
                if !fused {
                    y[m] = preact_lanes(layer.w(), layer.b(), &x[m]);
                }
                bad[m] = bad[m].or(y[m].finite_mask().not());
                y[m] = bad[m].select(zero, y[m]);
            }
            let c = layer.w_dot_u_hat();
            // For small D the chunks' solves as one `Group` lane, issued step by step (see
            // `group`; Zen 4, paired runs, D = 2: chunk by chunk took 1.23× (f32) / 1.08×
            // (f64) the time). With the fused sweeps (D ≥ 8, 6 chunks) chunk by chunk, where
            // the group's state spills (the group took 1.02× / 1.11× the time at D = 16), and
            // without AVX-512 (16 vector registers: in the default SSE2 build the group took
            // 1.51× / 1.46× the time), except in AVX2 builds, whose 3 chunks fit as a group
            // (Zen 3 host of 2026-12-04, native, alternated runs: chunk by chunk took 1.07–1.09×
            // (f32 D = 2; `log_prob` 1.07–1.10×) and 1.22–1.25× (f64 D = 2) the time, f32 D = 1
            // 1.07×, f64 D = 3 1.15–1.18×; f32 D = 3 within noise; 4 < D < 8 not measured, so
            // kept chunk by chunk), and the default build's 2 f32 chunks at D ≤ 4 (Zen 3 host
            // of 2026-12-05, alternated runs: the group 0.865×, 0.876×, 0.893× the time at
            // D = 1, 2, 3, `log_prob` 0.876× at D = 2; 3 chunks as a group 1.07–1.09× and 4
            // 1.42–1.45× the time of 2 chunk by chunk; f64's 6 chunks as a group 1.66×).
            let grouped = cfg!(target_feature = "avx512f")
                || avx2_small_inverse::<D>()
                || SSE_ONLY && T::BITS == 32 && D <= 4;
            let r: [[L; 3]; M] = if fused || !grouped {
                layer.activation().solve_lanes_det(y, c, cp1, !fused)
            } else {
                let [g] = layer
                    .activation()
                    .solve_lanes_det([Group(y)], c, cp1, !fused);
                core::array::from_fn(|m| [g[0].0[m], g[1].0[m], g[2].0[m]])
            };
            let mut h = [zero; M];
            for m in 0..M {
                let [alpha, hm, det] = r[m];
                h[m] = -hm;
                // NaN from the solver (a lane it rejects); a non-finite root counts too.
                bad[m] = bad[m].or(alpha.finite_mask().not());
                prod[m] *= det;
                if k == 0 || flush[k - 1] {
                    ld[m] -= prod[m].vln();
                    prod[m] = one;
                }
            }
            match (fused, k.checked_sub(1).and_then(|j| layers.get(j))) {
                (true, Some(prev)) => {
                    let w = prev.w();
                    y = [L::splat(prev.b()); M];
                    for i in 0..D {
                        let (ui, wi) = (L::splat(u[i]), L::splat(w[i]));
                        for m in 0..M {
                            let xi = h[m].madd(ui, x[m][i]);
                            x[m][i] = xi;
                            y[m] = xi.madd(wi, y[m]);
                        }
                    }
                }
                _ => {
                    for m in 0..M {
                        for i in 0..D {
                            x[m][i] = h[m].madd(L::splat(u[i]), x[m][i]);
                        }
                    }
                }
            }
        }
        let nan = L::splat(T::nan());
        for m in 0..M {
            for v in x[m].iter_mut() {
                *v = bad[m].select(nan, *v);
            }
            ld[m] = bad[m].select(nan, ld[m]);
        }
        (ld, bad)
    }

    fn inv_drive_m<const M: usize>(
        &self,
        x: &[[T; D]],
        z: &mut [[T; D]],
        out: &mut [T],
        log_prob: bool,
        flush: &[bool; K],
    ) -> usize
    where
        T: SimdReal,
    {
        let w = <T::Simd as Lane>::LANES;
        let n = x.len();
        let mut p = 0;
        let mut failed = 0;
        let mut emit = |p: usize,
                        cnt: usize,
                        c: &[T::Simd; D],
                        ld: T::Simd,
                        bad: T::Simd,
                        z: &mut [[T; D]],
                        out: &mut [T]| {
            failed += bad.count_set(cnt);
            if log_prob {
                store1(base_lp(c) + ld, &mut out[p..p + cnt]);
            } else {
                store(c, &mut z[p..p + cnt]);
                store1(ld, &mut out[p..p + cnt]);
            }
        };
        while p + M * w <= n {
            let mut c: [[T::Simd; D]; M] =
                core::array::from_fn(|m| load(&x[p + m * w..p + (m + 1) * w]));
            let dst: &[[T; D]] = if log_prob { &[] } else { z };
            let ahead = Ahead::new(x, dst, p + M * w, M * w, K);
            let (ld, bad) = self.inv_group(&mut c, flush, &ahead);
            for m in 0..M {
                emit(p + m * w, w, &c[m], ld[m], bad[m], z, out);
            }
            p += M * w;
        }
        while p < n {
            let cnt = w.min(n - p);
            let mut c = [load(&x[p..p + cnt])];
            let (ld, bad) = self.inv_group(&mut c, flush, &Ahead::NONE);
            emit(p, cnt, &c[0], ld[0], bad[0], z, out);
            p += cnt;
        }
        failed
    }

    fn inv_drive(&self, x: &[[T; D]], z: &mut [[T; D]], out: &mut [T], log_prob: bool) -> usize
    where
        T: SimdReal,
    {
        let flush = ln_plan(self.layers(), false);
        // The Newton iterations are one long dependency chain (exp, a division): several
        // chunks interleaved. For small D: 4 (on the Zen 4 host of 2026-12-03, native build,
        // paired alternated runs, 8 chunks took 1.02–1.10× the time of 4 for f32 D = 2 and
        // 1.08× for f64 D = 2, 6 chunks 1.09× / 1.05×; in the default build 4 and 8 were
        // within 2 %, and splitting 8 chunks into two groups solved one after the other, as
        // the forward kernels do, was 4–9 % slower); in the first sessions, with an earlier
        // loop, 4 had measured 18 % (f32) / 11 % (f64) slower than 8 at D = 2. With the fused
        // sweeps 6 (f32 D = 16: 1.63–1.72 ns per point-layer against 1.79–1.92 with 4, 1.84–1.95
        // with 5, 1.71–1.76 with 8, 2.4–2.5 with 2; f32 D = 8: 1.36–1.42 against 1.44 with 5,
        // 1.63 with 8; f64 flat within noise from 4 to 8; Zen 4 2026-12-03: 4 within 3 %).
        //
        // f32 flows whose layers mostly take the rational path of `Tanh`'s
        // `LaneSolve::solve_lanes_det` (less state per chunk: `[α, δ, t]` against five
        // values) on AVX-512 builds (the `Group` solve): 6 (Intel host of 2026-12-04, native,
        // alternated runs: inverse 0.88× the time of 4 at f32 D = 2, 0.87× at D = 3, 0.90–0.93×
        // at D = 1; 8 chunks 1.25×; with the `exp` form in most layers 6 took 1.07× the time of
        // 4, and f64 D = 2 1.20×).
        //
        // AVX2 builds without AVX-512 (16 vector registers; `simd::lanes::AVX2_ONLY`), D ≤ 4:
        // 3 (Zen 3 host of 2026-12-04, native, alternated runs: f32 inverse 0.67× the time
        // of 4 at D = 1, 0.73× at D = 2, 0.77× at D = 3; f64 D = 2 0.88×; 2 chunks 0.82–0.93×,
        // 6 and 8 0.98–1.01×: four chunks' state spills). The fused sweeps keep 6 there (f32
        // D = 16: 2 chunks 0.97–0.98×, 3 1.00×, 8 1.01×; f64 D = 16: 3 0.94×, 2 0.98–1.00×).
        //
        // The default x86-64 build (SSE2, no FMA: each vector is two 128-bit halves in 16
        // registers; `simd::lanes::SSE_ONLY`), Zen 3 host of 2026-12-05, alternated runs in
        // one binary, 4–5 rounds: f32 takes 2 chunks at every D (inverse 0.87–0.91× the time
        // of 4 at D = 1, 2, 3, `log_prob` 0.89× at D = 2, chunk by chunk; as one group, see
        // `inv_group`, 0.87–0.89× the time of that again; 0.94× the time of 6 at D = 8,
        // 0.965× at D = 16; 6 chunks 0.96–0.97× at D ≤ 3, 3 chunks 1.05× at D = 16), f64
        // D ≤ 4 takes 6 (0.957–0.969× the time of 4 at D = 1, 2, 3, 8 chunks 0.95–0.99×,
        // 2 chunks 0.99–1.00×; f64 D = 8 and 16 keep 6: 2, 4, 8 chunks 1.02–1.06×).
        //
        // Builds for Zen 5 (`simd::lanes::AMD_ZEN5`), 4 < D < 8: 4 chunks (Zen 5 host of
        // 2026-12-05, alternated binaries, 3 rounds: inverse and `log_prob` 0.60× the time of 2
        // at f32 D = 5, 0.64× at f64 D = 5; in a probe binary with a runtime switch 3 chunks
        // were 0.67–0.70×, 6 and 8 0.71–0.84×). The other D keep their counts there: 4 chunks
        // instead of 6 at f32 D = 1, 2, 3 and f64 D = 2 0.96–1.02× in alternated binaries, and
        // 4, 6 or 8 within ±5 % of one another at f32 and f64 D = 16 in the probe.
        //
        // Layers on the rational path, counted only where the choice depends on them.
        let mostly_near = || {
            let near = self
                .layers()
                .iter()
                .filter(|l| {
                    let c = l.w_dot_u_hat();
                    A::NEAR_DET && rational_near(c) && c > -T::ONE
                })
                .count();
            2 * near >= K && K > 0
        };
        if avx2_small_inverse::<D>() {
            self.inv_drive_m::<3>(x, z, out, log_prob, &flush)
        } else if SSE_ONLY && T::BITS == 32 {
            self.inv_drive_m::<2>(x, z, out, log_prob, &flush)
        } else if D <= 4 && (SSE_ONLY || cfg!(target_feature = "avx512f") && mostly_near()) {
            self.inv_drive_m::<6>(x, z, out, log_prob, &flush)
        } else if D <= 4 {
            self.inv_drive_m::<4>(x, z, out, log_prob, &flush)
        } else if fuse_sweeps::<D>() {
            self.inv_drive_m::<6>(x, z, out, log_prob, &flush)
        } else if crate::simd::lanes::AMD_ZEN5 {
            self.inv_drive_m::<4>(x, z, out, log_prob, &flush)
        } else {
            self.inv_drive_m::<2>(x, z, out, log_prob, &flush)
        }
    }

    /// `z[n] = g⁻¹(x[n])` and `log_det[n] = ln|det J_{g⁻¹}(x[n])|`, by the lane-wise safeguarded
    /// Newton solver (see the [module docs](self)). Returns the number of points whose scalar
    /// inverse would fail (non-finite input, overflow): their `z` and `log_det` are NaN; the
    /// other points are unaffected.
    ///
    /// # Errors
    /// [`FlowError::InvalidArgument`] if the buffers differ in length.
    pub fn inverse_batch(&self, x: &[[T; D]], z: &mut [[T; D]], log_det: &mut [T]) -> Result<usize>
    where
        T: SimdReal,
    {
        check_len(x.len(), z.len())?;
        check_len(x.len(), log_det.len())?;
        Ok(self.inv_drive(x, z, log_det, false))
    }

    /// Flow as the sampler: `out[n] = log q(x[n]) = log p_z(g⁻¹(x)) + ln|det J_{g⁻¹}(x)|` (see
    /// [`Flow::log_prob`]), via the lane-wise inverse. Returns the number of points whose scalar
    /// `log_prob` would fail; their `out` is NaN.
    ///
    /// # Errors
    /// [`FlowError::InvalidArgument`] if the buffers differ in length.
    pub fn log_prob_batch(&self, x: &[[T; D]], out: &mut [T]) -> Result<usize>
    where
        T: SimdReal,
    {
        check_len(x.len(), out.len())?;
        Ok(self.inv_drive(x, &mut [], out, true))
    }
}

/// Two vectors of independent standard normal draws by Box–Muller in the lanes:
/// `r = √(−2 ln u₁)`, `(r cos 2πu₂, r sin 2πu₂)`, with this module's `ln` and `wide`'s
/// `sin_cos`.
///
/// f64 lanes use the scalar sampler's uniforms (53 bits, `u₁ ∈ (0, 1]`, largest `|z|` ≈ 8.57);
/// f32 lanes use 31-bit `u₁ = (k + ½)·2⁻³¹` and 24-bit `u₂` (largest `|z|` ≈ 6.55, a two-sided
/// tail probability of 6e−11 cut off).
#[inline]
pub fn normal_lanes<L: SimdLane, R: Rng + ?Sized>(rng: &mut R) -> (L, L) {
    let s = L::Scalar::from_f64;
    let (u1, u2) = if L::Scalar::BITS == 32 {
        let u1 = L::from_fn(|_| s(((rng.next_u32() >> 1) as f64 + 0.5) * (1.0 / 2147483648.0)));
        let u2 = L::from_fn(|_| s((rng.next_u32() >> 8) as f64 * (1.0 / 16777216.0)));
        (u1, u2)
    } else {
        let u1 = L::from_fn(|_| s(crate::base::uniform_open0(rng)));
        let u2 = L::from_fn(|_| s((rng.next_u64() >> 11) as f64 * (1.0 / 9007199254740992.0)));
        (u1, u2)
    };
    let r = (u1.vln() * L::splat(s(-2.0))).vsqrt();
    let (sn, cs) = (u2 * L::splat(s(core::f64::consts::TAU))).vsin_cos();
    (r * cs, r * sn)
}
