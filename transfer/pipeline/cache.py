"""Content-addressed stage outputs: a finished stage is found again by its key (`transfer.pipeline.keys`).

A trained model (weights + the MLflow run that trained it) and a knowledge table are stored under
`<output_dir>/stages/<kind>-<digest>/`, written atomically, with the sha256 of every file they hold,
so reruns and recipes that differ only downstream (another technique, another VM) reuse them
instead of training again — and a file changed or damaged since it was written is never reused.
While a stage is being built its folder is locked: a second run that needs the same stage waits,
then reuses it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from transfer.data.cache import checksum_matches, write_checksum  # noqa: F401  (re-exported: the stage cache's rule)
from transfer.data.cache import sha256 as file_digest
from transfer.pipeline.keys import StageKey
from transfer.util.atomic import atomic_path, write_text_atomic
from transfer.util.locks import file_lock


class StageCache:
    def __init__(self, root: Path):
        self.root = root

    def folder(self, key: StageKey) -> Path:
        return self.root / key.name

    def load_model(self, folder: Path, model: torch.nn.Module) -> dict | None:
        """Load cached weights into `model`; → the stored metadata, or None when not cached. Weights
        whose checksum does not match, or that do not load, are reported and trained again."""
        weights, meta_file = folder / "model.pt", folder / "meta.json"
        if not (weights.is_file() and meta_file.is_file()):
            return None
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            return _damaged(meta_file, "its metadata does not parse")
        if meta.get("sha256") != file_digest(weights):
            return _damaged(weights, "its checksum does not match the one stored when it was written")
        try:
            model.load_state_dict(torch.load(weights, weights_only=True))
        except (RuntimeError, OSError, EOFError, ValueError) as exc:  # another architecture or a damaged file
            return _damaged(weights, f"it does not load ({type(exc).__name__})")
        return meta

    def finished_run(self, folder: Path) -> str | None:
        """The id of the run that trained the model in `folder` when its weights are there and match
        their checksum (what `load_model` would reuse); None otherwise. Reads only."""
        weights, meta_file = folder / "model.pt", folder / "meta.json"
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            return None
        if not weights.is_file() or meta.get("sha256") != file_digest(weights):
            return None
        return meta.get("run_id")

    def forget(self, folder: Path) -> None:
        """Make the model in `folder` not cached (its metadata removed): the next run trains it again."""
        (folder / "meta.json").unlink(missing_ok=True)

    def save_model(self, folder: Path, model: torch.nn.Module, meta: dict) -> None:
        state = model.state_dict()
        with atomic_path(folder / "model.pt", needed_bytes=sum(t.numel() * t.element_size() for t in state.values())) as tmp:
            torch.save(state, tmp)
            digest = file_digest(tmp)
        write_text_atomic(folder / "meta.json", json.dumps({**meta, "sha256": digest}, indent=2))


def _damaged(path: Path, why: str) -> None:
    print(f"  ! {path}: {why}; training again", flush=True)
    return None


def stage_lock(folder: Path, label: str):
    """`folder`'s build lock (`<stages>/.locks/<folder>.lock`), held for a block; another process
    building the same stage waits for it (and then finds the stage finished)."""
    locks = folder.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    return file_lock(locks / f"{folder.name}.lock", lambda holder: print(f"  waiting for {holder}, which is building {label} ({folder.name})", flush=True))
