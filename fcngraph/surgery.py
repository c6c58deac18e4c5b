"""Weights from elsewhere → a state dict for a spec's model (the FCN paper's net surgery).

Input: a spec and a source: a run directory, an fcngraph checkpoint, or a plain state dict
file. Mapping `ids` copies every tensor whose key (node id + layer) and shape match, as when
FCN-16s starts from a trained FCN-32s; `vgg16` pours torchvision's VGG16 layout into the
spec's conv layers in execution order, reshaping classifier.0/3 into the 7x7 fc6 and 1x1 fc7
convolutions. Output: the full state dict and a `Surgery` record of what came from where.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import checkpoint_path, load_checkpoint
from .compile import compile_spec
from .errors import FcngraphError
from .ops import REGISTRY
from .spec import Spec

VGG16_CONVS = 13  # conv1_1 … conv5_3; then classifier.0 (fc6) and classifier.3 (fc7)


class SurgeryError(FcngraphError):
    """Weights that cannot be mapped onto the spec."""


@dataclass
class Surgery:
    state: dict[str, torch.Tensor]
    copied: dict[str, str] = field(default_factory=dict)  # target key → source key
    reshaped: dict[str, str] = field(default_factory=dict)  # target key → source key (fc6/fc7)
    mismatched: list[str] = field(default_factory=list)  # target keys whose source shape differs
    unused: list[str] = field(default_factory=list)  # source keys with no place in the spec

    def kept_nodes(self) -> list[str]:
        """Nodes none of whose tensors were copied: they keep their own initialisation."""
        touched = {key.split(".")[0] for key in {**self.copied, **self.reshaped}}
        return list(dict.fromkeys(k.split(".")[0] for k in self.state if k.split(".")[0] not in touched))

    def describe(self) -> str:
        nodes = sorted({k.split(".")[0] for k in {**self.copied, **self.reshaped}})
        lines = [f"copied {len(self.copied) + len(self.reshaped)} tensors into {len(nodes)} nodes: {', '.join(nodes)}"]
        if self.reshaped:
            lines.append("reshaped: " + ", ".join(f"{s} → {t}" for t, s in self.reshaped.items()))
        lines.append("kept their own initialisation: " + (", ".join(self.kept_nodes()) or "none"))
        if self.mismatched:
            lines.append("shape differs, not copied: " + ", ".join(self.mismatched))
        if self.unused:
            lines.append("not used from the source: " + ", ".join(self.unused))
        return "\n".join(lines)


def read_weights(source: Path) -> dict[str, torch.Tensor]:
    """A state dict from a run directory, an fcngraph checkpoint or a plain state dict file."""
    payload = load_checkpoint(checkpoint_path(Path(source)))
    state = payload.get("model", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SurgeryError(f"{source}: not a state dict or an fcngraph checkpoint")
    return state


def by_ids(target: dict[str, torch.Tensor], source: dict[str, torch.Tensor]) -> Surgery:
    """Copy every tensor whose key and shape match."""
    surgery = Surgery(dict(target))
    for key, value in target.items():
        if key not in source:
            continue
        if source[key].shape != value.shape:
            surgery.mismatched.append(f"{key} {list(source[key].shape)} vs {list(value.shape)}")
            continue
        surgery.state[key] = source[key].to(value.dtype).clone()
        surgery.copied[key] = key
    surgery.unused = [key for key in source if key not in target]
    return surgery


def _vgg16_layers(source: dict[str, torch.Tensor], path: Path) -> list[str]:
    """Source weight keys in order: 13 conv weights, then fc6 and fc7 (torchvision layout)."""
    def index(key: str) -> int:
        return int(key.split(".")[1])

    convs = sorted((k for k in source if re.fullmatch(r"features\.\d+\.weight", k) and source[k].dim() == 4),
                   key=index)
    linears = sorted((k for k in source if re.fullmatch(r"classifier\.\d+\.weight", k)), key=index)
    if any("running_mean" in k for k in source):
        raise SurgeryError(f"{path}: batch-norm VGG (vgg16_bn) layouts are not supported by --map vgg16")
    if len(convs) != VGG16_CONVS or len(linears) < 2:
        raise SurgeryError(f"{path}: not a torchvision VGG16 state dict: {len(convs)} conv weights under "
                           f"features.N (VGG16 has {VGG16_CONVS}) and {len(linears)} under classifier.N (needs 2+)")
    return convs + linears[:2]


def _spec_convs(spec: Spec, model: torch.nn.Module) -> list[tuple[str, str]]:
    """(node, module path) of every conv layer of the spec's `conv` nodes, in execution order."""
    layers = []
    for node, op in spec.nodes.items():
        if isinstance(op, REGISTRY["conv"]):
            layers += [(node, f"{node}.{name}") for name, module in model.get_submodule(node).named_children()
                       if isinstance(module, torch.nn.Conv2d)]
    return layers


