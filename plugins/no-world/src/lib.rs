//! A component that implements no world of `wit/`: deploying it must be refused with the
//! reason. Used by the bad-input tests.

/// Exported as a core function only; the component exports no `flow:plugin` interface.
#[unsafe(no_mangle)]
pub extern "C" fn nothing_useful() -> i32 {
    42
}
