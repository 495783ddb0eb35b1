"""The recipe's typed schema (design §6): a recipe is a small diff from these defaults. Loading it with
overrides and checking it: `transfer.config.loader`; each technique's knobs: its module in `adapters/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any

from omegaconf import MISSING, OmegaConf

from adapters import TECHNIQUES
from transfer.util.fingerprint import fingerprint


@dataclass
class WindowConfig:
    """A time range of the log: `days` plus `hours`, from `start` (UTC). `start` defaults to the end
    of the window before it: train (the data's first day) → student → validation → eval (design §8,
    staleness protocol)."""

    start: str | None = None  # YYYY-MM-DD, or YYYY-MM-DDTHH:MM for a window that starts within a day (UTC)
    days: int = MISSING  # the window's length in whole days (plus `hours`)
    hours: int = 0  # added to days: a 3-day log starting at 16:00 splits by hours

    @property
    def length_days(self) -> float:
        return self.days + self.hours / 24


@dataclass
class SyntheticConfig:
    rows: int = 300_000  # impressions the synthetic world generates
    days: int = 24  # days of log it spans
    start: str = "2026-01-01"  # its first day, YYYY-MM-DD (UTC)
    seed: int = 0  # the generator's seed: another seed, another world of the same kind


@dataclass
class UserSampleConfig:
    """A seeded sample of the log's users (each kept with all their impressions): another draw of the
    same population, so seeds can vary the data of a fixed log (MovieLens) as well as the models."""

    fraction: float = 1.0  # share of users kept (1.0: all)
    seed: int = 0  # which users: a stable hash of the user id salted with this seed


@dataclass
class DataConfig:
    dataset: str = "synthetic"  # a built-in dataset name or a path to a dataset YAML
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)  # the built-in synthetic world's size (dataset: synthetic)
    # the teacher's window at staleness 0; `transfer.staleness_days: d` moves it d days earlier (knowledge from
    # training traffic: it stays put, and the knowledge lags d days instead)
    train: WindowConfig = field(default_factory=lambda: WindowConfig(days=21))
    # the consumers' (domain FMs', VMs') window: by default right after the teacher's, so the
    # knowledge they learn from is scored by a teacher that never trained on their rows
    student: WindowConfig = field(default_factory=lambda: WindowConfig(days=7))
    validation: WindowConfig = field(default_factory=lambda: WindowConfig(days=1))  # for choosing knobs, never for reporting; 0 days: none
    eval: WindowConfig = field(default_factory=lambda: WindowConfig(days=3))  # what the lift table reports
    # every model's recal NE is fitted (one logit shift) on the students' window's last this-many days (all of it when shorter)
    recalibration_days: int = 1
    users: UserSampleConfig = field(default_factory=UserSampleConfig)
    cache_dir: str = ".cache/gem-transfer"  # where the encoded log, its histories and fetched datasets are cached
    # a VM whose training slice (its surfaces × task in the students' window) has fewer positive
    # labels is warned about before anything trains: its lift would be mostly noise; 0: never warn
    min_train_positives: int = 100


@dataclass
class TeacherConfig:
    model: str = "skeleton_tiny"  # a teacher of the catalog (`gem-transfer ls teachers`)
    sizes: dict[str, Any] = field(default_factory=dict)  # overrides of the catalog entry's default sizes
    max_epochs: int = 1  # the teacher's passes over its window
    keep_best_epoch: bool = False  # keep its epoch (its start as 0) with the lowest mean NE over tasks on the validation window, as every VM does
    lr: float = 2e-3  # the teacher's learning rate (Adam)
    warmup_steps: int = 0  # the learning rate rises linearly from lr/warmup_steps to lr over the first steps
    batch_size: int = 1024  # examples per training step (over all processes)
    compile: bool = False  # torch.compile the teacher for training and knowledge generation
    precision: str | None = None  # Lightning precision for the teacher (e.g. bf16-mixed); default: trainer.precision
    init_from: str | None = None  # weights (a state-dict .pt) to continue from; the continuous cycle sets it


@dataclass
class DomainFMConfig:
    """The domain foundation models of hierarchical transfer: one per domain of the dataset."""

    model: str = "dfm_small"  # a domain FM of the catalog (`gem-transfer ls domain_fms`)
    sizes: dict[str, Any] = field(default_factory=dict)  # overrides of the catalog entry's default sizes
    max_epochs: int = 1  # each domain FM's passes over its window
    lr: float = 2e-3  # their learning rate (Adam)
    batch_size: int = 1024  # examples per training step (over all processes)
    # true: each FM first trains on its domain's rows of the teacher's window (labels only, in time order),
    # then as before on the consumers' window: it sees more of its domain, and its VMs' knowledge (its
    # traffic there) comes from a model that already knows the domain
    warm_start: bool = False


@dataclass
class StageBase:
    """One transfer stage: a producer's knowledge into its consumers, with these techniques (each a
    module of `adapters/`, which declares its knobs: `StageConfig` has a field per technique)."""

    producer: str = "teacher"  # teacher or domain_fms
    consumers: str = "students"  # domain_fms or students


# a field `<KEY>: <its Config>` per technique, in `adapters.TECHNIQUES` order
StageConfig = make_dataclass(
    "StageConfig",
    [(technique.KEY, technique.Config, field(default_factory=technique.Config)) for technique in TECHNIQUES],
    bases=(StageBase,),
    namespace={"__doc__": StageBase.__doc__, "__module__": __name__},
)


@dataclass
class TransferConfig:
    strategy: str = "direct"  # direct: teacher → students; hierarchical: teacher → domain FMs → students
    stages: list[StageConfig] = field(default_factory=list)  # empty: the strategy's stages, default techniques
    # knowledge separate: the teacher's window ends this many days before the consumers' starts (theirs and eval
    # stay put); training_traffic: each consumer row's knowledge comes from the teacher as it was this many days
    # before the row's day (0: just before the teacher learnt from the row's batch)
    staleness_days: int = 0
    max_age_days: int | None = None  # refuse knowledge older than this (consumer window end − cutoff)
    # the teacher's knowledge: separate (a scoring pass over the consumers' window after it trained) or
    # training_traffic (it trains on through the consumers' window in time order, scoring each batch
    # just before it trains on it: out-of-sample knowledge, 0 days old, with no extra forward pass);
    # domain FMs always keep their VMs' knowledge from their training traffic
    knowledge: str = "separate"
    vanilla_reference: bool = False  # also train each VM with vanilla KD only: the lift table's gain ratio (with its interval)


def traffic_lag_days(transfer: TransferConfig) -> int:
    """With knowledge from training traffic, how many days the teacher's knowledge lags the rows it
    scores (`transfer.staleness_days`; 0: each batch scored just before the teacher learns from it)."""
    return transfer.staleness_days if transfer.knowledge == "training_traffic" else 0


def teacher_window_shift_days(transfer: TransferConfig) -> int:
    """How many days `transfer.staleness_days` moves the teacher's window earlier: all of them with
    knowledge from a separate pass; none with knowledge from training traffic (it delays the knowledge instead)."""
    return 0 if transfer.knowledge == "training_traffic" else transfer.staleness_days


@dataclass
class StudentConfig:
    vertical: str = MISSING  # a vertical model of the catalog (`gem-transfer ls verticals`)
    sizes: dict[str, Any] = field(default_factory=dict)  # overrides of the vertical's default sizes
    lr: float = 2e-3  # the VM's learning rate (Adam), its baseline's too
    batch_size: int = 512  # examples per training step (over all processes)


@dataclass
class BudgetConfig:
    """A VM's serving budget: at most this many parameters and this p99 latency (1,000 candidates, one core)."""

    max_params: int = MISSING  # at most this many parameters
    max_p99_ms: float = MISSING  # at most this p99 latency (ms) to score one request of 1,000 candidates on one core


