"""The `gem-transfer` command line.

    gem-transfer run RECIPE [key=value …]     run a recipe, print the lift table
    gem-transfer plan RECIPE [key=value …]    its stages, their keys, and which are cached (runs nothing)
    gem-transfer cycle RECIPE --windows N     the continuous transfer cycle over N successive windows
    gem-transfer validate RECIPE …            check recipes without running them
    gem-transfer ls [recipes|verticals|teachers|domain_fms|datasets]
    gem-transfer register RUN_ID [--alias candidate]   register a trained VM in the MLflow Model Registry
    gem-transfer lift [--experiment NAME] [--vertical NAME] [--since DATE]   the lift table, from MLflow
    gem-transfer data check RECIPE            load, validate and encode the recipe's data (no training)
    gem-transfer data synth --rows N --out PATH

Bad input ends with one line on stderr and exit code 2 (`--debug` shows the traceback).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from dataclasses import asdict
from pathlib import Path

from transfer.errors import TrainingError, UserError

EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a tool killed by a closed pipe exits with
EXIT_STORAGE = 1  # the disk filled up: no fault of the input, and a rerun resumes once there is room


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line, exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gem-transfer", description="Teacher → student knowledge transfer for ranking models.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a recipe end to end and print the lift table")
    run.add_argument("recipe", type=Path)
    run.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.max_epochs=2 students.0.lr=3e-3")
    _format_option(run)
    run.set_defaults(handler=_cmd_run)

    plan = sub.add_parser("plan", help="print a recipe's stages, their keys and whether each is cached or will run, without running anything")
    plan.add_argument("recipe", type=Path)
    plan.add_argument("overrides", nargs="*", help="key=value overrides, as for run")
    plan.set_defaults(handler=_cmd_plan)

    cycle = sub.add_parser("cycle", help="run the continuous transfer cycle over successive time windows")
    cycle.add_argument("recipe", type=Path)
    cycle.add_argument("--windows", type=_positive_int, required=True, help="how many cycles (the first is the recipe as written)")
    cycle.add_argument("overrides", nargs="*", help="key=value overrides")
    cycle.set_defaults(handler=_cmd_cycle)

    tune = sub.add_parser("tune", help="search a transfer stage's technique knobs, or the teacher's training (Optuna), on the validation window; writes the best recipe")
    tune.add_argument("recipe", type=Path)
    tune.add_argument("--trials", type=_positive_int, default=20, help="finish this many trials in all (a rerun continues the study)")
    target = tune.add_mutually_exclusive_group()
    target.add_argument("--stage", type=_positive_int, default=None, help="which transfer stage, counted from 1 (default: the last)")
    target.add_argument("--teacher", action="store_true",
                        help="tune how the teacher trains instead (epochs, warm-up, learning rate; its best epoch kept on validation)")
    tune.add_argument("overrides", nargs="*", help="key=value overrides, as for run")
    tune.set_defaults(handler=_cmd_tune)

    validate = sub.add_parser("validate", help="check recipes without running them")
    validate.add_argument("recipes", nargs="+", help="recipe files, then key=value overrides applied to each, as for run")
    validate.set_defaults(handler=_cmd_validate)

    ls = sub.add_parser("ls", help="list recipes, the catalog (verticals, teachers, domain FMs), transfer techniques and datasets")
    ls.add_argument("what", nargs="?", choices=["recipes", "verticals", "students", "architectures", "teachers", "domain_fms", "techniques",
                                                "datasets"],
                    default=None)
    ls.add_argument("--recipes-dir", type=Path, default=Path("recipes"))
    ls.add_argument("--dataset", default=None, help="with verticals: only what this dataset (a name or a YAML) can train, "
                                                    "and its trainable surface × task pairs no catalog VM serves")
    ls.set_defaults(handler=_cmd_ls)

    register = sub.add_parser("register", help="register a trained vertical model (a student run) in the MLflow Model Registry")
    register.add_argument("run_id")
    register.add_argument("--alias", default=None, help="set this alias (e.g. candidate) on the new version")
    _tracking_option(register)
    register.set_defaults(handler=_cmd_register)

    lift = sub.add_parser("lift", help="the lift table from the MLflow tracking store; writes CSV and a PNG chart")
    lift.add_argument("--experiment", action="append", default=None, help="experiment name (repeatable; default: all)")
    lift.add_argument("--vertical", default=None, help="only this vertical model")
    lift.add_argument("--since", default=None, help="only recipe runs started on or after this date, YYYY-MM-DD")
    lift.add_argument("--out", type=Path, default=Path("gem_runs/lift"), help="folder for lift.csv and lift.png")
    _format_option(lift)
    _tracking_option(lift)
    lift.set_defaults(handler=_cmd_lift)

    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    check = data_sub.add_parser("check", help="load, validate and encode a recipe's dataset and cut its windows, without training; "
                                "prints its rows per surface and window and each student's positives")
    check.add_argument("recipe", type=Path)
    check.add_argument("overrides", nargs="*")
    check.set_defaults(handler=_cmd_data_check)
    synth = data_sub.add_parser("synth", help="write a synthetic impression log to parquet")
    synth.add_argument("--rows", type=_positive_int, required=True)
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--days", type=_positive_int, default=24)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--start", default="2026-01-01", help="first day, YYYY-MM-DD")
    synth.set_defaults(handler=_cmd_synth)
    return parser


def _tracking_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///gem_runs/mlflow.db)")


def _format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["markdown", "csv"], default="markdown",
                        help="how to print the lift table: a markdown table (no wrapping or cut cells) or CSV")


def _print_table(table, fmt: str) -> None:
    """The table on stdout: markdown (numbers rounded for reading) or CSV (every digit)."""
    from transfer.evaluation.lift_table import format_table

    print(format_table(table) if fmt == "markdown" else table.write_csv(), end="\n" if fmt == "markdown" else "")


def _tracking_uri(args: argparse.Namespace) -> str:
    from transfer.tracking.runs import default_tracking_uri

    return args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(Path("gem_runs"))


def _cmd_register(args: argparse.Namespace) -> int:
    from transfer.tracking.model_registry import register_vertical

    version = register_vertical(_tracking_uri(args), args.run_id, args.alias)
    alias = f", alias '{args.alias}'" if args.alias else ""
    print(f"registered '{version.name}' version {version.version}{alias} from run {args.run_id}")
    for key, value in sorted(version.tags.items()):
        print(f"  {key}: {value}")
    return 0


def _cmd_lift(args: argparse.Namespace) -> int:
    from transfer.evaluation.lift_table import format_table
    from transfer.tracking.lift import lift_from_tracking

    report = lift_from_tracking(_tracking_uri(args), args.experiment, args.vertical, args.since, args.out)
    _print_table(report.table, args.format)
    aside = sys.stdout if args.format == "markdown" else sys.stderr  # with csv, stdout holds the table alone
    if report.over_seeds is not None:
        print("\nOver seeds (a recipe run with several seeds; each effect's mean and 95% t-interval over them):", file=aside)
        print(format_table(report.over_seeds), file=aside)
    written = [report.csv, report.chart, *([report.over_seeds_csv] if report.over_seeds_csv else [])]
    print(f"\nwrote {', '.join(map(str, written))}; logged on recipe run(s) {', '.join(report.recipe_runs)}", file=aside)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"found '{text}'; allowed: a whole number > 0") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"found {value}; allowed: a whole number > 0")
    return value


def _cmd_run(args: argparse.Namespace) -> int:
    recipe = _checked_recipe(args)
    if (code := _in_processes(recipe, args)) is not None:
        return code
    from transfer.pipeline.engine import run_recipe

    result = run_recipe(recipe, args.recipe)
    print()
    if args.format == "markdown":  # the columns a reader needs; CSV keeps every column
        from transfer.evaluation.lift_table import format_table, reader_view

        print(format_table(reader_view(result.table)))
        print(f"(AUC, calibration, MDE, eval rows, resampled units, FLOPs, serving budget, run ids: {result.run_dir / 'lift.csv'} and the MLflow runs)")
    else:
        _print_table(result.table, args.format)
    print()
    _print_run_ids(result.table)
    print(f"MLflow: experiment '{result.experiment}', parent run {result.parent_run_id} in {result.tracking_uri}")
    server = result.tracking_uri if result.tracking_uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    if server == "http://127.0.0.1:5000":
        print(f"        browse with: mlflow ui --backend-store-uri {result.tracking_uri}   (serves {server})")
    print(f"        this run's lift table and chart: {server}/#/experiments/{result.experiment_id}/runs/{result.parent_run_id}/artifactPath/lift_table.json")
    print(f"Outputs (knowledge, lift.csv, recipe): {result.run_dir}")
    return 0


def _print_run_ids(table) -> None:
    """Each VM's runs (what `gem-transfer register RUN_ID` takes is the student's)."""
    import polars as pl

    print("VM runs (register a student with: gem-transfer register RUN_ID):")
    for row in table.filter(pl.col("role").is_in(["student", "vanilla_kd", "baseline"])).iter_rows(named=True):
        print(f"  {row['model']:<24} {row['role']:<10} {row['run_id']}")


def _precheck(args: argparse.Namespace) -> None:
    """The recipe file and overrides, checked before the heavy imports (see `precheck`)."""
    from transfer.config.structured import precheck

    precheck(args.recipe, getattr(args, "overrides", []))


def _loaded_recipe(args: argparse.Namespace):
    """The recipe, loaded and validated before the engine is imported: a bad key or value is answered
    without torch, a bad model name without Lightning or MLflow (`transfer.config.validate`)."""
    _precheck(args)
    from transfer.config.loader import load_recipe

    return load_recipe(args.recipe, args.overrides)


def _checked_recipe(args: argparse.Namespace):
    """`_loaded_recipe`, and its accelerator exists on this machine (before any data is read)."""
    recipe = _loaded_recipe(args)
    from transfer.config.validate_models import check_machine

    check_machine(recipe, args.recipe)
    return recipe


def _cmd_tune(args: argparse.Namespace) -> int:
    _precheck(args)
    from transfer.config.loader import load_recipe

    load_recipe(args.recipe, args.overrides, models=False)  # a bad key or value answered before the study's imports
    from transfer.tuning.study import tune  # the study loads and fully validates the recipe itself

    result = tune(args.recipe, args.overrides, args.trials, args.stage, args.teacher)
    finished = [t for t in result.trials if t.value is not None]
    objective = "teacher mean val NE (over tasks)" if result.target.teacher else "mean val NE"
    print()
    print(f"{len(finished)} trial{'' if len(finished) == 1 else 's'} finished; best {objective} {result.best_value:.4f} with "
          + ", ".join(f"{result.target.shown(key)}={value:.4g}" for key, value in result.best_params.items()))
    print(f"Best recipe: {result.best_recipe}  (run it: gem-transfer run {result.best_recipe})")
    print(f"Study: {result.folder / 'study.db'}; MLflow run {result.run_id}")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    recipe = _loaded_recipe(args)
    from transfer.pipeline.engine import planned
    from transfer.pipeline.plan import format_plan

    ctx, plan = planned(recipe, args.recipe)
    rows = plan.describe(ctx)
    print(f"plan of recipe '{recipe.name}' ({recipe.hash}) on {ctx.data.dataset}; stage cache {ctx.cache.root}")
    print(format_plan(rows))
    waiting = sum(row[-1] != "cached" for row in rows)
    print(f"{len(rows)} stages: {len(rows) - waiting} cached, {waiting} to run")
    return 0


def _cmd_cycle(args: argparse.Namespace) -> int:
    recipe = _checked_recipe(args)
    if (code := _in_processes(recipe, args)) is not None:
        return code
    from transfer.evaluation.lift_table import format_table
    from transfer.pipeline.cycle import run_cycle

    result = run_cycle(recipe, args.recipe, args.windows)
    print()
    print(format_table(result.table))
    print()
    print(f"Cycles tracked as MLflow runs {', '.join(result.runs)}; table: {result.csv}")
    return 0


def _in_processes(recipe, args: argparse.Namespace) -> int | None:
    """For a multi-process recipe: start its processes here (→ their exit code), or, in one of them,
    check the launcher's world size and keep only rank 0's output; None: go on in this process."""
    from transfer.pipeline import launch
    from transfer.util import ranks

    launch.check_world(recipe.trainer, args.recipe)
    if launch.needs_launch(recipe.trainer):
        return launch.run_on_this_host(recipe.trainer, args.argv)
    launch.die_with_launcher()
    if ranks.rank() != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 — the other ranks' copies of the same progress and table
    return None


def _cmd_validate(args: argparse.Namespace) -> int:
    from transfer.config.structured import precheck

    paths, overrides = _paths_and_overrides(args.recipes)
    if not paths:
        raise UserError(f"validate: no recipe file among '{' '.join(args.recipes)}'; allowed: recipe files, then key=value overrides")
    for path in paths:  # in order: each file's own verdict, the heavy imports only once one passes the precheck
        precheck(path, overrides)
        from transfer.config.loader import load_recipe

        recipe = load_recipe(path, overrides)
        print(f"ok: {path}{' with ' + ' '.join(overrides) if overrides else ''} (recipe '{recipe.name}', {len(recipe.students)} students)")
    return 0


def _paths_and_overrides(items: list[str]) -> tuple[list[Path], list[str]]:
    """`validate`'s arguments: recipe paths, then key=value overrides (an item with '=' that is no existing file)."""
    paths = [Path(item) for item in items if "=" not in item or Path(item).exists()]
    return paths, [item for item in items if "=" in item and not Path(item).exists()]


