"""The pygls wiring: documents in, diagnostics and answers out, over stdio.

The only module that imports pygls. Every open or change of a profile re-runs
``dbprofile validate`` for it on the unsaved buffer (:meth:`Profiles.problems`) and
publishes the result for each file a problem lands in: a change to a parent shows the
children's problems in the children's files. Diagnostics a document caused are kept
apart from those other documents caused, so closing or fixing one clears only its own.

Positions: the features count characters in code points; the client counts in the
encoding negotiated at ``initialize`` (UTF-32 when the client offers it, else LSP's
default UTF-16). pygls's position codec converts at the edge, both ways.
"""

from __future__ import annotations

import gc
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

from attrs import evolve
from lsprotocol import types as t
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, lsp_method
from pygls.uris import from_fs_path, to_fs_path
from pygls.workspace import TextDocument

from dbprofile.compiler.load import EXTENSIONS
from dbprofile.lsp import features
from dbprofile.lsp.analysis import Located, Profiles

SOURCE = "dbprofile"
TRIGGERS = ["=", ":", '"', "[", ".", " ", "{", ","]
_SEVERITY = {"warning": t.DiagnosticSeverity.Warning, "error": t.DiagnosticSeverity.Error}


def position_encoding(capabilities: t.ClientCapabilities) -> t.PositionEncodingKind:
    """UTF-32 (code points, the server's own count) when the client offers it, else
    UTF-16, which every client supports (LSP 3.17 ``general.positionEncodings``)."""
    offered = capabilities.general.position_encodings if capabilities.general else None
    if offered and t.PositionEncodingKind.Utf32 in offered:
        return t.PositionEncodingKind.Utf32
    return t.PositionEncodingKind.Utf16


class ProfileProtocol(LanguageServerProtocol):
    """pygls's protocol with the server's choice of position encoding: pygls takes the
    client's first offer (UTF-8 included); this server prefers UTF-32, else UTF-16."""

    @lsp_method(t.INITIALIZE)
    def lsp_initialize(self, params: t.InitializeParams) -> Generator[Any, Any, t.InitializeResult]:
        caps = params.capabilities
        general = evolve(
            caps.general or t.GeneralClientCapabilities(),
            position_encodings=[position_encoding(caps)],
        )
        params = evolve(params, capabilities=evolve(caps, general=general))
        return (yield from super().lsp_initialize(params))


class ProfileServer(LanguageServer):
    def __init__(self, environ: Mapping[str, str], cwd: Path, version: str) -> None:
        super().__init__("dbprofile", version, protocol_cls=ProfileProtocol)
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
        return path if document and self.profiles.is_profile(path, document.source) else None

    def uri_of(self, path: Path) -> str:
        return self.uris.get(path) or from_fs_path(str(path)) or path.as_uri()

    # ------------------------------------------------------------ positions

    def lines_of(self, path: Path) -> list[str]:
        """The text positions in ``path`` refer to: the open document (analysed on every
        change), else the file's text as last loaded."""
        document = self.workspace.text_documents.get(self.uri_of(path))
        text = document.source if document else self.profiles.texts.get(path, "")
        return text.splitlines()

    def to_client(self, path: Path, where: t.Range) -> t.Range:
        """A range in code points in ``path`` as the client counts it."""
        codec = self.workspace.position_codec
        return codec.range_to_client_units(self.lines_of(path), where)

    def located(self, location: t.Location | None) -> t.Location | None:
        fs = to_fs_path(location.uri) if location else None
        if location is None or fs is None:
            return location
        return t.Location(location.uri, self.to_client(self.profiles.absolute(fs), location.range))

    def analyse(self, path: Path) -> None:
        found: dict[Path, list[t.Diagnostic]] = {path: []}
        for problem in self.profiles.problems(path):
            spot = self.profiles.place(problem, path)
            diagnostic = _diagnostic(spot)
            diagnostic.range = self.to_client(spot.file, diagnostic.range)
            found.setdefault(spot.file, []).append(diagnostic)
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
    return t.Diagnostic(  # to the end of the line (a longer end is cut to the line's)
        range=t.Range(t.Position(spot.line, spot.col), t.Position(spot.line, 1 << 30)),
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

    def where(ls: ProfileServer, params: Any) -> tuple[Path, str, int, int] | None:
        """The profile, its text and the request's position in code points."""
        path = ls.path_of(params.text_document.uri)
        if path is None:
            return None
        document = ls.workspace.get_text_document(params.text_document.uri)
        line, char = _from_client(document, getattr(params, "position", t.Position(0, 0)))
        return path, document.source, line, char

    @server.feature(t.TEXT_DOCUMENT_HOVER)
    def hover(ls: ProfileServer, params: t.HoverParams) -> t.Hover | None:
        found = where(ls, params)
        return None if found is None else features.hover(ls.profiles, *found)

    @server.feature(t.TEXT_DOCUMENT_COMPLETION, t.CompletionOptions(trigger_characters=TRIGGERS))
    def completion(ls: ProfileServer, params: t.CompletionParams) -> t.CompletionList:
        found = where(ls, params)
        items = [] if found is None else features.complete(ls.profiles, *found)
        return t.CompletionList(is_incomplete=False, items=items)

    @server.feature(t.TEXT_DOCUMENT_DEFINITION)
    def definition(ls: ProfileServer, params: t.DefinitionParams) -> t.Location | None:
        found = where(ls, params)
        return None if found is None else ls.located(features.definition(ls.profiles, *found))

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
        found_actions = features.code_actions(ls.profiles, found[0], uri, found[1], first, last)
        for action in found_actions:
            for edits in (action.edit.changes or {}).values() if action.edit else ():
                for edit in edits:
                    edit.range = ls.to_client(found[0], edit.range)
        return found_actions

    return server


def _from_client(document: TextDocument, position: t.Position) -> tuple[int, int]:
    """A client's position in code points (past the last line: as it is, where pygls
    would move it to the end of the last line)."""
    if position.line >= len(document.lines):
        return position.line, position.character
    copy = t.Position(position.line, position.character)  # pygls may clamp it in place
    server = document.position_from_client_units(copy)
    return server.line, server.character


def serve(environ: Mapping[str, str], cwd: Path, version: str = "0") -> None:
    """Speak LSP over stdin/stdout until the client exits."""
    server = build_server(environ, cwd, version)
    gc.freeze()  # the modules and lsprotocol's converters stay: keep them out of each GC pass
    server.start_io()
