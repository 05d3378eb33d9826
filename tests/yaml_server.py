"""A small LSP client for Red Hat's yaml-language-server, the server VS Code's YAML extension runs.

It speaks JSON-RPC over the server's stdin/stdout (a `Content-Length` header, then the JSON body),
answers the requests the server sends the client (its settings, capability registrations) and
collects the diagnostics it publishes. The server is installed by `npm ci --prefix tests/editor`.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

from tests.conftest import REPO

SERVER = REPO / "tests" / "editor" / "node_modules" / "yaml-language-server" / "bin" / "yaml-language-server"
INSTALL = "npm ci --prefix tests/editor"
# What VS Code's YAML extension sends, less the schema store (it would fetch a catalogue over the network).
SETTINGS = {"yaml": {"validate": True, "hover": True, "completion": True, "format": {"enable": False},
                     "schemaStore": {"enable": False}, "disableAdditionalProperties": False}}
TIMEOUT = 30.0  # seconds for one answer; the server answers in milliseconds once started


def _setting(settings: dict, section: str) -> Any:
    """The value of a dotted settings section (`yaml`, `yaml.validate`), None for sections we do not set."""
    node: Any = settings
    for part in section.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def missing() -> str | None:
    """Why the server cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed (Debian: apt-get install nodejs npm)"
    if not SERVER.exists():
        return f"yaml-language-server is not installed: run `{INSTALL}`"
    return None


class YamlServer:
    """One server process; `schemas` associates schema files with globs, as VS Code's `yaml.schemas`
    setting does (a document's `# yaml-language-server: $schema=` comment takes precedence)."""

    def __init__(self, root: Path, schemas: dict[Path, list[str]] | None = None) -> None:
        self.settings = {"yaml": {**SETTINGS["yaml"], "schemas": {p.resolve().as_uri(): g for p, g in (schemas or {}).items()}}}
        self.process = subprocess.Popen(["node", str(SERVER), "--stdio"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._next = 0
        self._answers: dict[int, queue.Queue] = {}
        self._published: dict[str, queue.Queue] = {}
        self._lock = threading.Lock()
        self._version = 0  # of the documents opened, which the server wants increasing
        threading.Thread(target=self._read, daemon=True).start()
        self.request("initialize", {
            "processId": None, "rootUri": root.as_uri(), "workspaceFolders": [{"uri": root.as_uri(), "name": "specs"}],
            "capabilities": {
                "workspace": {"configuration": True, "didChangeConfiguration": {"dynamicRegistration": True}},
                "textDocument": {"completion": {"completionItem": {"snippetSupport": True, "documentationFormat": ["markdown"]}},
                                 "hover": {"contentFormat": ["markdown"]}, "publishDiagnostics": {}}}})
        self.notify("initialized", {})
        self.notify("workspace/didChangeConfiguration", {"settings": self.settings})

    # --- JSON-RPC -------------------------------------------------------------------

    def _send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            length = None
            while True:
                line = stream.readline()
                if not line:
                    return  # the server exited
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            message = json.loads(stream.read(length))
            self._dispatch(message)

    def _dispatch(self, message: dict) -> None:
        if "id" in message and "method" in message:  # a request from the server to us
            result: Any = None
            if message["method"] == "workspace/configuration":
                result = [_setting(self.settings, item.get("section", "")) for item in message["params"]["items"]]
            self._send({"id": message["id"], "result": result})
        elif "id" in message:
            self._answers.setdefault(message["id"], queue.Queue()).put(message)
        elif message.get("method") == "textDocument/publishDiagnostics":
            uri = message["params"]["uri"]
            with self._lock:
                box = self._published.setdefault(uri, queue.Queue())
            box.put(message["params"])

    def request(self, method: str, params: dict) -> Any:
        with self._lock:
            self._next += 1
            ident = self._next
            box = self._answers.setdefault(ident, queue.Queue())
        self._send({"id": ident, "method": method, "params": params})
        answer = box.get(timeout=TIMEOUT)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result")

    def notify(self, method: str, params: dict) -> None:
        self._send({"method": method, "params": params})

    # --- documents ------------------------------------------------------------------

    @contextlib.contextmanager
    def opened(self, path: Path, text: str | None = None) -> Iterator[tuple[str, list[dict]]]:
        """Open a document, wait for the diagnostics the server publishes for it (so its schema is loaded),
        and close it on leaving: (its uri, the diagnostics)."""
        uri = path.resolve().as_uri()
        with self._lock:
            box = self._published.setdefault(uri, queue.Queue())
        self._version += 1
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "yaml", "version": self._version,
            "text": path.read_text() if text is None else text}})
        try:
            yield uri, box.get(timeout=TIMEOUT)["diagnostics"]
        finally:
            self.notify("textDocument/didClose", {"textDocument": {"uri": uri}})

    def open(self, path: Path, text: str | None = None) -> list[dict]:
        """The diagnostics the server publishes for a document."""
        with self.opened(path, text) as (_, diagnostics):
            return diagnostics

    def at(self, method: str, path: Path, text: str, line: int, character: int) -> Any:
        """A request at a position of a document (`textDocument/completion`, `textDocument/hover`)."""
        with self.opened(path, text) as (uri, _):
            return self.request(method, {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}})

    def close(self) -> None:
        try:
            self.request("shutdown", {})
            self.notify("exit", {})
            self.process.wait(timeout=10)
        except Exception:
            self.process.kill()
            self.process.wait()


def corpus_flags(server: YamlServer, paths: list[Path]) -> dict[str, tuple[bool, bool]]:
    """For each invalid-corpus spec: (flagged at all, flagged on a line its `# expect:` comments name)."""
    from tests.gstc.test_invalid_corpus import expectations

    out = {}
    for path in paths:
        lines = {d["range"]["start"]["line"] + 1 for d in server.open(path)}
        out[path.name] = (bool(lines), bool(lines & {line for line, _ in expectations(path)}))
    return out
