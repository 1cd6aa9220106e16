"""A mock MCP server for the end-to-end tests: the official MCP Python SDK's own server (`mcp` on PyPI,
`MCPServer.streamable_http_app`) run by uvicorn on 127.0.0.1, so every byte on the wire is what a real
Streamable HTTP server sends, in both protocol eras (the 2026-07-28 per-request shape and the older
initialize/session shape) and with JSON or SSE answers.

It counts the tool calls it executed, so a test can prove that a refused call never reached it."""

import asyncio
import socket
import threading
import time

import uvicorn
from mcp.server.mcpserver import MCPServer


class McpBackground:
    """An MCP server in a daemon thread (`json_response`: answer with one JSON body instead of SSE)."""

    def __init__(self, json_response=False, stateless=False):
        self.executed = []
        server = MCPServer("tollgate-e2e")

        @server.tool()
        def get_weather(location: str) -> str:
            """The weather at a place."""
            self.executed.append(("get_weather", location))
            return f"sunny in {location}"

        @server.tool()
        def delete_repo(name: str) -> str:
            """Delete a repository."""
            self.executed.append(("delete_repo", name))
            return f"deleted {name}"

        @server.tool()
        def flaky(x: int) -> str:
            """Always fails (a tool error, `isError: true`)."""
            self.executed.append(("flaky", x))
            raise ValueError("flaky failed")

        app = server.streamable_http_app(json_response=json_response, stateless_http=stateless)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("the MCP server did not start")
            time.sleep(0.05)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)
