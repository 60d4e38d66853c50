"""Structured pruning: remove whole FFN neurons, attention heads and layers, for every family
whose :class:`~summprune.models.Structure` says where they are (every registered one).

Unstructured zeros shrink the file but no dense matmul gets faster. Removing structure does: the
result is a smaller model of the same class (smaller FFN width, head count and block counts in
its config). This module names no family's modules: the family gives its block lists, FFN
linears, attention projections, head-count keys, head size, per-head tables and how a config
records fewer heads (``summprune.models``). T5's result is a standard config that plain
``from_pretrained`` loads; a BART-layout model with heads cut records its head size in its config
(transformers ties it to ``d_model / heads``) and is loaded by this package (see models/bart.py).

Every FFN of a stack keeps the same number of neurons (one FFN width key per stack) and every
attention of the model the same number of heads (T5 has one head count; CTranslate2 reads one for
both stacks); which ones is chosen per module, except as below. A :class:`StructurePlan` holds the
choice:

- FFN neurons: rows of the FFN's input linears (and their biases) and columns of its output linear.
- Heads: head-size row slices of the query, key and value projections (and their biases) and
  column slices of the output projection. Self-attention heads are chosen *once per stack* (the
  same indices in every encoder block, the same in every decoder block): a family's per-head
  tables may belong to the stack (T5 computes its position bias once, in block 0, and adds it to
  every block), and one choice keeps that exact. Cross-attention chooses per block.
- Layers: blocks of the encoder/decoder kept by index; a stack's tables move to the new block 0.

Importance (what is removed first) is one of:

- ``"weight"``: a neuron's ``||in_j|| * ||out_:,j||`` (for ReLU, rescaling ``in_j`` by ``c`` and
  ``out_:,j`` by ``1/c`` is the same function, and the product does not change); a head's
  ``||v_h||_F * ||o_h||_F`` (the value-output path that carries its contribution).
- ``"taylor"``: first-order Taylor estimate of the loss change when the structure is zeroed,
  ``(sum over its weights of w * dL/dw)**2`` summed over batches (Molchanov et al. 2019), on
  training or validation batches.

Layers are chosen by position (``"spread"``: evenly spaced, first and last kept, as DistilBART's
shrink-and-fine-tune; ``"first"``: the bottom ones).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .. import sparsity as S
from ..config import PruneConfig, RecoveryConfig, _help
from .base import Criterion, Method, Step, criterion_batches, importance_batches, register  # noqa: F401  (importance_batches: its old home)

#: Which blocks stay when depth is cut (:func:`select_layers`).
LAYER_SELECTIONS = ("spread", "first")


@dataclass
class StructuredConfig(RecoveryConfig):
    """Physical removal of FFN neurons, attention heads and layers (summprune.methods.structured),
    applied after fine-tuning and before any unstructured pruning; the result is a smaller model
    of the same family."""

    ffn_keep: float = _help("Fraction of FFN neurons kept in every block (one d_ff for all).", default=1.0)
    heads_keep: float = _help("Fraction of attention heads kept in every attention (one num_heads).", default=1.0)
    encoder_layers: int = _help("Encoder blocks kept (0 = all).", default=0)
    decoder_layers: int = _help("Decoder blocks kept (0 = all); decoder depth dominates generation time.",
                                default=0)
    layer_selection: str = _help("Which blocks stay: 'spread' (evenly spaced, first and last kept) or 'first'.",
                                 default="spread")
    importance: str = _help(
        "Neuron/head ranking: 'taylor' ((sum w*dL/dw)^2 over training batches, Molchanov et al. 2019) "
        "or 'weight' (weight norms).",
        default="taylor",
    )
    importance_batches: int = _help("importance='taylor': training batches measured.", default=32)
    # Removal costs more than masking: recovery distils from the model before removal by default.
    distill_alpha: float = _help("As in every section (RecoveryConfig); 0.5 here: removal needs the teacher.",
                                 default=0.5)


def validate_structured(sc: StructuredConfig, pr: PruneConfig, bad) -> None:
    """Beyond the types; importances are :data:`SCORERS`' names."""
    for k in ("ffn_keep", "heads_keep"):
        v = getattr(sc, k)
        if not 0.0 < v <= 1.0:
            bad(f".{k}={v}: a fraction kept, in (0, 1]")
    if sc.encoder_layers < 0 or sc.decoder_layers < 0:
        bad(": encoder_layers/decoder_layers must be >= 0 (0 = keep all)")
    if sc.layer_selection not in LAYER_SELECTIONS:
        bad(f".layer_selection={sc.layer_selection!r}: choose one of {list(LAYER_SELECTIONS)}")
    if sc.importance not in SCORERS:
        bad(f".importance={sc.importance!r}: choose one of {list(SCORERS)}")
    if sc.importance_batches < 1:
        bad(f".importance_batches={sc.importance_batches}: must be >= 1")


