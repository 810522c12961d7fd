"""No secret in the repository; the UI binds to localhost unless told otherwise."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Each pattern is split so that this file does not match itself.
PATTERNS = {
    "private key": re.compile("-----BEGIN " + r"(RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"),
    "AWS access key": re.compile("AKI" + r"A[0-9A-Z]{16}"),
    "GitHub token": re.compile("gh" + r"[pousr]_[A-Za-z0-9]{36}"),
    "Slack token": re.compile("xo" + r"x[abprs]-[A-Za-z0-9-]{10,}"),
    # A URL with an inline password that is not a ${VARIABLE} or an obvious placeholder.
    "password in a URL": re.compile(r"[a-z0-9+]+://[^/\s:@'\"]+:(?!\$\{|<|\*\*\*|password@|pass@|x@)[^@\s/'\"{}]+@"),
    "password assignment": re.compile(
        r"""(?i)\b(password|passwd|secret|api_key|token)\s*[:=]\s*["'][^"'${}\s]{6,}["']"""
    ),
}


def _tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    files = []
    for name in filter(None, names):
        path = REPO / name
        if path.is_file() and b"\0" not in path.read_bytes()[:4096]:
            files.append(path)
    return files


def test_no_secret_is_committed():
    files = _tracked_text_files()
    assert len(files) > 50
    found = [
        f"{path.relative_to(REPO)}:{number}: {kind}"
        for path in files
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        for kind, pattern in PATTERNS.items()
        if pattern.search(line)
    ]
    assert found == []


def test_the_scan_finds_what_it_looks_for():
    samples = {
        "private key": "-----BEGIN " + "RSA PRIVATE KEY-----",
        "password in a URL": "postgresql://dagster:" + "hunter2secret@db:5432/dagster",
        "password assignment": "password = " + "'hunter2secret'",
    }
    for kind, sample in samples.items():
        assert PATTERNS[kind].search(sample), kind
    assert not PATTERNS["password in a URL"].search("postgresql://${DAGSTER_PG_USER}:${DAGSTER_PG_PASSWORD}@db/x")


def test_the_ui_binds_to_localhost_by_default():
    dry_run = subprocess.run(["make", "-n", "dev"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "dg dev --host 127.0.0.1 --port 3000" in dry_run
