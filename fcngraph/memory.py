"""Analysis at an input size → static activation-memory estimate of a training step, per node.

Counts the tensors each node materialises in a training forward (what autograd may keep for
backward): every conv layer's output, a norm's output beside it, a non-in-place activation's
output, max-pool indices (int64), dropout masks; crops are views and cost nothing. Float32.
`saved_activation_bytes` measures the same quantity on a real model (saved-tensor hooks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .ops.base import window_length
from .shapes import Analysis

if TYPE_CHECKING:  # only the measurement needs torch; the estimate runs in `validate` without it
    import torch

FLOAT = 4  # bytes per float32 element
INPLACE_ACTS = {"relu", "leaky_relu", "silu", "elu", "none"}  # built in place (ops/conv.py)


def _tensors_per_layer(layer: Any) -> int:
    """A conv layer's output, its norm's output, a non-in-place activation's output (`norm` and
    `act` may differ per layer of a stack)."""
    return 1 + (layer.norm != "none") + (layer.act not in INPLACE_ACTS)


def _tensors_per_output(op: Any) -> float:
    """Output-sized tensors a node makes, in float32 units (int64 indices count 2, bool 1/4)."""
    name = op.name
    if name == "pool":
        return 1 + (2 if op.mode == "max" else 0)  # output + int64 argmax indices
    if name == "dropout":
        return 1 + 0.25  # output + bool mask
    if name == "crop":
        return 0  # a view of its input
    return 1


def node_bytes(analysis: Analysis, node: str, batch: int = 1) -> int:
    """Activation bytes node `node` adds in a training forward of `batch` images."""
    info = analysis.nodes[node]
    if info.size is None:
        raise ValueError("activation memory needs an analysis at an input size")
    if info.op is None:  # the input batch itself (kept by the first conv)
        return batch * info.channels * info.size[0] * info.size[1] * FLOAT
    op = info.op
    if op.name == "conv":  # every layer at its own size and width (the layers the analysis built)
        (h, w), total = analysis.nodes[op.inputs[0]].size, 0
        for layer in analysis.rules[node].layers:
            _, cout, k, s, p, d, _, _ = layer
            h, w = window_length(h, k, s, p, d), window_length(w, k, s, p, d)
            total += cout * h * w * _tensors_per_layer(layer)
        return int(batch * total * FLOAT)
    return int(batch * info.channels * info.size[0] * info.size[1] * _tensors_per_output(op) * FLOAT)


def activation_bytes(analysis: Analysis, batch: int = 1) -> dict[str, int]:
    """Per node (input first, execution order) activation bytes of a training forward."""
    return {node: node_bytes(analysis, node, batch) for node in analysis.nodes}


def saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Measured: bytes of the distinct non-parameter storages a training forward of `x` holds
    when it returns (what autograd saved, found with saved-tensor hooks, plus the output);
    works on CPU, where there are no allocator statistics."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    pack(out)  # the scores are held too when the forward returns (the loss reads them)
    return sum(seen.values())
