"""`fcngraph bench`: the compiled module against a torch.fx Interpreter of the same graph.

Input: a spec and an input size. Output: a short text report of forward and
forward+backward medians and their ratio, measured by alternating runs in one process.
"""

from __future__ import annotations

import torch
import torch.fx as fx

from .bench import alternate, forward_step, median, ratio, train_step
from .compile import compile_spec
from .shapes import analyze
from .spec import load_spec


class Interpreted(torch.nn.Module):
    """The same modules run node by node by torch.fx.Interpreter (the 'no codegen' baseline)."""

    def __init__(self, graph_module: fx.GraphModule) -> None:
        super().__init__()
        self.graph_module = graph_module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fx.Interpreter(self.graph_module).run(x)


def bench_spec(path: str, size: tuple[int, int], batch: int, reps: int, device: str,
               threads: int) -> str:
    if threads:
        torch.set_num_threads(threads)
    spec = load_spec(path)
    analysis = analyze(spec, size)
    dev = torch.device(device)
    model = compile_spec(analysis, dev).train()
    baseline = Interpreted(model)
    torch.manual_seed(0)
    x = torch.randn(batch, spec.input.channels, *size, device=dev)  # [B, C, H, W]
    target = torch.randint(0, spec.num_classes, (batch, *analysis.output.size), device=dev)
    fwd = alternate({"compiled": forward_step(model, x), "interpreted": forward_step(baseline, x)},
                    reps, dev)
    both = alternate({"compiled": train_step(model, x, target),
                      "interpreted": train_step(baseline, x, target)}, reps, dev)
    lines = [f"{spec.name} on {dev} ({torch.get_num_threads()} threads), batch {batch}, "
             f"{size[0]}x{size[1]}: {analysis.params:,} params, {analysis.flops / 1e9:.2f} GFLOPs/image",
             f"forward      compiled {median(fwd['compiled']):8.1f} ms   interpreted "
             f"{median(fwd['interpreted']):8.1f} ms   ratio {ratio(fwd, 'compiled', 'interpreted'):.3f}",
             f"forward+back compiled {median(both['compiled']):8.1f} ms   interpreted "
             f"{median(both['interpreted']):8.1f} ms   ratio {ratio(both, 'compiled', 'interpreted'):.3f}"]
    return "\n".join(lines)
