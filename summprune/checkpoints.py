"""Step checkpoints: the pruned model after each completed step, and what the driver needs to go on.

``<work folder>/steps/latest/`` (:mod:`summprune.workdir`) holds ``state.safetensors`` (the
model's state, masks included) and ``step.json`` (step numbers, records, sections, the plan being
executed, the model config, the state's sha256 and the work folder's request). One checkpoint is
kept: the newest, written atomically. :func:`load_step` checks it all before the driver uses it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Callable

import torch

from .ties import TieMode
from .workdir import diff_keys, differs_in, with_new_defaults

STEP_STATE = "state.safetensors"
STEP_INFO = "step.json"


def save_step(checkpoint_dir: str | Path, model, info: dict, owner: dict | None = None) -> None:
    """The pruned model after a completed step, masks included, and what the driver needs to go
    on from there (``info``: step numbers, records, sections, the plan being executed), written
    atomically to ``checkpoint_dir/latest`` (one checkpoint kept: the newest). ``step.json`` also
    records the state file's sha256 and ``owner`` (what the work folder was asked to do, the
    starting model's fingerprint included), which :func:`load_step` checks before using it."""
    from safetensors.torch import save_file

    from .io.files import atomic_dir, file_digests, write_json

    # clones: safetensors refuses tensors that share memory (the tied embedding's names)
    sd = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    hw = head._parameters.get("weight_orig", head._parameters.get("weight"))
    ew = emb._parameters.get("weight_orig", emb._parameters.get("weight"))
    with atomic_dir(Path(checkpoint_dir) / "latest") as tmp:
        save_file(sd, str(tmp / STEP_STATE))
        write_json(tmp / STEP_INFO, {**info, "config": model.config.to_dict(), "untied_lm_head": hw is not ew,
                                     "state_sha256": file_digests(tmp, [STEP_STATE])[STEP_STATE],
                                     **({"owner": owner} if owner is not None else {})})


class StepError(ValueError):
    """A step checkpoint that cannot be used: corrupt, changed since it was written, or written
    for another work folder; the message says so and that ``--overwrite`` starts again."""


def _normalized_owner(owner):
    """``owner`` with its ``config`` resolved as this version resolves it (a key added since, with
    its default, does not make a checkpoint someone else's)."""
    if isinstance(owner, dict) and isinstance(owner.get("config"), dict):
        return {**owner, "config": with_new_defaults(owner["config"])}
    return owner