_STACKS = ("encoder", "decoder")


# ----------------------------------------------------------------------------- the model's structure


def structure_of(model: nn.Module):
    """The family's :class:`~summprune.models.Structure`; TypeError naming the families that have
    one, ValueError if the model still carries unstructured masks."""
    from ..models import family_of, supported_model_types

    fam = family_of(model)
    if fam.structure is None:
        able = sorted(t for t in supported_model_types() if family_of(t).structure is not None)
        raise TypeError(f"structured pruning (heads, FFN neurons, blocks) is implemented for the model types "
                        f"{', '.join(able)}, not {model.config.model_type!r} ({type(model).__name__}); use "
                        "unstructured pruning (stages or gradual) for it")
    for name, mod in model.named_modules():
        if any(k.endswith("_orig") for k in mod._parameters):
            raise ValueError(f"module {name!r} carries an unstructured pruning mask: apply structured pruning "
                             f"before unstructured pruning (or make the masks permanent first)")
    return fam.structure


def blocks(model: nn.Module, stack: str) -> nn.ModuleList:
    return model.get_submodule(structure_of(model).blocks[stack])


def ffn_modules(model: nn.Module) -> dict[str, nn.Module]:
    """``name -> FFN module`` of every block (the family's ``Structure.ffn``), encoder first."""
    st = structure_of(model)
    out = {}
    for stack in _STACKS:
        for i, block in enumerate(model.get_submodule(st.blocks[stack])):
            sub = st.ffn[stack]
            out[f"{st.blocks[stack]}.{i}" + (f".{sub}" if sub else "")] = block.get_submodule(sub) if sub else block
    return out


def attention_modules(model: nn.Module) -> dict[str, dict[str, nn.Module]]:
    """``kind -> {name: attention module}`` for the kinds ``enc_self``, ``dec_self``, ``cross``
    (the family's ``Structure.attention``); empty where the family's heads cannot be cut."""
    st = structure_of(model)
    if st.attention is None:
        return {}
    out: dict[str, dict[str, nn.Module]] = {}
    for kind, (stack, path) in st.attention.modules.items():
        out[kind] = {f"{st.blocks[stack]}.{i}.{path}": block.get_submodule(path)
                     for i, block in enumerate(model.get_submodule(st.blocks[stack]))}
    return out


def _wi(ffn: nn.Module, st) -> list[nn.Linear]:
    return [getattr(ffn, n) for n in st.ffn_in if hasattr(ffn, n)]


def _wo(ffn: nn.Module, st) -> nn.Linear:
    return getattr(ffn, st.ffn_out)


def _qkv(att: nn.Module, st) -> list[nn.Linear]:
    return [getattr(att, n) for n in st.attention.qkv]


def _out(att: nn.Module, st) -> nn.Linear:
    return getattr(att, st.attention.out)


def _n_heads(att: nn.Module, st, d: int) -> int:
    # read off the module (heads x head size rows), so a model whose heads were cut counts right
    return _qkv(att, st)[0].weight.shape[0] // d


