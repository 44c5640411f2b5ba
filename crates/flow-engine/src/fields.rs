//! The `fields` import: what the catalog selected as the fields of each binding of a
//! materialization, set by its task before `open`.

use super::bindings::materialization::flow::plugin::fields;

pub use fields::Field;

/// The fields of each binding, by binding index.
#[derive(Default)]
pub(crate) struct FieldsGrant {
    pub(crate) bindings: Vec<Vec<Field>>,
}

impl fields::Host for FieldsGrant {
    fn selected(&mut self, binding: u32) -> Vec<Field> {
        self.bindings
            .get(binding as usize)
            .cloned()
            .unwrap_or_default()
    }
}
