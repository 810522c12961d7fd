"""The deployment files under deploy/ agree with the repo they deploy.

- deploy/docker-compose.yaml: `docker-compose config` accepts it (Debian's docker-compose 1.29;
  skipped when it is not installed, unless REQUIRE_DEPLOY_TOOLS=1), and every code-server
  service starts a module of its own location on the port deploy/compose-workspace.yaml uses.
- deploy/docker/*.Dockerfile: each location's image copies shared/ and its own folder only and
  installs its own requirements.lock; the webserver/daemon image takes no project code.
- deploy/helm/values.yaml: parses, each deployment runs a module of its location on its port.
- Every lock file pins the dagster version of the root uv.lock.

Fast and offline: no docker daemon, no helm, no network.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from platform_shared.workspace import locations

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
DOCKER = DEPLOY / "docker"
COMPOSE = DEPLOY / "docker-compose.yaml"

# location (= its folder) -> the module of its definitions, from the one list of locations
# (dg.toml); every file below must agree with it. The ports come from deploy/workspace.yaml.
LOCATIONS = locations(REPO)
MODULES = {loc.name: loc.module for loc in LOCATIONS}
DAGSTER_VERSION_FILES = [f"{loc}/requirements.lock" for loc in MODULES] + ["deploy/requirements-webserver.txt"]


def _grpc_servers(path: Path) -> dict[str, dict]:
    """location_name -> grpc_server entry of a workspace file."""
    doc = yaml.safe_load(path.read_text())
    servers = [entry["grpc_server"] for entry in doc["load_from"]]
    return {server["location_name"]: server for server in servers}


WORKSPACE_PORTS = {loc: s["port"] for loc, s in _grpc_servers(DEPLOY / "workspace.yaml").items()}


def _module_file(location: str, module: str) -> Path | None:
    """The file of `module` inside the location's own folder (all that its image holds besides shared/)."""
    base = REPO / location / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _code_server_command(location: str) -> list[str]:
    return [
        "dagster",
        "code-server",
        "start",
        "-h",
        "0.0.0.0",
        "-p",
        str(WORKSPACE_PORTS[location]),
        "-m",
        MODULES[location],
        "--location-name",
        location,
    ]


def _option(argv: list[str], *names: str) -> str:
    for i, arg in enumerate(argv):
        if arg in names:
            return argv[i + 1]
    raise AssertionError(f"none of {names} in {argv}")