def _head_slices(att: nn.Module, st, d: int) -> list[slice]:
    return [slice(h * d, (h + 1) * d) for h in range(_n_heads(att, st, d))]


# ----------------------------------------------------------------------------- importance


def weight_importance(model: nn.Module) -> dict[str, torch.Tensor]:
    """``module name -> score per neuron / head`` from weight norms (see the module docstring)."""
    st = structure_of(model)
    scores: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, ffn in ffn_modules(model).items():
            w_in = torch.stack([w.weight.float().norm(dim=1) for w in _wi(ffn, st)]).norm(dim=0)
            scores[name] = (w_in * _wo(ffn, st).weight.float().norm(dim=0)).cpu()
        d = st.attention.head_size(model.config) if st.attention else 0
        for mods in attention_modules(model).values():
            for name, att in mods.items():
                v, o = _qkv(att, st)[2], _out(att, st)
                scores[name] = torch.stack([v.weight[s].float().norm() * o.weight[:, s].float().norm()
                                            for s in _head_slices(att, st, d)]).cpu()
    return scores


def _structure_params(model: nn.Module) -> dict[str, list[tuple[torch.Tensor, int]]]:
    """``module name -> [(weight, axis along which the structures lie)]``."""
    st = structure_of(model)
    out: dict[str, list[tuple[torch.Tensor, int]]] = {}
    for name, ffn in ffn_modules(model).items():
        # a neuron is its input rows (and their biases, BART's) and its output column
        out[name] = ([(w.weight, 0) for w in _wi(ffn, st)] + [(w.bias, 0) for w in _wi(ffn, st) if w.bias is not None]
                     + [(_wo(ffn, st).weight, 1)])
    for mods in attention_modules(model).values():
        for name, att in mods.items():
            # a head is its rows of q, k, v (and their biases, BART's) and its columns of the output
            out[name] = ([(w.weight, 0) for w in _qkv(att, st)] + [(w.bias, 0) for w in _qkv(att, st)
                                                                    if w.bias is not None]
                         + [(_out(att, st).weight, 1)])
    return out


def _group_sum(t: torch.Tensor, axis: int, groups: int) -> torch.Tensor:
    """Sum of ``t`` within each of ``groups`` equal slices along ``axis``."""
    t = t if axis == 0 else t.t()
    return t.reshape(groups, -1).sum(dim=1)


def taylor_importance(model: nn.Module, batches: Iterable[dict]) -> dict[str, torch.Tensor]:
    """``module name -> score per neuron / head``: sum over ``batches`` of
    ``(sum_{w in structure} w * dL/dw)**2``. Batches are model inputs with ``labels``. Dropout is
    off while measuring; the model's train/eval mode and its gradients are restored afterwards."""
    st = structure_of(model)
    params = _structure_params(model)
    n_struct = {name: (_wo(ffn, st).weight.shape[1]) for name, ffn in ffn_modules(model).items()}
    d = st.attention.head_size(model.config) if st.attention else 0
    for mods in attention_modules(model).values():
        n_struct.update({name: _n_heads(att, st, d) for name, att in mods.items()})
    scores = {name: torch.zeros(n, dtype=torch.float64) for name, n in n_struct.items()}
    was_training = model.training
    saved = {id(p): p.grad for p in model.parameters()}
    model.eval()
    device = next(model.parameters()).device
    n = 0
    try:
        for batch in batches:
            model.zero_grad(set_to_none=True)
            batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            if "labels" not in batch:
                raise ValueError("taylor importance needs batches with labels")
            model(**batch).loss.backward()
            with torch.no_grad():
                for name, plist in params.items():
                    s = sum(_group_sum((w * w.grad).double(), axis, n_struct[name]) for w, axis in plist)
                    scores[name] += (s ** 2).cpu()
            n += 1
    finally:
        model.zero_grad(set_to_none=True)
        for p in model.parameters():
            p.grad = saved.get(id(p))
        model.train(was_training)
    if n == 0:
        raise ValueError("taylor importance got no batches")
    return {k: v.float() for k, v in scores.items()}


