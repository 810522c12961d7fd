"""Each code location loads alone, in a fresh interpreter, without importing another, and
without the libraries only its steps need (they cost seconds at each code server start)."""

import subprocess
import sys
from pathlib import Path

import pytest

from platform_shared.workspace import locations

MODULES = {loc.name: loc.package for loc in locations(Path(__file__).parents[1])}

_PROBE = """
import sys
from {module}.definitions import defs
d = defs()
keys = d.resolve_asset_graph().get_all_asset_keys()
others = sorted(m for m in sys.modules if m.split('.')[0] in {others!r})
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {heavy!r})
print(len(keys), others, heavy)
"""
# Imported when a step runs: dlt, pandas and pyarrow about 3 s here, scikit-learn 2.5 s.
STEP_ONLY = {"dlt", "pandas", "pyarrow", "connectorx", "sklearn", "joblib", "matplotlib"}


@pytest.mark.parametrize("location", sorted(MODULES))
def test_location_loads_alone_without_importing_another(location, platform):
    module = MODULES[location]
    others = set(MODULES.values()) - {module}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module, others=others, heavy=STEP_ONLY)],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, **platform.env},
    ).stdout.split()
    assert int(out[0]) > 0
    assert out[1:] == ["[]", "[]"]
