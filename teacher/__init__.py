"""Teachers (foundation models) and the building blocks they share with students.

`CATALOG` declares the built-in teachers recipes name (`teacher.model`): the GEM architecture in four
sizes, and baselines — the skeleton teacher, a DCN-v2-style model and an MLP. Each is a builder with
typed sizes; a recipe overrides sizes by key (`teacher.sizes`). Packages add more teachers through
the `gem_transfer.teachers` entry point (see `transfer.catalog`).
"""

from dataclasses import asdict

from teacher.gem import GEM_SIZES
from transfer.contract import ModelEntry

_GEM_USES = {
    "gem_lite": "1 interleaving layer, 16-dim, 128 events: fast exploration runs",
    "gem_tiny": "2 interleaving layers, 16-dim, 256 events: tests and the GEM recipes",
    "gem_base": "2 interleaving layers, 32-dim, 512 events: this machine's benchmarks",
    "gem_large": "6 interleaving layers, 128-dim, 8,192 events: accelerator scale",
}
_BASELINE = "teacher.baselines:baseline_teacher"

CATALOG = [
    *(ModelEntry(name, "teacher.gem:gem_model", asdict(GEM_SIZES[name]), description=f"GEM: {use}") for name, use in _GEM_USES.items()),
    ModelEntry("skeleton_tiny", "teacher.skeleton:skeleton_model", {"dim": 16, "history_length": 256, "hidden": [256, 64]},
               description="skeleton (target attention + match counts + MLP), 16-dim, 256 events: the quickstart teacher"),
    ModelEntry("skeleton_small", "teacher.skeleton:skeleton_model", {"dim": 32, "history_length": 1024, "hidden": [512, 256, 64]},
               description="skeleton, 32-dim, 1,024 events"),
    ModelEntry("dcn_v2", _BASELINE, {"dim": 16, "history_length": 256, "hidden": [256, 64], "cross_layers": 3},
               description="baseline: DCN-v2, 3 cross layers beside an MLP 256 → 64; 256 events mean-pooled"),
    ModelEntry("mlp", _BASELINE, {"dim": 16, "history_length": 256, "hidden": [256, 64], "cross_layers": 0},
               description="baseline: MLP 256 → 64 over features and 256 events mean-pooled"),
    ModelEntry("scaled_vm", "students.mlp:scaled_vm_teacher", {"dim": 8, "history_length": 256, "hidden": [64, 32]},
               description="reference: the default VM's architecture and widths with one output per task and 256 events, "
                           "on the teacher's data and window — a teacher should know more than this"),
    ModelEntry("counts_mlp", _BASELINE, {"dim": 16, "history_length": 256, "hidden": [256, 64], "cross_layers": 0, "match_counts": True},
               description="baseline: the MLP plus the target-match counts of its 256 events — what counting, without order, gives"),
]

__all__ = ["CATALOG"]
