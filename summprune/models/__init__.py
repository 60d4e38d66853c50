"""Model families: everything that differs between encoder-decoder architectures, in one place.

The rest of the package asks :func:`family_of` (a model, a config, a ``model_type`` or a model
directory) for what it needs -- the layer groups pruning targets, the sizes a config must keep,
how to build a model from a config (shape only, no weights), whether the output projection is
tied to the input embedding by nature, the default input prefix, which tensors int8 keeps in
float -- and never names an architecture itself. One module per family registers it:

    t5       T5 (t5-small's layout), T5 v1.1 / flan-T5 (gated FFN), mT5
    bart     BART, Pegasus (bart.py: one layout, two families)
    mbart    mBART
    marian   Marian (MarianMTModel)

Nothing outside this package names a family's modules (``SelfAttention``, ``self_attn``, ``fc1``,
...): ``tests/test_models.py::test_no_file_outside_the_family_layer_names_a_familys_modules``
fails if a file does.

A ``model_type`` no family claims is one error that lists the supported ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: importing the family layer imports no torch (config.py reads it)
    from torch import nn

# the registry and the types a family module fills in: below this module, so that a family module
# imports them from there and this one imports the families (no circle)
from .base import (ATTENTION_KINDS, _FAMILIES, Attention, Family, Structure, family_names,  # noqa: F401
                   register)  # (re-exported: their public home)

#: The six group names every family maps to module-name patterns (recipes use these names; the
#: one definition, config.GROUPS is this tuple).
GROUPS = ("enc_self_attn", "enc_ffn", "dec_self_attn", "cross_attn", "dec_ffn", "lm_head")

STACKS = ("encoder", "decoder")


def model_shape(model: nn.Module) -> dict:
    """What a model is made of, for reports: ``{"family", "layers": {stack: blocks}, "d_model",
    "d_ff": {stack: [width of each block's FFN]}, "heads": {stack: heads}}``. Block counts and
    FFN widths are read from the modules themselves (a structurally cut model, or one whose
    blocks differ, is described as it is); the heads from the config (every block has them).
    A family without a :class:`Structure` gives ``family`` and ``d_model`` only. Works on a
    model on the meta device (shapes only)."""
    fam = family_of(model)
    config = model.config
    out: dict[str, Any] = {"family": fam.name, "d_model": getattr(config, "d_model", None)}
    st = fam.structure
    if st is None:
        return out
    out["layers"], out["d_ff"], out["heads"] = {}, {}, {}
    for stack in STACKS:
        blocks = model.get_submodule(st.blocks[stack])
        out["layers"][stack] = len(blocks)
        widths = []
        for block in blocks:
            ffn = block.get_submodule(st.ffn[stack]) if st.ffn[stack] else block
            widths.append(int(ffn.get_submodule(st.ffn_out).in_features))
        out["d_ff"][stack] = widths
        key = st.heads_key.get(stack)
        out["heads"][stack] = getattr(config, key, None) if key else None
    return out


def supported_model_types() -> list[str]:
    return sorted(_FAMILIES)


def family_of(x: Any) -> Family:
    """The family of a model, a config, a config dict, a ``model_type`` string or a model
    directory (its ``config.json``); ValueError listing the supported model types otherwise. A
    config without ``model_type`` (an old T5 config.json) is T5's."""
    if isinstance(x, Family):
        return x
    where = ""
    if hasattr(x, "named_modules"):  # a model (an nn.Module; torch is not imported here)
        x = getattr(x, "config", None)
    if isinstance(x, (str, Path)) and Path(x).is_dir():
        where = f"{Path(x) / 'config.json'}: "
        try:
            x = json.loads((Path(x) / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            x = {}
    if isinstance(x, dict):
        mt = x.get("model_type") or "t5"
    elif isinstance(x, str):
        mt = x
    else:
        mt = getattr(x, "model_type", None) or "t5"
    fam = _FAMILIES.get(str(mt))
    if fam is None:
        raise ValueError(f"{where}model_type {mt!r} is not supported; supported: {', '.join(supported_model_types())}")
    return fam


# the families register themselves (imported last: they use Family and register); a new family is
# one module and its name here
from . import t5, bart, mbart, marian  # noqa: E402,F401,I001
