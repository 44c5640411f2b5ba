//! The `state` capability: per-key state of a derivation, granted by its task.

use super::bindings::derivation::flow::plugin::state;
use super::packed::{check_ends, items};

/// Per-key state of a derivation, as the task's transaction sees it.
pub trait StateAccess: Send {
    fn get(&mut self, key: &str) -> Option<String>;
    fn set(&mut self, key: &str, value: String);
    fn clear(&mut self, key: &str);
}

/// What a plugin instance was granted of `state` (nothing, for all but derivations inside a
/// transaction), and the cap on what one call returns to it (`hostResultBytesMax`).
#[derive(Default)]
pub(crate) struct StateGrant {
    pub(crate) access: Option<Box<dyn StateAccess>>,
    pub(crate) result_bytes_max: usize,
}

impl state::Host for StateGrant {
    fn get(&mut self, key: String) -> Option<String> {
        self.access.as_mut().and_then(|s| s.get(&key))
    }
    fn set(&mut self, key: String, value: String) {
        if let Some(s) = self.access.as_mut() {
            s.set(&key, value)
        }
    }
    fn clear(&mut self, key: String) {
        if let Some(s) = self.access.as_mut() {
            s.clear(&key)
        }
    }

    fn get_packed(
        &mut self,
        keys: String,
        key_ends: Vec<u32>,
    ) -> Result<(String, Vec<u32>), String> {
        check_ends(&keys, &key_ends).map_err(|e| format!("keys are packed wrongly: {e}"))?;
        let (mut text, mut ends) = (String::new(), Vec::with_capacity(key_ends.len()));
        let Some(s) = self.access.as_mut() else {
            return Ok((text, ends));
        };
        for key in items(&keys, &key_ends) {
            let value = s.get(key.unwrap_or_default()).unwrap_or_default();
            // A prefix: at least one key, and no more than the cap after that.
            if !ends.is_empty() && text.len() + value.len() > self.result_bytes_max {
                break;
            }
            text.push_str(&value);
            ends.push(text.len() as u32);
        }
        Ok((text, ends))
    }

    fn set_packed(
        &mut self,
        keys: String,
        key_ends: Vec<u32>,
        values: String,
        value_ends: Vec<u32>,
    ) -> Result<(), String> {
        check_ends(&keys, &key_ends).map_err(|e| format!("keys are packed wrongly: {e}"))?;
        check_ends(&values, &value_ends).map_err(|e| format!("values are packed wrongly: {e}"))?;
        if key_ends.len() != value_ends.len() {
            return Err(format!(
                "{} keys but {} values",
                key_ends.len(),
                value_ends.len()
            ));
        }
        let Some(s) = self.access.as_mut() else {
            return Ok(());
        };
        for (key, value) in items(&keys, &key_ends).zip(items(&values, &value_ends)) {
            let (key, value) = (key.unwrap_or_default(), value.unwrap_or_default());
            if value.is_empty() {
                s.clear(key);
            } else {
                s.set(key, value.to_string());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use state::Host;
    use std::collections::HashMap;

    struct Map(HashMap<String, String>);

    impl StateAccess for Map {
        fn get(&mut self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
        fn set(&mut self, key: &str, value: String) {
            self.0.insert(key.into(), value);
        }
        fn clear(&mut self, key: &str) {
            self.0.remove(key);
        }
    }

    fn grant(result_bytes_max: usize) -> StateGrant {
        StateGrant {
            access: Some(Box::new(Map(HashMap::new()))),
            result_bytes_max,
        }
    }

    #[test]
    fn packed_writes_and_reads_are_one_at_a_time_in_order() {
        let mut g = grant(1 << 20);
        // ["a"] = 1, ["b"] = {"x":2}, ["a"] cleared (an empty value), ["c"] = 3.
        let (keys, values) = (r#"["a"]["b"]["a"]["c"]"#, r#"1{"x":2}3"#);
        g.set_packed(
            keys.into(),
            vec![5, 10, 15, 20],
            values.into(),
            vec![1, 8, 8, 9],
        )
        .unwrap();
        let (text, ends) = g
            .get_packed(r#"["a"]["b"]["c"]["d"]"#.into(), vec![5, 10, 15, 20])
            .unwrap();
        assert_eq!((text.as_str(), ends), (r#"{"x":2}3"#, vec![0, 7, 8, 8]));
        assert_eq!(g.get(r#"["b"]"#.into()).as_deref(), Some(r#"{"x":2}"#));
    }

    #[test]
    fn a_packed_read_answers_a_prefix_within_the_result_cap() {
        let mut g = grant(10);
        g.set_packed(
            r#"["a"]["b"]"#.into(),
            vec![5, 10],
            "12345678abcdefgh".into(),
            vec![8, 16],
        )
        .unwrap();
        let (text, ends) = g.get_packed(r#"["a"]["b"]"#.into(), vec![5, 10]).unwrap();
        assert_eq!((text.as_str(), ends), ("12345678", vec![8]));
        // At least one key, whatever its size.
        let mut g = grant(1);
        g.set(r#"["a"]"#.into(), "12345678".into());
        let (text, _) = g.get_packed(r#"["a"]"#.into(), vec![5]).unwrap();
        assert_eq!(text, "12345678");
    }

    #[test]
    fn wrongly_packed_calls_are_refused_and_write_nothing() {
        let mut g = grant(1 << 20);
        for (keys, key_ends, values, value_ends) in [
            (r#"["a"]"#, vec![4], "1", vec![1]),
            (r#"["a"]"#, vec![5], "12", vec![1]),
            (r#"["a"]"#, vec![5], "1", vec![1, 1]),
            (r#"["é"]"#, vec![3, 6], "12", vec![1, 2]),
        ] {
            let e = g
                .set_packed(keys.into(), key_ends, values.into(), value_ends)
                .unwrap_err();
            assert!(e.contains("packed wrongly") || e.contains("values"), "{e}");
        }
        assert!(g.get_packed(r#"["a"]"#.into(), vec![6]).is_err());
        assert_eq!(g.get(r#"["a"]"#.into()), None);
    }
}
