"""A small LSP client over a subprocess's pipes: JSON-RPC with Content-Length framing.

Enough to drive ``dbprofile lsp`` as an editor does: requests wait for their response,
notifications from the server (diagnostics) queue up for ``diagnostics``.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]


class LspClient:
    def __init__(self, cwd: Path, environ: Mapping[str, str] | None = None) -> None:
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), **(environ or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from dbprofile.cli import run; run()", "lsp"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.next_id = 0
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.responses: dict[int, dict[str, Any]] = {}
        self.published: dict[str, list[dict[str, Any]]] = {}
        self.received: list[str] = []  # every message the server sent, as text
        self.versions: dict[str, int] = {}
        self.capabilities: dict[str, Any] = {}
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    # ---------------------------------------------------------------- wire

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        stdin: IO[bytes] = self.proc.stdin  # type: ignore[assignment]
        stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        stdin.flush()

    def _read(self) -> None:
        out: IO[bytes] = self.proc.stdout  # type: ignore[assignment]
        while True:
            length = 0
            while True:
                line = out.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            body = out.read(length).decode()
            self.received.append(body)
            self.inbox.put(json.loads(body))

    def _pump(self, timeout: float) -> dict[str, Any]:
        message = self.inbox.get(timeout=timeout)
        if "id" in message and "method" not in message:
            self.responses[message["id"]] = message
        elif message.get("method") == "textDocument/publishDiagnostics":
            params = message["params"]
            self.published[params["uri"]] = params["diagnostics"]
        elif "id" in message:  # a request from the server (registration, ...): accept it
            self._send({"id": message["id"], "result": None})
        return message

    def request(self, method: str, params: Any, timeout: float = 20) -> Any:
        self.next_id += 1
        rid = self.next_id
        self._send({"id": rid, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while rid not in self.responses:
            self._pump(max(0.01, deadline - time.monotonic()))
        response = self.responses.pop(rid)
        if "error" in response:
            raise RuntimeError(response["error"])
        return response.get("result")

    def notify(self, method: str, params: Any) -> None:
        self._send({"method": method, "params": params})

    # ---------------------------------------------------------------- LSP

    def initialize(self, root: Path, capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": root.as_uri(),
                "capabilities": capabilities or {},
            },
        )
        self.notify("initialized", {})
        return result

    def open(self, path: Path, text: str | None = None) -> str:
        uri = path.as_uri()
        language = "toml" if path.suffix == ".toml" else "yaml"
        body = path.read_text(encoding="utf-8") if text is None else text
        self.versions[uri] = 1
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": language, "version": 1, "text": body}},
        )
        return uri

    def change(self, uri: str, text: str) -> None:
        self.versions[uri] += 1
        self.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": self.versions[uri]},
                "contentChanges": [{"text": text}],
            },
        )

    def diagnostics(
        self,
        uri: str,
        until: Callable[[list[dict[str, Any]]], bool] | None = None,
        timeout: float = 20,
    ) -> list[dict[str, Any]]:
        """The next diagnostics published for ``uri``; with ``until``, the first published
        ones (the latest already received included) for which ``until`` holds."""
        if until is None:
            self.published.pop(uri, None)
        deadline = time.monotonic() + timeout
        while uri not in self.published or (until and not until(self.published[uri])):
            self._pump(max(0.01, deadline - time.monotonic()))
        return self.published[uri]

    def at(self, method: str, uri: str, line: int, char: int) -> Any:
        return self.request(
            method,
            {"textDocument": {"uri": uri}, "position": {"line": line, "character": char}},
        )

    def shutdown(self) -> int:
        self.request("shutdown", None)
        self.notify("exit", None)
        code = self.proc.wait(timeout=20)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream and not stream.closed:
                stream.close()


def serve(
    root: Path,
    environ: Mapping[str, str] | None = None,
    capabilities: dict[str, Any] | None = None,
    *,
    secret: str,
) -> Iterator[LspClient]:
    """A server for ``root``, initialized, shut down cleanly afterwards, that never sent
    ``secret`` (the test's planted one) in any message."""
    client = LspClient(root, environ)
    try:
        client.capabilities = client.initialize(root, capabilities)["capabilities"]
        yield client
        assert client.shutdown() == 0
    finally:
        client.kill()
    assert all(secret not in message for message in client.received)
