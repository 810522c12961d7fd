"""What every code location shares, applied in one place: each location's
``definitions.py`` loads its ``defs/`` folder and hands it to ``location_definitions``."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from .alerts import alert_sensors
from .automation import automation_sensor
from .warehouse import RUN_EXECUTOR


def location_definitions(location: str, package: Path, *, resources: dict, automated: bool) -> dg.Definitions:
    """The definitions of the defs/ folder of ``package`` (the location's root module),
    with the run executor, the location's resources, its alert sensors and, for a location
    whose assets have automation conditions (``automated``), its automation sensor
    (Dagster's default one starts stopped and would evaluate nothing)."""
    defs = dg.load_from_defs_folder(path_within_project=package)
    sensors = [*([automation_sensor(location)] if automated else []), *alert_sensors(location)]
    return dg.Definitions.merge(defs, dg.Definitions(executor=RUN_EXECUTOR, resources=resources, sensors=sensors))
