//! What the core asks of a proxy ([`Host`]), and the host-generic runtime
//! that drives the decision through it.

pub mod jwks_fetch;
pub mod runtime;

pub use runtime::{Host, MetricKind, Step, Vm};
