"""dbprofile: declarative database profiles for Letta-style Python services.

Importing ``dbprofile`` is cheap: the runtime (SQLAlchemy, psycopg) loads only when
``create_engine`` and friends are first used.
"""

import typing as _typing

from dbprofile.errors import (
    ArgumentError,
    CommitOutcomeUnknownError,
    ConnectionCheckError,
    DatabaseAuthenticationError,
    DatabaseConnectError,
    DatabaseConnectionLostError,
    DatabaseDeadlockError,
    DatabaseLockNotAvailableError,
    DatabaseTimeoutError,
    DatabaseTLSError,
    DatabaseUnavailableError,
    DatabaseUnreachableError,
    DbprofileError,
    DecryptionError,
    DriverMissingError,
    ForeignKeyConstraintViolationError,
    Problem,
    ProblemsFound,
    ProfileWarning,
    SecretError,
    SpecError,
    UniqueConstraintViolationError,
)
from dbprofile.spec import EngineSpec

if _typing.TYPE_CHECKING:
    from dbprofile.compiler.pipeline import compile_profile
    from dbprofile.runtime.encrypted import EncryptedText
    from dbprofile.runtime.engines import (
        async_sessionmaker,
        create_async_engine,
        create_engine,
        sessionmaker,
    )
    from dbprofile.runtime.health import Health, health
    from dbprofile.runtime.replicas import async_routing_sessionmaker, routing_sessionmaker
    from dbprofile.runtime.retry import retrying
    from dbprofile.spec import load_spec

__all__ = [
    "ArgumentError",
    "CommitOutcomeUnknownError",
    "ConnectionCheckError",
    "DatabaseAuthenticationError",
    "DatabaseConnectError",
    "DatabaseConnectionLostError",
    "DatabaseDeadlockError",
    "DatabaseLockNotAvailableError",
    "DatabaseTLSError",
    "DatabaseTimeoutError",
    "DatabaseUnavailableError",
    "DatabaseUnreachableError",
    "DbprofileError",
    "DecryptionError",
    "DriverMissingError",
    "EncryptedText",
    "EngineSpec",
    "ForeignKeyConstraintViolationError",
    "Health",
    "Problem",
    "ProblemsFound",
    "ProfileWarning",
    "SecretError",
    "SpecError",
    "UniqueConstraintViolationError",
    "async_routing_sessionmaker",
    "async_sessionmaker",
    "compile_profile",
    "create_async_engine",
    "create_engine",
    "health",
    "load_spec",
    "retrying",
    "routing_sessionmaker",
    "sessionmaker",
]

_LAZY = {
    "EncryptedText": "dbprofile.runtime.encrypted",
    "compile_profile": "dbprofile.compiler.pipeline",
    "load_spec": "dbprofile.spec",
    "create_engine": "dbprofile.runtime.engines",
    "create_async_engine": "dbprofile.runtime.engines",
    "sessionmaker": "dbprofile.runtime.engines",
    "async_sessionmaker": "dbprofile.runtime.engines",
    "Health": "dbprofile.runtime.health",
    "health": "dbprofile.runtime.health",
    "retrying": "dbprofile.runtime.retry",
    "routing_sessionmaker": "dbprofile.runtime.replicas",
    "async_routing_sessionmaker": "dbprofile.runtime.replicas",
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dbprofile' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
