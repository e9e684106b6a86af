//! The crate's one error type.

use core::fmt;

/// What can go wrong in `flowcore`. Every constructor validates its input and every fallible
/// entry point returns one of these; nothing panics on user input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowError {
    /// A parameter (u, w, b, a margin, a slope) is NaN or ±∞, or a derived quantity such as
    /// `wᵀu` or the constrained `û` overflowed.
    NonFiniteParameter,
    /// An input point is NaN or ±∞ (or a value derived from it, such as `wᵀx + b`, overflowed).
    NonFiniteInput,
    /// The layer is not invertible: `1 + wᵀû·h′(α) ≤ 0` for some α (with the unconstrained
    /// parameterisation, `wᵀu ≤ −1` for tanh).
    NotInvertible,
    /// The inverse's root finder did not reach round-off within its iteration bound. This is a
    /// bug guard: the bound is proven sufficient for every finite input.
    NotConverged,
    /// An argument outside its documented domain (e.g. a projection margin not in (0, 1) or a
    /// leaky-ReLU slope not in (0, 1]).
    InvalidArgument(&'static str),
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowError::NonFiniteParameter => f.write_str(
                "a layer parameter is NaN or infinite, or a derived quantity overflowed",
            ),
            FlowError::NonFiniteInput => {
                f.write_str("an input point is NaN or infinite, or w·x + b overflowed")
            }
            FlowError::NotInvertible => {
                f.write_str("the planar layer is not invertible (1 + w·û·h'(a) <= 0 somewhere)")
            }
            FlowError::NotConverged => {
                f.write_str("the inverse's root finder did not converge within its bound")
            }
            FlowError::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
        }
    }
}

impl core::error::Error for FlowError {}

/// Shorthand for `Result<T, FlowError>`.
pub type Result<T> = core::result::Result<T, FlowError>;
