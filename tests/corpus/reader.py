"""An independent reader of recorded LLM exchanges: what the span of each exchange must say.

Written from the providers' API references and the OpenTelemetry GenAI conventions, not from tollgate's code
(it imports nothing of tollgate). `expect(exchange)` gives, for one recorded request and response, the API,
`gen_ai.provider.name`, models, exact usage in the conventions' meaning, finish reasons and whether a
streamed response reached its documented end. tests/test_corpus_reader.py checks that the expectations
stored in the corpus are what this reader says; the Rust test `providers::corpus_real_test` and the
end-to-end test `tests/test_e2e_corpus.py` check tollgate against them.

Usage in the conventions' meaning: `input` includes cached tokens, `output` includes reasoning tokens.
"""

import base64
import binascii
import gzip
import json
import re
import struct
import zlib
from urllib.parse import unquote

# gen_ai.provider.name by host. The conventions' well-known values where one exists; otherwise the provider's
# name in lowercase with `_` for spaces (the conventions' fallback, as in `mistral_ai`). Hosts not listed speak
# an API shape tollgate knows but are not recognised: they are reported as the shape's provider (`openai`).
HOST_PROVIDERS = [
    ("api.openai.com", "openai"),
    ("api.groq.com", "groq"),
    ("api.deepseek.com", "deepseek"),
    ("api.x.ai", "x_ai"),
    ("api.perplexity.ai", "perplexity"),
    ("openrouter.ai", "openrouter"),
    ("api.together.xyz", "together_ai"),
    ("api.together.ai", "together_ai"),
    ("api.fireworks.ai", "fireworks_ai"),
    ("api.cerebras.ai", "cerebras"),
    ("api.mistral.ai", "mistral_ai"),
    ("codestral.mistral.ai", "mistral_ai"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
]


def host_provider(host):
    host = host.lower().split(":")[0]
    for known, name in HOST_PROVIDERS:
        if host == known:
            return name
    if host.startswith("bedrock-mantle.") and host.endswith(".api.aws"):
        return "aws.bedrock"
    if host.endswith(".openai.azure.com") or host.endswith(".cognitiveservices.azure.com"):
        return "azure.ai.openai"
    return None


def classify(host, path):
    """(api, provider, path_model, path_stream) of a POST, or None when it is not an inference call tollgate
    reads. API names as in tollgate's configuration (`routes[].api`)."""
    host = host.lower().split(":")[0]
    p = path.split("?")[0].rstrip("/")
    m = re.fullmatch(r"/model/([^/]+)/(converse|converse-stream|invoke|invoke-with-response-stream)", p)
    if m and "bedrock-runtime" in host and host.endswith(".amazonaws.com"):
        api = "bedrock.converse" if m.group(2).startswith("converse") else "bedrock.invoke"
        if m.group(2) == "invoke" and "embed" in m.group(1).lower():
            api = "bedrock.embeddings"  # Titan, Cohere and Nova embedding models
        return api, "aws.bedrock", unquote(m.group(1)), m.group(2).endswith("stream")
    m = re.search(r"/publishers/anthropic/models/([^/:]+):(rawPredict|streamRawPredict)$", p)
    if m:
        return "anthropic.messages", "gcp.vertex_ai", unquote(m.group(1)), m.group(2) == "streamRawPredict"
    m = re.search(r"models/([^/:]+):(generateContent|streamGenerateContent)$", p)
    if m:
        # Vertex AI's host, or its publisher-model path on another host (a private endpoint, a gateway).
        vertex = host.endswith("aiplatform.googleapis.com") or (
            not host.endswith("generativelanguage.googleapis.com") and "/publishers/" in p)
        return ("gemini", "gcp.vertex_ai" if vertex else "gcp.gemini", unquote(m.group(1)),
                m.group(2) == "streamGenerateContent")
    if p.endswith("/v1/messages"):
        return "anthropic.messages", "anthropic", None, False
    if host in ("api.cohere.com", "api.cohere.ai") and p == "/v2/chat":
        return "cohere.chat", "cohere", None, False
    if p == "/api/chat":
        return "ollama.chat", "ollama", None, False
    if p == "/api/generate":
        return "ollama.generate", "ollama", None, False
    m = re.fullmatch(r"/openai/deployments/([^/]+)/(chat/completions|completions|embeddings)", p)
    if m:
        api = {"chat/completions": "openai.chat", "completions": "openai.completions",
               "embeddings": "openai.embeddings"}[m.group(2)]
        return api, "azure.ai.openai", m.group(1), False
    if host in ("api.mistral.ai", "codestral.mistral.ai"):
        api = {"/v1/chat/completions": "openai.chat", "/v1/agents/completions": "openai.chat",
               "/v1/fim/completions": "openai.completions", "/v1/embeddings": "openai.embeddings"}.get(p)
        return (api, "mistral_ai", None, False) if api else None
    for suffix, api in (("/chat/completions", "openai.chat"), ("/completions", "openai.completions"),
                        ("/embeddings", "openai.embeddings"), ("/responses", "openai.responses")):
        if p.endswith(suffix):
            return api, host_provider(host) or "openai", None, False
    return None


# ---------------------------------------------------------------------------------------------- framing

def decompress(body, encoding):
    encoding = (encoding or "").strip().lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -15)
    if encoding == "br":
        import brotli

        return brotli.decompress(body)
    return body


