//! NDJSON ingest bodies: parsing, document checks and combining (`flow_host::fuzz::ingest`).
#![no_main]
libfuzzer_sys::fuzz_target!(|body: &[u8]| flow_host::fuzz::ingest(body));
