"""Teachers (foundation models) and the building blocks they share with students.

`TEACHERS` maps the names recipes use to builder functions `InputSpec → nn.Module`: the GEM
architecture in four sizes, and baselines: the skeleton teacher, a DCN-v2-style model and an MLP.
"""

from teacher.baselines import dcn_v2_teacher, mlp_teacher
from teacher.gem import gem_base, gem_large, gem_lite, gem_tiny
from teacher.skeleton import skeleton_small, skeleton_tiny

TEACHERS = {
    "gem_lite": gem_lite,
    "gem_tiny": gem_tiny,
    "gem_base": gem_base,
    "gem_large": gem_large,
    "skeleton_tiny": skeleton_tiny,
    "skeleton_small": skeleton_small,
    "dcn_v2": dcn_v2_teacher,
    "mlp": mlp_teacher,
}

__all__ = ["TEACHERS"]