def sse_events(text):
    """Server-sent events per the WHATWG event-stream grammar: (event, data) pairs."""
    out, event, data = [], "", []
    for line in re.split(r"\r\n|\r|\n", text):
        if line == "":
            if data:
                out.append((event, "\n".join(data)))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        out.append((event, "\n".join(data)))
    return out


def aws_messages(body):
    """AWS event-stream messages (application/vnd.amazon.eventstream): (headers, payload) with CRCs checked."""
    out, i = [], 0
    while i + 12 <= len(body):
        total, hlen, pcrc = struct.unpack(">III", body[i:i + 12])
        if binascii.crc32(body[i:i + 8]) != pcrc or i + total > len(body):
            raise ValueError("bad event-stream prelude")
        msg = body[i:i + total]
        if binascii.crc32(msg[:-4]) != struct.unpack(">I", msg[-4:])[0]:
            raise ValueError("bad event-stream message CRC")
        headers, j, hend = {}, 12, 12 + hlen
        while j < hend:
            n = msg[j]
            name = msg[j + 1:j + 1 + n].decode()
            j += 1 + n
            kind = msg[j]
            j += 1
            if kind in (0, 1):
                value = kind == 0
            elif kind in (2, 3, 4, 5, 8):
                size = {2: 1, 3: 2, 4: 4, 5: 8, 8: 8}[kind]
                value = int.from_bytes(msg[j:j + size], "big", signed=True)
                j += size
            elif kind in (6, 7):
                size = int.from_bytes(msg[j:j + 2], "big")
                value = msg[j + 2:j + 2 + size]
                value = value.decode() if kind == 7 else value
                j += 2 + size
            elif kind == 9:
                value = msg[j:j + 16]
                j += 16
            else:
                raise ValueError("bad header type")
            headers[name] = value
        out.append((headers, msg[hend:-4]))
        i += total
    if i != len(body):
        raise ValueError("trailing bytes after the last event-stream message")
    return out


def json_or_none(text):
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


# ---------------------------------------------------------------------------------------------- the record

class Expect:
    """What the span must say. Usage fields are None when the response does not report them."""

    def __init__(self):
        self.response_model = None
        self.response_id = None
        self.input = self.output = self.cache_read = self.cache_write = self.reasoning = None
        self.finish = {}
        self.complete = None  # streams: the documented end was seen
        self.error = None
        self.frames = 0  # streams: events (keep-alives excluded)

    @property
    def has_usage(self):
        return self.input is not None or self.output is not None

    def count(self, field, value):
        """Set usage `field` to `value` when it is a count; an absent or odd value leaves it."""
        if num(value) is not None:
            setattr(self, field, value)

    def finish_reason(self, index, reason):
        if isinstance(reason, str) and reason and isinstance(index, int) and 0 <= index < 128:
            self.finish[index] = reason

    def as_dict(self, stream):
        reasons = [self.finish.get(i, "") for i in range(max(self.finish) + 1)] if self.finish else []
        d = {
            "response_model": self.response_model,
            "usage": {"input": self.input, "output": self.output, "cache_read": self.cache_read,
                      "cache_write": self.cache_write, "reasoning": self.reasoning},
            "finish_reasons": reasons,
        }
        if stream:
            d["complete"] = bool(self.complete)
            d["frames"] = self.frames
        return d


