"""Planning a recipe into stages (`transfer.pipeline.stages`), in the order they run.

Direct: the teacher; then, in stage 1, its knowledge and each VM's baseline, vanilla-KD reference
(when the recipe asks for the gain ratio) and student.
Hierarchical: the teacher; in stage 1 its knowledge and one domain FM per domain the VMs serve; in
stage 2 each domain FM's knowledge (before its first VM) and each VM's baseline and student. Last,
the evaluation (the lift table). `gem-transfer plan` prints the plan with every key and whether the
stage cache holds its output.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters import is_vanilla_kd, vanilla_kd
from transfer.catalog import ModelEntry, catalog
from transfer.config.recipe import Recipe, StageConfig
from transfer.data.prepare import PreparedData
from transfer.evaluation.lift_table import Role
from transfer.pipeline.stages.base import RunContext, Stage
from transfer.pipeline.stages.evaluation import EvaluationStage
from transfer.pipeline.stages.producers import DomainFMStage, KnowledgeStage, TeacherStage, Teaching
from transfer.pipeline.stages.verticals import Vertical, VerticalStage


@dataclass
class Plan:
    """A recipe's stages in running order; `evaluation` is the last."""

    stages: list[Stage]
    teacher: TeacherStage
    evaluation: EvaluationStage

    def describe(self, ctx: RunContext) -> list[tuple[str, str, str, str, str]]:
        """One (group, kind, name, key, status) row per stage; reads the stage cache only."""
        return [(str(s.group) if s.group else "-", s.kind, s.name, s.key.name, s.status(ctx)) for s in self.stages]


def plan_recipe(recipe: Recipe, data: PreparedData, verticals: list[ModelEntry]) -> Plan:
    """The recipe's stages, each with its inputs; nothing is run or read beyond `data`."""
    teacher = TeacherStage(catalog("teacher")[recipe.teacher.model], recipe, data)
    stages: list[Stage] = [teacher]
    producers: dict[str, TeacherStage | DomainFMStage] = {}  # domain → the producer of the VMs' stage
    students: list[VerticalStage] = []
    for index, config in enumerate(recipe.transfer.stages, start=1):
        if config.consumers == "domain_fms":
            producers = _domain_fms(recipe, data, verticals, teacher, index, config, stages)
        else:
            students = _verticals(recipe, data, verticals, teacher, producers, index, config, stages)
    evaluation = EvaluationStage(teacher, students, data)
    return Plan([*stages, evaluation], teacher, evaluation)


def _domain_fms(recipe: Recipe, data: PreparedData, verticals: list[ModelEntry], teacher: TeacherStage, index: int,
                config: StageConfig, stages: list[Stage]) -> dict[str, DomainFMStage]:
    """Stage `index`: the teacher's knowledge, then one domain FM per domain the VMs serve."""
    knowledge = KnowledgeStage(teacher, recipe, data, group=index)
    teaching = Teaching(index, config, teacher, knowledge)
    entry = catalog("domain_fm")[recipe.domain_fms.model]
    fms = {domain: DomainFMStage(domain, entry, teaching, recipe, data) for domain in _student_domains(data, verticals)}
    stages += [knowledge, *fms.values()]
    return fms


def _verticals(recipe: Recipe, data: PreparedData, verticals: list[ModelEntry], teacher: TeacherStage,
               domain_fms: dict[str, DomainFMStage], index: int, config: StageConfig, stages: list[Stage]) -> list[VerticalStage]:
    """Stage `index`: per VM, its producer's knowledge (before the producer's first VM), its baseline,
    its vanilla-KD reference (with `transfer.vanilla_reference`, unless the stage is vanilla KD), its student."""
    knowledge: dict[str, KnowledgeStage] = {}
    students = []
    for i, (spec, student) in enumerate(zip(verticals, recipe.students, strict=True)):
        domain = next(d for d, surfaces in data.domains.items() if spec.surfaces[0] in surfaces)
        producer = teacher if config.producer == "teacher" else domain_fms[domain]
        if producer.name not in knowledge:
            knowledge[producer.name] = KnowledgeStage(producer, recipe, data, group=index)
            stages.append(knowledge[producer.name])
        vertical = Vertical(spec, student, recipe.seed + i + 1, teacher, producer)
        baseline = VerticalStage(vertical, recipe, data, Role.BASELINE, group=index)
        stages.append(baseline)
        vanilla = None
        if recipe.transfer.vanilla_reference and not is_vanilla_kd(config):
            reference = Teaching(index, vanilla_kd(config), producer, knowledge[producer.name])
            vanilla = VerticalStage(vertical, recipe, data, Role.VANILLA_KD, group=index, teaching=reference, baseline=baseline)
            stages.append(vanilla)
        teaching = Teaching(index, config, producer, knowledge[producer.name])
        students.append(VerticalStage(vertical, recipe, data, Role.STUDENT, group=index, teaching=teaching, baseline=baseline, vanilla=vanilla))
        stages.append(students[-1])
    return students


def _student_domains(data: PreparedData, verticals: list[ModelEntry]) -> list[str]:
    """The domains the recipe's VMs serve (each gets a domain FM), in the dataset's order."""
    surfaces = {surface for spec in verticals for surface in spec.surfaces}
    return [domain for domain, members in data.domains.items() if surfaces & set(members)]


def format_plan(rows: list[tuple[str, str, str, str, str]]) -> str:
    """The plan as aligned text: stage group, kind, name, key, status."""
    header = ("stage", "kind", "name", "key", "status")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in [header, *rows])