def test_every_list_of_locations_is_dg_toml_s():
    """dg.toml is the one list of code locations: the workspace files of `make dev` and of the
    deployment, compose, Helm (below), CODEOWNERS, the Dockerfiles and the root pyproject
    name the same ones (the workspace files in its order)."""
    order = [loc.name for loc in LOCATIONS]
    assert all(loc.name == loc.path for loc in LOCATIONS)  # a location is its folder
    dev = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    assert [(e["python_module"]["location_name"], e["python_module"]["module_name"]) for e in dev] == [
        (loc.name, loc.module) for loc in LOCATIONS
    ]
    assert list(WORKSPACE_PORTS) == order and list(_grpc_servers(DEPLOY / "compose-workspace.yaml")) == order
    owned = [
        line.split()[0].strip("/")
        for line in (REPO / "CODEOWNERS").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # CODEOWNERS also owns folders that are no location (shared/, deploy/, tools/).
    assert sorted(p for p in owned if p != "*" and _is_dg_project(REPO / p)) == sorted(order)
    assert sorted(p.name.removesuffix(".Dockerfile") for p in DOCKER.glob("*.Dockerfile")) == sorted(
        [*order, "dagster"]
    )
    # The root pyproject: the uv workspace, the dev environment, the tests, the types, the imports.
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    members = root["tool"]["uv"]["workspace"]["members"]
    assert sorted(m for m in members if _is_dg_project(REPO / m)) == sorted(order)
    assert {loc.project for loc in LOCATIONS} <= set(root["project"]["dependencies"])
    tests = root["tool"]["pytest"]["ini_options"]["testpaths"]
    assert sorted(t.removesuffix("/tests") for t in tests if _is_dg_project(REPO / t.removesuffix("/tests"))) == sorted(
        order
    )
    typed = root["tool"]["basedpyright"]["include"]
    assert sorted(p.split("/")[0] for p in typed if _is_dg_project(REPO / p.split("/")[0])) == sorted(order)
    first_party = root["tool"]["ruff"]["lint"]["isort"]["known-first-party"]
    assert {loc.package for loc in LOCATIONS} <= set(first_party)


def _is_dg_project(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    if not pyproject.is_file():
        return False
    return tomllib.loads(pyproject.read_text()).get("tool", {}).get("dg", {}).get("directory_type") == "project"


def test_the_locations_are_the_workspace_locations():
    assert set(WORKSPACE_PORTS) == set(MODULES)
    for location, module in MODULES.items():
        assert (REPO / location / "requirements.lock").is_file(), location
        assert _module_file(location, module), f"{module} is not in {location}/"


# --- docker-compose ---------------------------------------------------------------------------

# Compose and Kubernetes service names cannot hold '_'.
CODE_SERVICES = {loc.name.replace("_", "-"): loc.name for loc in LOCATIONS}
SERVICES = {"postgres", "migrate", "webserver", "daemon", *CODE_SERVICES}


def _check_compose(doc: dict) -> None:
    """What both the raw file and `docker-compose config`'s rendering must hold."""
    services = doc["services"]
    assert set(services) == SERVICES
    compose_ws = _grpc_servers(DEPLOY / "compose-workspace.yaml")
    assert {loc: s["port"] for loc, s in compose_ws.items()} == WORKSPACE_PORTS
    assert {s["host"]: loc for loc, s in compose_ws.items()} == CODE_SERVICES

    for name, location in CODE_SERVICES.items():
        service = services[name]
        command = service["command"]
        command = shlex.split(command) if isinstance(command, str) else command
        assert command[:3] == ["dagster", "code-server", "start"], name
        module = _option(command, "-m", "--module-name")
        assert _module_file(location, module), f"{name}: {module} is not in {location}/"
        assert module == MODULES[location]
        assert int(_option(command, "-p", "--port")) == compose_ws[location]["port"], name
        assert _option(command, "--location-name") == location
        assert _option(command, "-h", "--host") == "0.0.0.0"
        assert service["build"]["dockerfile"] == f"deploy/docker/{location}.Dockerfile"
        health = service["healthcheck"]["test"]
        assert health[-2:] == ["-p", str(compose_ws[location]["port"])], name
        mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in service["volumes"]]
        assert any(m.startswith("platform-data:/data") for m in mounts), name
        env = service["environment"]
        assert env["WAREHOUSE_PATH"] == "/data/warehouse.duckdb"
        assert env["MODEL_DIR"].startswith("/data/") and env["ALERT_LOG"].startswith("/data/")
        assert env["DAGSTER_PG_HOST"] == "postgres"

    for name in ("migrate", "webserver", "daemon"):
        assert services[name]["build"]["dockerfile"] == "deploy/docker/dagster.Dockerfile"
        assert services[name]["environment"]["DAGSTER_PG_HOST"] == "postgres"
    assert services["migrate"]["command"] == ["dagster", "instance", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("webserver", "daemon"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert set(CODE_SERVICES) <= set(depends), name
    assert services["webserver"]["ports"] in (["127.0.0.1:3000:3000"], ["127.0.0.1:3000:3000/tcp"])
    assert services["postgres"]["image"] == "postgres:15"
    assert "healthcheck" in services["postgres"]
    assert {"platform-data", "postgres-data"} <= set(doc["volumes"])


def test_compose_file_structure():
    raw = COMPOSE.read_text()
    assert "${DAGSTER_PG_PASSWORD:?" in raw
    head = raw.split("services:")[0]
    assert "DuckDB" in head and "one host" in head.lower()
    doc = yaml.safe_load(raw)
    for name in SERVICES - {"postgres"}:
        assert doc["services"][name]["env_file"] == "../.env", name
    _check_compose(doc)


def _docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("REQUIRE_DEPLOY_TOOLS") == "1":
            pytest.fail("docker-compose is not installed and REQUIRE_DEPLOY_TOOLS=1 (apt-get install docker-compose)")
        pytest.skip(
            "docker-compose is not installed (apt-get install docker-compose); set "
            "REQUIRE_DEPLOY_TOOLS=1 to make this a failure"
        )
    return exe


def _compose_config(tmp_path: Path, password: str, pii_key: str = "test-only-key") -> subprocess.CompletedProcess:
    """`docker-compose config` on deploy/docker-compose.yaml with a copy of .env.example as .env.

    The compose file reads `../.env`: with --project-directory <tmp>/deploy that is <tmp>/.env,
    never the developer's own .env; --env-file feeds the ${...} variables from the same file.
    """
    (tmp_path / "deploy").mkdir()
    example = (REPO / ".env.example").read_text()
    example = re.sub(r"(?m)^(DAGSTER_PG_PASSWORD|PII_HASH_KEY)=.*$", "", example)
    env_file = tmp_path / ".env"
    env_file.write_text(example + f"\nDAGSTER_PG_PASSWORD={password}\nPII_HASH_KEY={pii_key}\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    return subprocess.run(
        [
            _docker_compose(),
            "--env-file",
            str(env_file),
            "--project-directory",
            str(tmp_path / "deploy"),
            "-f",
            str(COMPOSE),
            "config",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_docker_compose_config_validates(tmp_path):
    done = _compose_config(tmp_path, "test-only-password")
    assert done.returncode == 0, done.stderr
    doc = yaml.safe_load(done.stdout)
    _check_compose(doc)
    services = doc["services"]
    # env_file and the overrides of `environment:` both reached the containers
    assert (
        services["ingestion"]["environment"]["INGESTION_CATALOG"]
        == "ingestion/platform_ingestion/defs/raw_tables/defs.yaml"
    )
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "test-only-password"
    assert services["webserver"]["environment"]["DAGSTER_PG_PASSWORD"] == "test-only-password"
    assert services["ingestion"]["environment"]["PII_HASH_KEY"] == "test-only-key"
    for service in services.values():
        if "build" in service:
            assert Path(service["build"]["context"]) == tmp_path


def test_docker_compose_refuses_an_empty_password(tmp_path):
    done = _compose_config(tmp_path, "")
    assert done.returncode != 0
    assert "set it in .env" in done.stderr


def test_docker_compose_refuses_an_empty_pii_hash_key(tmp_path):
    done = _compose_config(tmp_path, "test-only-password", pii_key="")
    assert done.returncode != 0
    assert "set PII_HASH_KEY in .env" in done.stderr


# --- Dockerfiles ------------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if current and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        lines.append(current + line)
        current = ""
    assert not current, f"{path.name}: dangling continuation"
    out = []
    for line in lines:
        word, _, rest = line.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _copies(instructions) -> list[tuple[list[str], str]]:
    copies = []
    for word, args in instructions:
        if word in ("COPY", "ADD"):
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            copies.append((parts[:-1], parts[-1]))
    return copies


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), args
    return value


def _non_root(instructions) -> bool:
    users = [args for word, args in instructions if word == "USER"]
    return bool(users) and users[-1].split(":")[0] not in ("root", "0")


@pytest.mark.parametrize("location", sorted(MODULES))
def test_location_dockerfile(location):
    path = DOCKER / f"{location}.Dockerfile"
    ins = _instructions(path)
    assert ins[0] == ("FROM", "python:3.11-slim")
    others = set(MODULES) - {location}

    sources = [src for srcs, _ in _copies(ins) for src in srcs]
    tops = {src.strip("./").split("/")[0] for src in sources}
    assert {"shared", location} <= tops, sources
    assert tops <= {"shared", location, "deploy"}, sources
    assert [s for s in sources if s.startswith("deploy")] == ["deploy/dagster.yaml"]
    # nothing of another location anywhere: not copied, not installed
    body = " ".join(args for _, args in ins)
    for other in others:
        assert not re.search(rf"(?<![\w-]){other}/", body), f"{path.name} mentions {other}/"

    runs = [args for word, args in ins if word == "RUN"]
    syncs = [r for r in runs if "pip sync" in r or "pip install" in r and "-r" in r]
    locks = set(re.findall(r"([\w./-]+)/requirements\.lock", " ".join(syncs)))
    assert locks == {location} | ({f"{location}/engine"} if location == "analytics_dbt" else set()), syncs
    final = [r for r in syncs if f"{location}/requirements.lock" in r.split("uv pip sync")[-1]]
    assert final, f"{path.name} never syncs {location}/requirements.lock"
    assert any("--require-hashes" in r for r in syncs)

    assert _non_root(ins), f"{path.name} runs as root"
    cmd = _exec_form([args for word, args in ins if word == "CMD"][-1])
    assert cmd == _code_server_command(location)
    assert _module_file(location, _option(cmd, "-m"))


def test_analytics_image_builds_the_dbt_manifest():
    ins = _instructions(DOCKER / "analytics_dbt.Dockerfile")
    env = " ".join(args for word, args in ins if word == "ENV")
    assert re.search(r"\bDBT_SEND_ANONYMOUS_USAGE_STATS=false\b", env)
    runs = [args for word, args in ins if word == "RUN"]
    prepare = [r for r in runs if "dagster-dbt project prepare-and-package" in r]
    assert prepare, "the dbt manifest is not built at image build time"
    assert "cd analytics_dbt" in prepare[0]
    project = re.search(r"--file\s+(\S+)", prepare[0]).group(1)
    assert (REPO / "analytics_dbt" / project).is_file()
    # after the install, which provides dagster-dbt
    assert runs.index(prepare[0]) > max(i for i, r in enumerate(runs) if "requirements.lock" in r)


def test_webserver_dockerfile_takes_no_project_code():
    ins = _instructions(DOCKER / "dagster.Dockerfile")
    assert ins[0] == ("FROM", "python:3.11-slim")
    sources = [src for srcs, _ in _copies(ins) for src in srcs]
    assert sources and all(s.startswith("deploy/") for s in sources), sources
    for source in sources:
        assert (REPO / source).is_file(), source
    assert "deploy/compose-workspace.yaml" in sources and "deploy/dagster.yaml" in sources
    runs = " ".join(args for word, args in ins if word == "RUN")
    assert "--require-hashes" in runs and "requirements-webserver.txt" in runs
    assert _non_root(ins)
    cmd = _exec_form([args for word, args in ins if word == "CMD"][-1])
    assert cmd[0] == "dagster-webserver"


# --- Helm -------------------------------------------------------------------------------------


def test_helm_values():
    raw = (DEPLOY / "helm" / "values.yaml").read_text()
    assert "NOT TESTED" in raw
    values = yaml.safe_load(raw)
    user = values["dagster-user-deployments"]
    assert user["enabled"] and user["enableSubchart"]
    servers = {s["host"]: s for s in values["dagsterWebserver"]["workspace"]["servers"]}
    deployments = user["deployments"]
    assert {d["name"] for d in deployments} == set(servers)
    located = set()
    for deployment in deployments:
        location = servers[deployment["name"]]["name"]
        located.add(location)
        args = deployment["dagsterApiGrpcArgs"]
        assert args[0] in ("-m", "--module-name") and len(args) == 2, args
        assert args[1] == MODULES[location] and _module_file(location, args[1]), args
        assert deployment["port"] == WORKSPACE_PORTS[location] == servers[deployment["name"]]["port"]
        assert {"repository", "tag", "pullPolicy"} <= set(deployment["image"])
        assert any(m["mountPath"] == "/data" for m in deployment["volumeMounts"])
        claims = {v["persistentVolumeClaim"]["claimName"] for v in deployment["volumes"]}
        assert claims == {"platform-data"}
        env = {e["name"]: e["value"] for e in deployment["env"]}
        assert env["WAREHOUSE_PATH"].startswith("/data/")
    assert located == set(MODULES)
    # the PostgreSQL password comes from a secret, never from this file
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    assert not values["postgresql"].get("postgresqlPassword")
    pvc = [m for m in user.get("extraManifests", []) if m["kind"] == "PersistentVolumeClaim"]
    assert pvc and pvc[0]["spec"]["accessModes"] == ["ReadWriteOnce"]


# --- lock files -------------------------------------------------------------------------------


def _uv_lock_versions() -> dict[str, set[str]]:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    versions: dict[str, set[str]] = {}
    for package in lock["package"]:
        if "version" in package:
            versions.setdefault(package["name"], set()).add(package["version"])
    return versions


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


@pytest.mark.parametrize("lock_file", DAGSTER_VERSION_FILES)
def test_lock_files_pin_the_dagster_of_uv_lock(lock_file):
    uv_versions = _uv_lock_versions()
    assert len(uv_versions["dagster"]) == 1, uv_versions["dagster"]
    pins = _pins(REPO / lock_file)
    assert pins.get("dagster") == next(iter(uv_versions["dagster"])), lock_file
    # and every other pin is a version uv.lock resolved (the file was exported or compiled from it)
    stray = {name: v for name, v in pins.items() if v not in uv_versions.get(name, set())}
    assert not stray, f"{lock_file} pins versions that uv.lock does not hold: {stray}"


def test_webserver_requirements_pin_what_the_webserver_needs():
    pins = _pins(DEPLOY / "requirements-webserver.txt")
    for name in ("dagster", "dagster-webserver", "dagster-graphql", "dagster-postgres"):
        assert name in pins, name
    lines = (DEPLOY / "requirements-webserver.txt").read_text()
    assert "-e " not in lines and "--hash=sha256:" in lines
