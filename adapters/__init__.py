"""The Student Adapter (design §8): corrects a producer's stale logits from the freshest labels."""

from adapters.student_adapter import StudentAdapter

__all__ = ["StudentAdapter"]
