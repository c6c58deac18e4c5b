"""Command line: a thin layer over the library. `main(argv) -> exit code`.

Every failure caused by the input or the machine is printed as one line (`fcngraph: error: ...`)
with the exit status listed in fcngraph.errors (2 input, 3 environment); only a genuine bug shows
a traceback, with a request to report it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .errors import (
    EXIT_BROKEN_PIPE,
    EXIT_BUG,
    EXIT_ENVIRONMENT,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    FcngraphError,
)

Handler = Callable[[argparse.Namespace], int]


def parse_size(text: str) -> tuple[int, int]:
    """'224' or '500x375' (H x W) → (H, W)."""
    try:
        parts = [int(p) for p in text.lower().replace("×", "x").split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size '{text}' is not N or HxW") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"size '{text}' is not N or HxW with positive sides")
    return parts[0], parts[1]


def positive_int(text: str) -> int:
    """An integer ≥ 1 (counts: epochs, repetitions, seeds, jobs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def count_or_zero(text: str) -> int:
    """An integer ≥ 0 (thread counts, where 0 means 'leave as is')."""
    return 0 if text.strip() == "0" else positive_int(text)


def text(value: str) -> str:
    """A non-empty value: an empty string would otherwise be dropped silently."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def output_file(value: str) -> str:
    """A file to write: not empty and not an existing folder."""
    if Path(text(value)).is_dir():
        raise argparse.ArgumentTypeError(f"'{value}' is a folder; give a file name")
    return value


def folder(value: str) -> str:
    """A folder to read or write: not empty and not an existing file."""
    if Path(text(value)).exists() and not Path(value).is_dir():
        raise argparse.ArgumentTypeError(f"'{value}' is a file; give a folder")
    return value


def device(value: str) -> str:
    """auto, cpu, mps, cuda or cuda:N (whether this machine has it is checked when it is used)."""
    import re

    from .settings import DEVICE_PATTERN

    if not re.match(DEVICE_PATTERN, value):
        raise argparse.ArgumentTypeError(f"'{value}' is not auto, cpu, mps, cuda or cuda:N")
    return value


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage is one `--help` away), exit 2."""

    def error(self, message: str):
        self.exit(EXIT_INPUT, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


# -- spec commands ----------------------------------------------------------------------------
@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside. Validating makes millions of objects and no cycles worth
    collecting, yet each full collection walks every object alive: a third of the CPU time of
    validating a 100,000-node spec. Re-enabled after (tests call `main` in-process)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def cmd_validate(args: argparse.Namespace) -> int:
    from .spec import load_spec

    failed = 0
    for path in args.specs:
        try:
            with collector_paused():
                line, warnings = validate_one(load_spec(path), args.scan)
        except FcngraphError as exc:
            print(f"fcngraph: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path}: {line}")
        for warning in warnings:
            print(f"{path}: {warning}", file=sys.stderr)
    return 2 if failed else 0


def validate_one(spec, scan: int) -> tuple[str, list[str]]:
    """Graph, sizes and settings of one spec → (the ok line, warnings); raises on an error."""
    from .errors import SpecError
    from .memory import activation_bytes
    from .settings import check_settings, memory_warning, training_sides
    from .shapes import analyze, valid_sizes

    sides = training_sides(spec)
    side = sides.get("$.train.crop_size", max(sides.values(), default=0)) or None
    try:  # one analysis, at the size training runs on (for the memory estimate)
        analysis = analyze(spec, (side, side) if side else None)
    except SpecError:
        if side is None:
            raise
        analysis = analyze(spec)  # the graph is fine; say which setting asks for a size it cannot run on
        check_settings(analysis, valid_sizes(analysis, scan), scan)
        raise
    rule = valid_sizes(analysis, scan)
    warnings = check_settings(analysis, rule, scan)
    if side:
        batch = spec.train.batch_size
        warning = memory_warning(analysis.params, sum(activation_bytes(analysis, batch).values()), batch, side)
        warnings += [warning] if warning else []
    return (f"ok — {spec.name}, {len(spec.nodes)} nodes, {analysis.params:,} params; {rule.describe()}",
            warnings)


def cmd_show(args: argparse.Namespace) -> int:
    from .memory import activation_bytes
    from .report import node_table
    from .shapes import analyze, valid_sizes
    from .spec import load_spec

    if args.resolved:  # what every node finally is: extends, patches, blocks and defaults applied
        print(json.dumps(analyze(load_spec(args.spec)).spec.canonical(), indent=2))
        return 0
    analysis = analyze(load_spec(args.spec), args.size)
    print(f"{analysis.spec.name}: {analysis.spec.description}")
    table, memory = node_table(analysis), activation_bytes(analysis)
    table["act MiB"] = [f"{memory[node] / 2**20:,.2f}" for node in table["node"]]
    print(table.to_string(index=False))
    print(f"total: {analysis.params:,} params, {analysis.flops / 1e9:.2f} GFLOPs, "
          f"{sum(memory.values()) / 2**20:,.1f} MiB activations per image in training (float32) "
          f"at {args.size[0]}x{args.size[1]}")
    print(valid_sizes(analysis, args.scan).describe())
    return 0


def cmd_code(args: argparse.Namespace) -> int:
    from .compile import compile_spec
    from .spec import load_spec

    print(compile_spec(load_spec(args.spec)).code.strip())
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from .io import atomic_write_text
    from .spec import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.output:
        atomic_write_text(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx, load_model, sidecar_path

    spec, model, extras = load_model(Path(args.source))
    path = export_onnx(spec, Path(args.onnx), args.size, args.opset, model, extras)
    print(f"wrote {path} and {sidecar_path(path)}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench_cli import bench_spec
    from .settings import check_device

    check_device(args.device)
    print(bench_spec(args.spec, args.size, args.batch, args.reps, args.device, args.threads))
    return 0


# -- diagram commands -----------------------------------------------------------------------------
def cmd_diagram(args: argparse.Namespace) -> int:
    from .diagram import layout, render, to_dot
    from .shapes import analyze
    from .spec import load_spec

    analysis = analyze(load_spec(args.spec), args.size)
    path = render(to_dot(layout(analysis, args.compact)), Path(args.output))
    print(f"wrote {path}" + ("" if path.suffix == ".dot" else f" and {path.with_suffix('.dot')}"))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from .diagram import render, to_dot
    from .diff import describe, diff_layout, diff_specs
    from .shapes import analyze
    from .spec import load_spec

    diff = diff_specs(analyze(load_spec(args.a), args.size), analyze(load_spec(args.b), args.size))
    print(describe(diff))
    if args.output:
        print(f"wrote {render(to_dot(diff_layout(diff, args.compact)), Path(args.output))}")
    return 0


# -- training commands ---------------------------------------------------------------------------
def override_assignments(args: argparse.Namespace) -> list[str]:
    """--set assignments plus those the shortcut options (--data, --device, --init, --epochs) stand for."""
    assignments = list(args.set or [])
    if getattr(args, "data", None):
        assignments.append(f"data.path={json.dumps(str(Path(args.data).resolve()))}")
    if getattr(args, "device", None):
        assignments.append(f"train.device={json.dumps(args.device)}")
    if getattr(args, "init", None):
        assignments.append(f"train.init={json.dumps(str(Path(args.init).resolve()))}")
    if getattr(args, "epochs", None):
        assignments.append(f"train.epochs={args.epochs}")
    return assignments


def load_with_overrides(args: argparse.Namespace, path: str):
    """The spec with --set/--data applied; a relative data.path is relative to the spec file (as
    `extends` is), --data to the working directory."""
    from .overrides import apply_overrides, resolve_data_path
    from .spec import load_spec

    return apply_overrides(resolve_data_path(load_spec(path)), override_assignments(args))


def cmd_run(args: argparse.Namespace) -> int:
    from .settings import check_device
    from .train import train_spec

    spec = load_with_overrides(args, args.spec)
    validate_one(spec, 1024)  # settings that cannot work are refused before a run folder is made
    check_device(spec.train.device)
    summary = train_spec(spec, Path(args.runs), resume=args.resume, skip_bad=args.skip_bad,
                         progress=not args.quiet, tensorboard=args.tensorboard)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 speaks
        best = (f"; best.pt: epoch {summary['best_epoch']}, val mIoU {summary['best_miou']:.4f}"
                if "best_epoch" in summary else "")
        last = f" (last epoch {summary['last_epoch']})" if "last_epoch" in summary else ""
        print(f"{spec.name}: val mIoU {summary['miou']:.4f}  pixel acc {summary['pixel_acc']:.4f}  "
              f"mean acc {summary['mean_acc']:.4f}  f.w. IoU {summary['fwiou']:.4f}{last}{best}")
    return 0


def cmd_init_from(args: argparse.Namespace) -> int:
    from .checkpoint import save_checkpoint
    from .spec import load_spec
    from .surgery import init_from

    spec = load_spec(args.spec)
    surgery = init_from(spec, Path(args.weights), args.map)
    save_checkpoint(Path(args.output), {"model": surgery.state, "spec": spec.canonical()})
    print(surgery.describe())
    print(f"wrote {args.output}; train from it with: fcngraph run {args.spec} --init {args.output}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict
    from .settings import check_device

    check_device(args.device)
    masks = Path(args.masks) if args.masks else None
    written = predict(Path(args.source), [Path(p) for p in args.images], Path(args.output), args.device,
                      args.backend, masks)
    print(f"wrote {len(written)} mask(s) and overlay(s) to {args.output}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import Inference, evaluate_run, parse_tta, table

    if args.overlap and not args.tile:
        raise FcngraphError("--overlap needs --tile SIZE")
    if args.tile is not None and not 0 <= args.overlap < args.tile:
        raise FcngraphError(f"--overlap {args.overlap}: must be ≥ 0 and smaller than --tile {args.tile}")
    flip, scales = parse_tta(args.tta)
    how = Inference(flip, scales, args.tile, args.overlap)
    data = str(Path(args.data).resolve()) if args.data else None
    result = evaluate_run(Path(args.source), args.split, data, how, args.checkpoint, args.device, args.backend)
    print(table(result))
    return 0


def _report(records, output: str, comparison=None, title: str = "fcngraph comparison", seeds=None) -> int:
    from .report import leader_line, write_report

    report = write_report(records, Path(output), title, comparison, seeds)
    print(report.results[["variant", "status", "mIoU", "pixel acc", "params (M)", "GFLOPs"]].to_string(index=False))
    print(f"wrote {output}/report.md, report.html, results.csv, per_class.csv, curves, diagrams")
    for note in report.notes:
        print(f"note: {note}")
    if comparison is not None:
        print(leader_line(comparison))
        for difference in comparison.differences.values():
            print(difference.sentence())
    failed = [r for r in records if r.status == "failed"]
    if failed:  # the report is written; the exit status still says that a run is unusable
        first = " ".join(f"{failed[0].name}: {failed[0].note}".split())[:200]
        raise FcngraphError(f"{len(failed)} of {len(records)} run(s) failed ({first}); "
                            f"{output}/report.md marks {'them' if len(failed) > 1 else 'it'}")
    return 0


def is_experiment(path: str) -> bool:
    from .spec import read_json

    return path.endswith(".json") and "variants" in read_json(Path(path))


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import run_in_stages
    from .experiment import expand, from_specs, load_experiment

    if len(args.specs) == 1 and is_experiment(args.specs[0]):
        experiment = load_experiment(args.specs[0])
        if args.seeds is not None:
            experiment = experiment.model_copy(update={"seeds": list(range(args.seeds))})
        grid_specs = expand(experiment, override_assignments(args), Path(args.runs))
        baseline, title = args.baseline or experiment.baseline_name, experiment.name
    else:
        specs = [load_with_overrides(args, path) for path in args.specs]
        experiment, grid_specs = from_specs(specs, args.seeds or 1, args.baseline)
        baseline, title = experiment.baseline_name, "fcngraph comparison"
    if baseline not in grid_specs:
        raise FcngraphError(f"--baseline '{baseline}' is not one of the variants: {', '.join(grid_specs)}")
    cells = [(name, seed, spec) for name, by_seed in grid_specs.items() for seed, spec in by_seed.items()]
    stages = experiment.stages()
    records = run_in_stages([spec for _, _, spec in cells], [stages[name] for name, _, _ in cells], Path(args.runs),
                            jobs=args.jobs, threads=args.threads, ray=args.ray,
                            progress=not args.quiet and args.jobs <= 1 and args.ray is None)
    grid: dict = {}
    for (name, seed, _), record in zip(cells, records):
        record.name = name
        grid.setdefault(name, {})[seed] = record
    comparison = statistics_or_none(grid, baseline)
    first_seed = [by_seed[min(by_seed)] for by_seed in grid.values()]
    seeds = {name: [by_seed[s] for s in sorted(by_seed)] for name, by_seed in grid.items()}
    return _report(first_seed, args.output, comparison, title, seeds)


def cmd_report(args: argparse.Namespace) -> int:
    from .compare import distinct_names, read_run

    records = [read_run(Path(path)) for path in args.runs]
    grid: dict = {}
    for record in records:
        if record.spec is not None:
            grid.setdefault(record.name, {}).setdefault(record.spec.train.seed, record)
    if all(len(by_seed) == 1 for by_seed in grid.values()):  # one run per name (or repeats of a seed)
        records = distinct_names(records)
        single = {r.name: {r.spec.train.seed: r} for r in records if r.spec is not None and r.status == "complete"}
        comparison = statistics_or_none(single, args.baseline) if len(single) > 1 else None
        return _report(records, args.output, comparison)
    # runs of one spec name with different train.seed are one variant's seeds: one column each
    first_seed = [by_seed[min(by_seed)] for by_seed in grid.values()]
    others = [r for r in records if r.spec is None]
    seeds = {name: [by_seed[s] for s in sorted(by_seed)] for name, by_seed in grid.items()}
    return _report(first_seed + others, args.output, statistics_or_none(grid, args.baseline), seeds=seeds)


def statistics_or_none(grid, baseline):
    """Paired statistics, or None (said in a note) when the runs cannot be paired, e.g. variants
    validated on different images: the report is still written, without a statistics section."""
    from .compare import statistics

    try:
        return statistics(grid, baseline)
    except FcngraphError as exc:
        print(f"note: no statistics: {exc}")  # stdout, with the report's other notes: stderr holds errors only
        return None


# -- parser -----------------------------------------------------------------------------------
def _add(sub: argparse._SubParsersAction, name: str, handler: Handler, help_text: str
         ) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fcngraph", description=(
        "Declarative FCN / U-Net architecture graphs: validate, compile, train, draw, compare."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _add(sub, "validate", cmd_validate, "Check specs: schema, graph, shapes and crop offsets.")
    p.add_argument("specs", nargs="+", type=text, help="Spec JSON files.")
    p.add_argument("--scan", type=positive_int, default=1024, help="Largest input side scanned for valid sizes.")

    p = _add(sub, "show", cmd_show, "Per-node table: op, inputs, shape, stride, RF, params, FLOPs.")
    p.add_argument("spec", type=text, help="Spec JSON file.")
    p.add_argument("--size", type=parse_size, default=(224, 224), help="Input size, N or HxW.")
    p.add_argument("--scan", type=positive_int, default=1024, help="Largest input side scanned for valid sizes.")
    p.add_argument("--resolved", action="store_true", help="Print the fully resolved spec as JSON instead "
                   "(extends, patches, blocks and defaults applied; every field filled).")

    p = _add(sub, "code", cmd_code, "Print the generated forward() of the compiled module.")
    p.add_argument("spec", type=text, help="Spec JSON file.")

    p = _add(sub, "schema", cmd_schema, "Print the JSON Schema of the spec format.")
    p.add_argument("-o", "--output", type=output_file, help="Write the schema to this file instead of stdout.")

    p = _add(sub, "export", cmd_export, "Export a model to ONNX plus a sidecar JSON (classes, palette, "
             "normalisation, input-size rule) from which `predict` works alone.")
    p.add_argument("source", type=text,
                   help="Spec JSON file (fresh weights) or run directory / checkpoint (trained weights).")
    p.add_argument("--onnx", type=output_file, required=True, help="Output .onnx file.")
    p.add_argument("--size", type=parse_size, default=(224, 224), help="Example input size, N or HxW.")
    p.add_argument("--opset", type=positive_int, default=17, help="ONNX opset version.")

    p = _add(sub, "bench", cmd_bench, "Time the compiled model against a torch.fx interpreter of "
             "the same graph (alternating runs, one process) and print the ratio.")
    p.add_argument("spec", type=text, help="Spec JSON file.")
    p.add_argument("--size", type=parse_size, default=(224, 224), help="Input size, N or HxW.")
    p.add_argument("--batch", type=positive_int, default=1, help="Batch size.")
    p.add_argument("--reps", type=positive_int, default=5, help="Timed repetitions of each side.")
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda or cuda:N.")
    p.add_argument("--threads", type=count_or_zero, default=0, help="torch CPU threads (0: leave as is).")

    p = _add(sub, "diagram", cmd_diagram, "Draw a spec as a U-shaped diagram (row = scale, column = "
             "longest path from the input); the .dot source is always written beside it.")
    p.add_argument("spec", type=text, help="Spec JSON file.")
    p.add_argument("-o", "--output", type=output_file, required=True, help="Output file: .svg, .png, .pdf or .dot.")
    p.add_argument("--size", type=parse_size, default=None, help="Input size, N or HxW, to show spatial sizes.")
    p.add_argument("--compact", action="store_true", help="Merge same-scale conv chains into one box and "
                   "fold each stage of dotted block ids (layer3.4.conv1) into one box.")

    p = _add(sub, "diff", cmd_diff, "Print node, edge and parameter differences from spec A to spec B, "
             "and optionally draw B with them marked.")
    p.add_argument("a", type=text, help="The spec compared against.")
    p.add_argument("b", type=text, help="The spec drawn.")
    p.add_argument("-o", "--output", type=output_file,
                   help="Also draw B with added/changed/removed nodes marked (.svg/.png/.pdf/.dot).")
    p.add_argument("--size", type=parse_size, default=None, help="Input size, N or HxW, to show spatial sizes.")
    p.add_argument("--compact", action="store_true", help="Merge same-scale conv chains into one box and "
                   "fold each stage of dotted block ids (layer3.4.conv1) into one box.")

    p = _add(sub, "run", cmd_run, "Train and evaluate a spec (embedded synthetic data unless --data).")
    p.add_argument("spec", type=text, help="Spec JSON file.")
    p.add_argument("--data", type=folder, help="Dataset folder (VOC layout or images/ + masks/).")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="Override a setting, e.g. train.lr=1e-4 (repeatable).")
    p.add_argument("--epochs", type=positive_int, help="Shortcut for --set train.epochs=N.")
    p.add_argument("--device", type=device, help="Shortcut for --set train.device=DEVICE (cpu, cuda, cuda:N).")
    p.add_argument("--runs", type=folder, default="runs", help="Folder that holds run directories.")
    p.add_argument("--init", type=text, help="Start from these weights (run dir, checkpoint or state dict), matched by "
                   "node id; shortcut for --set train.init=PATH.")
    p.add_argument("--resume", action="store_true", help="Continue an unfinished run from its last checkpoint.")
    p.add_argument("--skip-bad", action="store_true", help="Skip bad samples (and say how many) instead of stopping.")
    p.add_argument("--quiet", action="store_true", help="No progress bar or per-step lines.")
    p.add_argument("--tensorboard", action="store_true",
                   help="Also log loss, lr and validation metrics to <run dir>/tensorboard (needs tensorboard).")

    p = _add(sub, "compare", cmd_compare, "Train each spec that has no finished run (finished runs are "
             "reused) and write a comparison report: tables, curves, diagrams, predictions.")
    p.add_argument("specs", nargs="+", type=text, help="Spec JSON files, one per variant, or one experiment file "
                   "(variants, seeds, data, budget, baseline; see specs/experiment.schema.json).")
    p.add_argument("-o", "--output", type=folder, required=True,
                   help="Report folder (report.md, report.html, results.csv, "
                   "stats.json, ...).")
    p.add_argument("--seeds", type=positive_int,
                   help="Train seeds 0..N-1 of every variant (default 1; with an experiment "
                   "file, replaces its seeds).")
    p.add_argument("--baseline", type=text, help="Variant the others are compared against (default: the first).")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="Independent runs trained at once, as separate processes.")
    p.add_argument("--ray", type=text, metavar="auto|ADDRESS|local",
                   help="Run each training run as a Ray task (pip install "
                   "-e '.[ray]'): 'auto' joins the running cluster, ADDRESS a given one, 'local' starts one here; "
                   "--runs must be on a filesystem every node sees. A failed task is retried once.")
    p.add_argument("--threads", type=count_or_zero, default=0,
                   help="torch threads per run (0: with --jobs N, the cores "
                   "split N ways; else as is). Same threads → same numbers, whatever --jobs.")
    p.add_argument("--runs", type=folder, default="runs", help="Folder that holds run directories.")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="Override a setting in every spec, e.g. train.epochs=5 (repeatable).")
    p.add_argument("--data", type=folder, help="Dataset folder for every variant (VOC layout or images/ + masks/).")
    p.add_argument("--epochs", type=positive_int, help="Shortcut for --set train.epochs=N.")
    p.add_argument("--quiet", action="store_true", help="No per-step progress lines.")

    p = _add(sub, "report", cmd_report, "Write the comparison report of existing run directories, "
             "training nothing; unfinished or failed runs are marked in the table.")
    p.add_argument("runs", nargs="+", type=folder,
                   help="Run directories (runs/<name>-<hash>); runs of one spec name with "
                   "different train.seed are one variant over seeds, with statistics.")
    p.add_argument("-o", "--output", type=folder, required=True, help="Report folder.")
    p.add_argument("--baseline", type=text, help="Variant the others are compared against (default: the first).")

    p = _add(sub, "init-from", cmd_init_from, "Net surgery: pour weights into a spec's model and save them "
             "as a checkpoint to train from (--init).")
    p.add_argument("spec", type=text, help="Spec JSON file whose model receives the weights.")
    p.add_argument("weights", type=text, help="Run directory, fcngraph checkpoint or state dict file (.pt/.pth).")
    p.add_argument("--map", choices=["ids", "vgg16", "resnet"], default="ids", help="ids: match node ids and "
                   "shapes (e.g. FCN-32s run → FCN-16s); vgg16: torchvision VGG16 layout, fc6/fc7 reshaped to "
                   "convs; resnet: torchvision ResNet-18/34 keys (bn1 → conv1.1) into a specs/encoders/ encoder.")
    p.add_argument("-o", "--output", type=output_file, required=True, help="Checkpoint file to write.")

    p = _add(sub, "eval", cmd_eval, "Score a trained run on a split of a dataset: writes eval-<split>.json, "
             "a per-image CSV and per-image counts (.npz) into the run directory and prints the table.")
    p.add_argument("source", help="Run directory or checkpoint file.")
    p.add_argument("--data", help="Dataset folder with the same classes (default: the spec's data.path).")
    p.add_argument("--split", default="val", help="Split to score (a split file name, e.g. test).")
    p.add_argument("--tta", help="Test-time augmentation: flip, scales=0.75,1,1.25 (each between 0.125 and 8), "
                   "or flip+scales=....")
    p.add_argument("--tile", type=int, help="Sliding-window tile side (must be a valid input size of the spec).")
    p.add_argument("--overlap", type=int, default=0, help="Overlap of neighbouring tiles in pixels.")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best",
                   help="Which checkpoint of a run directory to score.")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N.")
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default=None,
                   help="Inference backend (default: the fastest installed, onnxruntime if present; torch on "
                   "CUDA). Scores agree across backends within float noise.")

    p = _add(sub, "predict", cmd_predict, "Write palette PNG masks and overlays for images.")
    p.add_argument("source", type=text, help="Run directory (uses best.pt), checkpoint file, or exported .onnx "
                   "(with its .onnx.json sidecar beside it).")
    p.add_argument("images", nargs="+", type=text, help="Image files (.png/.jpg, or .tif/.npy stacks of the "
                   "spec's input channels).")
    p.add_argument("-o", "--output", type=folder, required=True, help="Output folder.")
    p.add_argument("--masks", type=text, help="Folder of ground-truth masks (<stem>.png, .npy or .tif): also write a "
                   "prediction | truth panel.")
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda or cuda:N.")
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default=None,
                   help="Inference backend (default: the fastest installed, onnxruntime if present; "
                   "torch on CUDA).")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is printed as \udcff, not raised on
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except FcngraphError as exc:
        return _fail(str(exc), exc.exit_status)
    except KeyboardInterrupt:
        print("fcngraph: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (e.g. `head`) went away: stop quietly, and keep Python's exit-time flush
        # of stdout from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        return _fail(describe_os_error(exc), os_error_status(exc))
    except MemoryError:
        return _fail("out of memory; try a smaller batch, crop or image size", EXIT_ENVIRONMENT)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug, shown as one
        if is_out_of_memory(exc):
            return _fail(f"out of memory ({message_line(exc)}); try a smaller batch, crop or image size",
                         EXIT_ENVIRONMENT)
        traceback.print_exc()
        print("fcngraph: internal error: this is a bug in fcngraph, not in your input; please "
              "report it with the command you ran and the traceback above", file=sys.stderr)
        return EXIT_BUG


OUT_OF_MEMORY = ("can't allocate memory", "Storage size calculation overflowed", "out of memory")


def is_out_of_memory(exc: Exception) -> bool:
    """torch's allocation failures: CPU (a RuntimeError naming DefaultCPUAllocator), CUDA
    (torch.OutOfMemoryError), or a tensor too large to size; told by name, so torch need not load."""
    return type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and any(text in str(exc) for text in OUT_OF_MEMORY))


def message_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:200]


def _fail(message: str, status: int) -> int:
    print(f"fcngraph: error: {' '.join(message.split())}", file=sys.stderr)
    return status


def describe_os_error(exc: OSError) -> str:
    """One line naming the file and what the system said, e.g. 'runs/x: No space left on device'."""
    reason = exc.strerror or exc.__class__.__name__
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(names)}: {reason}" if names else f"{reason}: {exc}"


def os_error_status(exc: OSError) -> int:
    """A path the user named (or a split file lists) that is missing, of the wrong kind, too long
    or a loop of links is input; the rest is the machine."""
    import errno

    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return EXIT_INPUT
    return EXIT_INPUT if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP) else EXIT_ENVIRONMENT