def load_step(checkpoint_dir: str | Path, tie_mode: str, owner: dict | None = None,
              note: Callable[[str], None] | None = None) -> tuple[torch.nn.Module, dict] | None:
    """The model and info of the newest step checkpoint, or None: the model is rebuilt from the
    saved config (a structural method may have changed the shape), masked where the state has
    masks (``prune.identity``, then the saved ``weight_orig``/``weight_mask``), ties restored.

    Checked first, each a :class:`StepError` naming the file and suggesting ``--overwrite``: the
    files are regular files in the folder (not symlinks), ``step.json`` is readable, the state's
    sha256 is the one ``step.json`` records, and ``owner`` (when given) is the one it records: a
    step copied from another prune, or from one that started from another model, is refused
    naming the keys that differ. A checkpoint written before steps recorded these is used (with a
    ``note``) after the checks it can have."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from torch.nn.utils import prune as torch_prune
    from transformers import AutoConfig

    from .io.files import file_digests, read_json
    from .io.hf import check_config, meta_model_from_config
    from .models import family_of
    from .prune import sync_tied_masks, untie_lm_head

    d = Path(checkpoint_dir) / "latest"
    hint = "; add --overwrite to start again (the steps done so far are lost)"
    if not any(p.exists() or p.is_symlink() for p in (d / STEP_INFO, d / STEP_STATE)):
        return None
    for p in (d, d / STEP_INFO, d / STEP_STATE):
        if p.is_symlink():
            raise StepError(f"{p}: a symlink (to {os.readlink(p)}); a step checkpoint is never read through a "
                            f"link{hint}")
        if p != d and not p.is_file():
            raise StepError(f"{p}: missing or not a regular file; the step checkpoint is incomplete{hint}")
    try:
        info = read_json(d / STEP_INFO)
    except ValueError as e:
        raise StepError(f"{e}{hint}") from None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise StepError(f"{d / STEP_INFO}: not a step record (no model config in it){hint}")
    legacy = []
    recorded = info.get("state_sha256")
    if recorded is None:
        legacy.append("the state's digest")
    elif recorded != file_digests(d, [STEP_STATE], follow_symlinks=False)[STEP_STATE]:
        raise StepError(f"{d / STEP_STATE}: not the state {STEP_INFO} records (its sha256 differs: changed, "
                        f"truncated or copied from elsewhere since it was written){hint}")
    if owner is not None:
        if "owner" not in info:
            legacy.append("whose work it is")
        else:
            mine, theirs = _normalized_owner(json.loads(json.dumps(owner))), _normalized_owner(info["owner"])
            if mine != theirs:
                diff = diff_keys(theirs, mine) if isinstance(theirs, dict) else ["(unreadable owner)"]
                raise StepError(f"{d}: a step checkpoint of another prune or model ({differs_in(diff)}){hint}")
    if legacy and note is not None:
        note(f"{d} was written before step checkpoints recorded {' and '.join(legacy)}: used as it is")
    config = info["config"]
    try:
        fam = family_of(config)
        # step.json's sizes and the memory the model and its state take, checked before either is
        # allocated (vocab_size=1000000, d_model=4096 built 16.4 GB before any check)
        check_config(config, d / STEP_INFO)
        try:
            hf_config = AutoConfig.for_model(config.get("model_type") or fam.model_types[0], **{
                k: v for k, v in config.items() if k != "model_type"})
        except Exception as e:  # huggingface_hub's strict fields raise their own error class
            raise ValueError(f"{d / STEP_INFO}: its config cannot be read as a {fam.name} config "
                             f"({type(e).__name__}: {str(e).strip().splitlines()[-1][:200]})") from None
    except (ValueError, TypeError, KeyError) as e:
        raise StepError(f"{e}{hint}") from None
    meta_model_from_config(hf_config, d / STEP_INFO, copies=2,
                           what="resuming the pruned model (its saved state and the model)")
    try:
        sd = load_file(str(d / STEP_STATE))
    except (SafetensorError, OSError) as e:
        raise StepError(f"{d / STEP_STATE}: cannot be read ({e}); the file is truncated or corrupt{hint}") from None
    try:
        model = fam.build(hf_config)
        if info.get("untied_lm_head"):
            untie_lm_head(model)
        for name, mod in model.named_modules():
            if f"{name}.weight_mask" in sd and "weight" in mod._parameters:
                torch_prune.identity(mod, "weight")
        model.load_state_dict(sd, strict=True)
    except (ValueError, TypeError, KeyError, RuntimeError) as e:
        msg = " ".join(str(e).split())[:240] or type(e).__name__
        raise StepError(f"{d}: the state does not fit the model {STEP_INFO} describes ({msg}){hint}") from None
    if TieMode.of(tie_mode).shares_mask:
        sync_tied_masks(model)
    return model.eval(), info


def check_resume_info(info: dict, methods: list, where) -> None:
    """StepError unless a step checkpoint's positions fit this recipe's methods (an edited or
    foreign ``step.json`` must not fail with an IndexError deep in the driver)."""
    def is_int(x) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    problem = None
    if not is_int(info.get("method")) or not 0 <= info["method"] < len(methods):
        problem = f"method={info.get('method')!r}: this recipe has methods 0 to {len(methods) - 1}"
    elif not is_int(info.get("method_step")) or info["method_step"] < 0:
        problem = f"method_step={info.get('method_step')!r}: not a step index"
    elif not is_int(info.get("step")) or info["step"] < 1:
        problem = f"step={info.get('step')!r}: not a step number"
    elif not isinstance(info.get("records"), list) or not isinstance(info.get("sections"), dict):
        problem = "records/sections missing"
    if problem:
        raise StepError(f"{Path(where) / 'latest' / STEP_INFO}: {problem}; add --overwrite to start again "
                        "(the steps done so far are lost)")


def json_plan(plan):
    return dataclasses.asdict(plan) if dataclasses.is_dataclass(plan) else plan
