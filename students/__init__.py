"""Vertical models (students): architectures and the built-in catalog of verticals."""

from students.mlp import MLP_VM_SIZES, mlp_vm
from students.verticals import CATALOG, DEFAULT_BUDGET

__all__ = ["CATALOG", "DEFAULT_BUDGET", "MLP_VM_SIZES", "mlp_vm"]
