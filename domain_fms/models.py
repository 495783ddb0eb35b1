"""Domain foundation models: medium-sized multi-task models, one per domain (e.g. per platform).

A domain FM learns its domain's surfaces and every task, with transfer from the teacher, and then
produces knowledge for its domain's VMs (hierarchical transfer, design §8). Its architecture is the
skeleton teacher's, sized between the teacher and the VMs.
"""

from __future__ import annotations

from teacher.skeleton import SkeletonTeacher, skeleton_model
from transfer.encoding import InputSpec


def dfm_tiny(inputs: InputSpec) -> SkeletonTeacher:
    """12-dim embeddings, 64-event history, hidden 96 → 32. Tests."""
    return _domain_fm(inputs, dim=12, history_length=64, hidden=[96, 32])


def dfm_small(inputs: InputSpec) -> SkeletonTeacher:
    """16-dim embeddings, 128-event history, hidden 192 → 64: the default domain FM."""
    return _domain_fm(inputs, dim=16, history_length=128, hidden=[192, 64])


def _domain_fm(inputs: InputSpec, *, dim: int, history_length: int, hidden: list[int]) -> SkeletonTeacher:
    return skeleton_model(inputs, dim=dim, history_length=history_length, hidden=hidden, heads=2, recent=8)
