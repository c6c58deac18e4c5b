"""Experiment settings: the `train` and `data` sections of a spec.

Both are frozen pydantic models with defaults, inherited through `extends` key by key and
overridable from the command line (`--set train.lr=1e-4`), validated like the graph.
`check_settings` (spec + analysis → error or warnings) refuses statically what would only fail
at run time; `check_device` refuses at run time a device this machine does not have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import EnvironmentProblem, SpecError

if TYPE_CHECKING:
    from .shapes import Analysis, SizeRule

DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:[0-9]+)?)$"
MAX_SEED = 2**32 - 1  # numpy's seed range; seed * 1009 + epoch still fits torch's int64
MEMORY_BUDGET = 16 * 2**30  # bytes of parameters + activations per training step before a warning


class TrainSettings(BaseModel):
    """How to train: schedule, optimiser, loss, augmentation, precision, seed and device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(10, ge=1, description="Passes over the training set.")
    iterations: int | None = Field(None, ge=1, description="Stop after this many steps instead.")
    batch_size: int = Field(8, ge=1, description="Images per step (per process).")
    crop_size: int | None = Field(None, ge=1, description="Random square training crop (pads with ignore).")
    scale_range: tuple[float, float] = Field((1.0, 1.0), description="Random rescale range.")
    flip: bool = Field(True, description="Random horizontal flips.")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("sgd", description="Optimiser.")
    lr: float = Field(1e-2, gt=0, description="Base learning rate.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (the FCN reference: 0.99).")
    weight_decay: float = Field(5e-4, ge=0, description="Weight decay (not applied to biases).")
    bias_lr_mult: float = Field(2.0, gt=0, description="Learning-rate multiplier for biases (Caffe: 2).")
    schedule: Literal["fixed", "poly", "cosine"] = Field("poly", description="Learning-rate schedule.")
    poly_power: float = Field(0.9, gt=0, description="Exponent of the poly schedule.")
    warmup_iters: int = Field(0, ge=0, description="Linear warm-up steps.")
    loss: Literal["ce", "dice", "ce+dice"] = Field("ce", description="Loss function.")
    reduction: Literal["mean", "sum"] = Field(
        "mean", description="Mean over pixels, or sum as the FCN reference (normalize: false).")
    class_weights: list[float] | Literal["median_frequency", "inverse_sqrt"] | None = Field(
        None, description="Per-class cross-entropy weights: a list (one per class), or computed once from the "
                          "training split: median_frequency (SegNet: median(f)/f_c) or inverse_sqrt (1/sqrt(f_c)).")
    amp: Literal["none", "bf16", "fp16"] = Field("none", description="Mixed precision (CUDA).")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed for weights, data order and augmentation "
                                                        "(0 .. 2^32 − 1).")
    init: str | None = Field(None, description="Weights to start from: a run directory, a checkpoint or a "
                                               "state dict file (net surgery; see `fcngraph init-from`).")
    init_map: Literal["ids", "vgg16"] = Field("ids", description="How `init` maps onto the nodes: by node id "
                                                                "(e.g. FCN-32s → 16s), or torchvision's VGG16.")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description="auto, cpu, mps, cuda or cuda:N.")
    workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    eval_every: int = Field(1, ge=1, description="Validate every N epochs.")
    threads: int = Field(0, ge=0, description="torch CPU threads; 0: torch's default (set 1-2 when several "
                                              "runs share a machine: they then run side by side ~N× faster).")