def num(v):
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def obj(v):
    return v if isinstance(v, dict) else {}


def nonempty(v):
    return v if isinstance(v, str) and v else None


# OpenAI Chat Completions / Completions / Embeddings and compatible servers ----------------------------------

def openai_usage(u, e):
    """`usage` of OpenAI's API reference: prompt_tokens include cached_tokens, completion_tokens include
    reasoning_tokens. Each report replaces the last (vLLM's continuous usage repeats running totals)."""
    prompt, completion = num(u.get("prompt_tokens")), num(u.get("completion_tokens"))
    pd, cd = obj(u.get("prompt_tokens_details")), obj(u.get("completion_tokens_details"))
    reasoning = num(cd.get("reasoning_tokens"))
    total = num(u.get("total_tokens"))
    if prompt is not None:
        e.input = prompt
    if completion is not None:
        # total_tokens = prompt_tokens + completion_tokens by OpenAI's definition. xAI leaves reasoning
        # tokens out of completion_tokens (total = prompt + completion + reasoning), Gemini's OpenAI
        # endpoint its thinking tokens (only in the total); the conventions' output includes them.
        if prompt is not None and total is not None and total > prompt + completion:
            completion = total - prompt
        e.output = completion
    # DeepSeek reports cache hits as prompt_cache_hit_tokens (its API reference), a part of prompt_tokens.
    cached = num(pd.get("cached_tokens"))
    if cached is None:
        cached = num(u.get("prompt_cache_hit_tokens"))
    if cached is not None:
        e.cache_read = cached
    e.count("cache_write", pd.get("cache_write_tokens"))
    e.count("reasoning", reasoning)


def openai_object(doc, e):
    if not isinstance(doc, dict):
        return
    e.response_model = nonempty(doc.get("model")) or e.response_model
    e.response_id = nonempty(doc.get("id")) or e.response_id
    if isinstance(doc.get("usage"), dict):
        openai_usage(doc["usage"], e)
    # Groq reports usage in `x_groq.usage` on the last chunk of a stream (its API reference).
    xg = obj(doc.get("x_groq"))
    if isinstance(xg.get("usage"), dict):
        openai_usage(xg["usage"], e)
    for pos, c in enumerate(doc.get("choices") or []):
        if isinstance(c, dict):
            e.finish_reason(num(c.get("index")) if num(c.get("index")) is not None else pos, c.get("finish_reason"))
    if isinstance(doc.get("error"), dict):
        err = doc["error"]
        e.error = nonempty(err.get("code")) or nonempty(err.get("type")) or "_OTHER"


def openai_stream(events, e):
    for _, data in events:
        if data.strip() == "[DONE]":
            e.complete = True
            continue
        e.frames += 1
        openai_object(json_or_none(data), e)


# OpenAI Responses ----------------------------------------------------------------------------------------

def responses_object(r, e):
    if not isinstance(r, dict):
        return
    e.response_model = nonempty(r.get("model")) or e.response_model
    u = obj(r.get("usage"))
    e.count("input", u.get("input_tokens"))
    e.count("output", u.get("output_tokens"))
    e.count("cache_read", obj(u.get("input_tokens_details")).get("cached_tokens"))
    e.count("reasoning", obj(u.get("output_tokens_details")).get("reasoning_tokens"))
    # No finish_reason in this API: tollgate derives Chat Completions' value from `status` (README).
    status = r.get("status")
    calls = any(isinstance(o, dict) and o.get("type") == "function_call" for o in r.get("output") or [])
    reason = {"completed": "tool_calls" if calls else "stop", "failed": "error", "cancelled": "cancelled"}.get(status)
    if status == "incomplete":
        why = nonempty(obj(r.get("incomplete_details")).get("reason"))
        reason = {"max_output_tokens": "length"}.get(why, why or "incomplete")
    if reason:
        e.finish_reason(0, reason)


