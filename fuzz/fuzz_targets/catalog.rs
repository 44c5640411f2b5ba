//! Catalog texts: YAML parsing, schema compiling and catalog checks (`flow_host::fuzz::catalog_text`).
#![no_main]
libfuzzer_sys::fuzz_target!(|text: &str| flow_host::fuzz::catalog_text(text));
