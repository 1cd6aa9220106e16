//! What redaction and content capture add to a call: spans redacted per detector, prompt-injection
//! flags, and the captured content attributes.

/// What redaction and capture add to one call's span.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    /// Redaction ran for this call (then `tollgate.redaction.count` is set, 0 included).
    pub active: bool,
    /// Spans redacted in the request's user text and in the output.
    pub findings: Findings,
    /// Prompt-injection flags (never blocking).
    pub flags: Vec<&'static str>,
    /// Content attributes (already redacted and capped): (name, JSON text).
    pub content: Vec<(&'static str, String)>,
    pub truncated: bool,
}

/// What a redaction found: how many spans, which detectors (sorted, deduplicated) and how many spans each
/// (`counts[i]` belongs to `types[i]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    pub count: u32,
    pub types: Vec<String>,
    pub counts: Vec<u32>,
}

impl Findings {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn add(&mut self, name: &str) {
        self.add_n(name, 1);
    }

    fn add_n(&mut self, name: &str, n: u32) {
        self.count = self.count.saturating_add(n);
        match self.types.binary_search_by(|t| t.as_str().cmp(name)) {
            Ok(pos) => {
                if let Some(c) = self.counts.get_mut(pos) {
                    *c = c.saturating_add(n);
                }
            }
            Err(pos) => {
                self.types.insert(pos, name.to_owned());
                self.counts.insert(pos.min(self.counts.len()), n);
            }
        }
    }

    pub fn merge(&mut self, other: &Findings) {
        for (t, n) in other.types.iter().zip(&other.counts) {
            self.add_n(t, *n);
        }
    }

    /// (detector name, spans) pairs.
    pub fn per_type(&self) -> impl Iterator<Item = (&str, u32)> {
        self.types
            .iter()
            .map(String::as_str)
            .zip(self.counts.iter().copied())
    }

    /// The found types that appear in `block_list` (block mode rejects the request when non-empty).
    pub fn blocked_by<S: AsRef<str>>(&self, block_list: &[S]) -> Vec<&str> {
        self.types
            .iter()
            .map(String::as_str)
            .filter(|t| block_list.iter().any(|b| b.as_ref() == *t))
            .collect()
    }
}
