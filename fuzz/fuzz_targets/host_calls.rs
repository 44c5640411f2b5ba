//! The host functions a plugin can call (`state`, `sql`, `log`) with arbitrary arguments
//! (`flow_host::fuzz::host_calls`).
#![no_main]
libfuzzer_sys::fuzz_target!(
    |calls: Vec<flow_host::fuzz::Call>| flow_host::fuzz::host_calls(&calls)
);
