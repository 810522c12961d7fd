"""Start the real Dagster webserver on workspace.yaml and wait until every location loaded.

Used by `make check`, `make impact` (when no webserver is running) and the tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from platform_shared.lineage import GraphUnavailable, graphql

REPO = Path(__file__).resolve().parents[1]

_LOCATIONS_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus
} } } }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Generous: loading is import-bound CPU work, and a loaded 2-core CI machine was seen to need
# more than 180 s. A location that fails to load reports it at once; only a hang waits this.
LOAD_TIMEOUT = 600


@contextlib.contextmanager
def one_load_at_a_time() -> Iterator[None]:
    """Hold a machine-wide lock while a workspace loads: two loads at once on 2 cores each
    take more than twice as long (the suite's workers start servers side by side)."""
    with open(Path(tempfile.gettempdir()) / "platform-workspace-load.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def wait_for_locations(url: str, proc: subprocess.Popen, log: Path, timeout: float = LOAD_TIMEOUT) -> None:
    """Return once every location has finished loading (successfully or not)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the webserver exited ({proc.returncode}): {log.read_text()[-3000:]}")
        with contextlib.suppress(GraphUnavailable):
            entries = graphql(url, _LOCATIONS_QUERY, timeout=10)["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        time.sleep(0.5)
    raise TimeoutError(f"the webserver did not load the workspace in {timeout:.0f}s: see {log}")


def stop(proc: subprocess.Popen, grace: float = 20) -> None:
    """Signal the whole process group (code servers too), wait a bounded time, then kill."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@contextlib.contextmanager
def webserver(
    workspace: Path = REPO / "workspace.yaml", env: dict | None = None, log: Path | None = None
) -> Iterator[str]:
    """Yield the URL of a webserver that has loaded ``workspace`` (settings from ``env``)."""
    port = free_port()
    with contextlib.ExitStack() as stack:
        if log is None:
            log = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "webserver.log"
        out = stack.enter_context(open(log, "w"))
        loading = stack.enter_context(contextlib.ExitStack())
        loading.enter_context(one_load_at_a_time())
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dagster-webserver"),
                "-w",
                str(workspace),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stack.callback(stop, proc)
        url = f"http://127.0.0.1:{port}"
        wait_for_locations(url, proc, log)
        loading.close()
        yield url


@contextlib.contextmanager
def dagster_dev(env: dict, log: Path, workspace: Path | None = REPO / "workspace.yaml") -> Iterator[str]:
    """`dagster dev` (webserver and daemon) with settings ``env`` (this environment's bin
    first on PATH, DAGSTER_WEBSERVER_URL set) on ``workspace``; without one, `dg dev` on
    dg.toml's workspace, as `make dev` runs it (each location from its own environment).
    Yields its URL once every location loaded, stops the whole process group after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    full = {**os.environ, **env, "DAGSTER_WEBSERVER_URL": url, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    with open(log, "a") as out, contextlib.ExitStack() as loading:
        loading.enter_context(one_load_at_a_time())
        proc = subprocess.Popen(
            [str(bin_dir / "dagster"), "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)]
            if workspace
            else [str(bin_dir / "dg"), "dev", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_locations(url, proc, log)
            loading.close()
            yield url
        finally:
            stop(proc)
