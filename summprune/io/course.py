"""The course's submission format: what its grader reads, written and read exactly.

The course grades ``pruned_model/`` with its own code (its tutorial and the reference student's
scripts):

.. code-block:: python

    model = AutoModelForSeq2SeqLM.from_pretrained(d)
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            prune.identity(m, "weight")
    model.load_state_dict(torch.load(d + "/model_state_dict.pth", weights_only=True))
    # (the grader passes no weights_only; True is torch's default since 2.6, and what we use)
    # ratio: (sum of p.numel() for p in model.parameters() - zeros in buffers named *mask*) / former

So a course directory is a ``save_pretrained`` directory plus ``model_state_dict.pth``: a
``torch.save`` of the state dict of that masked model, with ``weight_orig``/``weight_mask`` for
every ``nn.Linear``. :func:`save_course` writes one; :func:`grader_model` rebuilds the model the
grader holds (the same three steps, with ``weights_only=True``); :func:`load_course` returns it
with the masks folded in, as every other loader of this package does.

The tied embedding. t5-small's config ties ``lm_head`` to the input embedding, so in the grader's
model ``lm_head.weight_orig`` *is* ``shared.weight`` and the four state-dict names of that tensor
load into one Parameter. This format therefore holds exactly the models whose ``lm_head``
computes with ``embedding * lm_head mask``: ``tie_mode='tied'`` (the embedding is pruned for
every use and the mask is where it is zero) and ``tie_mode='course'`` (the mask over a dense
embedding, what the course's notebook builds). ``'untie'`` gives ``lm_head`` values of its own,
which the grader's tied model cannot hold: such a model is refused. In ``'course'`` mode the
plain ``model.safetensors`` can hold only the dense tied embedding (a tied config has one tensor
for both uses), so ``from_pretrained`` alone gives a dense ``lm_head`` there; the exact model is
``model_state_dict.pth``, which :func:`load_course` reads.

``model_state_dict.pth`` is the one pickle-based file this package reads: by that name only, with
``torch.load(..., weights_only=True)``, which unpickles tensors and plain containers and refuses
anything else (no code runs).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

#: The grader's state-dict file, beside the ``save_pretrained`` files.
STATE_FILE = "model_state_dict.pth"
#: The course's limit on its ratio, and the baseline its metric must beat (updated spec).
MAX_RATIO = 0.3
BASELINE_SCORE = 0.1134


def is_course_dir(path: str | Path) -> bool:
    return (Path(path) / STATE_FILE).is_file()


def _linear_names(model: nn.Module) -> dict[str, nn.Linear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def _ties_lm_head(model: nn.Module) -> bool:
    return bool(getattr(model.config, "tie_word_embeddings", False)) and model.get_output_embeddings() is not None


@torch.no_grad()
def course_state_dict(model: nn.Module, perm: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The state dict the grader's code loads for ``model`` (masked or permanent).

    Every ``nn.Linear``'s ``weight`` becomes ``weight_orig`` (the weight the model computes
    with: pruned entries are 0) and ``weight_mask`` (float, the module's prune mask where it has
    one, else where the weight is non-zero). For a tied config ``lm_head.weight_orig`` is the
    input embedding, which the grader's model shares with it; ValueError if ``embedding * mask``
    is not what the model's ``lm_head`` computes with (``tie_mode='untie'``). ``perm`` is
    ``permanent_copy(model)`` when the caller has made it already.
    """
    from ..prune import is_pruned, permanent_copy

    linear = _linear_names(model)
    masks = {n: m.weight_mask.detach() for n, m in linear.items() if is_pruned(m)}
    # on CPU: the grader's torch.load has no map_location, and its machine may have no GPU
    perm = permanent_copy(model) if perm is None else perm
    perm_sd = {k: v.detach().cpu() for k, v in perm.state_dict(keep_vars=True).items()}
    sd: dict[str, torch.Tensor] = {}
    for key, value in perm_sd.items():
        mod_name, _, attr = key.rpartition(".")
        if mod_name in linear and attr == "weight":
            mask = masks.get(mod_name)
            mask = (value != 0) if mask is None else mask
            sd[f"{mod_name}.weight_orig"] = value
            sd[f"{mod_name}.weight_mask"] = mask.to(value.dtype)
        else:
            sd[key] = value
    if _ties_lm_head(model):
        head = _module_name(model, model.get_output_embeddings())
        emb = perm_sd[f"{_module_name(model, model.get_input_embeddings())}.weight"]
        mask = sd[f"{head}.weight_mask"]
        if not torch.equal(emb * mask, perm_sd[f"{head}.weight"]):
            raise ValueError(
                "this model's lm_head has weights of its own (tie_mode='untie'), but its config ties "
                "lm_head to the input embedding, so the course's loader (from_pretrained, then the "
                "state dict) holds one tensor for both and cannot represent it; prune with "
                "tie_mode 'tied' or 'course' for a course submission, or export it as 'hf' or 'compact'")
        sd[f"{head}.weight_orig"] = emb
    return sd


