"""The yardstick: a small T5 pretrained on real text, then fine-tuned on a real summarization task.

    python benchmarks/yardstick.py                  # corpus -> tokenizer -> pretrain -> fine-tune -> checks
    python benchmarks/yardstick.py --check-only     # re-run the checks on docs/results/yardstick/

Why: the synthetic proxy (docs/results/proxy) was never pretrained and is saturated (its dense
control scores 0.999), so every recipe recovers to ~100% on it and every distillation objective
ties. t5-small was made by pretraining on real text and fine-tuning; what pruning destroys in such
a model is knowledge spread over many weights. This builds the same kind of model, only smaller:

* **corpus** (``summprune.corpus``): the docstrings of the pinned requirements and the standard
  library; the task "docstring summary" (input: qualified name, signature, the docstring after its
  first paragraph; target: the first paragraph), split by top-level package so the held-out
  packages are never seen in pretraining or fine-tuning; pretraining prose = every docstring and
  comment block of the training packages.
* **tokenizer**: a BPE vocabulary trained on the training prose and pairs (``--vocab``), plus T5's
  sentinel tokens ``<extra_id_N>`` for span corruption.
* **pretraining**: T5's span corruption (15% noise, mean span 3) on the prose.
* **fine-tuning**: the training pairs, teacher-forced cross-entropy, ``--finetune-steps`` steps.
* **checks** (saved in ``yardstick.json``): it reads its input (course score with another pair's
  input, drawn at random, <= 60% of its own); it is far from the ceiling (0.25 <= course score <= 0.8) and beats the
  extractive baselines (the description's first sentence, its first 30 words); pretraining matters
  (the same fine-tuning from a random start, 3 seeds each, ranges apart).

Every stage checkpoints in ``--work`` and resumes where it stopped (kill it any time).
Output (``--out``, default docs/results/yardstick/): the fine-tuned model in the compact format
(fp16), its tokenizer, ``yardstick.json`` and the held-out pairs as ``test.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
PREFIX = "summarize: "
COPY_PREFIX = "copy: "
DEFAULT_OUT = ROOT / "docs" / "results" / "yardstick"
SENTINELS = 32  # T5 has 100; 15% noise in spans of 3 over <= 256 tokens needs at most 13


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- corpus + tokenizer


def corpus_stage(work: Path, requirements: Path, distributions: list[str] | None, stdlib) -> dict:
    from summprune.corpus import build_corpus, load_corpus, pinned_requirements, save_corpus

    folder = work / "corpus"
    if (folder / "corpus.json").is_file():
        return load_corpus(folder)
    names = distributions if distributions is not None else [n for n, _ in pinned_requirements(requirements)]
    log(f"building the corpus from {len(names)} distributions{' and the standard library' if stdlib else ''}")
    corpus = build_corpus(names, stdlib=stdlib, progress=True)
    save_corpus(corpus, folder)
    return corpus


def tokenizer_stage(work: Path, corpus: dict, vocab: int, seed: int):
    from summprune.modeling import load_tokenizer
    from summprune.tokenizer import train_tokenizer

    folder = work / "tokenizer"
    if not (folder / "tokenizer.json").is_file():
        prose = list(corpus["prose"])
        random.Random(seed).shuffle(prose)
        texts = prose[:30000] + [PREFIX + p["text"] for p in corpus["train"]] + [p["summary"] for p in corpus["train"]]
        log(f"training a {vocab}-piece BPE vocabulary on {len(texts)} texts")
        tok = train_tokenizer(texts, vocab_size=vocab)
        tok.add_special_tokens({"additional_special_tokens": [f"<extra_id_{i}>" for i in range(SENTINELS)]})
        tok.save_pretrained(str(folder))
    return load_tokenizer(folder)


# ----------------------------------------------------------------------------- span corruption


def _segments(total: int, k: int, rng: random.Random) -> list[int]:
    """``total`` split into ``k`` positive parts at random."""
    cuts = sorted(rng.sample(range(1, total), k - 1)) if k > 1 else []
    return [b - a for a, b in zip([0] + cuts, cuts + [total])]


def span_corrupt(ids: list[int], sentinel_ids: list[int], eos_id: int, rng: random.Random,
                 density: float = 0.15, mean_span: float = 3.0) -> tuple[list[int], list[int]]:
    """T5's span corruption: ``density`` of the tokens, in spans of mean length ``mean_span``, are
    replaced by one sentinel each in the input; the target lists each sentinel and its span."""
    n = len(ids)
    noise = max(1, round(n * density))
    spans = max(1, min(len(sentinel_ids), round(noise / mean_span), noise, n - noise))
    noise_lens, keep_lens = _segments(noise, spans, rng), _segments(n - noise, spans, rng)
    inp, tgt, pos = [], [], 0
    for i, (k, z) in enumerate(zip(keep_lens, noise_lens)):
        inp += ids[pos:pos + k]
        pos += k
        inp.append(sentinel_ids[i])
        tgt.append(sentinel_ids[i])
        tgt += ids[pos:pos + z]
        pos += z
    return inp + [eos_id], tgt + [eos_id]


def prose_stream(work: Path, corpus: dict, tok, seed: int) -> torch.Tensor:
    """Every training prose text, shuffled, tokenized and concatenated (``</s>`` between texts),
    cached in ``work/prose_ids.pt``."""
    path = work / "prose_ids.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    prose = list(corpus["prose"])
    random.Random(seed).shuffle(prose)
    log(f"tokenizing {len(prose)} prose texts")
    ids = []
    for i in range(0, len(prose), 2000):
        for x in tok(prose[i:i + 2000], add_special_tokens=False)["input_ids"]:
            ids += x + [tok.eos_token_id]
    t = torch.tensor(ids, dtype=torch.int32)
    torch.save(t, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    return t


# ----------------------------------------------------------------------------- training loops


def _own_tensors(model) -> dict:
    tied = ("lm_head.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
    return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items() if k not in tied}


def _lr(step: int, steps: int, warmup: int, lr: float) -> float:
    """Linear warm-up, then cosine decay to 10% at ``steps``."""
    frac = min(1.0, step / max(1, steps))
    return lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def _pad(seqs: list[list[int]], pad: int) -> torch.Tensor:
    """``seqs`` right-padded with ``pad`` into one tensor."""
    x = torch.full((len(seqs), max(len(s) for s in seqs)), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = torch.tensor(s)
    return x


def loop(model, work: Path, name: str, steps: int, lr: float, warmup: int, make_batch, *, seed: int,
         eval_fn=None, eval_every: int = 0, save_every: int = 50, identity: dict | None = None,
         stop_at: int | None = None) -> dict:
    """A resumable AdamW loop of ``steps`` steps: ``make_batch(step)`` gives the batch of a step
    (a pure function of the step, so a resumed run sees the same batches); the model, optimizer
    and history are saved in ``work/name/`` every ``save_every`` steps and at the end. With
    ``stop_at``, it stops there, the learning rate still on the schedule of ``steps`` (a later call
    with a larger ``stop_at`` goes on from there)."""
    from safetensors.torch import load_file, save_file

    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    state_path = folder / "state.json"
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    state = {"step": 0, "steps": steps, "lr": lr, "warmup": warmup, "seed": seed, "history": [], "elapsed_s": 0.0,
             **({"identity": identity} if identity else {})}
    keys = ("steps", "lr", "warmup", "seed", "identity")
    if state_path.is_file():
        saved = json.loads(state_path.read_text())
        if {k: saved.get(k) for k in keys} != {k: state.get(k) for k in keys}:
            raise SystemExit(f"{folder}: a checkpoint of other settings ({saved['steps']} steps, lr {saved['lr']}, "
                             f"seed {saved['seed']}); remove it or use another --work")
        state = saved
        model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
        model.tie_weights()
    end = steps if stop_at is None else min(stop_at, steps)
    if state["step"] < end and state_path.is_file():  # the optimizer only where training goes on
        opt.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True, map_location=device))
        log(f"{name}: resuming at step {state['step']} of {steps}")
    if state["step"] >= end:
        if state["step"] > end:
            raise SystemExit(f"{folder}: trained to step {state['step']}, past the {end} asked for; use another --work")
        return state

    def save() -> None:
        save_file(_own_tensors(model), str(folder / "model.safetensors.tmp"))
        os.replace(folder / "model.safetensors.tmp", folder / "model.safetensors")
        torch.save(opt.state_dict(), folder / "optimizer.pt.tmp")
        os.replace(folder / "optimizer.pt.tmp", folder / "optimizer.pt")
        _atomic_json(state_path, state)

    from tqdm.auto import tqdm

    model.train()
    t0 = time.time() - state["elapsed_s"]
    bar = tqdm(total=steps, initial=state["step"], desc=name, unit="step", mininterval=30)
    running = None
    while state["step"] < end:
        step = state["step"]
        for g in opt.param_groups:
            g["lr"] = _lr(step, steps, warmup, lr)
        loss = model(**{k: v.to(device) for k, v in make_batch(step).items()}).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        state["step"] += 1
        bar.update(1)
        state["elapsed_s"] = round(time.time() - t0, 1)
        if eval_every and (state["step"] % eval_every == 0 or state["step"] in (steps, end)):
            rec = {"step": state["step"], "train_loss": round(running, 4), "elapsed_s": state["elapsed_s"]}
            if eval_fn is not None:
                model.eval()
                rec.update(eval_fn(model))
                model.train()
            state["history"].append(rec)
            log(f"{name}: {rec}")
        if state["step"] % save_every == 0 or state["step"] in (steps, end):
            save()
    bar.close()
    model.eval()
    return state


def pretrain_batches(stream: torch.Tensor, tok, batch_size: int, length: int, seed: int, reconstruct: float = 0.0):
    """Span-corruption batches of ``length``-token prose segments (a pure function of the step).
    With ``reconstruct``, that share of the examples keeps the corrupted input but asks for the
    whole original text as the target (BART's text infilling): most target tokens are then in the
    input, so the loss trains the cross-attention to copy from the encoder, which span corruption
    alone barely does at this scale (``input_use``; docs/yardstick.md)."""
    sentinels = tok.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(SENTINELS)])
    n_seg = len(stream) // length
    order = list(range(n_seg))
    random.Random(f"{seed}/order").shuffle(order)

    def make(step: int) -> dict:
        rng = random.Random(f"{seed}/{step}")
        inps, tgts = [], []
        for j in range(batch_size):
            k = order[(step * batch_size + j) % n_seg]
            ids = stream[k * length:(k + 1) * length].tolist()
            i, t = span_corrupt(ids, sentinels, tok.eos_token_id, rng)
            if reconstruct and rng.random() < reconstruct:  # no draw without it: old runs resume the same
                t = ids + [tok.eos_token_id]
            inps.append(i)
            tgts.append(t)
        x = _pad(inps, tok.pad_token_id)
        y = _pad(tgts, -100)
        return {"input_ids": x, "attention_mask": (x != tok.pad_token_id).long(), "labels": y}

    return make


def input_use(model, stream: torch.Tensor, tok, batches: int = 5, batch_size: int = 32, length: int = 128) -> dict:
    """How much the model reads its encoder: the span-corruption loss on fixed prose batches with
    each example's own input, and with another example's (the batch rotated by one). A model whose
    decoder only models language scores the same on both."""
    make = pretrain_batches(stream, tok, batch_size, length, seed=12345)
    device = next(model.parameters()).device
    own = other = 0.0
    rot = torch.roll(torch.arange(batch_size), 1)
    with torch.no_grad():
        for b in range(batches):
            x = {k: v.to(device) for k, v in make(b).items()}
            own += model(**x).loss.item()
            other += model(input_ids=x["input_ids"][rot], attention_mask=x["attention_mask"][rot], labels=x["labels"]).loss.item()
    return {"span_loss_own_input": round(own / batches, 4), "span_loss_other_input": round(other / batches, 4)}


def encode_pairs(pairs: list[dict], tok, max_source_length: int, max_target_length: int) -> list[tuple]:
    src = tok([PREFIX + p["text"] for p in pairs], max_length=max_source_length, truncation=True)["input_ids"]
    tgt = tok(text_target=[p["summary"] for p in pairs], max_length=max_target_length, truncation=True)["input_ids"]
    return list(zip(src, tgt))


def finetune_batches(encoded: list[tuple], tok, batch_size: int, seed: int, copies: list[tuple] | None = None,
                     copy_frac: float = 0.0):
    """Shuffled batches of similar input length, epoch after epoch (a pure function of the step).
    With ``copies`` (each pair's input as a copy task, ``copy_pairs``), a ``copy_frac`` share of
    the steps train that instead, on the same rows: a reading curriculum within the same budget."""
    lengths = [len(s) for s, _ in encoded]
    per_epoch = len(encoded) // batch_size
    cache: dict[int, list] = {}

    def epoch_batches(e: int) -> list:
        if e not in cache:
            order = list(range(len(encoded)))
            rng = random.Random(f"{seed}/ft/{e}")
            rng.shuffle(order)
            chunk = 50 * batch_size
            out = []
            for i in range(0, len(order), chunk):
                part = sorted(order[i:i + chunk], key=lambda j: lengths[j])
                out += [part[k:k + batch_size] for k in range(0, len(part) - batch_size + 1, batch_size)]
            rng.shuffle(out)
            cache.clear()
            cache[e] = out
        return cache[e]

    def make(step: int) -> dict:
        idx = epoch_batches(step // per_epoch)[step % per_epoch]
        rows = encoded
        if copies is not None and random.Random(f"{seed}/copy/{step}").random() < copy_frac:
            rows = copies
        x = _pad([rows[j][0] for j in idx], tok.pad_token_id)
        y = _pad([rows[j][1] for j in idx], -100)
        return {"input_ids": x, "attention_mask": (x != tok.pad_token_id).long(), "labels": y}

    return make


def copy_pairs(pairs: list[dict], tok, max_source_length: int, copy_tokens: int) -> list[tuple]:
    """Each pair's input as a copy task: "copy: " + input -> its first ``copy_tokens`` tokens. Every
    target token is in the input, so the loss asks for the cross-attention that reads it (the
    synthetic proxy's models copied nothing until a copy warm-up: docs/proxy.md)."""
    src = tok([COPY_PREFIX + p["text"] for p in pairs], max_length=max_source_length, truncation=True)["input_ids"]
    tgt = tok(text_target=[p["text"] for p in pairs], max_length=copy_tokens, truncation=True)["input_ids"]
    return list(zip(src, tgt))


def build_model(tok, a, seed: int):
    from summprune.modeling import build_tiny_model

    model = build_tiny_model(len(tok), a.d_model, a.layers, a.heads, a.d_ff, seed=seed).to(a.device)
    model.config.dropout_rate = 0.0  # one pass over fresh text (pretraining) / a fixed budget: no dropout
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


# ----------------------------------------------------------------------------- evaluation and checks


def generate(model, tok, texts: list[str], max_source_length: int, batch_size: int = 32) -> list[str]:
    """Greedy, max length 128 (the course's decoding), through the package's generator."""
    from summprune.generate import generate_summaries

    out = generate_summaries(model, tok, texts, prefix=PREFIX, max_source_length=max_source_length,
                             device=next(model.parameters()).device,
                             max_length=128, num_beams=1, batch_size=batch_size, progress=False)
    return [out[i] for i in range(len(texts))]


def description(text: str) -> str:
    """The docstring part of an input: what follows ``qualified.name(signature): ``."""
    return text.split("): ", 1)[1] if "): " in text else text.split(": ", 1)[-1]


def baselines(pairs: list[dict]) -> dict:
    """Baselines on the course metric: extractive (the description's first sentence, its first 30
    words) and the floor (another pair's reference, at random; the next pair's)."""
    from summprune.metrics import kaggle_score, split_sentences

    refs = [p["summary"] for p in pairs]
    first = [(split_sentences(description(p["text"])) or [""])[0] for p in pairs]
    words30 = [" ".join(description(p["text"]).split()[:30]) for p in pairs]
    # the metric's floor: a fluent summary of something else (what a model that ignores its input
    # at best writes), and what a same-module neighbour's reference gets (near-copies: the reason
    # the swapped-input check draws the other pair at random)
    other = [refs[j] for j in other_pairs(len(pairs))]
    neighbour = refs[1:] + refs[:1]
    return {"first_sentence": round(kaggle_score(first, refs), 4), "first_30_words": round(kaggle_score(words30, refs), 4),
            "another_pairs_reference": round(kaggle_score(other, refs), 4),
            "neighbours_reference": round(kaggle_score(neighbour, refs), 4)}


def other_pairs(n: int, seed: int = 0) -> list[int]:
    """For each of ``n`` pairs the index of another pair, drawn at random (one seeded cycle through
    a shuffled order: no pair gets its own). Not the next pair: test pairs are stored package by
    package and module by module, and neighbours are often near-copies (``min``/``max`` of one
    class), so a model that reads its input would still score high on its neighbour's."""
    order = list(range(n))
    random.Random(f"{seed}/other").shuffle(order)
    out = [0] * n
    for i, j in enumerate(order):
        out[j] = order[(i + 1) % n]
    return out


def quality(model, tok, pairs: list[dict], max_source_length: int, swapped: bool = True) -> dict:
    from summprune.metrics import kaggle_score, rouge

    texts, refs = [p["text"] for p in pairs], [p["summary"] for p in pairs]
    t0 = time.time()
    own = generate(model, tok, texts, max_source_length)
    res = {"docs": len(pairs), "course_score": round(kaggle_score(own, refs), 4),
           "rougeLsum": round(rouge(own, refs)["rougeLsum"], 4)}
    if swapped:
        sw = generate(model, tok, [texts[j] for j in other_pairs(len(texts))], max_source_length)
        res["swapped_course_score"] = round(kaggle_score(sw, refs), 4)
        res["swapped_over_own"] = round(res["swapped_course_score"] / res["course_score"], 4) if res["course_score"] else None
    res["example"] = {"input": texts[0][:300], "reference": refs[0], "own": own[0]}
    res["seconds"] = round(time.time() - t0, 1)
    return res


# ----------------------------------------------------------------------------- the run


def settings_of(a) -> dict:
    return {"shape": {"d_model": a.d_model, "layers": a.layers, "heads": a.heads, "d_ff": a.d_ff, "vocab": a.vocab},
            "max_source_length": a.max_source_length, "max_target_length": a.max_target_length, "prefix": PREFIX,
            "pretrain": {"steps": a.pretrain_steps, "batch_size": a.pretrain_batch, "length": a.pretrain_length,
                         "lr": a.pretrain_lr, "warmup": a.warmup, "noise_density": 0.15, "mean_span": 3.0,
                         **({"reconstruct": a.pretrain_reconstruct} if a.pretrain_reconstruct else {}),
                         **({"stop_at": a.pretrain_stop_at} if a.pretrain_stop_at is not None else {})},
            **({"read": {"steps": a.read_steps, "reconstruct": a.read_reconstruct, "lr": a.read_lr, "warmup": 50,
                         "batch_size": a.pretrain_batch, "length": a.read_length or a.pretrain_length}}
               if a.read_steps else {}),
            "finetune": {"steps": a.finetune_steps, "batch_size": a.batch_size, "lr": a.lr, "warmup": a.warmup,
                         **({"copy_frac": a.copy_frac, "copy_tokens": a.copy_tokens} if a.copy_frac > 0 else {})},
            "seeds": a.seeds, "val_docs": a.val_docs, "eval_docs": a.eval_docs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="where the model, yardstick.json and test.jsonl go")
    p.add_argument("--work", default=str(ROOT / "runs" / "yardstick"), help="corpus, checkpoints (resume)")
    p.add_argument("--check-only", action="store_true", help="re-run the checks on --out's model and stop")
    p.add_argument("--stage", choices=("corpus", "pretrain", "finetune", "all"), default="all",
                   help="stop after this stage (one process per stage or start runs in parallel; 'all' gathers "
                        "what is done and does the rest)")
    p.add_argument("--starts", nargs="+", choices=("pretrained", "scratch"), default=["pretrained", "scratch"],
                   help="fine-tuning starts to run (scratch: the same fine-tuning from a random start, the "
                        "pretraining check); the final gathering needs both")
    p.add_argument("--requirements", default=str(ROOT / "requirements.txt"), help="the pins whose packages make the corpus")
    p.add_argument("--distributions", nargs="*", default=None, help="these distributions instead (a small slice for tests)")
    p.add_argument("--stdlib", nargs="*", default=None,
                   help="only these standard-library modules (default: all of it; give none for no stdlib)")
    p.add_argument("--vocab", type=int, default=8000, help="BPE pieces (t5-small: 32,000; 8,000 cover docstring English)")
    p.add_argument("--d-model", type=int, default=128, help="t5-small: 512; 128 is what two shared CPU cores train in an hour")
    p.add_argument("--layers", type=int, default=6, help="encoder and decoder blocks each (t5-small: 6)")
    p.add_argument("--heads", type=int, default=8, help="attention heads (t5-small: 8)")
    p.add_argument("--d-ff", type=int, default=512, help="FFN width (t5-small: 4 x d_model)")
    p.add_argument("--max-source-length", type=int, default=192, help="input tokens read (~800 characters of docstring)")
    p.add_argument("--max-target-length", type=int, default=64, help="target tokens trained on (targets are <= 60 words)")
    p.add_argument("--pretrain-steps", type=int, default=3000)
    p.add_argument("--pretrain-batch", type=int, default=32)
    p.add_argument("--pretrain-length", type=int, default=128, help="tokens of prose per example before corruption")
    p.add_argument("--pretrain-lr", type=float, default=2e-3)
    p.add_argument("--pretrain-stop-at", type=int, default=None,
                   help="stop pretraining at this step, the learning rate still on the --pretrain-steps schedule")
    p.add_argument("--read-steps", type=int, default=0,
                   help="a reading phase after pretraining: this many steps of --read-reconstruct (0: none)")
    p.add_argument("--read-reconstruct", type=float, default=1.0, help="the reading phase's reconstruction share")
    p.add_argument("--read-lr", type=float, default=1e-3, help="the reading phase's peak learning rate (warm-up 50 steps)")
    p.add_argument("--read-length", type=int, default=None,
                   help="tokens of prose per reading example (default: --pretrain-length; copying is learned at any "
                        "length, and shorter steps are cheaper)")
    p.add_argument("--pretrain-reconstruct", type=float, default=0.0,
                   help="share of pretraining examples whose target is the whole original text (BART's text "
                        "infilling) instead of the spans: trains reading; 0: T5's span corruption only")
    p.add_argument("--finetune-steps", type=int, default=1200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--copy-frac", type=float, default=0.0,
                   help="reading curriculum: this share of fine-tuning steps copies the input's first --copy-tokens "
                        "tokens instead (same budget; 0: none)")
    p.add_argument("--copy-tokens", type=int, default=48, help="tokens a copy step writes")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fine-tuning seeds; the first is the yardstick")
    p.add_argument("--no-scratch", action="store_true", help="skip the from-scratch control (the pretraining check)")
    p.add_argument("--val-docs", type=int, default=100, help="validation pairs scored during fine-tuning (the history)")
    p.add_argument("--eval-docs", type=int, default=400, help="held-out pairs the checks score (test.jsonl keeps them all)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine (the same run in minutes)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    out, work = Path(a.out), Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    if a.check_only:
        return check_only(out)
    stdlib = True if a.stdlib is None else a.stdlib
    corpus = corpus_stage(work, Path(a.requirements), a.distributions, stdlib)
    tok = tokenizer_stage(work, corpus, a.vocab, seed=0)
    if a.stage == "corpus":
        return 0
    stream = prose_stream(work, corpus, tok, seed=0)
    log(f"corpus {corpus['content_hash'][:12]}: {len(corpus['train'])} train / {len(corpus['val'])} val / "
        f"{len(corpus['test'])} test pairs, {len(stream):,} prose tokens")
    if a.stage == "finetune" and a.starts == ["scratch"]:  # needs no pretraining: runs beside it
        return finetune_and_check(a, argv, corpus, tok, None, out, work)
    read_state = work / "read" / "state.json"
    if a.read_steps and read_state.is_file() and json.loads(read_state.read_text()).get("identity") != _start_identity(a):
        # before pretraining moves on: a reading phase begun on another start is not continued
        raise SystemExit(f"{read_state.parent}: a checkpoint of other settings (another pretraining stop or reading "
                         "phase); remove it or use another --work")
    model = build_model(tok, a, seed=0)
    log(f"model: {sum(p.numel() for p in model.parameters()):,} parameters")
    pre = loop(model, work, "pretrain", a.pretrain_steps, a.pretrain_lr, a.warmup,
               pretrain_batches(stream, tok, a.pretrain_batch, a.pretrain_length, seed=0, reconstruct=a.pretrain_reconstruct),
               seed=0, eval_fn=lambda m: input_use(m, stream, tok), eval_every=max(1, a.pretrain_steps // 20),
               identity={"reconstruct": a.pretrain_reconstruct} if a.pretrain_reconstruct else None,
               stop_at=a.pretrain_stop_at)
    if a.read_steps:
        # the same prose in another order; the loss now asks for the whole text (pretrain_batches)
        pre["read"] = loop(model, work, "read", a.read_steps, a.read_lr, 50,
                           pretrain_batches(stream, tok, a.pretrain_batch, a.read_length or a.pretrain_length, seed=1,
                                            reconstruct=a.read_reconstruct),
                           seed=1, eval_fn=lambda m: input_use(m, stream, tok), eval_every=max(1, a.read_steps // 5),
                           identity=_start_identity(a))
    if a.stage == "pretrain":
        return 0
    return finetune_and_check(a, argv, corpus, tok, pre, out, work)


def _start_identity(a) -> dict | None:
    """What the pretrained start is, beyond ``--pretrain-steps`` (which the pretraining checkpoint
    checks): a checkpoint that started from another one is not resumed (None: plain pretraining,
    as the runs before these options recorded it)."""
    ident = {}
    if a.pretrain_stop_at is not None:
        ident["pretrain_stop_at"] = a.pretrain_stop_at
    if a.read_steps:
        ident["read"] = {"steps": a.read_steps, "reconstruct": a.read_reconstruct, "lr": a.read_lr,
                         **({"length": a.read_length} if a.read_length else {})}
    return ident or None


def finetune_and_check(a, argv, corpus: dict, tok, pre: dict, out: Path, work: Path) -> int:
    import pages
    from safetensors.torch import load_file

    from summprune.export import load_model, save_compact

    encoded = encode_pairs(corpus["train"], tok, a.max_source_length, a.max_target_length)
    copies = copy_pairs(corpus["train"], tok, a.max_source_length, a.copy_tokens) if a.copy_frac > 0 else None
    curriculum = {"copy_frac": a.copy_frac, "copy_tokens": a.copy_tokens} if a.copy_frac > 0 else None
    val = corpus["val"][:a.val_docs]
    test = corpus["test"][:a.eval_docs]

    def val_eval(model) -> dict:
        if not val:
            return {}
        return {"val_course_score": quality(model, tok, val, a.max_source_length, swapped=False)["course_score"]}

    runs = {}
    starts = [s for s in a.starts if not (a.no_scratch and s == "scratch")]
    for start in starts:
        for seed in a.seeds:
            name = f"finetune_{start}_s{seed}" + (f"_copy{a.copy_frac:g}" if curriculum else "")
            model = build_model(tok, a, seed=seed)
            ident = curriculum
            if start == "pretrained":
                source = work / ("read" if a.read_steps else "pretrain") / "model.safetensors"
                model.load_state_dict(load_file(str(source)), strict=False)
                model.tie_weights()
                ident = {**(curriculum or {}), **(_start_identity(a) or {})} or None
            st = loop(model, work, name, a.finetune_steps, a.lr, a.warmup,
                      finetune_batches(encoded, tok, a.batch_size, seed, copies, a.copy_frac), seed=seed,
                      eval_fn=val_eval, eval_every=max(1, a.finetune_steps // 6), identity=ident)
            res_path = work / name / "test.json"
            if res_path.is_file():
                res = json.loads(res_path.read_text())
            else:
                res = quality(model, tok, test, a.max_source_length, swapped=(start == "pretrained" and seed == a.seeds[0]))
                _atomic_json(res_path, res)
            runs[name] = {"start": start, "seed": seed, "history": st["history"], "train_s": st["elapsed_s"], "test": res}
            log(f"{name}: course score {res['course_score']} on {res['docs']} held-out pairs")
            if start == "pretrained" and seed == a.seeds[0]:
                yardstick = model
    if a.stage == "finetune":
        return 0
    base = baselines(test)
    meta = {**settings_of(a), "params": sum(p.numel() for p in yardstick.parameters()),
            "corpus": describe_corpus(corpus),
            "pretrain_history": pre["history"], "pretrain_s": pre["elapsed_s"], "pretrain_step": pre["step"],
            **({"read_history": pre["read"]["history"], "read_s": pre["read"]["elapsed_s"]} if "read" in pre else {}),
            "runs": runs,
            "baselines": base, "versions": pages.versions(),
            "command": "python benchmarks/yardstick.py " + shlex.join(argv if argv is not None else sys.argv[1:])}
    out.mkdir(parents=True, exist_ok=True)
    save_compact(yardstick.cpu(), out, tokenizer=tok, dtype="fp16")
    write_test(out, corpus["test"])
    meta["checks"] = checks(load_model(out), tok, test, a.max_source_length, runs, base)
    _atomic_json(out / "yardstick.json", meta)
    write_page(meta, out)
    log(f"done: {out} (passes: {meta['checks']['passes']})")
    return 0


def describe_corpus(corpus: dict) -> dict:
    from summprune.corpus import describe

    d = describe(corpus)
    split = d.pop("packages")
    d["test_packages"] = sorted(k for k, v in split.items() if v == "test")
    d["val_packages"] = sorted(k for k, v in split.items() if v == "val")
    return d


def write_test(out: Path, pairs: list[dict]) -> None:
    tmp = out / "test.jsonl.tmp"
    tmp.write_text("".join(json.dumps({"text": p["text"], "summary": p["summary"], "id": p["id"],
                                       "package": p["package"]}, ensure_ascii=False) + "\n" for p in pairs))
    os.replace(tmp, out / "test.jsonl")


def checks(model, tok, test: list[dict], max_source_length: int, runs: dict, base: dict) -> dict:
    """The fair-yardstick checks on the stored (fp16) model; see the module docstring."""
    res = quality(model, tok, test, max_source_length)
    pre = [r["test"]["course_score"] for r in runs.values() if r["start"] == "pretrained"]
    scr = [r["test"]["course_score"] for r in runs.values() if r["start"] == "scratch"]
    out = {"stored_model": res, "baselines": base,
           "pretrained_seeds": pre, "scratch_seeds": scr}
    out["passes"] = {
        "reads_input_swapped_le_60pct": res["swapped_over_own"] is not None and res["swapped_over_own"] <= 0.6,
        "far_from_ceiling_025_080": 0.25 <= res["course_score"] <= 0.8,
        "beats_first_sentence": res["course_score"] > base["first_sentence"],
        "beats_first_30_words": res["course_score"] > base["first_30_words"],
        "pretraining_matters_ranges_apart": bool(scr) and min(pre) > max(scr),
    }
    return out


def check_only(out: Path) -> int:
    from summprune.export import load_model
    from summprune.modeling import load_tokenizer

    meta = json.loads((out / "yardstick.json").read_text())
    test = [json.loads(x) for x in (out / "test.jsonl").read_text().splitlines() if x][:meta["eval_docs"]]
    res = checks(load_model(out), load_tokenizer(out), test, meta["max_source_length"], meta["runs"],
                 baselines(test))
    print(json.dumps({k: v for k, v in res.items() if k != "stored_model"} | {
        "course_score": res["stored_model"]["course_score"],
        "swapped_over_own": res["stored_model"]["swapped_over_own"]}, indent=1))
    same = res["stored_model"]["course_score"] == meta["checks"]["stored_model"]["course_score"]
    print(f"course score {'equals' if same else 'DIFFERS FROM'} the recorded {meta['checks']['stored_model']['course_score']}")
    return 0 if all(res["passes"].values()) and same else 1


def write_page(meta: dict, out: Path) -> Path:
    import pages

    c = meta["checks"]
    s = c["stored_model"]
    pre, scr = c["pretrained_seeds"], c["scratch_seeds"]

    def rng(xs: list[float]) -> str:
        return f"{sum(xs) / len(xs):.4f} [{min(xs):.4f}-{max(xs):.4f}]" if xs else "-"

    rows = ["| check | value | passes |", "|---|---|---|",
            f"| course score, held-out packages ({s['docs']} pairs, stored fp16 model) | {s['course_score']:.4f} | "
            f"{c['passes']['far_from_ceiling_025_080']} (0.25-0.8) |",
            f"| with another pair's input (share of own) | {s['swapped_course_score']:.4f} "
            f"({'-' if s['swapped_over_own'] is None else format(s['swapped_over_own'], '.0%')}) | "
            f"{c['passes']['reads_input_swapped_le_60pct']} (<= 60%) |",
            f"| extractive: description's first sentence | {c['baselines']['first_sentence']:.4f} | "
            f"{c['passes']['beats_first_sentence']} (beaten) |",
            f"| extractive: description's first 30 words | {c['baselines']['first_30_words']:.4f} | "
            f"{c['passes']['beats_first_30_words']} (beaten) |",
            *([f"| the metric's floor: another pair's reference, at random (the next pair's) | "
               f"{c['baselines']['another_pairs_reference']:.4f} ({c['baselines']['neighbours_reference']:.4f}) | - |"]
              if "another_pairs_reference" in c["baselines"] else []),
            f"| fine-tuned from the pretrained model, seeds {meta['seeds']} | {rng(pre)} | - |",
            f"| the same fine-tuning from a random start | {rng(scr)} | "
            f"{c['passes']['pretraining_matters_ranges_apart']} (ranges apart) |"]
    sh = meta["shape"]
    body = (f"A {meta['params'] / 1e6:.2f}M-parameter T5 (t5-small's layout: {sh['layers']}+{sh['layers']} blocks, "
            f"{sh['heads']} heads, ReLU FFN, tied embedding; d_model {sh['d_model']}, d_ff {sh['d_ff']}, "
            f"a {sh['vocab']}-piece BPE vocabulary) pretrained {meta['pretrain']['steps']} steps with span corruption on "
            f"{meta['corpus']['prose_chars']:,} characters of docstring and comment prose, then fine-tuned "
            f"{meta['finetune']['steps']} steps (batch {meta['finetune']['batch_size']}) on "
            f"{meta['corpus']['pairs']['train']:,} docstring-summary pairs. Corpus sha256 "
            f"`{meta['corpus']['content_hash']}`; held-out packages: {', '.join(meta['corpus']['test_packages'])}.\n\n"
            + "\n".join(rows) + f"\n\nExample (held out): `{s['example']['input'][:160]}...`\n\n"
            f"- reference: {s['example']['reference']}\n- yardstick: {s['example']['own']}\n")
    return pages.write_readme(out, "The yardstick", "yardstick.py", meta.get("command", "python benchmarks/yardstick.py"),
                              body, page_only=None, source="yardstick.json")


if __name__ == "__main__":
    sys.exit(main())
