"""The resources of the ML location (its one module of resources)."""

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from platform_shared import Settings, build_warehouse

CHAMPION_FILE = "champion.json"


class ModelStore(dg.ConfigurableResource):
    """The folder of versioned model artifacts (MODEL_DIR).

    Layout, one folder per trained version, everything about a version beside it:
        <model_dir>/<model>/<version>/model.joblib     the fitted pipeline
                                     /info.json        training metadata, drift profile
                                     /backtest/<cut-off>.json, .png
                                                       one backtest fold: metrics, ROC plot
        <model_dir>/<model>/champion.json              the version that scores customers
    A plain folder is enough for one machine; a registry (MLflow...) would take its place
    in a larger deployment.
    """

    model_dir: str

    def folder(self, model: str) -> Path:
        return Path(self.model_dir) / model

    def save(self, model: str, fitted, info: dict) -> str:
        """Save a newly trained version; returns its version (UTC time, sortable)."""
        version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        folder = self.folder(model) / version
        folder.mkdir(parents=True)
        import joblib  # when a step runs: not needed to load the location

        joblib.dump(fitted, folder / "model.joblib")
        self.write(model, version, "info.json", {"version": version, **info})
        return version

    def versions(self, model: str) -> list[str]:
        root = self.folder(model)
        return sorted(p.name for p in root.iterdir() if (p / "model.joblib").exists()) if root.exists() else []

    def newest(self, model: str) -> str:
        versions = self.versions(model)
        if not versions:
            raise FileNotFoundError(f"No trained {model} in {self.folder(model)}: materialize the model first.")
        return versions[-1]

    def load(self, model: str, version: str):
        import joblib

        return joblib.load(self.folder(model) / version / "model.joblib")

    def read(self, model: str, version: str, name: str) -> dict:
        return json.loads((self.folder(model) / version / name).read_text())

    def write(self, model: str, version: str, name: str, data: dict | bytes) -> Path:
        path = self.folder(model) / version / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(json.dumps(data, indent=2, default=str))
        return path

    def backtest(self, model: str, version: str) -> dict[str, dict]:
        """The backtest folds evaluated for ``version``, by test cut-off."""
        folder = self.folder(model) / version / "backtest"
        return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}

    def champion(self, model: str) -> str | None:
        path = self.folder(model) / CHAMPION_FILE
        return json.loads(path.read_text())["version"] if path.exists() else None

    def promote(self, model: str, version: str, reason: str) -> None:
        # Written to a temporary file and renamed: a reader never sees half a pointer.
        path = self.folder(model) / CHAMPION_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": version, "reason": reason, "promoted_at": datetime.now(UTC).isoformat()}))
        tmp.replace(path)


def build_resources(settings: Settings) -> dict:
    return {
        "warehouse": build_warehouse(settings),
        "model_store": ModelStore(model_dir=str(settings.model_dir)),
    }
