"""Content-addressed stage outputs: a finished stage is found again by the hash of what made it.

A trained producer (weights + the MLflow run that trained it) and its knowledge tables are stored
under `<output_dir>/stages/<kind>-<hash>/`, written atomically, so reruns and recipes that differ
only downstream (another technique, another VM) reuse them instead of training again.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import torch

from transfer.atomic import atomic_path, write_text_atomic
from transfer.fingerprint import fingerprint

STAGE_CACHE_VERSION = 2  # bump when what a stage produces changes meaning


def source_fingerprint(package: ModuleType) -> str:
    """A hash of a package's Python sources: a cached model is reused only by the code that made it."""
    files = sorted(Path(package.__file__).parent.glob("*.py"))
    return fingerprint({f.name: f.read_text() for f in files})


class StageCache:
    def __init__(self, root: Path):
        self.root = root

    def folder(self, kind: str, key: dict) -> Path:
        return self.root / f"{kind}-{fingerprint({'v': STAGE_CACHE_VERSION, **key})}"

    def load_model(self, folder: Path, model: torch.nn.Module) -> dict | None:
        """Load cached weights into `model`; → the stored metadata, or None when not cached (or unreadable)."""
        weights, meta = folder / "model.pt", folder / "meta.json"
        if not (weights.is_file() and meta.is_file()):
            return None
        try:
            model.load_state_dict(torch.load(weights, weights_only=True))
        except (RuntimeError, OSError, EOFError):  # another architecture or a damaged file: train again
            return None
        return json.loads(meta.read_text())

    def save_model(self, folder: Path, model: torch.nn.Module, meta: dict) -> None:
        with atomic_path(folder / "model.pt") as tmp:
            torch.save(model.state_dict(), tmp)
        write_text_atomic(folder / "meta.json", json.dumps(meta, indent=2))
