//! A derivation call's documents packed into a few buffers (`derive-packed` in `wit/flow.wit`):
//! the host fills a [`SourceBatch`] once per call and gets the plugin's documents back as one
//! [`Published`] text. A component that exports the older `derive` gets the same batch unpacked
//! (`Instance::transform` converts both ways), so callers see one shape.

use crate::bindings::derivation_packed::exports::flow::plugin::derive_packed as wit;
use crate::derive_api;

/// Source documents for one plugin call, packed.
pub struct SourceBatch(pub(crate) wit::SourceBatch);

impl Default for SourceBatch {
    fn default() -> Self {
        SourceBatch(wit::SourceBatch {
            transforms: Vec::new(),
            keys: String::new(),
            key_ends: Vec::new(),
            documents: String::new(),
            document_ends: Vec::new(),
        })
    }
}

impl SourceBatch {
    /// Empty the batch, keeping its buffers for the next call.
    pub fn clear(&mut self) {
        let b = &mut self.0;
        b.transforms.clear();
        b.keys.clear();
        b.key_ends.clear();
        b.documents.clear();
        b.document_ends.clear();
    }

    /// Add a document of transform `transform` with shuffle key `key` (JSON array text).
    /// Returns false, adding nothing, if the batch's texts would pass 4 GiB (offsets are
    /// 32-bit): send this batch and start another.
    pub fn push(&mut self, transform: u32, key: &str, document: &str) -> bool {
        let b = &mut self.0;
        let (Ok(key_end), Ok(document_end)) = (
            u32::try_from(b.keys.len() + key.len()),
            u32::try_from(b.documents.len() + document.len()),
        ) else {
            return false;
        };
        b.transforms.push(transform);
        b.keys.push_str(key);
        b.key_ends.push(key_end);
        b.documents.push_str(document);
        b.document_ends.push(document_end);
        true
    }

    pub fn len(&self) -> usize {
        self.0.transforms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.transforms.is_empty()
    }

    /// The documents unpacked, for a component of the older `derive`.
    pub(crate) fn unpacked(&self) -> Vec<derive_api::SourceDocument> {
        let b = &self.0;
        let keys = items(&b.keys, &b.key_ends);
        let docs = items(&b.documents, &b.document_ends);
        b.transforms
            .iter()
            .zip(keys.zip(docs))
            .map(|(&transform, (key, document))| derive_api::SourceDocument {
                transform,
                key: key.unwrap_or_default().to_string(),
                document: document.unwrap_or_default().to_string(),
            })
            .collect()
    }
}

/// Check a packed text from a plugin: its ends must be ascending offsets at character
/// boundaries of the text, the last one its length.
pub(crate) fn check_ends(text: &str, ends: &[u32]) -> Result<(), String> {
    let mut start = 0usize;
    for (i, &end) in ends.iter().enumerate() {
        let end = end as usize;
        if end < start || !text.is_char_boundary(end) {
            return Err(format!(
                "end {end} of item {} is not an offset at or after {start} at a character \
                 boundary of the {}-byte text",
                i + 1,
                text.len()
            ));
        }
        start = end;
    }
    if start != text.len() {
        return Err(format!(
            "the last item ends at {start}, the text is {} bytes",
            text.len()
        ));
    }
    Ok(())
}

/// Each item's byte range, from the ends of a packed text (item `i` from `ends[i - 1]`, or 0,
/// to `ends[i]`).
fn ranges(ends: &[u32]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut start = 0;
    ends.iter().map(move |&end| {
        let r = start..end as usize;
        start = end as usize;
        r
    })
}

/// The items of a packed text whose ends were checked (or that the host packed): every range
/// is valid, so no item is `None`.
pub(crate) fn items<'a>(
    text: &'a str,
    ends: &'a [u32],
) -> impl Iterator<Item = Option<&'a str>> + 'a {
    ranges(ends).map(|r| text.get(r))
}

/// The documents a plugin published in one call: one text and where each document ends.
#[derive(Debug)]
pub struct Published {
    text: String,
    ends: Vec<u32>,
}

impl Published {
    /// Check what a plugin returned (see [`check_ends`]).
    pub(crate) fn checked(p: wit::Published) -> Result<Self, String> {
        check_ends(&p.documents, &p.ends)
            .map_err(|e| format!("published documents are packed wrongly: {e}"))?;
        Ok(Published {
            text: p.documents,
            ends: p.ends,
        })
    }

    /// Pack the documents of a component of the older `derive`.
    pub(crate) fn packed(docs: Vec<String>) -> Result<Self, String> {
        let mut out = Published {
            text: String::with_capacity(docs.iter().map(String::len).sum()),
            ends: Vec::with_capacity(docs.len()),
        };
        for d in docs {
            out.text.push_str(&d);
            let end = u32::try_from(out.text.len())
                .map_err(|_| "the call's published documents pass 4 GiB".to_string())?;
            out.ends.push(end);
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// All documents' bytes together.
    pub fn bytes(&self) -> usize {
        self.text.len()
    }

    /// Each document's byte range in [`Published::text`].
    pub fn ranges(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        ranges(&self.ends)
    }

    /// The documents.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.ranges().map(|r| &self.text[r])
    }

    /// The text all documents are in, to slice with [`Published::ranges`].
    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(documents: &str, ends: &[u32]) -> Result<Published, String> {
        Published::checked(wit::Published {
            documents: documents.into(),
            ends: ends.to_vec(),
        })
    }

    #[test]
    fn a_batch_unpacks_as_it_was_pushed() {
        let mut b = SourceBatch::default();
        assert!(b.push(0, r#"["a"]"#, r#"{"x":1}"#));
        assert!(b.push(1, r#"["é"]"#, "{}"));
        let docs = b.unpacked();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            (docs[1].transform, &*docs[1].key, &*docs[1].document),
            (1, r#"["é"]"#, "{}")
        );
        b.clear();
        assert!(b.is_empty() && b.unpacked().is_empty());
    }

    #[test]
    fn published_documents_are_checked() {
        let p = published(r#"{"a":1}{}"#, &[7, 9]).unwrap();
        assert_eq!(p.iter().collect::<Vec<_>>(), [r#"{"a":1}"#, "{}"]);
        assert!(published("", &[]).unwrap().is_empty());
        // Descending, past the end, short of the end, inside a character.
        for (text, ends) in [
            ("{}{}", &[4u32, 2][..]),
            ("{}", &[3]),
            ("{}{}", &[2]),
            ("\"é\"", &[2, 4]),
        ] {
            let e = published(text, ends).unwrap_err();
            assert!(e.contains("packed wrongly"), "{e}");
        }
        let round = Published::packed(vec!["{}".into(), r#"{"b":2}"#.into()]).unwrap();
        assert_eq!(round.iter().collect::<Vec<_>>(), ["{}", r#"{"b":2}"#]);
        assert_eq!(round.bytes(), 9);
    }
}