def responses_stream(events, e):
    for _, data in events:
        if data.strip() == "[DONE]":
            continue
        e.frames += 1
        doc = json_or_none(data)
        if not isinstance(doc, dict):
            continue
        kind = doc.get("type")
        if kind in ("response.created", "response.in_progress"):
            e.response_model = nonempty(obj(doc.get("response")).get("model")) or e.response_model
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            responses_object(doc.get("response"), e)
            e.complete = True
        if kind == "error":
            e.complete = True


# Anthropic Messages --------------------------------------------------------------------------------------

def anthropic_usage(u, e):
    """input_tokens excludes cache reads and writes (Anthropic's prompt-caching docs): the conventions' input
    is their sum. Stream usage is cumulative: fields present replace earlier values."""
    if not isinstance(u, dict):
        return
    fields = {"input": u.get("input_tokens"), "cache_read": u.get("cache_read_input_tokens"),
              "cache_write": u.get("cache_creation_input_tokens"), "output": u.get("output_tokens")}
    raw = getattr(e, "_raw_input", None)
    if num(fields["input"]) is not None:
        raw = fields["input"]
    e._raw_input = raw
    e.count("cache_read", fields["cache_read"])
    e.count("cache_write", fields["cache_write"])
    if raw is not None or e.cache_read is not None or e.cache_write is not None:
        e.input = (raw or 0) + (e.cache_read or 0) + (e.cache_write or 0)
    e.count("output", fields["output"])
    # Extended thinking: `output_tokens_details.thinking_tokens`, a part of output_tokens.
    e.count("reasoning", obj(u.get("output_tokens_details")).get("thinking_tokens"))


def anthropic_message(m, e):
    if not isinstance(m, dict):
        return
    e.response_model = nonempty(m.get("model")) or e.response_model
    anthropic_usage(m.get("usage"), e)
    e.finish_reason(0, m.get("stop_reason"))
    if m.get("type") == "error":
        e.error = nonempty(obj(m.get("error")).get("type")) or "_OTHER"


def anthropic_event(doc, e):
    """One Messages stream event (also the decoded chunks of Bedrock InvokeModel with Claude)."""
    if not isinstance(doc, dict):
        return
    kind = doc.get("type")
    if kind == "ping":
        return
    e.frames += 1
    if kind == "message_start":
        anthropic_message(doc.get("message"), e)
    elif kind == "message_delta":
        e.finish_reason(0, obj(doc.get("delta")).get("stop_reason"))
        anthropic_usage(doc.get("usage"), e)
    elif kind == "message_stop":
        e.complete = True
    elif kind == "error":
        e.error = nonempty(obj(doc.get("error")).get("type")) or "_OTHER"
        e.complete = True


# Gemini / Vertex AI --------------------------------------------------------------------------------------

def gemini_object(doc, e):
    """A GenerateContentResponse. promptTokenCount includes cachedContentTokenCount; thoughtsTokenCount and
    toolUsePromptTokenCount are counted apart (totalTokenCount sums them all), so the conventions' input is
    prompt + tool-use prompt and output is candidates + thoughts. Streams repeat the totals: the last wins."""
    if not isinstance(doc, dict):
        return
    e.response_model = nonempty(doc.get("modelVersion")) or e.response_model
    u = doc.get("usageMetadata")
    if isinstance(u, dict):
        prompt, tool = num(u.get("promptTokenCount")), num(u.get("toolUsePromptTokenCount"))
        cand, thoughts = num(u.get("candidatesTokenCount")), num(u.get("thoughtsTokenCount"))
        if prompt is not None or tool is not None:
            e.input = (prompt or 0) + (tool or 0)
        if cand is not None or thoughts is not None:
            e.output = (cand or 0) + (thoughts or 0)
        if thoughts is not None:
            e.reasoning = thoughts
        e.count("cache_read", u.get("cachedContentTokenCount"))
    finished = False
    for pos, c in enumerate(doc.get("candidates") or []):
        if isinstance(c, dict):
            idx = num(c.get("index"))
            e.finish_reason(pos if idx is None else idx, c.get("finishReason"))
            finished |= bool(nonempty(c.get("finishReason")))
    # A prompt blocked before any candidate: tollgate reports the block reason as the finish reason.
    block = nonempty(obj(doc.get("promptFeedback")).get("blockReason"))
    if block and not doc.get("candidates"):
        e.finish_reason(0, block)
        finished = True
    if finished and isinstance(u, dict):
        e.complete = True
    if isinstance(doc.get("error"), dict):
        e.error = nonempty(doc["error"].get("status")) or "_OTHER"
        e.complete = True


