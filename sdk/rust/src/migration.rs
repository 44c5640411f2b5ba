//! Optional state migration for derivations: a new version converts per-key state written by
//! an older one before it starts (`wit/` interface `migrate`).

use crate::Error;
use crate::migrating_bindings::exports::flow::plugin::migrate as wit;
use crate::migrating_bindings::flow::plugin::types::PluginError;
use serde_json::Value;

/// Migrate the state of one key, written by the component `from_digest` (`sha256:...`).
/// Return `Some(new state)`, or `None` to keep it as it is.
pub trait Migrate {
    fn migrate(from_digest: &str, key: &Value, state: Value) -> Result<Option<Value>, Error>;
}

#[doc(hidden)]
pub fn migrate<T: Migrate>(
    from: String,
    batch: Vec<wit::KeyedState>,
) -> Result<Vec<wit::KeyedState>, PluginError> {
    let mut out = Vec::new();
    for (i, s) in batch.into_iter().enumerate() {
        let at = |message: String| PluginError {
            message,
            document: Some(i as u32),
        };
        let key: Value =
            serde_json::from_str(&s.key).map_err(|e| at(format!("key is not JSON: {e}")))?;
        let state: Value =
            serde_json::from_str(&s.state).map_err(|e| at(format!("state is not JSON: {e}")))?;
        if let Some(new) = T::migrate(&from, &key, state).map_err(|e| at(e.message))? {
            out.push(wit::KeyedState {
                key: s.key,
                state: crate::json_text(&new),
            });
        }
    }
    Ok(out)
}

/// Export `$t` (a [`crate::Derivation`] and [`Migrate`]) as this component's derivation, with
/// state migration.
#[macro_export]
macro_rules! export_migrating_derivation {
    ($t:ty) => {
        $crate::export_derivation!($t);

        #[doc(hidden)]
        pub struct __FlowMigratingExport;

        impl $crate::migrating_bindings::exports::flow::plugin::migrate::Guest for __FlowMigratingExport {
            fn migrate(
                from_digest: String,
                batch: Vec<$crate::migrating_bindings::exports::flow::plugin::migrate::KeyedState>,
            ) -> Result<
                Vec<$crate::migrating_bindings::exports::flow::plugin::migrate::KeyedState>,
                $crate::migrating_bindings::flow::plugin::types::PluginError,
            > {
                $crate::__migration::migrate::<$t>(from_digest, batch)
            }
        }

        $crate::migrating_bindings::__export_migration_world!(__FlowMigratingExport with_types_in $crate::migrating_bindings);
    };
}
