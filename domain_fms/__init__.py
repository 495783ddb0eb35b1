"""Domain foundation models for hierarchical transfer (teacher → domain FM → VMs).

`DOMAIN_FMS` maps the names recipes use (`domain_fms.model`) to builders `InputSpec → nn.Module`.
"""

from domain_fms.models import dfm_small, dfm_tiny

DOMAIN_FMS = {
    "dfm_tiny": dfm_tiny,
    "dfm_small": dfm_small,
}

__all__ = ["DOMAIN_FMS"]
