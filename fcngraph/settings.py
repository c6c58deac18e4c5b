"""Experiment settings: the `train` and `data` sections of a spec.

Both are frozen pydantic models with defaults, inherited through `extends` key by key and
overridable from the command line (`--set train.lr=1e-4`), validated like the graph.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
    seed: int = Field(0, description="Seed for weights, data order and augmentation.")
    init: str | None = Field(None, description="Weights to start from: a run directory, a checkpoint or a "
                                               "state dict file (net surgery; see `fcngraph init-from`).")
    init_map: Literal["ids", "vgg16"] = Field("ids", description="How `init` maps onto the nodes: by node id "
                                                                "(e.g. FCN-32s → 16s), or torchvision's VGG16.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    eval_every: int = Field(1, ge=1, description="Validate every N epochs.")
    threads: int = Field(0, ge=0, description="torch CPU threads; 0: torch's default (set 1-2 when several "
                                              "runs share a machine: they then run side by side ~N× faster).")


class DataSettings(BaseModel):
    """Where the data comes from: the embedded synthetic set, or a folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(None, description="Dataset folder; none: the embedded synthetic set.")
    train_split: str = Field("train", description="Split file name for training.")
    val_split: str = Field("val", description="Split file name for validation.")
    size: int = Field(64, ge=16, description="Synthetic set: image side in pixels.")
    train_samples: int = Field(384, ge=1, description="Synthetic set: training images.")
    val_samples: int = Field(96, ge=1, description="Synthetic set: validation images.")
    mean: tuple[float, ...] = Field((0.485, 0.456, 0.406), min_length=1,
                                    description="Per-channel mean (0..1), one value per input channel.")
    std: tuple[float, ...] = Field((0.229, 0.224, 0.225), min_length=1,
                                   description="Per-channel std (0..1), one value per input channel.")
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