# ----------------------------------------------------------------------------- the plan


@dataclass
class StructurePlan:
    """What a smaller model keeps, in the original model's indices (sorted)."""

    encoder_layers: list[int]
    decoder_layers: list[int]
    #: kept FFN neurons per original FFN module name (kept layers only), all the same length
    ffn: dict[str, list[int]] = field(default_factory=dict)
    #: kept heads: the same indices in every encoder / decoder self-attention (position bias)
    enc_self_heads: list[int] = field(default_factory=list)
    dec_self_heads: list[int] = field(default_factory=list)
    #: kept cross-attention heads per original module name (kept decoder layers only)
    cross_heads: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def select_layers(n: int, keep: int, selection: str = "spread") -> list[int]:
    """Indices of the ``keep`` of ``n`` layers to keep. 'spread': evenly spaced with the first and
    the last (6->3: 0, 3, 5; 6->2: 0, 5); 'first': 0..keep-1."""
    if not 1 <= keep <= n:
        raise ValueError(f"cannot keep {keep} of {n} layers (1..{n})")
    if selection == "first":
        return list(range(keep))
    if selection != "spread":
        raise ValueError(f"unknown layer selection {selection!r}; choose one of {', '.join(LAYER_SELECTIONS)}")
    if keep == 1:
        return [0]
    return sorted({int(math.floor(i * (n - 1) / (keep - 1) + 0.5)) for i in range(keep)})


def keep_count(total: int, keep: float, what: str) -> int:
    """How many of ``total`` a keep fraction in (0, 1] keeps (rounded, at least 1)."""
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise ValueError(f"{what}={keep!r}: must be a fraction in (0, 1] of what is kept")
    return max(1, int(round(total * keep)))


def _top(scores: torch.Tensor, k: int) -> list[int]:
    # stable: ties go to the lower index, so equal scores give a deterministic plan
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return sorted(order[:k])


