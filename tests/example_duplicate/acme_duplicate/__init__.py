"""Declares `ig_stories_click`, a name the built-in catalog already has."""

from transfer.contract import ModelEntry

VERTICALS = [ModelEntry("ig_stories_click", "students.mlp:mlp_vm", {"dim": 4, "history_length": 4, "hidden": [8]},
                        surfaces=("ig_stories",), task="click", owner="someone-else")]
