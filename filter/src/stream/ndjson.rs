//! Newline-delimited JSON (Ollama `application/x-ndjson`): one document per line.

use super::Frame;
use memchr::memchr;

#[derive(Debug)]
pub struct NdjsonDecoder {
    max_event: usize,
    /// Start of a line that continues in the next chunk.
    line: Vec<u8>,
    /// The current line outgrew `max_event`: discard up to its `\n`.
    skipping: bool,
    oversize_skipped: u64,
}

impl NdjsonDecoder {
    pub fn new(max_event: usize) -> NdjsonDecoder {
        NdjsonDecoder {
            max_event,
            line: Vec::new(),
            skipping: false,
            oversize_skipped: 0,
        }
    }

    pub fn oversize_skipped(&self) -> u64 {
        self.oversize_skipped
    }

    pub fn buffered(&self) -> usize {
        self.line.len()
    }

    pub fn push(&mut self, chunk: &[u8], on: &mut dyn FnMut(Frame<'_>)) {
        let mut rest = chunk;
        while let Some(i) = memchr(b'\n', rest) {
            let (body, after) = rest.split_at_checked(i).unwrap_or((rest, &[]));
            rest = after.get(1..).unwrap_or(&[]);
            if self.skipping {
                self.skipping = false;
                continue;
            }
            if self.line.is_empty() {
                // Common case: the whole line is inside this chunk, no copy.
                if body.len() > self.max_event {
                    self.oversize_skipped = self.oversize_skipped.saturating_add(1);
                } else {
                    emit(body, on);
                }
            } else if self.line.len().saturating_add(body.len()) > self.max_event {
                self.oversize_skipped = self.oversize_skipped.saturating_add(1);
                self.line.clear();
            } else {
                self.line.extend_from_slice(body);
                emit(&self.line, on);
                self.line.clear();
            }
        }
        if rest.is_empty() || self.skipping {
            return;
        }
        if self.line.len().saturating_add(rest.len()) > self.max_event {
            self.oversize_skipped = self.oversize_skipped.saturating_add(1);
            self.skipping = true;
            self.line = Vec::new();
        } else {
            self.line.extend_from_slice(rest);
        }
    }

    /// End of body: a last line without its newline is still a complete document for NDJSON writers
    /// that don't terminate the final line.
    pub fn finish(&mut self, on: &mut dyn FnMut(Frame<'_>)) {
        if !self.skipping {
            emit(&self.line, on);
        }
        self.line.clear();
        self.skipping = false;
    }
}

fn emit(line: &[u8], on: &mut dyn FnMut(Frame<'_>)) {
    let line = line.trim_ascii();
    if !line.is_empty() {
        on(Frame::Json(line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::testutil::{every_split, one_byte, xorshift_chunks, Owned};

    fn run(max: usize, chunks: &[&[u8]]) -> (Vec<Owned>, NdjsonDecoder) {
        let mut d = NdjsonDecoder::new(max);
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, &mut |f| out.push(Owned::from(f)));
        }
        d.finish(&mut |f| out.push(Owned::from(f)));
        (out, d)
    }

    fn decode_all_ways(input: &[u8], max: usize) -> (Vec<Owned>, u64) {
        let (whole, d) = run(max, &[input]);
        for chunks in every_split(input)
            .chain(std::iter::once(one_byte(input)))
            .chain(xorshift_chunks(input, 20))
        {
            let (got, d2) = run(max, &chunks);
            assert_eq!(got, whole, "chunking {chunks:?}");
            assert_eq!(d2.oversize_skipped(), d.oversize_skipped());
            assert_eq!(d2.buffered(), 0);
        }
        (whole, d.oversize_skipped())
    }

    fn json(s: &str) -> Owned {
        Owned::Json(s.as_bytes().to_vec())
    }

    #[test]
    fn ollama_chat_lines() {
        let input =
            "{\"model\":\"llama3\",\"message\":{\"content\":\"héllo 🌍\"},\"done\":false}\n\
{\"model\":\"llama3\",\"done\":true,\"prompt_eval_count\":12,\"eval_count\":40}\n"
                .as_bytes();
        let (frames, o) = decode_all_ways(input, 1024);
        assert_eq!(
            frames,
            vec![
                json("{\"model\":\"llama3\",\"message\":{\"content\":\"héllo 🌍\"},\"done\":false}"),
                json("{\"model\":\"llama3\",\"done\":true,\"prompt_eval_count\":12,\"eval_count\":40}"),
            ]
        );
        assert_eq!(o, 0);
    }

    #[test]
    fn crlf_blank_lines_and_unterminated_last_line() {
        let input = b"{\"a\":1}\r\n\r\n\n  \n{\"b\":2}\r\n{\"c\":3}";
        let (frames, _) = decode_all_ways(input, 1024);
        assert_eq!(
            frames,
            vec![json("{\"a\":1}"), json("{\"b\":2}"), json("{\"c\":3}")]
        );
    }

    #[test]
    fn oversize_line_skipped_next_kept() {
        let big = format!("{{\"x\":\"{}\"}}", "y".repeat(200));
        let input = format!("{{\"a\":1}}\n{big}\n{{\"b\":2}}\n{big}");
        let (frames, o) = decode_all_ways(input.as_bytes(), 100);
        assert_eq!(frames, vec![json("{\"a\":1}"), json("{\"b\":2}")]);
        assert_eq!(o, 2);
    }

    #[test]
    fn exactly_at_cap_is_kept() {
        let line = "x".repeat(100);
        let (frames, o) = decode_all_ways(format!("{line}\n").as_bytes(), 100);
        assert_eq!((frames.len(), o), (1, 0));
    }
}