def plan_structure(model: nn.Module, importance: dict[str, torch.Tensor], *, ffn_keep: float = 1.0,
                   heads_keep: float = 1.0, encoder_layers: int = 0, decoder_layers: int = 0,
                   layer_selection: str = "spread") -> StructurePlan:
    """The plan keeping ``ffn_keep`` of the FFN neurons and ``heads_keep`` of the heads (fractions
    in (0, 1]) and ``encoder_layers``/``decoder_layers`` blocks (0 = all), the most
    important ones by ``importance`` (from :func:`weight_importance` or :func:`taylor_importance`)."""
    st = structure_of(model)
    cfg = model.config
    n_enc, n_dec = len(blocks(model, "encoder")), len(blocks(model, "decoder"))
    enc = select_layers(n_enc, encoder_layers or n_enc, layer_selection)
    dec = select_layers(n_dec, decoder_layers or n_dec, layer_selection)
    kept_blocks = {f"{st.blocks['encoder']}.{i}." for i in enc} | {f"{st.blocks['decoder']}.{i}." for i in dec}

    def kept(name: str) -> bool:
        return any((name + ".").startswith(p) for p in kept_blocks)

    missing = [n for n in list(ffn_modules(model)) + [n for m in attention_modules(model).values() for n in m]
               if n not in importance]
    if missing:
        raise ValueError(f"importance has no scores for {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    if not st.heads and heads_keep != 1:
        raise ValueError(f"heads_keep={heads_keep}: a {cfg.model_type} model's heads cannot be cut (its family "
                         "declares no attention layout; blocks and FFN neurons can); use heads_keep=1")
    k_h = keep_count(int(getattr(cfg, st.heads_key["encoder"], 1)) if st.heads else 1, heads_keep, "heads_keep")
    plan = StructurePlan(encoder_layers=enc, decoder_layers=dec)
    for stack in _STACKS:
        k_ff = keep_count(getattr(cfg, st.ffn_dim[stack]), ffn_keep, "ffn_keep")
        plan.ffn.update({n: _top(importance[n], k_ff) for n in ffn_modules(model)
                         if kept(n) and n.startswith(st.blocks[stack] + ".")})
    att = attention_modules(model)
    if not att:
        return plan
    for kind, attr in (("enc_self", "enc_self_heads"), ("dec_self", "dec_self_heads")):
        # one choice for the whole stack: the summed score over the blocks that stay
        total = sum(importance[n].double() for n in att[kind] if kept(n))
        setattr(plan, attr, _top(total, k_h))
    plan.cross_heads = {n: _top(importance[n], k_h) for n in att["cross"] if kept(n)}
    return plan


# ----------------------------------------------------------------------------- applying a plan


def _head_index(heads: list[int], d: int) -> torch.Tensor:
    return torch.cat([torch.arange(h * d, (h + 1) * d) for h in heads])


def _old_name(new_name: str, plan: StructurePlan, st) -> str:
    """The original parameter name a parameter of the smaller model comes from."""
    for stack in _STACKS:
        pre = st.blocks[stack] + "."
        if new_name.startswith(pre):
            idx, _, tail = new_name[len(pre):].partition(".")
            layers = plan.encoder_layers if stack == "encoder" else plan.decoder_layers
            return f"{pre}{layers[int(idx)]}.{tail}"
    return new_name


def _attention_heads(plan: StructurePlan, st) -> dict[str, list[int]]:
    """Original attention module name -> the heads it keeps (kept blocks only)."""
    at = st.attention
    if at is None:
        return {}
    out = dict(plan.cross_heads)
    for kind, heads in (("enc_self", plan.enc_self_heads), ("dec_self", plan.dec_self_heads)):
        stack, path = at.modules[kind]
        # block 0 too: a stack's tables (T5's position bias) live there, cut to the stack's heads
        for i in {0, *(plan.encoder_layers if stack == "encoder" else plan.decoder_layers)}:
            out[f"{st.blocks[stack]}.{i}.{path}"] = heads
    return out


def _slice_for(old_name: str, plan: StructurePlan, d: int | None, st,
               att_heads: dict[str, list[int]]) -> tuple[int, torch.Tensor] | None:
    """(axis, kept indices) for one original parameter, or None if it is copied whole."""
    module, _, kind = old_name.rpartition(".")  # kind: weight / bias
    parent, _, linear = module.rpartition(".")
    if parent in plan.ffn:
        idx = torch.tensor(plan.ffn[parent])
        if linear == st.ffn_out:
            return (1, idx) if kind == "weight" else None  # the output bias stays whole
        return (0, idx) if linear in st.ffn_in else None
    at = st.attention
    if at is None:
        return None
    for table, axis in at.per_head:
        owner = old_name[:-len(table) - 1]
        if old_name.endswith("." + table) and owner in att_heads:
            return axis, torch.tensor(att_heads[owner])
    if parent in att_heads:
        idx = _head_index(att_heads[parent], d)
        if linear == at.out:
            return (1, idx) if kind == "weight" else None  # the output bias stays whole
        return (0, idx) if linear in at.qkv else None
    return None


def smaller_config(model: nn.Module, plan: StructurePlan):
    st = structure_of(model)
    cfg = copy.deepcopy(model.config)
    for stack, layers in (("encoder", plan.encoder_layers), ("decoder", plan.decoder_layers)):
        setattr(cfg, st.layers[stack], len(layers))
        first = next(v for n, v in plan.ffn.items() if n.startswith(st.blocks[stack] + "."))
        setattr(cfg, st.ffn_dim[stack], len(first))
    if st.heads:
        st.attention.set_heads(cfg, len(plan.enc_self_heads))
    return cfg


def check_plan(model: nn.Module, plan: StructurePlan) -> None:
    """ValueError unless ``plan`` describes a uniform, standard model of the family inside ``model``."""
    st = structure_of(model)
    n_enc, n_dec = len(blocks(model, "encoder")), len(blocks(model, "decoder"))
    for what, layers, n in (("encoder_layers", plan.encoder_layers, n_enc), ("decoder_layers", plan.decoder_layers, n_dec)):
        if not layers or sorted(set(layers)) != list(layers) or layers[0] < 0 or layers[-1] >= n:
            raise ValueError(f"plan.{what}={layers}: must be sorted, distinct, within 0..{n - 1}")
    if len(plan.encoder_layers) < len(plan.decoder_layers):
        # generate() builds its DynamicCache from the top-level config, whose num_hidden_layers is
        # the encoder's block count (T5's num_layers, BART's encoder_layers): decoder layer_idx
        # beyond it -> IndexError
        raise ValueError(f"the plan keeps {len(plan.encoder_layers)} encoder but {len(plan.decoder_layers)} decoder "
                         f"blocks: a model with fewer encoder than decoder blocks cannot generate with the KV cache "
                         f"in transformers 5 (the cache is sized by the encoder's count); keep at least as many "
                         f"encoder blocks as decoder blocks")
    names = list(ffn_modules(model))
    expect = {n for n in names for stack, layers in (("encoder", plan.encoder_layers), ("decoder", plan.decoder_layers))
              for i in layers if (n + ".").startswith(f"{st.blocks[stack]}.{i}.")}
    if set(plan.ffn) != expect:
        raise ValueError(f"plan.ffn must name exactly the FFNs of the kept layers; differs on "
                         f"{sorted(set(plan.ffn) ^ expect)[:3]}")
    by_key: dict[str, set[int]] = {}
    for n, v in plan.ffn.items():
        stack = "encoder" if n.startswith(st.blocks["encoder"] + ".") else "decoder"
        by_key.setdefault(st.ffn_dim[stack], set()).add(len(v))
    if any(len(v) != 1 for v in by_key.values()):
        raise ValueError(f"every FFN must keep the same number of neurons (one {' / '.join(by_key)} in the config); "
                         f"got {sorted(set().union(*by_key.values()))}")
    for n, idx in plan.ffn.items():
        stack = "encoder" if n.startswith(st.blocks["encoder"] + ".") else "decoder"
        limit = getattr(model.config, st.ffn_dim[stack])
        if not idx or sorted(set(idx)) != list(idx) or idx[0] < 0 or idx[-1] >= limit:
            raise ValueError(f"plan ffn indices {idx[:5]}...: must be sorted, distinct, within 0..{limit - 1}")
    if not st.heads:
        if plan.enc_self_heads or plan.dec_self_heads or plan.cross_heads:
            raise ValueError(f"a {model.config.model_type} model's heads cannot be cut: the plan must name none")
        return
    stack, path = st.attention.modules["cross"]
    cross = {f"{st.blocks[stack]}.{i}.{path}" for i in plan.decoder_layers}
    if set(plan.cross_heads) != cross:
        raise ValueError("plan.cross_heads must name exactly the cross-attentions of the kept decoder layers")
    head_sets = [plan.enc_self_heads, plan.dec_self_heads, *plan.cross_heads.values()]
    if len({len(h) for h in head_sets}) != 1:
        raise ValueError("every attention must keep the same number of heads (T5Config has one num_heads; "
                         "CTranslate2 reads one head count for every attention)")
    n_heads = int(getattr(model.config, st.heads_key["encoder"]))
    for idx in head_sets:
        if not idx or sorted(set(idx)) != list(idx) or idx[0] < 0 or idx[-1] >= n_heads:
            raise ValueError(f"plan heads indices {idx[:5]}...: must be sorted, distinct, within 0..{n_heads - 1}")


def _mirror_ties(model: nn.Module, new_model: nn.Module) -> None:
    """Share the parameters outside the blocks (embedding, lm_head) in ``new_model`` exactly as
    ``model`` shares them. A fresh T5 ties lm_head and both embed_tokens to ``shared`` (transformers
    5 forces ``tie_word_embeddings``), but ``model`` may carry its own lm_head (``tie_mode``
    'untie'/'course', then masks made permanent): loading its state dict into the tied new model
    would write lm_head's values over the input embedding."""
    st = structure_of(model)
    old = dict(model.named_parameters(remove_duplicate=False))
    by_old: dict[int, nn.Parameter] = {}
    used: set[int] = set()
    for name, p in list(new_model.named_parameters(remove_duplicate=False)):
        if any(name.startswith(b + ".") for b in st.blocks.values()) or name not in old:
            continue
        key = id(old[name])
        q = by_old.get(key)
        if q is None:
            q = p if id(p) not in used else nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)
            by_old[key] = q
        used.add(id(q))
        if q is not p:
            mod, _, attr = name.rpartition(".")
            setattr(new_model.get_submodule(mod), attr, q)


