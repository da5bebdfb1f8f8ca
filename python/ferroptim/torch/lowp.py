"""float16/bfloat16 torch tensors and the low-precision options (#14).

torch's ``Tensor.numpy()`` shares memory for float16 but refuses bfloat16;
a bfloat16 tensor is read as int16 and its bits reinterpreted as
``ml_dtypes.bfloat16`` (the dtype the engine takes), still without a copy.

How the options' state looks in a torch-format ``state_dict`` (none of it has
a torch.optim equivalent except bfloat16 moments, which torch's own AdamW keeps
for bfloat16 params):

- ``master_param``: the float32 master weights of a float16/bfloat16 param
  (``master_weights=True``), a float32 tensor of the param's shape;
- ``state_dtype="bfloat16"``: each slot a bfloat16 tensor;
- ``state_dtype="int8"``: each slot a uint8 tensor of codes of the param's
  shape, and ``<slot>_absmax`` a 1-d float32 tensor, one scale per block of
  256 elements it overlaps; a flattened tensor that starts inside a block
  also has ``block_offset`` (how far in, a 0-d tensor), and loads only where
  it starts as far in (the same flatten() layout).

Loading takes these as saved (not as torch's cast to the param's dtype).
Float slots are widened to the state's float type where that loses nothing
(a bfloat16 moment into float32 state) or where torch would cast them too
(float64 into a float32 param); anything that would be narrowed or re-coded
(float32 into bfloat16 or int8 state, or back) is refused by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ferroptim._precision import bfloat16
from ferroptim.exceptions import DtypeError, StateDictError

__all__ = [
    "BLOCK_OFFSET",
    "DOCS",
    "KEYWORDS",
    "LOW",
    "MASTER",
    "QBLOCK",
    "SCALES",
    "from_numpy",
    "numpy_view",
    "slot_to_engine",
]

LOW = (torch.float16, torch.bfloat16)
MASTER = "master_param"
SCALES = "_absmax"  # suffix of an 8-bit slot's per-block scales
BLOCK_OFFSET = "block_offset"  # where a flattened tensor's 8-bit codes start in a block
QBLOCK = 256  # elements per scale (the engine's block)

#: The options every ferroptim.torch class takes besides torch's, keyword-only.
KEYWORDS = (
    ("state_dtype", None),
    ("master_weights", True),
    ("stochastic_rounding", False),
    ("seed", 0),
)
DOCS = {
    "state_dtype": "How the state is stored: None or 'float32' (float64 for float64 params), "
    "'bfloat16', or 'int8' (block-scaled 8-bit codes). Not a torch.optim option.",
    "master_weights": "float16/bfloat16 params keep float32 master weights in the state "
    "('master_param') and are written back rounded to nearest; False updates them directly.",
    "stochastic_rounding": "Without master weights, round the params (and bfloat16 state) "
    "stochastically instead of to nearest.",
    "seed": "Seeds stochastic rounding (same seed, same bits, any thread count).",
}


def _bf16() -> np.dtype:
    dtype = bfloat16()
    if dtype is None:
        raise DtypeError("bfloat16 tensors need ml_dtypes: pip install ml_dtypes")
    return dtype


def numpy_view(t: Any) -> np.ndarray:
    """A NumPy array sharing ``t``'s memory (a CPU tensor; bfloat16 included)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(_bf16())
    return t.numpy()


def from_numpy(a: np.ndarray) -> Any:
    """A tensor sharing ``a``'s memory (bfloat16 included)."""
    if a.dtype == bfloat16():
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def slot_to_engine(key: str, v: Any, param: Any, state_dtype: str, label: str) -> np.ndarray:
    """One saved state tensor (CPU) as the array the engine takes (see the module docs)."""
    if key == MASTER or key.endswith(SCALES):
        if not v.is_floating_point():
            raise StateDictError(f"state {key!r} of param {label} must be float32, got {v.dtype}")
        return v.to(torch.float32).numpy()
    if not v.is_floating_point():  # 8-bit codes as stored; the engine checks the rest
        return v.numpy()
    if state_dtype == "float32" or v.dtype not in LOW:
        # The param's compute type (float32 for 16-bit params), as torch casts; a
        # float32 slot for bfloat16/int8 state reaches the engine, which refuses it.
        return v.to(torch.float32 if param.dtype in LOW else param.dtype).numpy()
    if v.dtype != torch.bfloat16:
        raise StateDictError(
            f"state {key!r} of param {label} is {v.dtype}, this optimizer keeps "
            f"{state_dtype} state (state_dtype={state_dtype!r}): convert it first"
        )
    return numpy_view(v)
