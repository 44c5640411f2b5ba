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
/// transaction), and the bounds of a packed call.
#[derive(Default)]
pub(crate) struct StateGrant {
    pub(crate) access: Option<Box<dyn StateAccess>>,
    /// What one `get-packed` returns at most: `hostResultBytesMax`, and no more than a
    /// sixteenth of the instance's memory cap, so reading ahead never crowds the plugin out.
    pub(crate) result_bytes_max: usize,
    /// The calling export's CPU deadline: a `get-packed` past it answers the keys it has.
    pub(crate) deadline: Option<std::time::Instant>,
}

/// Keys in one packed call at most (a call of the host is at most `callDocsMax` documents).
const PACKED_KEYS_MAX: usize = 1 << 16;

fn check_count(n: usize) -> Result<(), String> {
    if n > PACKED_KEYS_MAX {
        return Err(format!(
            "{n} keys in one call, over the {PACKED_KEYS_MAX} a packed state call takes"
        ));
    }
    Ok(())
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
        check_count(key_ends.len())?;
        check_ends(&keys, &key_ends).map_err(|e| format!("keys are packed wrongly: {e}"))?;
        let (mut text, mut ends) = (String::new(), Vec::with_capacity(key_ends.len()));
        let Some(s) = self.access.as_mut() else {
            // No state granted: every key has none.
            return Ok((text, vec![0; key_ends.len()]));
        };
        for (i, key) in items(&keys, &key_ends).enumerate() {
            let value = s.get(key.unwrap_or_default()).unwrap_or_default();
            // A prefix: at least one key, and no more than the cap and the deadline allow
            // after that.
            let over = text.len() + value.len() + 4 * (i + 1) > self.result_bytes_max;
            let late = i % 64 == 63 && self.deadline.is_some_and(|d| std::time::Instant::now() > d);
            if i > 0 && (over || late) {
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
        check_count(key_ends.len())?;
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
            deadline: None,
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
        let mut g = grant(16);
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
        // A call of more keys than any batch has: refused before any work.
        let many = vec![0; PACKED_KEYS_MAX + 1];
        let e = g.get_packed(String::new(), many.clone()).unwrap_err();
        assert!(e.contains("over the 65536"), "{e}");
        assert!(
            g.set_packed(String::new(), many.clone(), String::new(), many)
                .is_err()
        );
    }

    #[test]
    fn without_a_grant_every_key_has_no_state() {
        let mut g = StateGrant::default();
        let (text, ends) = g.get_packed(r#"["a"]["b"]"#.into(), vec![5, 10]).unwrap();
        assert_eq!((text.as_str(), ends), ("", vec![0, 0]));
    }

    #[test]
    fn a_packed_read_past_the_deadline_answers_what_it_has() {
        let mut g = grant(1 << 20);
        g.deadline = Some(std::time::Instant::now());
        let (keys, ends): (String, Vec<u32>) =
            (0..200).fold((String::new(), vec![]), |(mut k, mut e), i| {
                k.push_str(&format!("[{i}]"));
                e.push(k.len() as u32);
                (k, e)
            });
        let (_, answered) = g.get_packed(keys, ends).unwrap();
        assert_eq!(answered.len(), 63);
    }
}