def apply_plan(model: nn.Module, plan: StructurePlan) -> nn.Module:
    """A new, smaller model of the same class keeping what ``plan`` keeps (``model`` is unchanged).

    Every parameter is a slice of the original's: the smaller model computes exactly what the
    original computes with the removed neurons' and heads' output weights set to zero (and the
    removed layers skipped)."""
    from ..models import family_of

    st = structure_of(model)
    check_plan(model, plan)
    cfg = smaller_config(model, plan)
    old = model.state_dict()
    d = st.attention.head_size(model.config) if st.attention else None
    att_heads = _attention_heads(plan, st)
    new_model = family_of(model).build(cfg).to(device=next(model.parameters()).device,
                                               dtype=next(model.parameters()).dtype)
    _mirror_ties(model, new_model)
    tables = st.attention.stack_tables if st.attention else ()
    sd = {}
    for name in new_model.state_dict():
        src = _old_name(name, plan, st)
        if any(name.endswith("." + t) for t in tables):
            # the stack's table lives in its first block whatever block becomes the new first one
            for stack in _STACKS:
                pre = st.blocks[stack] + "."
                if src.startswith(pre):
                    src = pre + "0." + src[len(pre):].partition(".")[2]
        t = old[src]
        sl = _slice_for(src, plan, d, st, att_heads)
        if sl is not None:
            axis, idx = sl
            t = t.index_select(axis, idx.to(t.device))
        sd[name] = t.clone()
    new_model.load_state_dict(sd, strict=True)
    if getattr(model, "generation_config", None) is not None:
        new_model.generation_config = copy.deepcopy(model.generation_config)
    new_model.train(model.training)
    return new_model


