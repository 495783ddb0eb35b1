"""The transfer techniques at work on real models, batches and a real Lightning Trainer:
auxiliary-head gradients (β), export without training-only heads,
and parameter sharing (frozen parts stay bit-identical)."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch

from adapters import ConsumerShape, Trunk, scale_gradient
from adapters.distillation import Distillation
from adapters.representation import Representation
from adapters.sharing import SharingError, part_names, share_parts
from students import MLP_VM_SIZES, mlp_vm
from tests.conftest import write_dataset, write_recipe
from transfer.catalog import catalog
from transfer.config.recipe import TrainerConfig, load_recipe
from transfer.data.batches import WindowBatches, window_loader
from transfer.data.prepare import prepare_data
from transfer.training.module import RankingModule
from transfer.training.trainer import fit

TRAINER = TrainerConfig(max_epochs=1, progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory, small_log):
    folder = tmp_path_factory.mktemp("techniques")
    return prepare_data(load_recipe(write_recipe(folder, write_dataset(folder, small_log))).data)


def _batch(data, model, n=64, embedding_dim=None) -> dict[str, torch.Tensor]:
    rows = data.train_rows[:n]
    extras = {"soft_logits": torch.randn(len(rows), 1)}
    if embedding_dim:
        extras["teacher_embedding"] = torch.randn(len(rows), embedding_dim).half()
    return WindowBatches(data.log, rows, model.history_length, extras)[torch.arange(len(rows))]


def _built(techniques, model, n_surfaces: int = 5, producer_dim: int = 8):
    """`techniques` with their parameters created (distillation heads, then heads) for `model`."""
    shape = ConsumerShape(model.embedding_dim, 1, producer_dim, n_surfaces)
    for hook in ("distill_heads", "heads"):
        for technique in techniques:
            getattr(technique, hook)(shape)
    return techniques


def test_scale_gradient_is_identity_forward_and_scales_backward():
    x = torch.randn(5, 3, requires_grad=True)
    y = scale_gradient(x, 0.25)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 0.25))


@pytest.mark.parametrize("beta", [0.0, 0.3, 2.0])
def test_beta_scales_the_trunk_gradient_not_the_head_gradient(beta):
    torch.manual_seed(0)
    technique = Distillation(1.0, auxiliary=True)
    technique.distill_heads(ConsumerShape(8, 1, 8, 5))
    hidden = torch.randn(16, 8)
    batch = {"soft_logits": torch.randn(16, 1)}
    grads = []
    for scale in (1.0, beta):
        technique.zero_grad()
        trunk_out = hidden.clone().requires_grad_(True)
        technique.loss(torch.zeros(16, 1), Trunk(trunk_out, scale_gradient(trunk_out, scale)), batch)["distill"].backward()
        grads.append((trunk_out.grad, technique.head.weight.grad.clone()))
    (trunk_1, head_1), (trunk_b, head_b) = grads
    assert torch.allclose(trunk_b, beta * trunk_1)
    assert torch.equal(head_b, head_1)


def test_auxiliary_head_keeps_soft_labels_off_the_serving_head(data):
    torch.manual_seed(0)
    model = mlp_vm(data.log.inputs, **MLP_VM_SIZES["xs"])
    (distill,) = _built([Distillation(1.0, auxiliary=True)], model)
    module = RankingModule(model, ["click"], [0], 1e-3, [distill])
    batch = _batch(data, model)
    batch["labels"] = torch.full_like(batch["labels"], float("nan"))  # no true labels: only the KD term
    loss, parts = module.model_loss(batch, batch["labels"][:, [0]])
    loss.backward()
    assert set(parts) == {"label", "distill"}
    assert model.output_layer().weight.grad is None or not model.output_layer().weight.grad.any()
    assert distill.head.weight.grad.abs().sum() > 0
    assert model.trunk[0].weight.grad.abs().sum() > 0  # the trunk learns from the soft labels


def test_export_drops_the_projection_head(data):
    torch.manual_seed(0)
    plain = mlp_vm(data.log.inputs, **MLP_VM_SIZES["xs"])
    aligned = copy.deepcopy(plain)
    teacher_dim = 24
    techniques = _built([Representation(1.0, "infonce")], aligned, producer_dim=teacher_dim)
    module = RankingModule(aligned, ["click"], [0], 1e-2, techniques)
    rows = data.train_rows
    extras = {"soft_logits": torch.randn(len(rows), 1), "teacher_embedding": torch.randn(len(rows), teacher_dim).half()}
    fit(module, window_loader(WindowBatches(data.log, rows, aligned.history_length, extras), 128, True), TRAINER, 1, False)

    exported = module.export()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(exported) == count(plain) < count(module)
    assert [k for k in exported.state_dict()] == [k for k in plain.state_dict()]
    batch = _batch(data, exported)
    exported.eval()
    module.eval()
    assert torch.equal(exported(batch).logits, module(batch).logits)
    assert not torch.equal(exported(batch).logits, plain.eval()(batch).logits)  # it did train


def test_frozen_shared_parts_stay_bit_identical_through_training(data):
    torch.manual_seed(0)
    teacher = catalog("teacher")["skeleton_tiny"].build(data.log.inputs)
    vm = mlp_vm(data.log.inputs, **MLP_VM_SIZES["s"])
    share_parts(teacher, vm, ["embeddings.ad_id", "events.context"], freeze=True)
    imported_ad = vm.features.imported[str(vm.feature_names.index("ad_id"))].table.weight.clone()
    imported_context = vm.events.context.table.weight.clone()
    projection = vm.features.imported[str(vm.feature_names.index("ad_id"))].project.weight.clone()
    assert torch.equal(imported_ad, teacher.features.export_table(1))
    module = RankingModule(vm, ["click"], [0], 1e-2)
    loader = window_loader(WindowBatches(data.log, data.train_rows, vm.history_length), 128, True)
    fit(module, loader, TrainerConfig(max_epochs=2, progress=False), 2, False)
    assert torch.equal(vm.features.imported["1"].table.weight, imported_ad)
    assert torch.equal(vm.events.context.table.weight, imported_context)
    assert not torch.equal(vm.features.imported["1"].project.weight, projection)  # the projection learns


def test_unfrozen_shared_parts_fine_tune(data):
    torch.manual_seed(0)
    teacher = catalog("teacher")["skeleton_tiny"].build(data.log.inputs)
    vm = mlp_vm(data.log.inputs, **MLP_VM_SIZES["m"])  # same width as the teacher: pooling fits as is
    share_parts(teacher, vm, ["history.pooling", "embeddings.user_id"], freeze=False)
    assert torch.equal(vm.pooling.query.weight, teacher.pooling.query.weight)
    module = RankingModule(vm, ["click"], [0], 1e-2)
    fit(module, window_loader(WindowBatches(data.log, data.train_rows, vm.history_length), 128, True), TRAINER, 1, False)
    assert not torch.equal(vm.pooling.query.weight, teacher.pooling.query.weight)


def test_sharing_refuses_unknown_and_unfitting_parts(data):
    teacher = catalog("teacher")["skeleton_tiny"].build(data.log.inputs)
    vm = mlp_vm(data.log.inputs, **MLP_VM_SIZES["s"])
    with pytest.raises(SharingError, match="no part 'embeddings.zip'.*embeddings.ad_id.*events.context"):
        share_parts(teacher, vm, ["embeddings.zip"], freeze=True)
    with pytest.raises(SharingError, match="consumer.*no part 'history.event_mlp'"):
        share_parts(teacher, vm, ["history.event_mlp"], freeze=True)
    with pytest.raises(SharingError, match="'history.pooling' cannot fit.*shapes differ"):
        share_parts(teacher, vm, ["history.pooling"], freeze=True)
    assert "embeddings.country" in part_names(vm)


def test_sharing_keeps_the_consumer_deterministic(data):
    outputs = []
    for _ in range(2):
        L.seed_everything(5, verbose=False)
        teacher = catalog("teacher")["skeleton_tiny"].build(data.log.inputs)
        vm = mlp_vm(data.log.inputs, **MLP_VM_SIZES["s"])
        share_parts(teacher, vm, ["embeddings.ad_category"], freeze=False)
        outputs.append(vm.eval()(_batch(data, vm)).logits)
    assert torch.equal(*outputs)


def test_the_vanilla_kd_reference_keeps_only_serving_head_distillation_at_the_stages_weight():
    from dataclasses import replace

    from adapters import enabled, is_vanilla_kd, vanilla_kd
    from adapters.distillation import DistillationConfig
    from adapters.representation import RepresentationConfig
    from adapters.sharing import SharingConfig
    from adapters.student_adapter import AdapterConfig
    from transfer.config.recipe import StageConfig

    full = StageConfig(distillation=DistillationConfig(weight=2.0, head="auxiliary", label_scale=1.5, grad_scale=2.0),
                       representation=RepresentationConfig(weight=1.0), sharing=SharingConfig(modules=["events.context"]),
                       adapter=AdapterConfig(enabled=True))
    reference = vanilla_kd(full)
    assert list(enabled(reference)) == ["distillation"] and reference.distillation == DistillationConfig(weight=2.0, head="serving")
    assert is_vanilla_kd(reference) and not is_vanilla_kd(full) and is_vanilla_kd(StageConfig())
    assert not is_vanilla_kd(replace(StageConfig(), representation=RepresentationConfig(weight=0.1)))
    assert vanilla_kd(replace(full, distillation=DistillationConfig(weight=0.0))).distillation.weight == 1.0  # no KD: the standard weight
    assert not is_vanilla_kd(replace(StageConfig(), distillation=DistillationConfig(weight=0.0)))  # no transfer is not vanilla KD


def test_every_technique_field_of_the_recipe_has_its_module_and_every_module_its_field():
    """The recipe's `StageConfig` (torch-free) and `adapters.TECHNIQUES` name the same techniques, in the
    same order, each module re-exporting the config type the field holds."""
    from dataclasses import fields

    from adapters import TECHNIQUES
    from transfer.config.recipe import StageConfig
    from transfer.config.validate import TECHNIQUE_FIELDS

    assert list(TECHNIQUES) == TECHNIQUE_FIELDS
    config_types = {f.name: f.default_factory for f in fields(StageConfig) if f.name in TECHNIQUE_FIELDS}  # each field's class
    for name, module in TECHNIQUES.items():
        assert getattr(module, config_types[name].__name__) is config_types[name]
