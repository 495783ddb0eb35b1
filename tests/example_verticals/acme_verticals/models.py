"""Acme's builder: typed sizes in, a model out."""

from students.mlp import MLPVerticalModel, mlp_vm
from transfer.contract import InputSpec


def acme_vm(inputs: InputSpec, *, dim: int, hidden: list[int]) -> MLPVerticalModel:
    """A small MLP VM over the last 4 events."""
    return mlp_vm(inputs, dim=dim, history_length=4, hidden=hidden)