# Bedrock ---------------------------------------------------------------------------------------------------

def first(d, *names):
    """The first of `names` present as a count (Bedrock writes some counters under two names)."""
    for n in names:
        if num(d.get(n)) is not None:
            return d[n]
    return None


def bedrock_counts(e, raw, read, write, out):
    """Bedrock's input count excludes cache reads and writes (totalTokens = input + output + cache read +
    cache write; AWS prompt-caching guide), as Anthropic's does: the conventions' input is their sum. Counts
    already read (Claude's events) stand where these are absent."""
    e.count("cache_read", read)
    e.count("cache_write", write)
    if num(raw) is not None:
        e.input = raw + (e.cache_read or 0) + (e.cache_write or 0)
    e.count("output", out)


def converse_usage(u, e):
    """Converse `usage`, its counters under either of their names."""
    if not isinstance(u, dict):
        return
    bedrock_counts(e, first(u, "inputTokens", "inputTokenCount"),
                   first(u, "cacheReadInputTokens", "cacheReadInputTokenCount"),
                   first(u, "cacheWriteInputTokens", "cacheWriteInputTokenCount"),
                   first(u, "outputTokens", "outputTokenCount"))


def invocation_metrics(m, e):
    """`amazon-bedrock-invocationMetrics` on the last chunk of InvokeModelWithResponseStream: Bedrock's own
    metering for every model family."""
    if not isinstance(m, dict):
        return
    bedrock_counts(e, m.get("inputTokenCount"), m.get("cacheReadInputTokenCount"),
                   m.get("cacheWriteInputTokenCount"), m.get("outputTokenCount"))
    e.complete = True


def invoke_family(model):
    """The model family of an InvokeModel model id, ARN or inference profile (`us.anthropic.…`)."""
    m = model.lower().rsplit("/", 1)[-1]
    for fam in ("anthropic", "amazon.titan-embed", "amazon.nova-2-multimodal-embeddings", "amazon.titan",
                "amazon.nova", "meta", "mistral", "cohere.embed", "cohere.command-r", "cohere.command", "ai21"):
        if re.search(r"(^|\.)" + re.escape(fam), m):
            return fam
    return None


def invoke_body(doc, e):
    """A whole InvokeModel body in the model family's own format (the Bedrock user guide's model parameters
    pages): finish reasons, and usage where the family reports it."""
    if not isinstance(doc, dict):
        return
    if doc.get("type") in ("message", "completion"):  # Claude: Messages, or legacy Text Completions
        anthropic_message(doc, e)
        e.response_model = nonempty(doc.get("model"))
        return
    if isinstance(doc.get("results"), list):  # Titan Text
        for i, r in enumerate(doc["results"]):
            if isinstance(r, dict):
                e.finish_reason(i, r.get("completionReason"))
        return
    if "output" in doc and "stopReason" in doc:  # Nova (messages-v1)
        e.finish_reason(0, doc.get("stopReason"))
        converse_usage(doc.get("usage"), e)
        return
    if "generation" in doc:  # Meta Llama
        e.finish_reason(0, doc.get("stop_reason"))
        e.count("input", doc.get("prompt_token_count"))
        e.count("output", doc.get("generation_token_count"))
        return
    if isinstance(doc.get("outputs"), list):  # Mistral
        for i, o in enumerate(doc["outputs"]):
            if isinstance(o, dict):
                e.finish_reason(i, o.get("stop_reason"))
        return
    if isinstance(doc.get("generations"), list):  # Cohere Command
        for i, g in enumerate(doc["generations"]):
            if isinstance(g, dict):
                e.finish_reason(i, g.get("finish_reason"))
        return
    if "finish_reason" in doc and ("response_id" in doc or "text" in doc):  # Cohere Command R
        e.finish_reason(0, doc.get("finish_reason"))
        return
    if isinstance(doc.get("completions"), list):  # AI21 Jurassic-2
        for i, c in enumerate(doc["completions"]):
            if isinstance(c, dict):
                e.finish_reason(i, obj(c.get("finishReason")).get("reason"))
        return
    if isinstance(doc.get("choices"), list):  # AI21 Jamba, OpenAI-shaped models
        openai_object(doc, e)


