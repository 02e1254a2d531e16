"""StrictModel, the base of every spec section: unknown keys, inf/nan, booleans read as numbers and
floats outside float32's range are refused with the field's path."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from .limits import BOOLEAN_NOT_NUMBER, holds_booleans, takes_numbers


# Torch computes in float32: a finite Python float beyond its range overflows (torch's SGD raises
# "value cannot be converted to type float without overflow"), one below its smallest normal number
# becomes 0 (an epsilon or temperature that then divides).
FLOAT32_MAX, FLOAT32_TINY = 3.4028234663852886e38, 1.1754943508222875e-38


class StrictModel(BaseModel):
    # allow_inf_nan=False: .inf / .nan are refused wherever a field takes a number (lr, epsilon, cpu, ...)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_not_booleans(cls, v: Any, info: ValidationInfo) -> Any:
        if holds_booleans(v) and takes_numbers(cls.model_fields[info.field_name].annotation):
            raise ValueError(BOOLEAN_NOT_NUMBER)
        return v

    @field_validator("*")
    @classmethod
    def _fits_float32(cls, v: Any) -> Any:
        if isinstance(v, float) and (abs(v) > FLOAT32_MAX or 0 < abs(v) < FLOAT32_TINY):
            raise ValueError(f"{v:g} is outside the range torch computes in (float32: 1.2e-38 to 3.4e+38 "
                             f"in magnitude); use a value of a usable size")
        return v