def _cmd_ls(args: argparse.Namespace) -> int:
    from transfer.catalog import catalog
    from transfer.config.dataset import builtin_datasets
    from transfer.config.verticals import architectures

    sections = {
        "recipes": lambda: [f"{p}" for p in sorted(args.recipes_dir.glob("*.yaml"))],
        "verticals": lambda: _verticals_for(args.dataset),
        "architectures": lambda: [f"{name}: {builder}({', '.join(f'{k}={v}' for k, v in sizes.items())})"
                                  for name, (builder, sizes) in architectures().items() if name not in catalog("vertical")],
        "teachers": lambda: [_costed(entry) for entry in catalog("teacher").values()],
        "domain_fms": lambda: [_costed(entry) for entry in catalog("domain_fm").values()],
        "techniques": _techniques,
        "datasets": lambda: [*builtin_datasets(), "(or a path to a dataset YAML)"],
    }
    what = "verticals" if args.what == "students" else args.what
    for name in [what] if what else sections:
        print(f"{name}:")
        for line in sections[name]():
            print(f"  {line}")
    return 0


def _techniques() -> list[str]:
    """Each transfer technique: its recipe key, what it does, and what it costs the served VM."""
    from adapters import TECHNIQUES

    return [f"{t.KEY}: {t.SUMMARY} [serving cost: {t.SERVING}]" for t in TECHNIQUES]