def from_vgg16(spec: Spec, model: torch.nn.Module, source: dict[str, torch.Tensor], path: Path) -> Surgery:
    """torchvision VGG16 → the spec's first 15 conv layers (fc6/fc7 reshaped into convolutions)."""
    keys = _vgg16_layers(source, path)
    layers = _spec_convs(spec, model)
    if len(layers) < len(keys):
        raise SurgeryError(f"{spec.file or spec.name}: has {len(layers)} conv layers in its conv nodes; "
                           f"VGG16 needs {len(keys)} (13 convs, fc6, fc7)")
    surgery = Surgery(dict(model.state_dict()))
    for key, (node, prefix) in zip(keys, layers):
        for suffix in ("weight", "bias"):
            src_key, dst_key = key.rsplit(".", 1)[0] + f".{suffix}", f"{prefix}.{suffix}"
            if src_key not in source or dst_key not in surgery.state:
                continue
            src, dst = source[src_key], surgery.state[dst_key]
            if src.numel() != dst.numel() or src.shape[0] != dst.shape[0]:
                raise SurgeryError(f"node '{node}': {dst_key} has shape {list(dst.shape)}; VGG16's {src_key} "
                                   f"{list(src.shape)} does not fit it")
            surgery.state[dst_key] = src.reshape(dst.shape).to(dst.dtype).clone()  # fc [out, C*k*k] → [out, C, k, k]
            (surgery.reshaped if src.shape != dst.shape else surgery.copied)[dst_key] = src_key
    used = set(surgery.copied.values()) | set(surgery.reshaped.values())
    surgery.unused = [k for k in source if k not in used]
    return surgery


# torchvision ResNet keys → spec ids: a conv node holds conv + BN as `.0` / `.1`
RESNET_RENAMES = [(re.compile(r"^((?:layer\d+\.\d+\.)?)conv(\d)\.weight$"), r"\1conv\2.0.weight"),
                  (re.compile(r"^((?:layer\d+\.\d+\.)?)bn(\d)\.(\w+)$"), r"\1conv\2.1.\3")]


def from_resnet(target: dict[str, torch.Tensor], source: dict[str, torch.Tensor]) -> Surgery:
    """torchvision ResNet-18/34 (conv1/bn1, layerN.i.conv1/bn1/conv2/bn2/downsample) → the shipped
    encoders' ids (specs/encoders/); `fc` stays unused."""
    renamed: dict[str, str] = {}  # spec key → torchvision key
    for key in source:
        new = key
        for pattern, replacement in RESNET_RENAMES:
            new = pattern.sub(replacement, new)
        renamed[new] = key
    surgery = by_ids(target, {new: source[old] for new, old in renamed.items()})
    surgery.copied = {key: renamed[key] for key in surgery.copied}
    surgery.unused = [renamed[key] for key in surgery.unused]
    return surgery


def init_from(spec: Spec, source: Path, mapping: str = "ids", model: torch.nn.Module | None = None) -> Surgery:
    """`model`'s state dict (by default a freshly initialised one of the spec) with `source`'s
    tensors poured in."""
    if model is None:
        torch.manual_seed(spec.train.seed)
        model = compile_spec(spec)
    weights = read_weights(Path(source))
    if mapping == "vgg16":
        return from_vgg16(spec, model, weights, Path(source))
    mapper = from_resnet if mapping == "resnet" else by_ids
    surgery = mapper(model.state_dict(), weights)
    if not surgery.copied:
        raise SurgeryError(f"{source}: no tensor matches a node of {spec.name} by id and shape; "
                           f"for torchvision VGG16 / ResNet weights use --map vgg16 / resnet")
    return surgery
