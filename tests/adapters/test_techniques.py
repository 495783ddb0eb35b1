"""The transfer techniques at work on real models, batches and a real Lightning Trainer:
auxiliary-head gradients (β), export without training-only heads,
and parameter sharing (frozen parts stay bit-identical)."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch

from adapters import distillation
from adapters.distillation import DistillationConfig
from adapters.representation import RepresentationConfig
from adapters.sharing import SharingError, part_names, share_parts
from adapters.technique import ConsumerShape, Step, scale_gradient
from students import MLP_VM_SIZES, mlp_vm
from tests.conftest import write_dataset, write_recipe
from transfer.catalog import catalog
from transfer.config.loader import load_recipe
from transfer.config.recipe import StageConfig, TrainerConfig
from transfer.data.batches import WindowBatches, window_loader
from transfer.data.prepare import prepare_data
from transfer.training.module import RankingModule
from transfer.training.techniques import StageTechniques
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


def _techniques(model, producer_dim: int = 8, **stage) -> StageTechniques:
    """The techniques of a stage with these `StageConfig` fields, built onto `model` (its own producer)."""
    return StageTechniques(StageConfig(**stage), model, model, ConsumerShape(model.embedding_dim, 1, producer_dim, 5))


def test_scale_gradient_is_identity_forward_and_scales_backward():
    x = torch.randn(5, 3, requires_grad=True)
    y = scale_gradient(x, 0.25)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 0.25))


@pytest.mark.parametrize("beta", [0.0, 0.3, 2.0])
def test_beta_scales_the_trunk_gradient_not_the_head_gradient(beta):
    torch.manual_seed(0)
    auxiliary = lambda scale: StageConfig(distillation=DistillationConfig(head="auxiliary", grad_scale=scale))  # noqa: E731
    heads = distillation.distill_heads(auxiliary(1.0), ConsumerShape(8, 1, 8, 5))
    hidden = torch.randn(16, 8)
    batch = {"soft_logits": torch.randn(16, 1)}
    grads = []
    for scale in (1.0, beta):
        heads["auxiliary"].zero_grad()
        trunk_out = hidden.clone().requires_grad_(True)
        distillation.loss(auxiliary(scale), heads, Step(torch.zeros(16, 1), trunk_out, batch))["distill"].backward()
        grads.append((trunk_out.grad, heads["auxiliary"].weight.grad.clone()))
    (trunk_1, head_1), (trunk_b, head_b) = grads
    assert torch.allclose(trunk_b, beta * trunk_1)
    assert torch.equal(head_b, head_1)


def test_auxiliary_head_keeps_soft_labels_off_the_serving_head(data):
    torch.manual_seed(0)
    model = mlp_vm(data.log.inputs, **MLP_VM_SIZES["xs"])
    techniques = _techniques(model, distillation=DistillationConfig(head="auxiliary"))
    module = RankingModule(model, ["click"], [0], 1e-3, techniques)
    batch = _batch(data, model)
    batch["labels"] = torch.full_like(batch["labels"], float("nan"))  # no true labels: only the KD term
    loss, parts = module.model_loss(batch, batch["labels"][:, [0]])
    loss.backward()
    assert set(parts) == {"label", "distill"}
    assert model.output_layer().weight.grad is None or not model.output_layer().weight.grad.any()
    assert techniques.distill["distillation"]["auxiliary"].weight.grad.abs().sum() > 0
    assert model.trunk[0].weight.grad.abs().sum() > 0  # the trunk learns from the soft labels


def test_distillation_heads_start_at_the_base_rate_and_every_head_is_trained(data):
    model = mlp_vm(data.log.inputs, **MLP_VM_SIZES["xs"])
    techniques = _techniques(model, distillation=DistillationConfig(head="auxiliary"), representation=RepresentationConfig(weight=1.0))
    module = RankingModule(model, ["click"], [0], 1e-3, techniques, base_rates=torch.tensor([0.2]))
    assert [head.bias.item() for head in techniques.prior_heads()] == pytest.approx([torch.logit(torch.tensor(0.2)).item()])
    stepped = {id(p) for group in module.configure_optimizers().param_groups for p in group["params"]}
    assert all(id(p) in stepped for p in techniques.parameters())  # the projection head and the auxiliary head


def test_export_drops_the_projection_head(data):
    torch.manual_seed(0)
    plain = mlp_vm(data.log.inputs, **MLP_VM_SIZES["xs"])
    aligned = copy.deepcopy(plain)
    teacher_dim = 24
    techniques = _techniques(aligned, producer_dim=teacher_dim, representation=RepresentationConfig(weight=1.0, loss="infonce"))
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
    assert [t.KEY for t in enabled(reference)] == ["distillation"] and reference.distillation == DistillationConfig(weight=2.0, head="serving")
    assert is_vanilla_kd(reference) and not is_vanilla_kd(full) and is_vanilla_kd(StageConfig())
    assert not is_vanilla_kd(replace(StageConfig(), representation=RepresentationConfig(weight=0.1)))
    assert vanilla_kd(replace(full, distillation=DistillationConfig(weight=0.0))).distillation.weight == 1.0  # no KD: the standard weight
    assert not is_vanilla_kd(replace(StageConfig(), distillation=DistillationConfig(weight=0.0)))  # no transfer is not vanilla KD


def test_every_technique_field_of_the_recipe_has_its_module_and_every_module_its_field():
    """The recipe's `StageConfig` (torch-free) has a field per technique module, holding its `Config`."""
    from dataclasses import fields

    from adapters import TECHNIQUES
    from transfer.config.validate import TECHNIQUE_FIELDS

    assert [t.KEY for t in TECHNIQUES] == TECHNIQUE_FIELDS == ["distillation", "embedding_features", "representation", "sharing", "adapter"]
    config_types = {f.name: f.default_factory for f in fields(StageConfig)}
    assert [name for name in config_types if name not in TECHNIQUE_FIELDS] == ["producer", "consumers"]
    for technique in TECHNIQUES:
        assert config_types[technique.KEY] is technique.Config