def _verticals_for(dataset: str | None) -> list[str]:
    """The catalog's verticals; with a dataset, those it can train (surfaces and task it has, in its
    `trainable` pairs) and the pairs left for an inline VM (`verticals:` in a recipe)."""
    from transfer.catalog import catalog
    from transfer.config.dataset import dataset_config_path, load_dataset_config, trainable_pairs

    entries = list(catalog("vertical").values())
    if dataset is None:
        return [entry.summary() for entry in entries]
    cfg = load_dataset_config(dataset_config_path(dataset))
    pairs = trainable_pairs(cfg)
    fits = [e for e in entries if e.surfaces and e.task in cfg.labels and all((s, e.task) in pairs for s in e.surfaces)]
    served = {(s, e.task) for e in fits for s in e.surfaces}
    left = [f"{surface} × {task}: no catalog VM; declare one inline (verticals: [{{name: …, surfaces: [{surface}], task: {task}}}])"
            for surface, task in pairs if (surface, task) not in served]
    return [entry.summary() for entry in fits] + left


def _costed(entry) -> str:
    """`name: description [parameters, forward FLOPs per example]` on the synthetic dataset's features."""
    import torch

    from transfer.config.dataset import dataset_config_path, inputs_of, load_dataset_config
    from transfer.evaluation.cost import forward_flops_per_example, parameter_count

    inputs = inputs_of(load_dataset_config(dataset_config_path("synthetic")))
    torch.manual_seed(0)
    model = entry.build(inputs)
    flops = forward_flops_per_example(model, inputs, batch_size=1)
    return f"{entry.name}: {entry.description} [{parameter_count(model) / 1e6:.2f}M parameters, {flops / 1e6:,.1f} MFLOPs/example forward]"


