"""Vertical models (students): architectures and the built-in catalog of verticals."""

from students.mlp import MLP_VM_SIZES, mlp_vm
from students.verticals import ARCHITECTURES, CATALOG, DEFAULT_BUDGET

__all__ = ["ARCHITECTURES", "CATALOG", "DEFAULT_BUDGET", "MLP_VM_SIZES", "mlp_vm"]
