"""Spec + data sizes → the size contract: which input sides a model runs on with output = input,
and a wrapper that pads inputs up to the next such side and crops the scores back.

Inputs are padded after normalisation with zeros (= the mean), so padding adds no signal; labels
never see the pad because the scores are cropped back to the label size.
"""

from __future__ import annotations

import bisect
from functools import lru_cache

import torch
import torch.nn.functional as F

from .errors import DataError
from .shapes import analyze, valid_sizes
from .spec import Spec

SCAN = 2048  # largest side looked at; larger images need --tile


@lru_cache(maxsize=32)
def _same_size_sides(canonical_json: str) -> tuple[tuple[int, ...], str]:
    from .spec import load_spec

    rule = valid_sizes(analyze(load_spec(__import__("json").loads(canonical_json))), SCAN)
    same = [n for n in rule.exact if rule.outputs[n] == n] or [n for n, o in rule.outputs.items() if o == n]
    return tuple(sorted(same)), rule.describe()


def same_size_sides(spec: Spec) -> tuple[tuple[int, ...], str]:
    """Sides where output = input (exact ones first), and the rule in words."""
    import json

    return _same_size_sides(json.dumps(spec.canonical(), sort_keys=True))


def next_side(spec: Spec, n: int) -> int:
    """The smallest side ≥ n the model maps to itself; a one-line error naming the rule otherwise."""
    sides, rule = same_size_sides(spec)
    i = bisect.bisect_left(sides, n)
    if i == len(sides):
        raise DataError(f"spec '{spec.name}': no input side ≥ {n} gives output = input ({rule}); "
                        "use a spec whose output matches its input, or --tile for large images")
    return sides[i]


@lru_cache(maxsize=32)
def _fit(canonical_json: str):
    from .infer import size_fit
    from .spec import load_spec

    return size_fit(analyze(load_spec(__import__("json").loads(canonical_json))), SCAN)


def fit_of(spec: Spec):
    """How any image side is fitted to the model (`infer.SizeFit`: pad by `shift` at top/left and up
    to a valid side, crop the scores back); covers valid-conv nets whose output is smaller than
    their input. A one-line error when the valid sizes follow no single step."""
    import json

    from .errors import FcngraphError

    try:
        return _fit(json.dumps(spec.canonical(), sort_keys=True))
    except FcngraphError as exc:
        raise DataError(f"spec '{spec.name}': cannot pad inputs to a valid size: {exc}") from None


def check_sizes(spec: Spec, sizes: set[tuple[int, int]], pad: bool, what: str) -> None:
    """Before training/evaluating: every (H, W) must be valid, or paddable when `pad` is on."""
    if pad:
        fit_of(spec)  # any side can be fitted, or a one-line error saying why not
        return
    sides, rule = same_size_sides(spec)
    valid = set(sides)
    bad = sorted({s for s in sizes if s[0] not in valid or s[1] not in valid})
    if not bad:
        return
    shown = ", ".join(f"{w}x{h}" for h, w in bad[:3])
    near = ", ".join(f"{next_side(spec, w)}x{next_side(spec, h)}" for h, w in bad[:3])
    raise DataError(f"{what}: image size(s) {shown} not valid for spec '{spec.name}' ({rule}); nearest "
                    f"valid: {near}; set data.pad: true to pad inputs and crop outputs back")


class PadToValid(torch.nn.Module):
    """model(x) for any H×W: pad x (zeros, i.e. the mean after normalisation) by the output's shift
    at top/left and up to the next valid side at bottom/right, then crop the scores back to H×W."""

    def __init__(self, model: torch.nn.Module, spec: Spec) -> None:
        super().__init__()
        self.model, self.spec = model, spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        fit = fit_of(self.spec)
        ph, pw = fit.padded(h), fit.padded(w)
        padded = F.pad(x, (fit.shift, pw - w - fit.shift, fit.shift, ph - h - fit.shift))  # [B, C, ph, pw]
        scores = self.model(padded)  # [B, K, ph + delta, pw + delta], or (main, *aux) in train mode
        if isinstance(scores, tuple):
            return tuple(s[..., :h, :w] for s in scores)
        return scores[..., :h, :w]  # [B, K, h, w]
