//! # flowcore
//!
//! Planar normalizing flows (Rezende & Mohamed 2015) for `no_std`, with no allocator: generic
//! over `f32`/`f64` ([`Real`]) and the dimension `D` (a const generic), with an **exact
//! inverse** of the tanh planar layer and log-dets that stay accurate as the layer approaches
//! non-invertibility.
//!
//! * [`Planar`]: one layer `g(z) = z + û·h(wᵀz + b)`, `log|det J_g| = ln(1 + wᵀû·h′(wᵀz + b))`;
//!   forward, log-det, and the inverse by a safeguarded Newton solve of the scalar equation
//!   `α + wᵀû·h(α) = wᵀx + b` followed by `z = x − û·h(α)`.
//! * [`Constraint`]: the map `u ↦ û` that keeps `wᵀû > −1` (invertibility), with a bounded
//!   default and the paper's form for comparison.
//! * [`Activation`]: [`Tanh`] (default) and [`LeakyRelu`], each with `h`, `h′`, `h″`.
//! * [`Flow`]: K layers in a fixed array; densities by the change of variables
//!   `p_x(x) = p_z(f(x))·|det J_f(x)|`, `f = g⁻¹`, `|det J_f| = 1/|det J_g|`; sampling.
//! * [`StandardNormal`]: the base distribution and an accurate Gaussian sampler over any
//!   `rand_core` 0.10 [`Rng`] ([`Xoshiro256PlusPlus`] is the documented default).
//!
//! ```
//! use flowcore::{Flow, Planar, SeedableRng, Xoshiro256PlusPlus};
//! let flow = Flow::new([
//!     Planar::<f32, 2>::new([1.0, 0.5], [0.8, -1.2], 0.3)?,
//!     Planar::<f32, 2>::new([-0.7, 1.1], [1.5, 0.4], -0.2)?,
//! ]);
//! let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
//! let (x, log_q) = flow.sample(&mut rng);
//! let z = flow.inverse(&x)?;                 // exact inverse
//! assert!((flow.log_prob(&x)? - log_q).abs() < 1e-4);
//! assert!((flow.forward(&z)[0] - x[0]).abs() < 1e-5);
//! # Ok::<(), flowcore::FlowError>(())
//! ```
//!
//! ## NaN and non-finite values
//! Constructors reject NaN and ±∞ parameters with [`FlowError::NonFiniteParameter`]. The
//! forward kernels accept any input and propagate NaN (IEEE arithmetic); the inverse and
//! `log_prob` check their input and return [`FlowError::NonFiniteInput`]. Nothing panics on
//! any input.
#![no_std]
#![deny(unsafe_code)]

#[cfg(feature = "std")]
extern crate std;

pub mod activation;
pub mod base;
#[cfg(feature = "check")]
pub mod check;
pub mod constraint;
pub mod energy;
pub mod error;
pub mod flow;
pub mod grad;
pub mod loss;
pub mod optim;
pub mod planar;
pub mod real;
pub mod simd;

pub use activation::{Activation, LeakyRelu, Tanh};
pub use base::StandardNormal;
pub use constraint::Constraint;
pub use error::{FlowError, Result};
pub use flow::Flow;
pub use planar::Planar;
pub use rand_core::{Rng, SeedableRng};
pub use rand_xoshiro::{Xoshiro128PlusPlus, Xoshiro256PlusPlus};
pub use real::{Lane, Real};
