"""Command line: a thin layer over the library. `main(argv) -> exit code`.

Every error fcngraph knows about is printed as one line (`fcngraph: error: ...`) with exit
status 2; nothing prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import FcngraphError

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


# -- spec commands ----------------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    from .shapes import analyze, valid_sizes
    from .spec import load_spec

    failed = 0
    for path in args.specs:
        try:
            analysis = analyze(load_spec(path))
        except FcngraphError as exc:
            print(f"fcngraph: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        rule = valid_sizes(analysis, args.scan)
        print(f"{path}: ok — {analysis.spec.name}, {len(analysis.spec.nodes)} nodes, "
              f"{analysis.params:,} params; {rule.describe()}")
    return 2 if failed else 0


def cmd_show(args: argparse.Namespace) -> int:
    from .report import node_table
    from .shapes import analyze, valid_sizes
    from .spec import load_spec

    analysis = analyze(load_spec(args.spec), args.size)
    print(f"{analysis.spec.name}: {analysis.spec.description}")
    print(node_table(analysis).to_string(index=False))
    print(f"total: {analysis.params:,} params, {analysis.flops / 1e9:.2f} GFLOPs "
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
    from .export import export_onnx
    from .spec import load_spec

    path = export_onnx(load_spec(args.spec), Path(args.onnx), args.size, args.opset)
    print(f"wrote {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench_cli import bench_spec

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
    from .overrides import apply_overrides
    from .spec import load_spec

    spec = load_spec(path)
    if spec.data.path and not Path(spec.data.path).is_absolute():
        where = (Path(path).parent / spec.data.path).resolve()
        spec = apply_overrides(spec, [f"data.path={json.dumps(str(where))}"])
    return apply_overrides(spec, override_assignments(args))


def cmd_run(args: argparse.Namespace) -> int:
    from .train import train_spec

    spec = load_with_overrides(args, args.spec)
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
    from .spec import load_spec
    from .surgery import init_from
    from .train import save_checkpoint

    spec = load_spec(args.spec)
    surgery = init_from(spec, Path(args.weights), args.map)
    save_checkpoint(Path(args.output), {"model": surgery.state, "spec": spec.canonical()})
    print(surgery.describe())
    print(f"wrote {args.output}; train from it with: fcngraph run {args.spec} --init {args.output}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict

    masks = Path(args.masks) if args.masks else None
    written = predict(Path(args.source), [Path(p) for p in args.images], Path(args.output), args.device, masks)
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
    result = evaluate_run(Path(args.source), args.split, data, how, args.checkpoint, args.device)
    print(table(result))
    return 0


def _report(records, output: str) -> int:
    from .report import write_report

    report = write_report(records, Path(output))
    print(report.results[["variant", "status", "mIoU", "pixel acc", "params (M)", "GFLOPs"]].to_string(index=False))
    print(f"wrote {output}/report.md, report.html, results.csv, per_class.csv, curves, diagrams")
    for note in report.notes:
        print(f"note: {note}")
    return 1 if any(r.status == "failed" for r in records) else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_specs

    specs = [load_with_overrides(args, path) for path in args.specs]
    return _report(compare_specs(specs, Path(args.runs), progress=not args.quiet), args.output)


def cmd_report(args: argparse.Namespace) -> int:
    from .compare import read_run

    return _report([read_run(Path(path)) for path in args.runs], args.output)


# -- parser -----------------------------------------------------------------------------------
def _add(sub: argparse._SubParsersAction, name: str, handler: Handler, help_text: str
         ) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcngraph", description=(
        "Declarative FCN / U-Net architecture graphs: validate, compile, train, draw, compare."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _add(sub, "validate", cmd_validate, "Check specs: schema, graph, shapes and crop offsets.")
    p.add_argument("specs", nargs="+", help="Spec JSON files.")
    p.add_argument("--scan", type=int, default=1024, help="Largest input side scanned for valid sizes.")

    p = _add(sub, "show", cmd_show, "Per-node table: op, inputs, shape, stride, RF, params, FLOPs.")
    p.add_argument("spec", help="Spec JSON file.")
    p.add_argument("--size", type=parse_size, default=(224, 224), help="Input size, N or HxW.")
    p.add_argument("--scan", type=int, default=1024, help="Largest input side scanned for valid sizes.")

    p = _add(sub, "code", cmd_code, "Print the generated forward() of the compiled module.")
    p.add_argument("spec", help="Spec JSON file.")

    p = _add(sub, "schema", cmd_schema, "Print the JSON Schema of the spec format.")
    p.add_argument("-o", "--output", help="Write the schema to this file instead of stdout.")

    p = _add(sub, "export", cmd_export, "Export the compiled model to ONNX.")
    p.add_argument("spec", help="Spec JSON file.")
    p.add_argument("--onnx", required=True, help="Output .onnx file.")
    p.add_argument("--size", type=parse_size, default=(224, 224), help="Example input size, N or HxW.")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version.")

    p = _add(sub, "bench", cmd_bench, "Time the compiled model against a torch.fx interpreter of "
             "the same graph (alternating runs, one process) and print the ratio.")
    p.add_argument("spec", help="Spec JSON file.")
    p.add_argument("--size", type=parse_size, default=(224, 224), help="Input size, N or HxW.")
    p.add_argument("--batch", type=int, default=1, help="Batch size.")
    p.add_argument("--reps", type=int, default=5, help="Timed repetitions of each side.")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N.")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is).")

    p = _add(sub, "diagram", cmd_diagram, "Draw a spec as a U-shaped diagram (row = scale, column = "
             "execution order); the .dot source is always written beside it.")
    p.add_argument("spec", help="Spec JSON file.")
    p.add_argument("-o", "--output", required=True, help="Output file: .svg, .png, .pdf or .dot.")
    p.add_argument("--size", type=parse_size, default=None, help="Input size, N or HxW, to show spatial sizes.")
    p.add_argument("--compact", action="store_true", help="Collapse same-scale conv chains into one stage box.")

    p = _add(sub, "diff", cmd_diff, "Print node, edge and parameter differences from spec A to spec B, "
             "and optionally draw B with them marked.")
    p.add_argument("a", help="The spec compared against.")
    p.add_argument("b", help="The spec drawn.")
    p.add_argument("-o", "--output", help="Also draw B with added/changed/removed nodes marked (.svg/.png/.pdf/.dot).")
    p.add_argument("--size", type=parse_size, default=None, help="Input size, N or HxW, to show spatial sizes.")
    p.add_argument("--compact", action="store_true", help="Collapse same-scale conv chains into one stage box.")

    p = _add(sub, "run", cmd_run, "Train and evaluate a spec (embedded synthetic data unless --data).")
    p.add_argument("spec", help="Spec JSON file.")
    p.add_argument("--data", help="Dataset folder (VOC layout or images/ + masks/).")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="Override a setting, e.g. train.lr=1e-4 (repeatable).")
    p.add_argument("--epochs", type=int, help="Shortcut for --set train.epochs=N.")
    p.add_argument("--device", help="Shortcut for --set train.device=DEVICE (cpu, cuda, cuda:N).")
    p.add_argument("--runs", default="runs", help="Folder that holds run directories.")
    p.add_argument("--init", help="Start from these weights (run dir, checkpoint or state dict), matched by "
                   "node id; shortcut for --set train.init=PATH.")
    p.add_argument("--resume", action="store_true", help="Continue an unfinished run from its last checkpoint.")
    p.add_argument("--skip-bad", action="store_true", help="Skip bad samples (and say how many) instead of stopping.")
    p.add_argument("--quiet", action="store_true", help="No progress bar or per-step lines.")
    p.add_argument("--tensorboard", action="store_true",
                   help="Also log loss, lr and validation metrics to <run dir>/tensorboard (needs tensorboard).")

    p = _add(sub, "compare", cmd_compare, "Train each spec that has no finished run (finished runs are "
             "reused) and write a comparison report: tables, curves, diagrams, predictions.")
    p.add_argument("specs", nargs="+", help="Spec JSON files, one per variant.")
    p.add_argument("-o", "--output", required=True, help="Report folder (report.md, report.html, results.csv, ...).")
    p.add_argument("--runs", default="runs", help="Folder that holds run directories.")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="Override a setting in every spec, e.g. train.epochs=5 (repeatable).")
    p.add_argument("--epochs", type=int, help="Shortcut for --set train.epochs=N.")
    p.add_argument("--quiet", action="store_true", help="No per-step progress lines.")

    p = _add(sub, "report", cmd_report, "Write the comparison report of existing run directories, "
             "training nothing; unfinished or failed runs are marked in the table.")
    p.add_argument("runs", nargs="+", help="Run directories (runs/<name>-<hash>).")
    p.add_argument("-o", "--output", required=True, help="Report folder.")

    p = _add(sub, "init-from", cmd_init_from, "Net surgery: pour weights into a spec's model and save them "
             "as a checkpoint to train from (--init).")
    p.add_argument("spec", help="Spec JSON file whose model receives the weights.")
    p.add_argument("weights", help="Run directory, fcngraph checkpoint or state dict file (.pt/.pth).")
    p.add_argument("--map", choices=["ids", "vgg16"], default="ids", help="ids: match node ids and shapes "
                   "(e.g. FCN-32s run → FCN-16s); vgg16: torchvision VGG16 layout, fc6/fc7 reshaped to convs.")
    p.add_argument("-o", "--output", required=True, help="Checkpoint file to write.")

    p = _add(sub, "eval", cmd_eval, "Score a trained run on a split of a dataset: writes eval-<split>.json, "
             "a per-image CSV and per-image counts (.npz) into the run directory and prints the table.")
    p.add_argument("source", help="Run directory or checkpoint file.")
    p.add_argument("--data", help="Dataset folder with the same classes (default: the spec's data.path).")
    p.add_argument("--split", default="val", help="Split to score (a split file name, e.g. test).")
    p.add_argument("--tta", help="Test-time augmentation: flip, scales=0.75,1,1.25, or flip+scales=....")
    p.add_argument("--tile", type=int, help="Sliding-window tile side (must be a valid input size of the spec).")
    p.add_argument("--overlap", type=int, default=0, help="Overlap of neighbouring tiles in pixels.")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best",
                   help="Which checkpoint of a run directory to score.")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N.")

    p = _add(sub, "predict", cmd_predict, "Write palette PNG masks and overlays for images.")
    p.add_argument("source", help="Run directory (uses best.pt) or checkpoint file.")
    p.add_argument("images", nargs="+", help="Image files.")
    p.add_argument("-o", "--output", required=True, help="Output folder.")
    p.add_argument("--masks", help="Folder of ground-truth masks (<stem>.png): also write a prediction | truth panel.")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except FcngraphError as exc:
        print(f"fcngraph: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fcngraph: interrupted", file=sys.stderr)
        return 130