class DataSettings(BaseModel):
    """Where the data comes from: the embedded synthetic set, or a folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(None, description="Dataset folder (images: .jpg/.png grayscale or RGB, .tif/.tiff or "
                                               ".npy stacks of input.channels; masks: .png, .npy or .tif); "
                                               "none: the embedded synthetic set.")
    train_split: str = Field("train", description="Split file name for training.")
    val_split: str = Field("val", description="Split file name for validation.")
    size: int = Field(64, ge=16, description="Synthetic set: image side in pixels.")
    train_samples: int = Field(384, ge=1, description="Synthetic set: training images.")
    val_samples: int = Field(96, ge=1, description="Synthetic set: validation images.")
    mean: tuple[float, ...] = Field((0.485, 0.456, 0.406), min_length=1,
                                    description="Per-channel mean, one value per input channel, of the pixels "
                                                "scaled to 0..1 (uint8 / 255, uint16 / 65535, float as is); "
                                                "the RGB default averages to one value for other channel counts.")
    std: tuple[float, ...] = Field((0.229, 0.224, 0.225), min_length=1,
                                   description="Per-channel std, one value per input channel, in the same scale "
                                               "as data.mean.")
    pad: bool = Field(True, description="Pad inputs (bottom/right) to the next size the spec maps to itself "
                                        "and crop the scores back; false: sizes that do not fit are an error.")
    cache: bool = Field(True, description="Keep decoded images in memory (decoded once, when the data is "
                                          "checked); false for datasets larger than memory.")
    max_pixels: int = Field(40_000_000, ge=1, description="Largest image (width x height) read; larger files "
                                                         "are refused before decoding (decompression bombs).")
    caffe_bgr: bool = Field(False, description="Caffe parity: BGR order, 0..255, BGR mean, no std.")
    ignore_index: int = Field(255, description="Label that marks pixels to ignore.")

    @model_validator(mode="after")
    def _positive_std(self) -> DataSettings:
        if min(self.std) <= 0:
            raise ValueError("std must be positive")
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values, std {len(self.std)}")
        return self


# -- static checks (validate) -------------------------------------------------------------------
def _setting_error(spec, path: str, message: str) -> SpecError:
    return SpecError(message, file=spec.file, path=path)


def training_sides(spec) -> dict[str, int]:
    """Image sides the model will run on in training, by the setting that fixes them."""
    sides = {}
    if spec.train.crop_size is not None:
        sides["$.train.crop_size"] = spec.train.crop_size
    if spec.data.path is None:  # the synthetic set: whole images are validated
        sides["$.data.size"] = spec.data.size
    return sides


def check_settings(analysis: Analysis, rule: SizeRule, limit: int) -> list[str]:
    """Raise a SpecError for a setting that cannot work with this graph (class weights, output
    channels, training sizes the model does not run on); return warnings (memory budget).
    `rule` is the scan of sides 1..limit; a larger side is checked on its own."""
    spec = analysis.spec
    weights = spec.train.class_weights  # their count was checked when the spec loaded
    if isinstance(weights, list) and min(weights, default=0) < 0:
        raise _setting_error(spec, "$.train.class_weights", "weights must not be negative")
    if analysis.output.channels != spec.num_classes:
        raise spec.error(spec.output, f"output node '{spec.output}' has {analysis.output.channels} channels, "
                                      f"not num_classes = {spec.num_classes} (one score per class)")
    from .shapes import output_length

    for path, side in training_sides(spec).items():
        scanned = side <= limit
        if (side not in rule.outputs) if scanned else output_length(analysis, side) is None:
            smallest = min(rule.outputs, default=None)
            where = ("it runs on no size" if smallest is None else
                     f"the smallest it runs on is {smallest}" if side < smallest else "not a size it runs on")
            raise _setting_error(spec, path, f"the model does not run on {side}x{side} inputs ({where}; "
                                             f"{rule.describe()})")
    return []


def memory_warning(params: int, activation_bytes: int, batch: int, side: int) -> str | None:
    """A warning when one training step's parameters (+ gradients and optimiser state, x4)
    and activations exceed MEMORY_BUDGET."""
    total = params * 4 * 4 + activation_bytes
    if total <= MEMORY_BUDGET:
        return None
    return (f"warning: a training step needs about {total / 2**30:,.1f} GiB ({params:,} params x 16 bytes + "
            f"{activation_bytes / 2**30:,.1f} GiB activations for {batch} images of {side}x{side}); "
            f"more than the {MEMORY_BUDGET / 2**30:.0f} GiB budget")


# -- run time -------------------------------------------------------------------------------------
def check_device(name: str) -> None:
    """Refuse (exit 3: the machine) a device this machine does not have."""
    import torch

    if name in ("auto", "cpu"):
        return
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise EnvironmentProblem("device 'mps' asked for, but this machine has no MPS (Apple GPU)")
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(name.partition(":")[2] or 0)
    if index >= count:
        have = f"only {count} CUDA device(s)" if count else "no CUDA device"
        raise EnvironmentProblem(f"device '{name}' asked for, but this machine has {have}")
