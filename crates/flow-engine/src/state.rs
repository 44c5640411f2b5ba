//! The `state` capability: per-key state of a derivation, granted by its task.

use super::bindings::derivation::flow::plugin::state;
use super::ctx::PluginCtx;

/// Per-key state of a derivation, as the task's transaction sees it.
pub trait StateAccess: Send {
    fn get(&mut self, key: &str) -> Option<String>;
    fn set(&mut self, key: &str, value: String);
    fn clear(&mut self, key: &str);
}

impl state::Host for PluginCtx {
    fn get(&mut self, key: String) -> Option<String> {
        self.state.as_mut().and_then(|s| s.get(&key))
    }
    fn set(&mut self, key: String, value: String) {
        if let Some(s) = self.state.as_mut() {
            s.set(&key, value)
        }
    }
    fn clear(&mut self, key: String) {
        if let Some(s) = self.state.as_mut() {
            s.clear(&key)
        }
    }
}