def invoke_chunk(doc, e):
    """One decoded InvokeModelWithResponseStream chunk, in the model family's own stream format."""
    if not isinstance(doc, dict):
        return
    e.frames += 1
    if "type" in doc:
        anthropic_event(doc, e)
        e.frames -= 1  # counted once
    elif "completionReason" in doc:  # Titan Text
        e.finish_reason(num(doc.get("index")) or 0, doc.get("completionReason"))
    elif isinstance(doc.get("messageStop"), dict):  # Nova
        e.finish_reason(0, doc["messageStop"].get("stopReason"))
    elif "generation" in doc:  # Llama
        e.finish_reason(0, doc.get("stop_reason"))
    elif isinstance(doc.get("outputs"), list):  # Mistral
        for i, o in enumerate(doc["outputs"]):
            if isinstance(o, dict):
                e.finish_reason(i, o.get("stop_reason"))
    elif "finish_reason" in doc:  # Cohere
        e.finish_reason(0, doc.get("finish_reason"))
    invocation_metrics(doc.get("amazon-bedrock-invocationMetrics"), e)


def bedrock_headers(headers, e):
    """InvokeModel's own metering headers, for every model family."""
    count = lambda name: num_text(headers.get(f"x-amzn-bedrock-{name}-token-count"))  # noqa: E731
    bedrock_counts(e, count("input"), count("cache-read-input"), count("cache-write-input"), count("output"))


def num_text(v):
    if isinstance(v, str) and v.strip().isdigit():
        return int(v.strip())
    return None


# Cohere v2, Ollama -----------------------------------------------------------------------------------------

def cohere_object(doc, e):
    """Cohere v2 chat: the conventions ask for billed units."""
    if not isinstance(doc, dict):
        return
    e.finish_reason(0, doc.get("finish_reason"))
    b = obj(obj(doc.get("usage")).get("billed_units"))
    e.count("input", b.get("input_tokens"))
    e.count("output", b.get("output_tokens"))


def ollama_object(doc, e):
    if not isinstance(doc, dict):
        return
    e.response_model = nonempty(doc.get("model")) or e.response_model
    if doc.get("done") is True:
        # Ollama omits zero counts (Go `omitempty`): prompt_eval_count is absent when the whole prompt came
        # from its KV cache.
        e.complete = True
        e.finish_reason(0, doc.get("done_reason"))
        e.input = num(doc.get("prompt_eval_count")) or 0
        e.output = num(doc.get("eval_count")) or 0
    if isinstance(doc.get("error"), str):
        e.error = "_OTHER"


# ---------------------------------------------------------------------------------------------- one exchange

def body_bytes(part):
    if "body_b64" in part:
        return base64.b64decode(part["body_b64"])
    return (part.get("body") or "").encode()


def framing(api, route_stream, sse_query, content_type, status, req_stream):
    ct = (content_type or "").lower()
    if status >= 400 and "json" in ct:
        return "whole"
    if ct.startswith("text/event-stream"):
        return "sse"
    if ct.startswith("application/vnd.amazon.eventstream"):
        return "eventstream"
    if ct.startswith("application/x-ndjson"):
        return "ndjson"
    if api.startswith("ollama.") and req_stream:
        return "ndjson"
    if api == "gemini" and route_stream:
        return "json_array"
    if api.startswith("bedrock.") and route_stream and not ct.startswith("application/json"):
        return "eventstream"
    return "whole"


def request_info(api, body, path_model, route_stream):
    doc = json_or_none(body.decode("utf-8", "replace")) if body else None
    doc = doc if isinstance(doc, dict) else {}
    if api.startswith("bedrock.") or api == "gemini":
        return path_model, route_stream
    model = nonempty(doc.get("model")) or path_model
    stream = doc.get("stream")
    if api.startswith("ollama."):
        stream = stream is not False  # Ollama streams unless told not to
    return model, bool(stream) or route_stream


