"""Analysis → torch.fx.GraphModule: generated forward code, no interpreter in the loop.

Input: a spec (analysed here). Output: `SpecModule`, whose `code` is plain PyTorch, whose
submodules are named by node id, and whose runtime errors name the node that raised them.
It runs on CPU or CUDA and works with torch.compile, torch.jit.script and ONNX export.
"""

from __future__ import annotations

import linecache
from types import TracebackType
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .errors import NodeRuntimeError
from .graph import check_reserved, module_attribute_names
from .shapes import Analysis, analyze
from .spec import INPUT, Spec


class SpecModule(fx.GraphModule):
    """A compiled spec. `spec_node_of` maps every fx node name to the spec node that owns it;
    `fx_name_of` maps each spec node to the fx node holding its output. With `aux_outputs`
    the forward returns (main, *aux) in train mode (`aux_weights` in the same order) and only
    main in eval mode."""

    __jit_ignored_attributes__ = ["spec_node_of", "fx_name_of", "aux_weights"]  # not for TorchScript

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            out = super().__call__(*args, **kwargs)
            if isinstance(out, tuple) and not self.training:
                return out[0]  # auxiliary outputs serve training only
            return out
        except NodeRuntimeError:
            raise
        except Exception as exc:
            node = self.failed_node(exc.__traceback__)
            if node is None:
                raise
            raise NodeRuntimeError(f"node '{node}': {type(exc).__name__}: {exc}") from exc

    def failed_node(self, tb: TracebackType | None) -> str | None:
        """The spec node whose line of the generated forward was running when `tb` was raised."""
        line = None
        while tb is not None:
            code = tb.tb_frame.f_code
            if "eval_with_key" in code.co_filename:  # torch.fx's generated source
                line = linecache.getline(code.co_filename, tb.tb_lineno)
            tb = tb.tb_next
        if not line or "=" not in line:
            return None
        return self.spec_node_of.get(line.split("=", 1)[0].strip())


def compile_spec(spec: Spec | Analysis, device: str | torch.device | None = None,
                 aux: bool = True) -> SpecModule:
    """Build the module for a spec (or an existing analysis of one); `aux=False` leaves out
    the auxiliary outputs altogether (a smaller graph for export)."""
    analysis = spec if isinstance(spec, Analysis) else analyze(spec)
    spec = analysis.spec
    for node in analysis.graph.order:  # validate knew torch 2.13's attributes; this torch may have more
        check_reserved(spec, node, module_attribute_names())
    root = nn.Module()
    graph = fx.Graph()
    env = {INPUT: graph.placeholder("x")}
    owners: dict[str, str] = {}
    for node in analysis.graph.order:
        op, info = spec.nodes[node], analysis.nodes[node]
        in_ch = [analysis.nodes[i].channels for i in op.inputs]
        module = op.build(in_ch, info.channels)
        if module is not None:
            _attach(root, node, module)
        before = set(graph.nodes)
        env[node] = op.emit(graph, node, [env[i] for i in op.inputs],
                            {field: env[ref] for field, ref in op.resolve_refs(spec.nodes).items()},
                            list(info.offsets))
        owners.update({fx_node.name: node for fx_node in graph.nodes if fx_node not in before})
    aux_nodes = list(spec.aux_outputs) if aux else []
    if aux_nodes:
        graph.output((env[spec.output], *(env[node] for node in aux_nodes)))
    else:
        graph.output(env[spec.output])
    module = SpecModule(root, graph, class_name=_class_name(spec.name))
    module.aux_weights = [spec.aux_outputs[node] for node in aux_nodes]
    module.spec_node_of = owners
    module.fx_name_of = {node: fx_node.name for node, fx_node in env.items()}
    return module.to(device) if device is not None else module


def _attach(root: nn.Module, node: str, module: nn.Module) -> None:
    """Add a module under its node id; dotted ids (`layer2.0.conv1`) nest, as torchvision's do."""
    *parents, leaf = node.split(".")
    for part in parents:
        if not hasattr(root, part):
            root.add_module(part, nn.Module())
        root = getattr(root, part)
    root.add_module(leaf, module)


def _class_name(name: str) -> str:
    words = "".join(ch if ch.isalnum() else " " for ch in name).split()
    text = "".join(word[:1].upper() + word[1:] for word in words) or "Spec"
    return text if text[0].isalpha() else f"Spec{text}"
