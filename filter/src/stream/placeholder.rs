//! Temporary whole-body decoder with the final `BodyDecoder` API (replaced by the real framers).
use super::Frame;
use crate::providers::Framing;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentEncoding {
    Identity,
}
impl ContentEncoding {
    pub fn from_header(v: &str) -> Option<ContentEncoding> {
        if v.trim().eq_ignore_ascii_case("identity") {
            Some(ContentEncoding::Identity)
        } else {
            None
        }
    }
}
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_event: usize,
    pub max_body: usize,
    pub max_inflated: u64,
}
impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event: 256 << 10,
            max_body: 4 << 20,
            max_inflated: 16 << 20,
        }
    }
}
pub struct BodyDecoder {
    buf: Vec<u8>,
    framing: Framing,
    max: usize,
}
impl BodyDecoder {
    pub fn new(_e: ContentEncoding, framing: Framing, l: &Limits) -> BodyDecoder {
        BodyDecoder {
            buf: Vec::new(),
            framing,
            max: l.max_body,
        }
    }
    pub fn push(&mut self, chunk: &[u8], _on: &mut dyn FnMut(Frame<'_>)) {
        if self.buf.len() + chunk.len() <= self.max {
            self.buf.extend_from_slice(chunk)
        }
    }
    pub fn finish(&mut self, on: &mut dyn FnMut(Frame<'_>)) {
        let buf = std::mem::take(&mut self.buf);
        if self.framing == Framing::Whole {
            on(Frame::Json(&buf));
            return;
        }
        if let Ok(s) = std::str::from_utf8(&buf) {
            for ev in s.split("\n\n") {
                let data: Vec<&str> = ev
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if !data.is_empty() {
                    on(Frame::Sse {
                        event: "",
                        data: &data.join("\n"),
                    });
                }
            }
        }
    }
}
