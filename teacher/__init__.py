"""Teachers (foundation models) and the building blocks they share with students.

`TEACHERS` maps the names recipes use to builder functions `InputSpec → nn.Module`.
"""

from teacher.skeleton import skeleton_small, skeleton_tiny

TEACHERS = {
    "skeleton_tiny": skeleton_tiny,
    "skeleton_small": skeleton_small,
}

__all__ = ["TEACHERS"]
