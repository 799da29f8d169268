"""Dynaconf: base.toml then prod.yaml as settings files, then the environment overrides."""

import sys

from common import emit, env_overrides
from dynaconf import Dynaconf

d = sys.argv[1]
settings = Dynaconf(
    settings_files=[f"{d}/base.toml", f"{d}/prod.yaml"],
    merge_enabled=True,
    envvar_prefix=False,
    load_dotenv=False,
)
for section, key, value in env_overrides():
    settings.set(f"{section}.{key}", value)
cfg = {k.lower(): v for k, v in settings.as_dict().items()}
emit(
    {
        k: {kk.lower(): vv for kk, vv in v.items()} if isinstance(v, dict) else v
        for k, v in cfg.items()
    }
)
