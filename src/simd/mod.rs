//! SIMD batched kernels: a [`Flow`](crate::Flow) applied to whole batches of points, `LANES`
//! points per vector register, every chunk taken through all `K` layers before the next is
//! loaded (one pass over the batch): in registers for `D < 8`, in the stack frame (L1) with
//! one fused sweep per layer for `D ≥ 8` (see [`batch`]).
//!
//! * [`lanes`]: [`Lane`](crate::Lane) for `wide::{f32x8, f32x16, f64x4, f64x8}` and the extra
//!   lane operations of [`SimdLane`].
//! * [`math`]: the vector `exp_m1`, `ln` and `(tanh, sech²)` behind those lanes, with their
//!   measured error bounds.
//! * [`batch`]: the batched API on [`Flow`](crate::Flow) over caller-owned buffers
//!   (`forward_batch`, `forward_log_det_batch`, `inverse_batch`, `log_prob_batch`,
//!   `log_prob_normalizing_batch`, `sample_batch`) and its lanes-native (structure-of-arrays)
//!   form (`*_soa`, `*_lanes`).
//! * `par` (feature `parallel`): the same kernels split across cores with rayon (`par_*`).
//!
//! The kernels run the same formulas as the scalar reference ([`Planar::forward_lanes`](crate::Planar::forward_lanes)
//! and the activation's lane `eval`), only with the vector math of [`math`] in place of `libm`.
//!
//! ```
//! use flowcore::{Flow, Planar};
//! let flow = Flow::new([
//!     Planar::<f32, 2>::new([1.0, 0.5], [0.8, -1.2], 0.3)?,
//!     Planar::<f32, 2>::new([-0.7, 1.1], [1.5, 0.4], -0.2)?,
//! ]);
//! let z = [[0.1f32, -0.4]; 11];
//! let (mut x, mut ld) = ([[0.0f32; 2]; 11], [0.0f32; 11]);
//! flow.forward_log_det_batch(&z, &mut x, &mut ld)?;
//! let (x0, ld0) = flow.forward_and_log_det(&z[10]);
//! assert!((x[10][0] - x0[0]).abs() < 1e-5 && (ld[10] - ld0).abs() < 1e-5);
//! // And back, through the exact inverse (lane-wise Newton):
//! let (mut z2, mut ldi) = ([[0.0f32; 2]; 11], [0.0f32; 11]);
//! let failed = flow.inverse_batch(&x, &mut z2, &mut ldi)?;
//! assert_eq!(failed, 0);
//! assert!((z2[3][1] - z[3][1]).abs() < 1e-5 && (ldi[3] + ld[3]).abs() < 1e-5);
//! # Ok::<(), flowcore::FlowError>(())
//! ```

pub mod batch;
pub mod group;
pub mod lanes;
pub mod math;
#[cfg(feature = "parallel")]
pub mod par;

pub use batch::LaneSolve;
pub use group::Group;
pub use lanes::SimdLane;

use crate::real::Real;

/// A scalar with a SIMD lane type for the batched kernels: `f32 → wide::f32x8`,
/// `f64 → wide::f64x4` (the widths that measured fastest on both the default and the
/// `target-cpu=native` builds; the kernels are generic over [`SimdLane`], so the `*_soa`
/// functions also take `f32x16` / `f64x8` chunks).
pub trait SimdReal: Real {
    /// The lane type the batched kernels use for this scalar.
    type Simd: SimdLane<Scalar = Self>;
}

#[cfg(not(target_feature = "avx512f"))]
impl SimdReal for f32 {
    type Simd = wide::f32x8;
}

#[cfg(target_feature = "avx512f")]
impl SimdReal for f32 {
    type Simd = wide::f32x16;
}

#[cfg(not(target_feature = "avx512f"))]
impl SimdReal for f64 {
    type Simd = wide::f64x4;
}

#[cfg(target_feature = "avx512f")]
impl SimdReal for f64 {
    type Simd = wide::f64x8;
}
