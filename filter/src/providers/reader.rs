//! One response, read as it arrives. Its head decides how the body is framed (and Bedrock reports the
//! request id and InvokeModel's metering there); then body bytes, in whatever chunks Envoy hands over, go
//! through decompression and framing to the provider's reader. The host feeds it; the tests feed it
//! recorded exchanges the same way.

use super::{bedrock, frame, framing, is_keepalive, response, StreamState};
use crate::call::{Api, Request, Response, Route};
use crate::codec::headers::Headers;
use crate::stream::{BodyDecoder, ContentEncoding, Frame, Framing, Limits};

/// What one push of body bytes brought that the call's timings need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// A chunk of a streamed response arrived (any event but a keep-alive): the first one is
    /// `gen_ai.response.time_to_first_chunk`.
    pub chunk: bool,
    /// Generated content arrived (text, tool call, refusal or reasoning delta).
    pub content: bool,
}

pub struct ResponseReader {
    framing: Framing,
    /// None when the body's `content-encoding` is one tollgate cannot undo: the body is not read.
    decoder: Option<BodyDecoder>,
    stream: StreamState,
}

impl ResponseReader {
    /// Read the response head: status and headers. An error answer to a streaming request is one JSON
    /// document, whatever the route streams.
    pub fn new(
        route: &Route,
        req: &Request,
        status: Option<u16>,
        headers: &Headers,
        limits: &Limits,
        resp: &mut Response,
    ) -> ResponseReader {
        let ct = headers.get_str("content-type").unwrap_or_default();
        let mut fr = framing(route, req, &ct);
        if status.is_some_and(|s| s >= 400) && ct.to_ascii_lowercase().contains("json") {
            fr = Framing::Whole;
        }
        if matches!(
            route.api,
            Api::BedrockConverse | Api::BedrockInvoke | Api::BedrockEmbeddings
        ) {
            bedrock::response_headers(route, headers, resp);
        }
        let ce = headers.get_str("content-encoding").unwrap_or_default();
        let encoding = ContentEncoding::from_header(&ce);
        ResponseReader {
            framing: fr,
            decoder: encoding.map(|e| BodyDecoder::new(e, fr, limits)),
            stream: StreamState::default(),
        }
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The body is not read (a `content-encoding` tollgate cannot undo).
    pub fn uninspected(&self) -> bool {
        self.decoder.is_none()
    }

    /// The stream reached its provider's terminal event.
    pub fn finished(&self) -> bool {
        self.stream.finished
    }

    /// A streamed body that ended without its terminal event: its usage may be partial.
    pub fn incomplete(&self) -> bool {
        self.framing != Framing::Whole && !self.stream.finished
    }

    /// Feed body bytes (`end`: the last ones) into `resp`.
    pub fn push(
        &mut self,
        route: &Route,
        chunk: &[u8],
        end: bool,
        resp: &mut Response,
    ) -> Progress {
        let Some(decoder) = self.decoder.as_mut() else {
            return Progress::default();
        };
        let (st, fr) = (&mut self.stream, self.framing);
        let mut progress = Progress::default();
        let mut on_frame = |f: Frame<'_>| {
            if fr == Framing::Whole {
                if let Frame::Json(body) = f {
                    response(route, body, resp);
                }
            } else {
                progress.chunk |= !is_keepalive(route, &f);
                progress.content |= frame(route, &f, st, resp).content;
            }
        };
        decoder.push(chunk, &mut on_frame);
        if end {
            decoder.finish(&mut on_frame);
        }
        progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::headers::serialize;
    use crate::providers::detect;

    /// Push `parts` one by one; the progress of each, then whether the stream reached its end.
    fn read(
        host: &str,
        path: &str,
        req: &Request,
        head: &[(&str, &str)],
        parts: &[&[u8]],
    ) -> (Vec<Progress>, Response, bool) {
        let route = detect(host, path, &[]).unwrap();
        let mut resp = Response::default();
        let headers = Headers::new(serialize(head));
        let status = headers.get_str(":status").and_then(|s| s.parse().ok());
        let mut r =
            ResponseReader::new(&route, req, status, &headers, &Limits::default(), &mut resp);
        let mut out: Vec<Progress> = parts
            .iter()
            .map(|p| r.push(&route, p, false, &mut resp))
            .collect();
        out.push(r.push(&route, &[], true, &mut resp));
        (out, resp, !r.incomplete())
    }

    const SSE: (&str, &str) = ("content-type", "text/event-stream");

    fn chunk(content: bool) -> Progress {
        Progress {
            chunk: true,
            content,
        }
    }

    #[test]
    fn the_first_chunk_is_the_first_event_whatever_it_says() {
        let stream = Request {
            stream: true,
            ..Request::default()
        };
        // OpenAI: a role-only delta first, then text.
        let (p, _, done) = read(
            "api.openai.com",
            "/v1/chat/completions",
            &stream,
            &[SSE],
            &[
                b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n",
                b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
                b"data: [DONE]\n\n",
            ],
        );
        assert_eq!(p[..3], [chunk(false), chunk(true), chunk(false)]);
        assert!(done);
        // Responses: created, in progress and a tool search before any text.
        let (p, _, _) = read(
            "api.openai.com",
            "/v1/responses",
            &stream,
            &[SSE],
            &[
                b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"status\":\"in_progress\"}}\n\n",
                b"event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"item\":{\"type\":\"web_search_call\"}}\n\n",
            ],
        );
        assert_eq!(p[..2], [chunk(false), chunk(false)]);
        // Anthropic: a keep-alive is no chunk; reasoning first is a chunk and content.
        let (p, resp, done) = read(
            "api.anthropic.com",
            "/v1/messages",
            &stream,
            &[SSE],
            &[
                b"event: ping\ndata: {\"type\": \"ping\"}\n\n",
                b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
                b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Hm\"}}\n\n",
                b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
            ],
        );
        assert_eq!(
            p[..4],
            [Progress::default(), chunk(false), chunk(true), chunk(false)]
        );
        assert_eq!(resp.error_type.as_deref(), Some("overloaded_error"));
        assert!(done, "an error event ends the stream");
        // A stream that is only an error still had a first chunk.
        let (p, _, _) = read(
            "api.openai.com",
            "/v1/chat/completions",
            &stream,
            &[SSE],
            &[b"data: {\"error\":{\"message\":\"x\",\"type\":\"server_error\"}}\n\n"],
        );
        assert_eq!(p[0], chunk(false));
    }

    #[test]
    fn a_whole_answer_has_no_chunks() {
        let (p, resp, _) = read(
            "api.openai.com",
            "/v1/chat/completions",
            &Request { stream: true, ..Request::default() },
            &[(":status", "429"), ("content-type", "application/json")],
            &[br#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#],
        );
        assert!(p.iter().all(|p| *p == Progress::default()));
        assert_eq!(resp.error_type.as_deref(), Some("rate_limit_exceeded"));
    }
}