def test_the_engine_names_no_technique():
    """No module of `transfer/` imports a technique's module or reads a technique's field of a stage:
    it reaches them only through `adapters` (the registry) and `adapters.technique` (the protocol)."""
    import ast

    from adapters import TECHNIQUES
    from tests.conftest import REPO

    modules = {t.__name__ for t in TECHNIQUES}
    keys = {t.KEY for t in TECHNIQUES}
    found = []
    for path in sorted((REPO / "transfer").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module in modules or any(f"{node.module}.{a.name}" in modules for a in node.names)):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} imports {node.module}")
            elif isinstance(node, ast.Import) and any(a.name in modules for a in node.names):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} imports a technique module")
            elif isinstance(node, ast.Attribute) and node.attr in keys:
                found.append(f"{path.relative_to(REPO)}:{node.lineno} reads .{node.attr}")
    assert found == []


TOY_TECHNIQUE = '''
"""A toy technique: pull the serving logit toward zero, with weight `pull`."""
from dataclasses import dataclass

from adapters.technique import Knob
from transfer.util.checks import check_non_negative

KEY = "toy"


@dataclass
class ToyConfig:
    pull: float = 0.0  # 0 turns it off

    def check(self, key, window_days):
        check_non_negative(f"{key}.pull", self.pull)


Config = ToyConfig


def enabled(stage): return stage.toy.pull > 0
def tag(stage): return "toy"
def reference(stage): return ToyConfig()
def columns(stage): return ()
def knobs(stage): return [Knob("toy.pull", 0.01, 1.0)]
def loss(stage, heads, step): return {"toy": stage.toy.pull * step.serving_logits.pow(2).mean()}
'''

TOY_SCRIPT = """
import json, sys
import torch
from transfer.cli import main
from transfer.config.loader import load_recipe
recipe_path = sys.argv[1]
bad = main(["validate", recipe_path, "transfer.stages.0.toy.pull=-1"])
recipe = load_recipe(recipe_path, ["transfer.stages.0.toy.pull=0.5"])
stage = recipe.transfer.stages[0]
import adapters
from adapters.technique import ConsumerShape
from students import MLP_VM_SIZES, mlp_vm
from transfer.config.dataset import dataset_config_path, inputs_of, load_dataset_config
from transfer.training.techniques import StageTechniques
model = mlp_vm(inputs_of(load_dataset_config(dataset_config_path("synthetic"))), **MLP_VM_SIZES["xs"])
built = StageTechniques(stage, model, model, ConsumerShape(model.embedding_dim, 1, 8, 5))
parts = built.loss(torch.full((4, 1), 2.0), torch.zeros(4, model.embedding_dim), {"soft_logits": torch.zeros(4, 1)})
print(json.dumps({"bad": bad, "tag": adapters.techniques_tag(stage), "knobs": [k.key for k in adapters.knobs(stage)],
                  "toy": parts["toy"].item(), "terms": sorted(parts)}))
"""


def test_a_new_technique_is_one_module(tmp_path):
    """Dropping one module into `adapters/` (a copy of the repository's packages) gives recipes its
    knobs, checked before training, its tag, its tuning space and its loss term in the training step."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    from tests.conftest import REPO, time_limit

    for package in ("transfer", "adapters", "teacher", "students", "domain_fms"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "adapters" / "toy.py").write_text(TOY_TECHNIQUE)
    recipe = tmp_path / "toy.yaml"
    recipe.write_text("name: toy\nstudents: [{vertical: ig_stories_click}]\ntransfer: {stages: [{producer: teacher, consumers: students}]}\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", TOY_SCRIPT, str(recipe)], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=time_limit(300))
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["bad"] == 2 and "transfer.stages.0.toy.pull: found -1" in done.stderr
    assert found["tag"] == "vanilla_kd,toy"
    assert found["knobs"] == ["distillation.weight", "distillation.temperature", "toy.pull"]
    assert found["terms"] == ["distill", "toy"] and found["toy"] == pytest.approx(0.5 * 4.0)
