//! DNS on the wire: the precomputed pieces the XDP program copies into its
//! replies (`answer`), and the userspace resolver that is the kernel's
//! byte-for-byte reference (`resolver`). All encoding is hickory-proto's.
pub mod answer;
pub mod resolver;
/// Test oracles: for unit tests, and for hsdns-test-support through the
/// `testing` feature; not in release builds.
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use answer::{Encoded, answer_section, opt_record, soa_authority};
pub use resolver::{PassReason, Verdict, respond, respond_any_type};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod conformance;