def _module_name(model: nn.Module, module: nn.Module) -> str:
    return next(n for n, m in model.named_modules() if m is module)


def tied_copy_for_safetensors(model: nn.Module, perm: nn.Module | None = None) -> nn.Module:
    """The permanent model as ``from_pretrained`` of a tied config can hold it.

    In ``tie_mode='course'`` the permanent model's lm_head is a pruned copy beside the dense
    embedding; saved like that, ``from_pretrained`` would untie the two (both keys present,
    different values), and the grader's ``model.parameters()`` would count 16.4M more
    parameters. The plain weights re-tie lm_head to the embedding (see the module docstring).
    """
    from ..prune import permanent_copy

    perm = permanent_copy(model) if perm is None else perm
    if _ties_lm_head(perm):
        head = perm.get_output_embeddings()
        emb = perm.get_input_embeddings()
        if head.weight is not emb.weight:
            if perm is model:  # no masks: permanent_copy returned the caller's model; do not re-tie it
                import copy

                perm = copy.deepcopy(model)
                head, emb = perm.get_output_embeddings(), perm.get_input_embeddings()
            head.weight = emb.weight
    return perm


def read_state_file(path: Path) -> dict[str, torch.Tensor]:
    """``torch.load(path, weights_only=True)``, checked to be a table of tensors."""
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError (not tensors only), EOFError/RuntimeError (truncated)
        raise ValueError(f"{path}: cannot be read as a state dict of tensors with "
                         f"torch.load(weights_only=True) ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                         "the file is corrupt, truncated or holds more than tensors") from None
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise ValueError(f"{path}: not a state dict (a table of name -> tensor)")
    return sd


def grader_model(d: str | Path) -> nn.Module:
    """The model the course's grader holds for directory ``d``: built from ``config.json``,
    ``prune.identity`` on every ``nn.Linear``, then ``model_state_dict.pth`` loaded (strict).

    The grader calls ``from_pretrained`` first; every tensor it loads is then overwritten by the
    strict ``load_state_dict``, so building from the config gives the same model without reading
    (or trusting) the plain weights, and works for directories whose ``save_pretrained`` files
    hold ``weight_orig`` keys (the course's own notebook). The model is built on the meta device
    (config.json's sizes checked first) and every tensor of the file checked against it
    (:func:`_check_tensors`) before any memory is allocated for the model. Errors name the file
    and the keys.
    """
    from .hf import check_model_memory, meta_model

    d = Path(d)
    path = d / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; this is not a course submission directory")
    model = meta_model(d)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            torch_prune.identity(m, "weight")
    # the file's tensors (weights and masks) and their fp32 copy in the model are held at once
    check_model_memory(model, path, copies=2, what="loading the course model (the file's tensors and the model)")
    sd = read_state_file(path)
    want = model.state_dict(keep_vars=True)
    missing = sorted(set(want) - set(sd))
    unexpected = sorted(set(sd) - set(want))
    if missing or unexpected:
        hint = ""
        if any(k.endswith("_orig") for k in missing):
            hint = " (the grader applies prune.identity to every nn.Linear first, so each needs weight_orig and weight_mask)"
        raise ValueError(f"{path}: does not match the grader's model built from config.json: missing "
                         f"{missing[:4]}{' ...' if len(missing) > 4 else ''}, unexpected "
                         f"{unexpected[:4]}{' ...' if len(unexpected) > 4 else ''}{hint}")
    # Names that are one tensor in the grader's model (the tied embedding and lm_head.weight_orig):
    # its strict load_state_dict copies each name into that tensor in turn, so the last one wins.
    groups: dict[int, list[str]] = {}
    for k, t in want.items():
        groups.setdefault(id(t), []).append(k)
    _check_tensors(path, sd, want, groups)
    for k, v in sd.items():
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"{path}: tensor {k!r} holds non-finite values (NaN or inf)")
        if k.endswith("weight_mask") and not bool(((v == 0) | (v == 1)).all()):
            raise ValueError(f"{path}: {k!r} is not a 0/1 mask")
    # What the grader's copy_ gives: fp32 tensors of the model's own (one copy per tied group).
    new = {}
    for names in groups.values():
        value = sd[names[-1]].to(torch.float32, copy=True)
        new.update({k: value for k in names})
    del sd
    model.load_state_dict(new, strict=True, assign=True)
    for names in groups.values():  # assign=True gave each name a Parameter of its own: re-tie
        first = _tensor_ref(model, names[0])
        for k in names[1:]:
            mod_name, _, attr = k.rpartition(".")
            mod = model.get_submodule(mod_name)
            (mod._parameters if attr in mod._parameters else mod._buffers)[attr] = first
    for m in model.modules():
        if isinstance(m, nn.Linear):  # what prune's forward pre-hook computes; it was a meta tensor
            m.weight = m.weight_orig * m.weight_mask
    left = [n for n, t in list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers())
            if t.is_meta]
    if left:  # a non-persistent buffer would not be in the state dict
        raise ValueError(f"{d}: model tensors {left[:5]} were not restored from {path}")
    return model.eval()


