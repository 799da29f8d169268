"""examples/deploy: the commands inside the Dockerfile, the Kubernetes manifests and the
CI workflow, read out of those files and run (not Docker or Kubernetes themselves); the
service starts from the compiled spec against a real PostgreSQL over TLS."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from dbprofile.cli import main
from dbprofile.keys import env_of
from dbprofile.spec import load_spec
from tests.pg import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "examples" / "deploy"
PYTHON = sys.executable


def run(argv: list[str], environ: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, environ=environ, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of examples/deploy as the image's /app, the working directory."""
    target = tmp_path / "app"
    shutil.copytree(DEPLOY, target)
    monkeypatch.chdir(target)
    return target


def server_environ(server: PostgresServer) -> dict[str, str]:
    return {
        env_of("database.host"): server.host,
        env_of("database.port"): str(server.port),
        env_of("database.name"): server.dbname,
        env_of("database.user"): server.user,
        env_of("database.password"): server.password,
    }


def service(command: list[str], cwd: Path, environ: dict[str, str]) -> str:
    assert command[:2] == ["python", "service.py"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETTA_")}
    result = subprocess.run(
        [PYTHON, *command[1:]],
        cwd=cwd,
        env={**env, **environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def dockerfile() -> tuple[list[list[str]], list[str]]:
    runs, cmd = [], []
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.startswith("RUN dbprofile "):
            runs.append(shlex.split(line.removeprefix("RUN ")))
        if line.startswith("CMD "):
            cmd = eval(line.removeprefix("CMD "))  # noqa: S307 - the example's exec-form JSON
    return runs, cmd


@pytest.mark.postgres
def test_the_image_compiles_at_build_and_the_service_starts_from_the_spec(
    app: Path, pg_tls: PostgresServer
) -> None:
    runs, cmd = dockerfile()
    assert [r[:2] for r in runs] == [["dbprofile", "validate"], ["dbprofile", "compile"]]
    environ = server_environ(pg_tls)  # the build points the profile at the test server
    for argv in runs:
        code, _, err = run(argv[1:], environ)
        assert (code, err) == (0, ""), (argv, err)
    spec = load_spec(app / "build" / "db.json")
    assert spec.database is not None
    assert spec.database.password is not None
    assert spec.database.password.ref == env_of("database.password")  # a reference only
    assert pg_tls.password not in (app / "build" / "db.json").read_text(encoding="utf-8")
    out = service(cmd, app, {env_of("database.password"): pg_tls.password})
    assert "SELECT 1 -> 1; tls on" in out
    assert "QueuePool size=10 max_overflow=5" in out


@pytest.mark.postgres
def test_the_init_container_compiles_and_the_password_is_the_mounted_secret_file(
    app: Path, tmp_path: Path, pg_tls: PostgresServer
) -> None:
    deployment = load_yaml(DEPLOY / "k8s" / "deployment.yaml")
    secret = load_yaml(DEPLOY / "k8s" / "secret.yaml")
    pod = deployment["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    [server] = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    server_mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    key = next(iter(secret["stringData"]))
    secret_path = f"{server_mounts['db-password']}/{key}"
    assert volumes["db-password"]["secret"]["secretName"] == secret["metadata"]["name"]

    # the volumes on this machine: the ConfigMap of profiles/, the emptyDir
    profiles, spec_dir = app / "profiles", tmp_path / "spec"
    argv = [*init["command"], *init["args"]]
    assert argv[0] == "dbprofile"
    local = [
        a.replace(mounts["profiles"], str(profiles)).replace(mounts["spec"], str(spec_dir))
        for a in argv[1:]
    ]
    code, _, err = run(local, {})
    assert (code, err) == (0, "")
    spec = load_spec(spec_dir / "db.json")
    assert spec.database is not None
    assert spec.database.password is not None
    assert (spec.database.password.source, spec.database.password.ref) == ("file", secret_path)

    # the same command against the test server, the secret file mounted where it says
    mounted = tmp_path / "secrets"
    mounted.mkdir()
    (mounted / key).write_text(pg_tls.password + "\n", encoding="utf-8")
    (mounted / key).chmod(0o400)
    sets = [
        f"database.host={pg_tls.host}",
        f"database.port={pg_tls.port}",
        f"database.name={pg_tls.dbname}",
        f"database.user={pg_tls.user}",
        f'database.password={{file = "{mounted / key}"}}',
    ]
    code, _, err = run([*local, *[x for s in sets for x in ("--set", s)]], {})
    assert (code, err) == (0, "")
    shown = [*server["command"][:2], str(spec_dir / "db.json")]
    out = service(shown, app, {})  # no password in the environment: the file gives it
    assert "SELECT 1 -> 1; tls on" in out


def test_the_ci_workflow_validates_with_annotations(app: Path) -> None:
    workflow = load_yaml(DEPLOY / "ci" / "validate-profiles.yml")
    steps = [s["run"] for s in workflow["jobs"]["validate"]["steps"] if "run" in s]
    commands = [shlex.split(s) for s in steps if s.startswith("dbprofile ")]
    assert any("--error-format" in c and "github" in c for c in commands)
    for argv in commands:
        code, out, _ = run(argv[1:], {})
        assert (code, out) == (0, ""), argv  # no annotation; "ok" goes to stderr
    prod = app / "profiles" / "prod.toml"
    prod.write_text(
        prod.read_text(encoding="utf-8").replace('"require"', '"prefer"'), encoding="utf-8"
    )
    code, out, _ = run(commands[0][1:], {})
    assert code == 1
    assert out.startswith("::error file=profiles/prod.toml,line=14,title=DBP101 ")
