//! The model's output as the providers read it, kept for content capture (`capture_content`): text and
//! tool calls per choice, bounded.

/// Output text is kept up to the cap plus this much, so a match straddling the cap is still recognised
/// (and redacted) before the cut.
pub const SLACK: usize = 512;
const MAX_CHOICES: usize = 16;
const MAX_TOOL_CALLS: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolCallOut {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChoiceOut {
    pub text: String,
    pub tool_calls: Vec<ToolCallOut>,
}

/// Output accumulated while the response is read. Disabled (the default) it stores nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputCapture {
    enabled: bool,
    /// Bytes that may still be stored.
    room: usize,
    /// Something was dropped for lack of room.
    pub overflow: bool,
    pub choices: Vec<ChoiceOut>,
}

pub(crate) fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl OutputCapture {
    pub fn new(max_bytes: usize) -> Self {
        OutputCapture {
            enabled: true,
            room: max_bytes.saturating_add(SLACK),
            overflow: false,
            choices: Vec::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn choice(&mut self, index: usize) -> Option<&mut ChoiceOut> {
        if !self.enabled || index >= MAX_CHOICES {
            return None;
        }
        if self.choices.len() <= index {
            self.choices.resize(index + 1, ChoiceOut::default());
        }
        self.choices.get_mut(index)
    }

    /// Take as much of `s` as fits; the rest is dropped and `overflow` set.
    fn take<'s>(&mut self, s: &'s str) -> &'s str {
        let n = floor_boundary(s, self.room);
        if n < s.len() {
            self.overflow = true;
        }
        self.room -= n;
        s.get(..n).unwrap_or("")
    }

    /// Generated text of choice `index`.
    pub fn text(&mut self, index: usize, s: &str) {
        if !self.enabled || s.is_empty() {
            return;
        }
        let part = self.take(s);
        if let Some(c) = self.choice(index) {
            c.text.push_str(part);
        }
    }

    /// A tool call the model started (or named again: the same id is not added twice).
    pub fn tool_call(&mut self, index: usize, id: &str, name: &str) {
        let (id, name) = (self.take(id).to_owned(), self.take(name).to_owned());
        let Some(c) = self.choice(index) else { return };
        if !id.is_empty() {
            if let Some(known) = c.tool_calls.iter_mut().find(|t| t.id == id) {
                if known.name.is_empty() {
                    known.name = name;
                }
                return;
            }
        }
        if c.tool_calls.len() < MAX_TOOL_CALLS {
            c.tool_calls.push(ToolCallOut {
                id,
                name,
                arguments: String::new(),
            });
        }
    }

    /// Arguments (JSON text, possibly a fragment) of the latest tool call of choice `index`.
    pub fn tool_arguments(&mut self, index: usize, fragment: &str) {
        if !self.enabled || fragment.is_empty() {
            return;
        }
        let part = self.take(fragment).to_owned();
        if let Some(t) = self.choice(index).and_then(|c| c.tool_calls.last_mut()) {
            t.arguments.push_str(&part);
        }
    }
}
