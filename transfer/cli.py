"""The `gem-transfer` command line.

    gem-transfer run RECIPE [key=value …]     run a recipe, print the lift table
    gem-transfer validate RECIPE …            check recipes without running them
    gem-transfer ls [recipes|teachers|domain_fms|students|datasets]
    gem-transfer data synth --rows N --out PATH

Bad input ends with one line on stderr and exit code 2 (`--debug` shows the traceback).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from transfer.errors import UserError

EXIT_USAGE = 2


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
    run.set_defaults(handler=_cmd_run)

    validate = sub.add_parser("validate", help="check recipes without running them")
    validate.add_argument("recipes", type=Path, nargs="+")
    validate.set_defaults(handler=_cmd_validate)

    ls = sub.add_parser("ls", help="list recipes, teachers, domain FMs, students (verticals) and datasets")
    ls.add_argument("what", nargs="?", choices=["recipes", "teachers", "domain_fms", "students", "datasets"], default=None)
    ls.add_argument("--recipes-dir", type=Path, default=Path("recipes"))
    ls.set_defaults(handler=_cmd_ls)

    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    synth = data_sub.add_parser("synth", help="write a synthetic impression log to parquet")
    synth.add_argument("--rows", type=_positive_int, required=True)
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--days", type=_positive_int, default=24)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--start", default="2026-01-01", help="first day, YYYY-MM-DD")
    synth.set_defaults(handler=_cmd_synth)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"found '{text}'; allowed: a whole number > 0") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"found {value}; allowed: a whole number > 0")
    return value


def _cmd_run(args: argparse.Namespace) -> int:
    from transfer.engine import run_recipe
    from transfer.recipe import load_recipe
    from transfer.report import format_table

    recipe = load_recipe(args.recipe, args.overrides)
    result = run_recipe(recipe, args.recipe)
    print()
    print(format_table(result.table))
    print()
    print(f"MLflow: experiment '{result.experiment}', parent run {result.parent_run_id} in {result.tracking_uri}")
    print(f"        browse with: mlflow ui --backend-store-uri {result.tracking_uri}")
    print(f"Outputs (knowledge, lift.csv, recipe): {result.run_dir}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from transfer.recipe import load_recipe

    for path in args.recipes:
        recipe = load_recipe(path)
        print(f"ok: {path} (recipe '{recipe.name}', {len(recipe.students)} students)")
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    from domain_fms import DOMAIN_FMS
    from students import ARCHITECTURES, VERTICALS
    from teacher import TEACHERS
    from transfer.dataset_config import builtin_datasets

    sections = {
        "recipes": lambda: [f"{p}" for p in sorted(args.recipes_dir.glob("*.yaml"))],
        "teachers": lambda: [_costed(name, fn) for name, fn in TEACHERS.items()],
        "domain_fms": lambda: [_costed(name, fn) for name, fn in DOMAIN_FMS.items()],
        "students": lambda: [
            f"{v.name}: {v.surface} × {v.task}, architecture {v.architecture} ({_doc(ARCHITECTURES[v.architecture])})"
            for v in VERTICALS.values()
        ],
        "datasets": lambda: [*builtin_datasets(), "(or a path to a dataset YAML)"],
    }
    for name in [args.what] if args.what else sections:
        print(f"{name}:")
        for line in sections[name]():
            print(f"  {line}")
    return 0


def _costed(name: str, builder) -> str:
    """`name: doc (parameters, forward FLOPs per example)` on the synthetic dataset's features."""
    import torch

    from teacher.cost import forward_flops_per_example, parameter_count
    from transfer.dataset_config import dataset_config_path, load_dataset_config
    from transfer.encoding import inputs_of

    inputs = inputs_of(load_dataset_config(dataset_config_path("synthetic")))
    torch.manual_seed(0)
    model = builder(inputs)
    flops = forward_flops_per_example(model, inputs, batch_size=1)
    return f"{name}: {_doc(builder)} [{parameter_count(model) / 1e6:.2f}M parameters, {flops / 1e6:,.1f} MFLOPs/example forward]"


def _doc(fn) -> str:
    return (fn.__doc__ or "").strip().splitlines()[0]


def _cmd_synth(args: argparse.Namespace) -> int:
    import datetime

    from transfer.atomic import atomic_path
    from transfer.synthetic import SyntheticSpec, generate

    try:
        datetime.date.fromisoformat(args.start)
    except ValueError:
        raise UserError(f"--start: found '{args.start}'; allowed: a date YYYY-MM-DD") from None
    spec = SyntheticSpec(rows=args.rows, days=args.days, seed=args.seed, start=args.start)
    frame = generate(spec)
    with atomic_path(args.out) as tmp:
        frame.write_parquet(tmp)
    print(f"wrote {frame.height:,} impressions to {args.out} ({asdict(spec)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"gem-transfer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