def expect(x):
    """The expectations for one exchange record (see tests/corpus/README.md)."""
    c = classify(x["host"], x["path"])
    if c is None:
        return None
    api, provider, path_model, route_stream = c
    sse_query = "alt=sse" in x["path"]
    req = x["request"]
    resp = x["response"]
    headers = {k.lower(): v for k, v in (resp.get("headers") or {}).items()}
    status = resp.get("status", 200)
    model, stream = request_info(api, body_bytes(req), path_model, route_stream)
    body = decompress(body_bytes(resp), headers.get("content-encoding"))
    fr = framing(api, route_stream, sse_query, headers.get("content-type"), status, stream)
    e = Expect()
    text = body.decode("utf-8", "replace")
    if api in ("bedrock.invoke", "bedrock.embeddings") and status < 400:
        bedrock_headers(headers, e)
    if fr == "whole":
        doc = json_or_none(text)
        if api in ("openai.chat", "openai.completions", "openai.embeddings"):
            openai_object(doc, e)
        elif api == "openai.responses":
            responses_object(doc, e)
            if isinstance(obj(doc).get("error"), dict) and status >= 400:
                e.error = nonempty(doc["error"].get("code")) or nonempty(doc["error"].get("type"))
        elif api == "anthropic.messages":
            anthropic_message(doc, e)
        elif api == "gemini":
            gemini_object(doc, e)
        elif api == "bedrock.converse":
            if isinstance(doc, dict):
                e.finish_reason(0, doc.get("stopReason"))
                converse_usage(doc.get("usage"), e)
        elif api in ("bedrock.invoke", "bedrock.embeddings"):
            if status < 400:
                invoke_body(doc, e)
        elif api == "cohere.chat":
            cohere_object(doc, e)
        elif api.startswith("ollama."):
            ollama_object(doc, e)
    elif fr == "sse":
        events = sse_events(text)
        if api in ("openai.chat", "openai.completions"):
            openai_stream(events, e)
        elif api == "openai.responses":
            responses_stream(events, e)
        elif api == "anthropic.messages":
            for _, data in events:
                anthropic_event(json_or_none(data), e)
        elif api == "gemini":
            for _, data in events:
                e.frames += 1
                gemini_object(json_or_none(data), e)
        elif api == "cohere.chat":
            for event, data in events:
                doc = json_or_none(data)
                e.frames += 1
                if isinstance(doc, dict) and doc.get("type") == "message-end":
                    cohere_object(obj(doc.get("delta")), e)
                    e.complete = True
    elif fr == "ndjson":
        for line in text.splitlines():
            if line.strip():
                e.frames += 1
                ollama_object(json_or_none(line), e)
    elif fr == "json_array":
        doc = json_or_none(text)
        for item in doc if isinstance(doc, list) else []:
            e.frames += 1
            gemini_object(item, e)
    elif fr == "eventstream":
        for h, payload in aws_messages(body):
            mtype = h.get(":message-type", "")
            if mtype in ("exception", "error"):
                e.frames += 1
                e.error = h.get(":exception-type") or h.get(":error-code") or "_OTHER"
                e.complete = True
                continue
            etype = h.get(":event-type", "")
            doc = json_or_none(payload.decode("utf-8", "replace"))
            if api == "bedrock.invoke" and etype == "chunk":
                inner = json_or_none(base64.b64decode(obj(doc).get("bytes", "")).decode("utf-8", "replace"))
                invoke_chunk(inner, e)
                continue
            e.frames += 1
            if etype == "messageStop":
                e.finish_reason(0, obj(doc).get("stopReason"))
            elif etype == "metadata":
                converse_usage(obj(doc).get("usage"), e)
                e.complete = True
    if api.startswith("bedrock.") and not (api == "bedrock.invoke" and invoke_family(path_model or "") in (
            "anthropic", None)):
        e.response_model = None  # Bedrock bodies name no model (Claude's do); the path's is the request model
    operation = {"openai.chat": "chat", "openai.responses": "chat", "openai.embeddings": "embeddings",
                 "openai.completions": "text_completion", "anthropic.messages": "chat",
                 "gemini": "generate_content", "bedrock.converse": "chat", "bedrock.invoke": "chat",
                 "bedrock.embeddings": "embeddings", "cohere.chat": "chat", "ollama.chat": "chat",
                 "ollama.generate": "text_completion"}[api]
    out = {"api": api, "provider": provider, "operation": operation, "request_model": model,
           "stream": stream, "framing": fr, "status": status}
    out.update(e.as_dict(fr != "whole"))
    return out