def _tensor_ref(model: nn.Module, name: str) -> torch.Tensor:
    mod_name, _, attr = name.rpartition(".")
    mod = model.get_submodule(mod_name)
    return mod._parameters[attr] if attr in mod._parameters else mod._buffers[attr]


#: How much larger than the data the file stores its tensors may be, counted by name (a tensor of
#: a tied group once). A file of the grader's model stores each tensor once, so the two are
#: equal; this slack only admits oddly shared storages (a tied lm_head under an untied config).
_MAX_VIEW_RATIO = 2


def _check_tensors(path: Path, sd: dict[str, torch.Tensor], want: dict[str, torch.Tensor],
                   groups: dict[int, list[str]]) -> None:
    """Every tensor of the file is a dense floating-point tensor of the shape the model built from
    config.json expects, whose values the file holds in full. ``torch.load`` checks each storage
    against the file, but not the views on it: a 15 MB file can hold a 16 GB stride-0 (expanded)
    tensor, or one storage under every name, which any computation on them would allocate."""
    logical = 0
    for k, v in sd.items():
        where = f"{path}: tensor {k!r}"
        if v.layout != torch.strided:
            raise ValueError(f"{where} is a {v.layout} tensor; the grader's model holds dense (strided) tensors")
        if v.is_quantized or not v.is_floating_point():
            raise ValueError(f"{where} has dtype {v.dtype}; the grader's model holds floating-point tensors")
        if tuple(v.shape) != tuple(want[k].shape):
            raise ValueError(f"{where} has shape {list(v.shape)}; config.json implies {list(want[k].shape)}")
        if v.untyped_storage().nbytes() < v.numel() * v.element_size():
            raise ValueError(f"{where} of shape {list(v.shape)} is a view of a storage of only "
                             f"{v.untyped_storage().nbytes():,} bytes (an expanded tensor): the file does not hold its values")
    for names in groups.values():
        v = sd[names[-1]]
        logical += v.numel() * v.element_size()
    stored = sum({v.untyped_storage().data_ptr(): v.untyped_storage().nbytes() for v in sd.values()}.values())
    if logical > _MAX_VIEW_RATIO * stored:
        raise ValueError(f"{path}: its tensors take {logical:,} bytes but the file stores only {stored:,}: "
                         "several names are views of the same data")


@torch.no_grad()
def load_course(d: str | Path) -> tuple[nn.Module, float]:
    """``(model, course_ratio)`` of a course directory.

    ``course_ratio`` is the grader's ratio, taken on the grader's model; ``model`` is that model
    with its masks folded in (:func:`summprune.prune.make_permanent`) and, where the folded
    lm_head equals the embedding (``tie_mode='tied'``), tied back to it, so that it computes and
    counts exactly like the model that was exported.
    """
    from .. import sparsity
    from ..prune import make_permanent

    model = grader_model(d)
    ratio = sparsity.mask_ratio(model)
    make_permanent(model)
    if _ties_lm_head(model):
        head, emb = model.get_output_embeddings(), model.get_input_embeddings()
        if head.weight is not emb.weight and torch.equal(head.weight, emb.weight):
            head.weight = emb.weight
    return model, ratio


__all__ = ["STATE_FILE", "MAX_RATIO", "BASELINE_SCORE", "is_course_dir", "course_state_dict", "grader_model",
           "load_course", "read_state_file", "tied_copy_for_safetensors"]
