"""The pygls wiring: documents in, diagnostics and answers out, over stdio.

The only module that imports pygls. Every open or change of a profile re-runs
``dbprofile validate`` for it on the unsaved buffer (:meth:`Profiles.problems`) and
publishes the result for each file a problem lands in: a change to a parent shows the
children's problems in the children's files. Diagnostics a document caused are kept
apart from those other documents caused, so closing or fixing one clears only its own.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lsprotocol import types as t
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from dbprofile.compiler.load import EXTENSIONS
from dbprofile.lsp import features
from dbprofile.lsp.analysis import Located, Profiles, is_profile

SOURCE = "dbprofile"
TRIGGERS = ["=", ":", '"', "[", ".", " ", "{", ","]
_SEVERITY = {"warning": t.DiagnosticSeverity.Warning, "error": t.DiagnosticSeverity.Error}


class ProfileServer(LanguageServer):
    def __init__(self, environ: Mapping[str, str], cwd: Path, version: str) -> None:
        super().__init__("dbprofile", version)
        self.profiles = Profiles(environ, cwd)
        self.uris: dict[Path, str] = {}  # the client's spelling of each open file's URI
        # caused[source][target]: the diagnostics source's analysis put on target
        self.caused: dict[Path, dict[Path, list[t.Diagnostic]]] = {}

    def path_of(self, uri: str) -> Path | None:
        """The profile open at ``uri``, or None for any other document."""
        fs = to_fs_path(uri)
        if fs is None or Path(fs).suffix not in EXTENSIONS:
            return None
        path = self.profiles.absolute(fs)
        if path in self.profiles.buffers:
            return path
        document = self.workspace.text_documents.get(uri)
        return path if document and is_profile(path, document.source) else None

    def uri_of(self, path: Path) -> str:
        return self.uris.get(path) or from_fs_path(str(path)) or path.as_uri()

    def analyse(self, path: Path) -> None:
        found: dict[Path, list[t.Diagnostic]] = {path: []}
        for problem in self.profiles.problems(path):
            spot = self.profiles.place(problem, path)
            found.setdefault(spot.file, []).append(_diagnostic(spot))
        before = self.caused.get(path, {})
        self.caused[path] = found
        for target in sorted(set(found) | set(before)):
            self.publish(target)

    def forget(self, path: Path) -> None:
        before = self.caused.pop(path, {})
        for target in sorted(before):
            self.publish(target)

    def publish(self, target: Path) -> None:
        seen: dict[tuple[int, int, str], t.Diagnostic] = {}
        for caused in self.caused.values():
            for diagnostic in caused.get(target, []):
                start = diagnostic.range.start
                seen.setdefault((start.line, start.character, diagnostic.message), diagnostic)
        diagnostics = [seen[k] for k in sorted(seen)]
        self.text_document_publish_diagnostics(
            t.PublishDiagnosticsParams(uri=self.uri_of(target), diagnostics=diagnostics)
        )


def _diagnostic(spot: Located) -> t.Diagnostic:
    return t.Diagnostic(
        range=t.Range(t.Position(spot.line, spot.col), t.Position(spot.line, 10_000)),
        message=spot.message,
        severity=_SEVERITY.get(spot.severity, t.DiagnosticSeverity.Error),
        source=SOURCE,
    )


def build_server(environ: Mapping[str, str], cwd: Path, version: str = "0") -> ProfileServer:
    """The server with its features registered (``serve`` runs it over stdio)."""
    server = ProfileServer(environ, cwd, version)

    def changed(ls: ProfileServer, uri: str) -> None:
        path = ls.path_of(uri)
        if path is None:
            return
        ls.uris[path] = uri
        ls.profiles.open(path, ls.workspace.get_text_document(uri).source)
        ls.analyse(path)

    @server.feature(t.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: ProfileServer, params: t.DidOpenTextDocumentParams) -> None:
        changed(ls, params.text_document.uri)

    @server.feature(t.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: ProfileServer, params: t.DidChangeTextDocumentParams) -> None:
        changed(ls, params.text_document.uri)

    @server.feature(t.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: ProfileServer, params: t.DidSaveTextDocumentParams) -> None:
        changed(ls, params.text_document.uri)

    @server.feature(t.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: ProfileServer, params: t.DidCloseTextDocumentParams) -> None:
        path = ls.path_of(params.text_document.uri)
        if path is not None:
            ls.profiles.close(path)
            ls.forget(path)

    def where(ls: ProfileServer, params: Any) -> tuple[Path, str] | None:
        path = ls.path_of(params.text_document.uri)
        if path is None:
            return None
        return path, ls.workspace.get_text_document(params.text_document.uri).source

    @server.feature(t.TEXT_DOCUMENT_HOVER)
    def hover(ls: ProfileServer, params: t.HoverParams) -> t.Hover | None:
        found = where(ls, params)
        if found is None:
            return None
        pos = params.position
        return features.hover(ls.profiles, found[0], found[1], pos.line, pos.character)

    @server.feature(t.TEXT_DOCUMENT_COMPLETION, t.CompletionOptions(trigger_characters=TRIGGERS))
    def completion(ls: ProfileServer, params: t.CompletionParams) -> t.CompletionList:
        found = where(ls, params)
        items = []
        if found is not None:
            pos = params.position
            items = features.complete(ls.profiles, found[0], found[1], pos.line, pos.character)
        return t.CompletionList(is_incomplete=False, items=items)

    @server.feature(t.TEXT_DOCUMENT_DEFINITION)
    def definition(ls: ProfileServer, params: t.DefinitionParams) -> t.Location | None:
        found = where(ls, params)
        if found is None:
            return None
        pos = params.position
        return features.definition(ls.profiles, found[0], found[1], pos.line, pos.character)

    @server.feature(
        t.TEXT_DOCUMENT_CODE_ACTION,
        t.CodeActionOptions(code_action_kinds=[t.CodeActionKind.QuickFix]),
    )
    def code_action(ls: ProfileServer, params: t.CodeActionParams) -> list[t.CodeAction]:
        found = where(ls, params)
        if found is None:
            return []
        uri = params.text_document.uri
        first, last = params.range.start.line, params.range.end.line
        return features.code_actions(ls.profiles, found[0], uri, found[1], first, last)

    return server


def serve(environ: Mapping[str, str], cwd: Path, version: str = "0") -> None:
    """Speak LSP over stdin/stdout until the client exits."""
    server = build_server(environ, cwd, version)
    gc.freeze()  # the modules and lsprotocol's converters stay: keep them out of each GC pass
    server.start_io()