def _cmd_data_check(args: argparse.Namespace) -> int:
    recipe = _loaded_recipe(args)
    from transfer.config.recipe import teacher_window_shift_days
    from transfer.data.prepare import check_slices, describe, prepare_data, resolve_verticals

    data = prepare_data(recipe.data, teacher_window_shift_days(recipe.transfer))
    verticals = resolve_verticals(args.recipe, recipe, data)
    check_slices(data, verticals, recipe.data.min_train_positives)
    print("\n".join(describe(data, verticals)))
    print(f"ok: {data.summary()}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    import datetime

    from transfer.config.validate import MAX_SEED, synthetic_rows_problem
    from transfer.data.synthetic import SyntheticSpec, generate
    from transfer.util.atomic import atomic_path

    try:
        datetime.date.fromisoformat(args.start)
    except ValueError:
        raise UserError(f"--start: found '{args.start}'; allowed: a date YYYY-MM-DD") from None
    if not 0 <= args.seed <= MAX_SEED:
        raise UserError(f"--seed: found {args.seed}; allowed: a whole number from 0 to {MAX_SEED}")
    if problem := synthetic_rows_problem(args.rows):
        raise UserError(f"--rows: {problem}")
    if args.out.is_dir():
        raise UserError(f"--out: {args.out} is a folder; allowed: a parquet file's path (e.g. {args.out / 'synthetic.parquet'})")
    if not args.out.parent.is_dir():
        raise UserError(f"--out: the folder {args.out.parent} does not exist; create it first")
    spec = SyntheticSpec(rows=args.rows, days=args.days, seed=args.seed, start=args.start)
    frame = generate(spec)
    with atomic_path(args.out) as tmp:
        frame.write_parquet(tmp)
    print(f"wrote {frame.height:,} impressions to {args.out} ({asdict(spec)})")
    return 0


def _one_line(message: str) -> str:
    """The message with line breaks and other control characters (e.g. from a user's key) escaped."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in message)


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse `argv`; key=value overrides may also come after options (`cycle R --windows 4 k=v`)."""
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in item and not item.startswith("-") for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    from transfer.util.interrupt import Interrupted, signals_raise_interrupted

    argv = sys.argv[1:] if argv is None else argv
    args = _parse(build_parser(), argv)
    args.argv = argv
    try:
        with signals_raise_interrupted():
            code = args.handler(args)
            sys.stdout.flush()  # a pipe's buffered output is written here, where a closed reader is caught below
            return code
    except Interrupted as interrupted:
        _say_interrupted(interrupted.message)
        return interrupted.exit_code
    except BrokenPipeError:
        if not _stdout_reader_gone():  # another pipe (a worker's, a socket): a real failure
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush of stdout cannot fail again
        return EXIT_BROKEN_PIPE  # the reader went away (`gem-transfer ls | head`): stop quietly, as a Unix tool does
    except OSError as exc:
        if args.debug or (said := _storage_problem(exc)) is None:
            raise
        print(f"gem-transfer: error: {_one_line(said)}", file=sys.stderr)
        return EXIT_STORAGE if exc.errno in (errno.ENOSPC, errno.EDQUOT) else EXIT_USAGE
    except Exception as exc:
        if args.debug or not _is_user_error(exc):
            raise
        ranks = sys.modules.get("transfer.util.ranks")  # not imported yet (an early error): no process group either
        rank = ranks.rank() if ranks is not None else int(os.environ.get("RANK", "0"))
        if rank == 0:  # every rank meets the same bad input; one says so
            print(f"gem-transfer: error: {_one_line(str(exc))}", file=sys.stderr)
        elif isinstance(exc, TrainingError):  # a loss gone bad on this rank's share of a batch only
            print(f"gem-transfer: error: rank {rank}: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


def _storage_problem(exc: OSError) -> str | None:
    """A write the machine refused, said in one line with the path and what to do (None: another error).
    Every write is atomic (a temporary name, then a rename), so nothing is left half-written."""
    import shutil

    path = exc.filename2 or exc.filename or "?"  # a move's destination, else the file
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        folder = Path(path).parent if path != "?" else Path.cwd()
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        free = shutil.disk_usage(folder).free
        needed = getattr(exc, "needed_bytes", None)
        needs = f"; this write needs about {needed / 2**20:,.0f} MiB" if needed else ""
        return (f"{path}: no space left on the device ({free / 2**20:,.0f} MiB free in {folder}{needs}); free some space or move "
                "output_dir (or data.cache_dir) elsewhere, then rerun the same command: it resumes where it stopped")
    if exc.errno == errno.EROFS:
        return f"{path}: cannot write here (a read-only file system); allowed: a writable folder (choose another with --out or output_dir)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"{path}: permission denied ({exc.strerror}); allowed: a path this user can read, and a folder it can write "
                "(choose another with --out or output_dir)")
    return None


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (polling its write end reports an error)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll on this platform, or stdout is no file
        return False


def _is_user_error(exc: Exception) -> bool:
    """Bad input, said in one line: a `UserError`, or a catalog entry's builder path that names no
    function (`transfer.contract.BuilderError`; looked up without importing the contract, and torch)."""
    contract = sys.modules.get("transfer.contract")
    return isinstance(exc, UserError) or (contract is not None and isinstance(exc, contract.BuilderError))


def _say_interrupted(message: str) -> None:
    """The one line of an interrupted command, said once: by the launcher of a multi-process run, else by rank 0."""
    from transfer.pipeline import launch
    from transfer.util import ranks

    if ranks.rank() == 0 and os.environ.get(launch.LAUNCHER_PID, str(os.getpid())) == str(os.getpid()):
        print(message, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
