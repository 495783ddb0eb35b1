"""The label loss every model trains with. Labels may be NaN where a task is missing for a row.
Each transfer technique's own loss term lives with it in `adapters/`."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the labelled entries. logits, labels: [B, T] (NaN = no label) → scalar."""
    known = ~torch.isnan(labels)
    if not known.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[known], labels[known])