@dataclass
class InlineVerticalConfig:
    """A vertical model declared in the recipe itself (no package needed), validated like a catalog
    VM; students target it by `name`. Platform teams that share VMs keep the catalog."""

    name: str = MISSING  # the VM's name, which students target (not a catalog name)
    surfaces: list[str] = MISSING  # the dataset's surfaces it serves
    task: str = MISSING  # one of the dataset's tasks
    architecture: str = "mlp"  # a catalog architecture (see `gem-transfer ls architectures`) or a catalog vertical to copy
    sizes: dict[str, Any] = field(default_factory=dict)  # overrides of the architecture's default sizes
    owner: str = "recipe"  # the team that owns it
    budget: BudgetConfig | None = None  # none: no serving budget
    description: str = ""  # one line on what it is for; empty: made from its architecture, task and surfaces


ORDERS = ("time", "shuffled")  # how training visits its rows: days in order (shuffled within a day), or all shuffled


@dataclass
class TrainerConfig:
    """Passed to Lightning's Trainer (students use max_epochs; the teacher has its own)."""

    max_epochs: int = 2  # the VMs' and baselines' passes over the students' window
    # torch's intra-op threads per process; 0: $OMP_NUM_THREADS when set, else the cores this process
    # may use shared among the run's processes on this host (a loaded, shared host runs faster on fewer)
    threads: int = 0
    order: str = "time"  # how every model's training visits its rows: time (days in order, shuffled within a day) or shuffled
    accelerator: str = "cpu"  # Lightning's accelerator: cpu, gpu, cuda, mps or auto
    devices: int | str = 1  # processes per node (one per device)
    strategy: str = "auto"  # auto (one process), ddp, or fsdp (the teacher sharded, every other model under ddp; GPUs only)
    num_nodes: int = 1  # nodes; every node runs `devices` processes
    sharding: str = "full"  # with fsdp: full (shard over every process) or hybrid (HSDP: shard within a node, replicate across nodes)
    precision: str = "32-true"  # Lightning precision for every model (32-true, bf16-mixed, …)
    progress: bool = True  # print each stage's training progress (a bar on a terminal, lines elsewhere)