def mask_plan(model: nn.Module, plan: StructurePlan) -> None:
    """Zero, in place, the output weights of the neurons and heads ``plan`` removes (layers are
    not touched): the masked model computes what :func:`apply_plan`'s smaller model computes when
    the plan keeps every layer. Used to test the physical removal."""
    st = structure_of(model)
    check_plan(model, plan)
    d = st.attention.head_size(model.config) if st.attention else 0
    with torch.no_grad():
        for name, ffn in ffn_modules(model).items():
            if name in plan.ffn:
                out = _wo(ffn, st)
                drop = sorted(set(range(out.weight.shape[1])) - set(plan.ffn[name]))
                out.weight[:, drop] = 0
        for kind, mods in attention_modules(model).items():
            for name, att in mods.items():
                if kind == "cross":
                    if name not in plan.cross_heads:
                        continue
                    heads = plan.cross_heads[name]
                else:
                    heads = plan.enc_self_heads if kind == "enc_self" else plan.dec_self_heads
                for h in sorted(set(range(_n_heads(att, st, d))) - set(heads)):
                    _out(att, st).weight[:, h * d:(h + 1) * d] = 0


def describe(model: nn.Module) -> str:
    """'enc 6 / dec 2 layers, d_ff 1024, 4 heads, 35.2M params'."""
    from ..models import model_shape

    structure_of(model)  # a family without structure, or masks left: the same errors as before
    shape = model_shape(model)  # the family layer reads blocks, widths and heads
    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    ffn = "/".join(sorted({str(w) for k in _STACKS for w in shape["d_ff"][k]}))
    return (f"enc {shape['layers']['encoder']} / dec {shape['layers']['decoder']} layers, d_ff {ffn}, "
            f"{shape['heads']['encoder']} heads, {params / 1e6:.1f}M params")


