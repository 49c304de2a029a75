//! The differential fuzzer of the kernel path (BPF_PROG_TEST_RUN against
//! the userspace resolver) and the arbitrary-bytes fuzzing of the
//! userspace parsers. Shared by hsdns's `tests/fuzz.rs` (bounded runs in
//! the test command, the regression corpus) and hsdns-bench's `fuzz`
//! binary (what `cargo xtask fuzz` runs).
//!
//! - `target`: the program from outside (load, fill the maps, run a frame);
//! - `table`: the record table it runs against;
//! - `dns`, `frame`: queries and frames with every field settable;
//! - `generate`: valid queries, then faults (`faults`: one function per
//!   layer);
//! - `oracle`: what the program must do with a frame, and the check;
//! - `run`: a campaign and its report; `corpus`: regression cases;
//! - `userspace`: the server's request handling, the resolver, manifests.

pub mod corpus;
pub mod dns;
mod faults;
pub mod frame;
pub mod generate;
pub mod oracle;
pub mod run;
pub mod table;
pub mod target;
pub mod userspace;
