"""``dbprofile lsp``: a language server for profile files, on top of the compiler.

``analysis`` (open buffers over files on disk, the profiles a file takes part in, their
problems), ``cursor`` (what sits at a position, read from the text so a half-typed
buffer still answers), ``features`` (hover, completion, definition, code actions as
plain data) and ``server`` (the pygls wiring, the only module that imports pygls).
See docs/editors.md.
"""