#: ``prune.structured.importance`` -> its criterion (:class:`~summprune.methods.base.Criterion`:
#: ``fn(model, batches)`` -> score per neuron / head); the config check reads the names from here.
#: A new criterion is one function and one line here (or ``@criterion(SCORERS, "name")``).
SCORERS: dict[str, Criterion] = {
    "weight": Criterion(lambda model, batches: weight_importance(model)),
    "taylor": Criterion(taylor_importance, needs_data=True),
}


def shrink(model: nn.Module, *, importance: str = "weight", batches: Iterable[dict] | None = None,
           ffn_keep: float = 1.0, heads_keep: float = 1.0, encoder_layers: int = 0,
           decoder_layers: int = 0, layer_selection: str = "spread",
           sync: Callable[[StructurePlan], StructurePlan] | None = None) -> tuple[nn.Module, StructurePlan]:
    """Score, plan and remove in one call: ``(smaller model, plan)``. ``sync`` (several
    processes) replaces the plan by the main process's, so that every process builds one shape."""
    if importance not in SCORERS:
        raise ValueError(f"unknown importance {importance!r}; choose one of {', '.join(SCORERS)}")
    crit = SCORERS[importance]
    if crit.needs_data and batches is None:
        raise ValueError(f"importance={importance!r} needs batches (inputs with labels)")
    scores = crit.fn(model, batches)
    plan = plan_structure(model, scores, ffn_keep=ffn_keep, heads_keep=heads_keep, encoder_layers=encoder_layers,
                          decoder_layers=decoder_layers, layer_selection=layer_selection)
    if sync is not None:
        plan = sync(plan)
    return apply_plan(model, plan), plan


@register
class Structured(Method):
    """``[prune.structured]``: score neurons and heads (plan, main process), build the smaller
    model (apply), then recovery, usually distilled from the model before removal."""

    name = "structured"
    config_cls = StructuredConfig
    structural = True
    validate = staticmethod(validate_structured)

    def plan(self, model: nn.Module, ctx) -> StructurePlan:
        sc = self.config
        crit = SCORERS[sc.importance]
        batches = criterion_batches(crit, f"prune.structured.importance={sc.importance!r}", model, ctx,
                                    sc.importance_batches, "importance='weight'")
        scores = crit.fn(model, batches)
        return plan_structure(model, scores, ffn_keep=sc.ffn_keep, heads_keep=sc.heads_keep,
                              encoder_layers=sc.encoder_layers, decoder_layers=sc.decoder_layers,
                              layer_selection=sc.layer_selection)

    def steps(self, plan: StructurePlan) -> list[Step]:
        rc = self.config.recovery()
        return [Step(1, plan, rc if rc.recovers() else None, True)]

    def apply(self, model: nn.Module, step: Step, ctx) -> tuple[nn.Module, dict]:
        before, params_before = describe(model), S.dense_param_count(model)
        small = apply_plan(model, step.payload)
        ctx.log_print(f"structured: {before} -> {describe(small)}")
        self.info = {"plan": step.payload.to_dict(), "before": before, "after": describe(small),
                     "params_before": params_before, "params_after": S.dense_param_count(small),
                     "importance": self.config.importance}
        return small, {"structured": self.info["after"]}

    def record(self, plan: StructurePlan) -> dict:
        return self.info

