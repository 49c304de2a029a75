//! hsdns's benchmarks and fuzzer: binaries in src/bin that need root and
//! network namespaces, so they are programs of their own rather than examples.
//! `cargo xtask bench` runs them from target/release and collects the JSON
//! lines they print; `cargo xtask fuzz` runs `fuzz`. The harness they
//! share with the tests is hsdns-test-support.

pub mod proc_stats;
