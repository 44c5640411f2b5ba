//! Reductions in any grouping, with spills, against a left-to-right model
//! (`flow_host::fuzz::reductions`).
#![no_main]
libfuzzer_sys::fuzz_target!(|r: flow_host::fuzz::Reductions| flow_host::fuzz::reductions(&r));
