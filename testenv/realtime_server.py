"""A mock OpenAI Realtime server for the end-to-end tests: RFC 6455 written out by hand (handshake, masked
client frames, fragmentation, ping/pong, close) so that it can also write its frames in pieces of 1 to 7
bytes. The clients that talk to it are real (the official `openai` SDK's realtime client, built on
`websockets`), so a framing mistake here fails their handshake or their reads.

Events are the GA shapes of openai-python `src/openai/types/realtime/` (session.created, response.created,
response.output_audio.delta, response.done with usage details). It records every client event it received,
so a test can prove a refused `response.create` never reached it."""

import asyncio
import base64
import hashlib
import json
import random
import socket
import struct
import threading
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

USAGE = {"total_tokens": 253, "input_tokens": 140, "output_tokens": 113,
         "input_token_details": {"text_tokens": 120, "audio_tokens": 20, "image_tokens": 0, "cached_tokens": 64,
                                 "cached_tokens_details": {"text_tokens": 64, "audio_tokens": 0, "image_tokens": 0}},
         "output_token_details": {"text_tokens": 25, "audio_tokens": 88}}
MODEL = "gpt-realtime-2025-08-28"


def frame(opcode, payload, fin=True):
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    return head + payload


def masked(opcode, payload, fin=True):
    """A client's frame (masked)."""
    key = bytes(random.getrandbits(8) for _ in range(4))
    raw = frame(opcode, payload, fin)
    # Insert the mask bit and key after the length field.
    n = len(payload)
    hl = 2 if n < 126 else 4 if n < 65536 else 10
    head = bytearray(raw[:hl])
    head[1] |= 0x80
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes(head) + key + body


GEMINI_USAGE = {"promptTokenCount": 30, "responseTokenCount": 50, "totalTokenCount": 80,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 30}],
                "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 50}]}


class RealtimeServer:
    """`gemini`: speak the Gemini Live API instead (setupComplete, serverContent, usageMetadata on the
    turn's last message, all as binary frames as the Live API sends them)."""

    def __init__(self, chunked=False, gemini=False):
        self.chunked = chunked
        self.gemini = gemini
        self.received = []
        self.handshakes = []
        self.lock = threading.Lock()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the realtime mock did not start")

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._conn, "127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_forever()

    def stop(self):
        def close():
            self.server.close()
            self.loop.stop()
        self.loop.call_soon_threadsafe(close)
        self.thread.join(10)

    def events(self, kind=None):
        with self.lock:
            return [e for e in self.received if kind is None or e.get("type") == kind]

    async def _write(self, w, data):
        if not self.chunked:
            w.write(data)
            await w.drain()
            return
        i = 0
        while i < len(data):
            n = random.randint(1, 7)
            w.write(data[i:i + n])
            await w.drain()
            i += n
            await asyncio.sleep(0)

    async def _send(self, w, event):
        await self._write(w, frame(1, json.dumps(event).encode()))

    async def _conn(self, r, w):
        try:
            head = await r.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            with self.lock:
                self.handshakes.append({"request_line": lines[0], "headers": headers})
            key = headers.get("sec-websocket-key", "")
            accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
            w.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
            await w.drain()
            if not self.gemini:
                await self._send(w, {"type": "session.created", "event_id": "event_s1", "session": {
                    "type": "realtime", "object": "realtime.session", "id": "sess_e2e", "model": MODEL,
                    "output_modalities": ["audio"]}})
            parts = []
            n_resp = 0
            while True:
                b0, b1 = await r.readexactly(2)
                op, fin = b0 & 0x0F, b0 & 0x80
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack(">H", await r.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", await r.readexactly(8))[0]
                if not b1 & 0x80:
                    raise ValueError("unmasked client frame")
                key = await r.readexactly(4)
                data = bytes(b ^ key[i % 4] for i, b in enumerate(await r.readexactly(n)))
                if op == 9:
                    await self._write(w, frame(10, data))
                    continue
                if op == 10:
                    continue
                if op == 8:
                    await self._write(w, frame(8, data[:2] or struct.pack(">H", 1000)))
                    break
                parts.append(data)
                if not fin:
                    continue
                msg, parts = b"".join(parts), []
                event = json.loads(msg)
                with self.lock:
                    self.received.append(event)
                if self.gemini:
                    await self._gemini(w, event)
                    continue
                if event.get("type") == "response.create":
                    n_resp += 1
                    rid = f"resp_{n_resp}"
                    await self._send(w, {"type": "response.created", "event_id": f"event_c{n_resp}", "response": {
                        "object": "realtime.response", "id": rid, "status": "in_progress", "usage": None}})
                    audio = base64.b64encode(bytes(random.getrandbits(8) for _ in range(3000))).decode()
                    for k in range(3):
                        await self._send(w, {"type": "response.output_audio.delta", "event_id": f"event_d{k}",
                                             "response_id": rid, "item_id": "item_1", "output_index": 0,
                                             "content_index": 0, "delta": audio})
                    await self._send(w, {"type": "response.done", "event_id": f"event_e{n_resp}", "response": {
                        "object": "realtime.response", "id": rid, "status": "completed", "status_details": None,
                        "output": [], "conversation_id": "conv_1", "output_modalities": ["audio"],
                        "usage": USAGE}})
                elif event.get("type") == "conversation.item.create":
                    await self._send(w, {"type": "conversation.item.added", "event_id": "event_i",
                                         "previous_item_id": None, "item": event.get("item", {})})
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            w.close()


async def _gemini_reply(self, w, event):
    def binary(obj):
        return frame(2, json.dumps(obj).encode())
    if "setup" in event:
        await self._write(w, binary({"setupComplete": {}}))
    content = event.get("clientContent") or event.get("client_content") or {}
    if content.get("turnComplete") or content.get("turn_complete"):
        audio = base64.b64encode(bytes(random.getrandbits(8) for _ in range(2000))).decode()
        for _ in range(2):
            await self._write(w, binary({"serverContent": {"modelTurn": {"parts": [
                {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": audio}}]}}}))
        await self._write(w, binary({"serverContent": {"generationComplete": True}}))
        await self._write(w, binary({"serverContent": {"turnComplete": True}, "usageMetadata": GEMINI_USAGE}))


RealtimeServer._gemini = _gemini_reply


def wait_until(pred, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False
