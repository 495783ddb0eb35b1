"""Acme's entries: one VM within budget, one whose budget no model can meet."""

from transfer.contract import ModelEntry, ServingBudget

VERTICALS = [
    ModelEntry("acme_stories_click", "acme_verticals.models:acme_vm", {"dim": 4, "hidden": [16]}, surfaces=("ig_stories",),
               task="click", owner="acme-ads", budget=ServingBudget(max_params=1_000_000, max_p99_ms=1_000.0),
               description="Acme's stories click VM"),
    ModelEntry("acme_strict_click", "acme_verticals.models:acme_vm", {"dim": 4, "hidden": [16]}, surfaces=("ig_stories",),
               task="click", owner="acme-ads", budget=ServingBudget(max_params=100, max_p99_ms=0.000001),
               description="Acme's VM with an impossible budget"),
]
