"""Domain foundation models for hierarchical transfer (teacher → domain FM → VMs).

A domain FM learns its domain's surfaces and every task, with transfer from the teacher, and then
produces knowledge for its domain's VMs (design §8). The built-ins use the skeleton teacher's
architecture, sized between the teacher and the VMs. `CATALOG` declares those recipes name
(`domain_fms.model`); packages add more through the `gem_transfer.domain_fms` entry point.
"""

from transfer.contract import ModelEntry

_SKELETON = "teacher.skeleton:skeleton_model"

CATALOG = [
    ModelEntry("dfm_tiny", _SKELETON, {"dim": 12, "history_length": 64, "hidden": [96, 32], "heads": 2, "recent": 8},
               description="12-dim, 64 events, hidden 96 → 32: tests"),
    ModelEntry("dfm_small", _SKELETON, {"dim": 16, "history_length": 128, "hidden": [192, 64], "heads": 2, "recent": 8},
               description="16-dim, 128 events, hidden 192 → 64: the default domain FM"),
]

__all__ = ["CATALOG"]