@dataclass
class TrackingConfig:
    uri: str | None = None  # default: sqlite:///<output_dir>/mlflow.db
    experiment: str | None = None  # default: the recipe's name
    log_models: bool = True  # log each student's serving model (pt2) in its run, for gem-transfer register; false: faster sweeps, nothing to register
    serving_requests: int = 64  # requests (1,000 candidates each, from the eval window) timed for each VM's CPU p50/p99 latency


@dataclass
class Recipe:
    name: str = MISSING  # one folder name: the recipe's outputs go under output_dir/<name>, its runs to the experiment <name>
    seed: int = 0  # every model's seed (each VM gets its own from it) and the tuner's
    output_dir: str = "gem_runs"  # the stage cache, every run's outputs and the default MLflow store
    data: DataConfig = field(default_factory=DataConfig)  # the log: its dataset, windows, user sample and cache
    teacher: TeacherConfig = field(default_factory=TeacherConfig)  # the teacher: its catalog model and how it trains
    domain_fms: DomainFMConfig = field(default_factory=DomainFMConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)  # how knowledge moves: strategy, stages, techniques, staleness
    students: list[StudentConfig] = field(default_factory=list)  # the VMs to train, each beside its no-transfer baseline
    verticals: list[InlineVerticalConfig] = field(default_factory=list)  # VMs declared here, beside the catalog's
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)  # where the MLflow runs go

    def to_yaml(self) -> str:
        return OmegaConf.to_yaml(OmegaConf.structured(self))

    def flat(self) -> dict[str, object]:
        """Dotted keys → values, for MLflow params."""
        return _flatten(OmegaConf.to_container(OmegaConf.structured(self)))

    @property
    def hash(self) -> str:
        return fingerprint(OmegaConf.to_container(OmegaConf.structured(self)))


# strategy → its stages as (producer, consumers)
STRATEGY_STAGES = {
    "direct": [("teacher", "students")],
    "hierarchical": [("teacher", "domain_fms"), ("domain_fms", "students")],
}


def _flatten(tree: object, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list):
        items = ((str(i), v) for i, v in enumerate(tree))
    else:
        return {prefix: tree}
    flat: dict[str, object] = {}
    for key, value in items:
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat
