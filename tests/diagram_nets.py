"""Stand-in nets for diagram tests: specs built in Python with the shapes of a ResNet-34 U-Net,
a UNet++ and an FPN, from the ops that exist today (conv, pool, add, concat, upsample, score).

Block instances get dotted ids (`layer3.4.conv1`) as expanded blocks will have; `as_spec`
validates each node and builds the `Spec` directly, because today's node-id pattern has no dots.
Not faithful nets (no ReLU after the residual add, for one): only their graph shapes matter here.
"""

from __future__ import annotations

import random

from fcngraph.spec import Spec, load_spec

RESNET34 = (3, 4, 6, 3)  # BasicBlocks per stage
WIDTHS = (64, 128, 256, 512)


def _respell(value, old: str, new: str):
    if isinstance(value, str):
        return value.replace(old, new)
    return [_respell(v, old, new) for v in value] if isinstance(value, list) else value


def as_spec(data: dict) -> Spec:
    """A validated Spec from spec data, allowing dotted node ids: validated with the dots spelt
    as a marker, then every id and reference spelt with dots again."""
    marker = "__dot__"
    nodes = {node.replace(".", marker): {k: _respell(v, ".", marker) for k, v in body.items()}
             for node, body in data["nodes"].items()}
    spec = load_spec({**data, "nodes": nodes, "output": data["output"].replace(".", marker)})
    nodes = {node.replace(marker, "."): op.model_copy(update={k: _respell(v, marker, ".") for k, v in op})
             for node, op in spec.nodes.items()}
    return Spec.model_construct(**{**dict(spec), "nodes": nodes, "output": data["output"]})


def shuffled(data: dict, seed: int) -> dict:
    """The same spec with its nodes listed in another order."""
    items = list(data["nodes"].items())
    random.Random(seed).shuffle(items)
    return {**data, "nodes": dict(items)}


def _conv(source: str, out: int, kernel: int = 3, stride: int = 1, act: str = "relu") -> dict:
    return {"op": "conv", "in": source, "out": out, "kernel": kernel, "stride": stride,
            "pad": kernel // 2, "norm": "batch", "bias": False, "act": act}


def resnet_encoder(nodes: dict, blocks: tuple[int, ...] = RESNET34) -> list[str]:
    """Stem + BasicBlock stages into `nodes`; returns the skip taps (stride 2, 4, 8, 16, 32)."""
    nodes["conv1"] = _conv("input", 64, kernel=7, stride=2)
    nodes["pool"] = {"op": "pool", "in": "conv1", "kernel": 3, "stride": 2, "pad": 1}
    taps, last = ["conv1"], "pool"
    for stage, (count, width) in enumerate(zip(blocks, WIDTHS), start=1):
        for i in range(count):
            name, stride = f"layer{stage}.{i}", 2 if i == 0 and stage > 1 else 1
            nodes[f"{name}.conv1"] = _conv(last, width, stride=stride)
            nodes[f"{name}.conv2"] = _conv(f"{name}.conv1", width, act="none")
            shortcut = last
            if stride > 1:
                nodes[f"{name}.down"] = _conv(last, width, kernel=1, stride=2, act="none")
                shortcut = f"{name}.down"
            nodes[f"{name}.add"] = {"op": "add", "in": [f"{name}.conv2", shortcut]}
            last = f"{name}.add"
        taps.append(last)
    return taps


def resnet34_unet() -> dict:
    """ResNet-34 encoder, five decoder stages (upsample to the skip, concat, double conv)."""
    nodes: dict = {}
    taps = resnet_encoder(nodes)
    last = taps[-1]
    for k, (skip, width) in enumerate(zip([*reversed(taps[:-1]), "input"], (256, 128, 64, 32, 16)), start=1):
        nodes[f"dec{k}.up"] = {"op": "upsample", "in": last, "to": skip}
        cat = [f"dec{k}.up", skip] if skip != "input" else [f"dec{k}.up"]
        nodes[f"dec{k}.cat"] = {"op": "concat", "in": cat} if len(cat) > 1 else nodes.pop(f"dec{k}.up")
        nodes[f"dec{k}.conv"] = _conv(f"dec{k}.cat", [width, width])
        last = f"dec{k}.conv"
    nodes["score"] = {"op": "score", "in": last}
    return {"name": "resnet34-unet-standin", "num_classes": 2, "nodes": nodes, "output": "score"}


def unetplusplus(depth: int = 4, base: int = 32) -> dict:
    """UNet++: nested dense skips X(i,j) = conv(concat(X(i,0..j-1), up(X(i+1,j-1)))), a score on
    each X(0,j) (deep supervision), summed into the output."""
    nodes: dict = {}
    for i in range(depth + 1):
        source = "input" if i == 0 else f"pool{i}"
        if i > 0:
            nodes[f"pool{i}"] = {"op": "pool", "in": f"x{i - 1}_0"}
        nodes[f"x{i}_0"] = _conv(source, [base << i, base << i])
    for j in range(1, depth + 1):
        for i in range(depth + 1 - j):
            nodes[f"up{i + 1}_{j - 1}"] = {"op": "upsample", "in": f"x{i + 1}_{j - 1}", "to": f"x{i}_0"}
            nodes[f"cat{i}_{j}"] = {"op": "concat", "in": [*(f"x{i}_{k}" for k in range(j)), f"up{i + 1}_{j - 1}"]}
            nodes[f"x{i}_{j}"] = _conv(f"cat{i}_{j}", [base << i, base << i])
    for j in range(1, depth + 1):
        nodes[f"score{j}"] = {"op": "score", "in": f"x0_{j}"}
    nodes["out"] = {"op": "add", "in": [f"score{j}" for j in range(1, depth + 1)]}
    return {"name": "unetplusplus-standin", "num_classes": 2, "nodes": nodes, "output": "out"}


def fpn() -> dict:
    """FPN on a ResNet-34 encoder (~80 nodes): lateral 1x1 convs, top-down upsample + add,
    3x3 smoothing, a head per level upsampled to stride 4 and concatenated."""
    nodes: dict = {}
    taps = resnet_encoder(nodes)[1:]  # strides 4, 8, 16, 32
    for level in range(5, 1, -1):
        nodes[f"lat{level}"] = _conv(taps[level - 2], 256, kernel=1, act="none")
        top = f"lat{level}"
        if level < 5:
            nodes[f"top{level}"] = {"op": "upsample", "in": f"p{level + 1}", "to": f"lat{level}", "mode": "nearest"}
            nodes[f"merge{level}"] = {"op": "add", "in": [f"top{level}", f"lat{level}"]}
            top = f"merge{level}"
        nodes[f"p{level}"] = _conv(top, 256, act="none")
        nodes[f"head{level}"] = _conv(f"p{level}", 128)
        if level > 2:
            nodes[f"head{level}_up"] = {"op": "upsample", "in": f"head{level}", "to": "head2"}
    nodes["heads"] = {"op": "concat", "in": ["head2", "head3_up", "head4_up", "head5_up"]}
    nodes["score"] = {"op": "score", "in": "heads"}
    nodes["full"] = {"op": "upsample", "in": "score", "to": "input"}
    return {"name": "fpn-resnet34-standin", "num_classes": 2, "nodes": nodes, "output": "full"}


STAND_INS = {"resnet34-unet": resnet34_unet, "unetplusplus": unetplusplus, "fpn": fpn}
