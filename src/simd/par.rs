//! Multi-core batched kernels (feature `parallel`, which implies `std`): the batch is split into
//! blocks of whole chunks, and rayon runs the single-core kernels on the blocks in its current
//! thread pool (the global one, or the pool of an enclosing `ThreadPool::install`).
//!
//! Results are bit-identical to the single-core `*_batch` kernels: the points are independent
//! and each block is processed by the same code.
//!
//! A freshly built pool can take a while to run at full width: on a 2-vCPU VM (Zen 5 host,
//! 2026-12-05) a new 2-thread pool did its first 20–60 ms of work on one core, so calls of
//! under a millisecond made right after building it showed no speed-up; after a warm-up they
//! ran 1.90–1.99× faster (medians, N = 65536, every kernel; `benches/two_cores.sh`). Build
//! the pool once and keep it; time it after a warm-up (`examples/bench_planar.rs` warms up
//! for 200 ms).

use crate::activation::Activation;
use crate::error::{FlowError, Result};
use crate::flow::Flow;
use crate::real::Lane;
use crate::simd::{LaneSolve, SimdReal};
use rayon::prelude::*;

/// Points per rayon task: a multiple of every lane count, large enough to amortise the task
/// and the per-call log-det planning, small enough to balance two to a few dozen cores.
fn block<T: SimdReal>(n: usize) -> usize {
    let w = <T::Simd as Lane>::LANES * 8;
    let per = n
        .div_ceil(rayon::current_num_threads().max(1) * 4)
        .max(2048);
    per.div_ceil(w) * w
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

impl<T: SimdReal, const D: usize, const K: usize, A: Activation<T>> Flow<T, D, K, A> {
    /// [`Flow::forward_batch`] on all cores.
    ///
    /// # Errors
    /// As [`Flow::forward_batch`].
    pub fn par_forward_batch(&self, z: &[[T; D]], x: &mut [[T; D]]) -> Result<()> {
        check_len(z.len(), x.len())?;
        let b = block::<T>(z.len());
        z.par_chunks(b)
            .zip(x.par_chunks_mut(b))
            .try_for_each(|(z, x)| self.forward_batch(z, x))
    }

    /// [`Flow::forward_log_det_batch`] on all cores.
    ///
    /// # Errors
    /// As [`Flow::forward_log_det_batch`].
    pub fn par_forward_log_det_batch(
        &self,
        z: &[[T; D]],
        x: &mut [[T; D]],
        log_det: &mut [T],
    ) -> Result<()> {
        check_len(z.len(), x.len())?;
        check_len(z.len(), log_det.len())?;
        let b = block::<T>(z.len());
        z.par_chunks(b)
            .zip(x.par_chunks_mut(b))
            .zip(log_det.par_chunks_mut(b))
            .try_for_each(|((z, x), l)| self.forward_log_det_batch(z, x, l))
    }

    /// [`Flow::log_prob_normalizing_batch`] on all cores.
    ///
    /// # Errors
    /// As [`Flow::log_prob_normalizing_batch`].
    pub fn par_log_prob_normalizing_batch(&self, x: &[[T; D]], out: &mut [T]) -> Result<()> {
        check_len(x.len(), out.len())?;
        let b = block::<T>(x.len());
        x.par_chunks(b)
            .zip(out.par_chunks_mut(b))
            .try_for_each(|(x, o)| self.log_prob_normalizing_batch(x, o))
    }
}

impl<T: SimdReal, const D: usize, const K: usize, A: LaneSolve<T>> Flow<T, D, K, A> {
    /// [`Flow::inverse_batch`] on all cores; returns the total number of failed points.
    ///
    /// # Errors
    /// As [`Flow::inverse_batch`].
    pub fn par_inverse_batch(
        &self,
        x: &[[T; D]],
        z: &mut [[T; D]],
        log_det: &mut [T],
    ) -> Result<usize> {
        check_len(x.len(), z.len())?;
        check_len(x.len(), log_det.len())?;
        let b = block::<T>(x.len());
        x.par_chunks(b)
            .zip(z.par_chunks_mut(b))
            .zip(log_det.par_chunks_mut(b))
            .map(|((x, z), l)| self.inverse_batch(x, z, l))
            .try_reduce(|| 0, |a, b| Ok(a + b))
    }

    /// [`Flow::log_prob_batch`] on all cores; returns the total number of failed points.
    ///
    /// # Errors
    /// As [`Flow::log_prob_batch`].
    pub fn par_log_prob_batch(&self, x: &[[T; D]], out: &mut [T]) -> Result<usize> {
        check_len(x.len(), out.len())?;
        let b = block::<T>(x.len());
        x.par_chunks(b)
            .zip(out.par_chunks_mut(b))
            .map(|(x, o)| self.log_prob_batch(x, o))
            .try_reduce(|| 0, |a, b| Ok(a + b))
    }
}
