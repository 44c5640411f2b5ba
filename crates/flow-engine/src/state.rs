//! The `state` capability: per-key state of a derivation, granted by its task.

use super::bindings::derivation::flow::plugin::state;

/// Per-key state of a derivation, as the task's transaction sees it.
pub trait StateAccess: Send {
    fn get(&mut self, key: &str) -> Option<String>;
    fn set(&mut self, key: &str, value: String);
    fn clear(&mut self, key: &str);
}

/// What a plugin instance was granted of `state` (nothing, for all but derivations inside a
/// transaction).
#[derive(Default)]
pub(crate) struct StateGrant(pub(crate) Option<Box<dyn StateAccess>>);

impl state::Host for StateGrant {
    fn get(&mut self, key: String) -> Option<String> {
        self.0.as_mut().and_then(|s| s.get(&key))
    }
    fn set(&mut self, key: String, value: String) {
        if let Some(s) = self.0.as_mut() {
            s.set(&key, value)
        }
    }
    fn clear(&mut self, key: String) {
        if let Some(s) = self.0.as_mut() {
            s.clear(&key)
        }
    }
}
