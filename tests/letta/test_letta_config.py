"""`dbprofile import --letta-config` reads Letta's conf.yaml as Letta 0.16.8 does.

Letta's own ``letta.config_file`` (``load_config_file`` + ``config_to_env_vars``, run
unmodified in ``.letta-venv``) turns each conf.yaml into variables; dbprofile's
``read_letta_config`` (what ``import --letta-config`` reads) does the same for the
database keys. The two variable sets, compiled with no profile, must give the same
engine spec. Letta's PyYAML is a YAML 1.1 reader (``05432`` is octal 2842, ``off`` a
boolean, ``1:20`` is 80), so dbprofile reads conf.yaml as YAML 1.1 too.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from dbprofile.compiler.importer import read_letta_config
from dbprofile.compiler.pipeline import compile_full
from dbprofile.keys import KEYS_BY_ENV
from tests.letta.test_letta_compat import LETTA_PYTHON

pytestmark = pytest.mark.slow

# Letta's module, imported as the probe imports it: without letta/__init__.py.
LETTA_SIDE = """
import json, sys
sys.path.insert(0, sys.argv[2])
import probe
probe.install_bare_letta(probe.letta_dir())
from letta.config_file import config_to_env_vars, load_config_file
print(json.dumps(config_to_env_vars(load_config_file(sys.argv[1]))))
"""

CONFIGS = {
    "parts": "letta:\n  pg:\n    host: db.internal\n    port: 6432\n    db: letta\n"
    "    user: app\n    password: 'p@ss/w:rd#1 %?&'\n",
    "uri-and-pool": "letta:\n  pg:\n    uri: postgresql://app@db/letta?sslmode=verify-full\n"
    "    pool_size: 40\n    max_overflow: 5\n    pool_timeout: 15\n    pool_recycle: 600\n"
    "  disable_sqlalchemy_pooling: false\nmodel:\n  openai:\n    api_key: sk-not-ours\n",
    "yaml-1.1-booleans": "letta:\n  pg:\n    host: db\n    db: letta\n    user: app\n"
    "    echo: yes\n  pool_pre_ping: off\n  pool_use_lifo: on\n"
    "  disable_sqlalchemy_pooling: no\n",
    "nulls-and-numbers": "letta:\n  pg:\n    host: db\n    db: letta\n    user: app\n"
    "    port: 05432\n    password: null\n    pool_size: 1_0\n"
    "  db_pool_monitoring_interval: 30\n",
    "no-database": "letta:\n  debug: true\ndatadog:\n  site: us5.datadoghq.com\n",
}


def letta_variables(path: Path) -> dict[str, str]:
    if not LETTA_PYTHON.exists():  # as test_letta_compat: a failure in CI, else a skip
        message = ".letta-venv is missing: run scripts/letta-env"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    proc = subprocess.run(
        [str(LETTA_PYTHON), "-c", LETTA_SIDE, str(path), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=path.parent,
    )
    variables: dict[str, str] = json.loads(proc.stdout)
    return variables


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_conf_yaml_gives_the_deployment_letta_reads(tmp_path: Path, name: str) -> None:
    path = tmp_path / "conf.yaml"
    path.write_text(CONFIGS[name], encoding="utf-8")
    letta = {k: v for k, v in letta_variables(path).items() if k in KEYS_BY_ENV}
    ours = read_letta_config(CONFIGS[name], str(path))  # what `import --letta-config` reads
    assert set(ours) == set(letta), (ours, letta)
    theirs_spec = compile_full(None, environ=letta).spec
    ours_spec = compile_full(None, environ=ours).spec
    assert ours_spec.fingerprint == theirs_spec.fingerprint, (ours, letta)


def test_the_import_command_reads_conf_yaml_as_yaml_1_1(tmp_path: Path) -> None:
    from dbprofile.cli import main

    conf = tmp_path / "conf.yaml"
    conf.write_text(CONFIGS["nulls-and-numbers"], encoding="utf-8")
    out = tmp_path / "profiles" / "imported.toml"
    assert main(["import", "--letta-config", str(conf), "-o", str(out)], environ={}) == 0
    spec = compile_full("imported", profiles_dir=out.parent, environ={}).spec
    assert spec.database is not None
    assert spec.database.port == 0o5432  # Letta's PyYAML reads 05432 as octal


def test_the_one_documented_difference_a_float_without_a_dot(tmp_path: Path) -> None:
    """docs/repos-and-deploys.md: ``1e3`` is a string to PyYAML, 1000.0 to dbprofile."""
    text = "letta:\n  pg:\n    pool_timeout: 1e3\n"
    path = tmp_path / "conf.yaml"
    path.write_text(text, encoding="utf-8")
    assert letta_variables(path)["LETTA_PG_POOL_TIMEOUT"] == "1e3"
    assert read_letta_config(text, str(path))["LETTA_PG_POOL_TIMEOUT"] == "1000.0"
