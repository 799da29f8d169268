"""Read a compiled spec (``dbprofile compile --format json``) back into an EngineSpec.

Cheap on purpose: imports json and cattrs, never YAML, jsonschema or the compiler, so a
service starts from ``build/db.json`` as fast as from a hand-written URL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from dbprofile.errors import SpecError
from dbprofile.spec import SPEC_VERSION, EngineSpec, structure_spec

__all__ = ["load_spec"]


def _describe_cattrs_error(exc: Exception) -> str:
    try:
        from cattrs import transform_error

        messages = transform_error(exc, path="spec")
    except Exception:  # fall back to the plain message
        return str(exc)
    return "; ".join(messages)


def _check_shape(data: Mapping[str, Any], source: str) -> None:
    version = data.get("version")
    if version is None:
        raise SpecError(source, "not a dbprofile spec: it has no 'version' key")
    if not isinstance(version, int) or isinstance(version, bool):
        raise SpecError(source, f"version must be an integer, got {version!r}")
    if version > SPEC_VERSION:
        raise SpecError(
            source,
            f"spec format version {version} is newer than this dbprofile reads "
            f"(version {SPEC_VERSION}); upgrade dbprofile or compile with the same version",
        )
    if version < 1:
        raise SpecError(source, f"version must be >= 1, got {version}")


def load_spec(path_or_mapping: str | os.PathLike[str] | Mapping[str, Any]) -> EngineSpec:
    """An :class:`EngineSpec` from a compiled JSON file or its parsed mapping.

    Raises :class:`SpecError` naming the file for anything that is not a readable spec
    of a version this dbprofile knows.
    """
    if isinstance(path_or_mapping, Mapping):
        source = "spec"
        data: Any = path_or_mapping
    else:
        source = os.fspath(path_or_mapping)
        try:
            with open(source, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            raise SpecError(source, "no such file") from None
        except IsADirectoryError:
            raise SpecError(source, "is a directory, not a spec file") from None
        except UnicodeDecodeError:
            raise SpecError(source, "not a spec: the file is not UTF-8 text") from None
        except OSError as exc:
            raise SpecError(source, f"cannot read: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(
                f"{source}:{exc.lineno}:{exc.colno}",
                f"not a spec: invalid JSON ({exc.msg}); "
                "write it with 'dbprofile compile --format json'",
            ) from None
    if not isinstance(data, Mapping):
        raise SpecError(source, f"not a spec: expected a JSON object, got {type(data).__name__}")
    _check_shape(data, source)
    try:
        spec = structure_spec(data)
    except Exception as exc:  # cattrs raises a group of many kinds
        raise SpecError(source, f"not a valid spec: {_describe_cattrs_error(exc)}") from None
    if spec.engine == "postgresql" and spec.database is None:
        raise SpecError(source, "not a valid spec: engine is postgresql but 'database' is null")
    if spec.engine == "sqlite" and spec.sqlite is None:
        raise SpecError(source, "not a valid spec: engine is sqlite but 'sqlite' is null")
    return spec
