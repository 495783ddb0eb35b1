"""The "scaled VM" teacher is the VM architecture itself, with one output per task: the reference a
teacher must not fall below."""

from __future__ import annotations

from students import mlp_vm
from students.mlp import scaled_vm_teacher
from transfer.catalog import catalog
from transfer.contract import InputSpec

INPUTS = InputSpec(n_categorical=5, n_dense=3, n_surfaces=4, n_tasks=2, hash_buckets=64,
                   categorical_names=("user_id", "ad_id", "ad_category", "age", "country"))


def test_the_scaled_vm_teacher_is_the_vm_with_an_output_per_task():
    sizes = catalog("teacher")["scaled_vm"].sizes
    teacher = scaled_vm_teacher(INPUTS, **sizes)
    vm = mlp_vm(INPUTS, **sizes)
    theirs, ours = teacher.state_dict(), vm.state_dict()
    assert theirs.keys() == ours.keys()
    differing = {key for key in ours if theirs[key].shape != ours[key].shape}
    assert differing == {"head.weight", "head.bias", "wide.weight"}
    assert theirs["head.weight"].shape[0] == theirs["wide.weight"].shape[0] == 2 == ours["head.weight"].shape[0] * 2
    assert teacher.history_length == 256 > mlp_vm(INPUTS, dim=8, history_length=16, hidden=[64, 32]).history_length
