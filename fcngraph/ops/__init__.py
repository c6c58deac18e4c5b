"""The op registry: every node model, gathered into one pydantic discriminated union on `op`.

Adding an op means writing its class in one module here and listing it in OPS.
"""

from __future__ import annotations

from typing import Annotated, Union, get_args

from pydantic import Field

from .act import Act, Norm
from .base import Coord, Op
from .conv import Conv, Score
from .fuse import Add, Concat, Crop, Mul, Scale
from .pool import AdaptivePool, Dropout, Lrn, Pool, Unpool
from .upsampling import Tconv, Upsample

OPS: tuple[type[Op], ...] = (Conv, Pool, AdaptivePool, Unpool, Lrn, Norm, Act, Dropout, Score, Tconv,
                             Upsample, Scale, Add, Concat, Mul, Crop)
REGISTRY: dict[str, type[Op]] = {get_args(cls.model_fields["op"].annotation)[0]: cls for cls in OPS}
AnyOp = Annotated[Union[OPS], Field(discriminator="op")]  # noqa: UP007 (a tuple needs Union)

__all__ = ["OPS", "REGISTRY", "AnyOp", "Coord", "Op"]
