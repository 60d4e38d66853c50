"""The quality proxy every quality benchmark prunes: a small T5 that demonstrably reads its input.

    python benchmarks/proxy.py                 # train (<= --minutes, resumable), check, commit-ready
    python benchmarks/proxy.py --check-only    # re-run the validity checks on docs/results/proxy/

No pretrained t5-small or BillSum here, so quality claims are made on a proxy. A proxy that does
not read its bill (issue 14: the old one scored 98% of its own score when given another bill's
text) ranks recipes for the wrong model, so this one is trained on ``make_corpus(...,
difficulty="copy")``, whose summaries can only be written by copying names, numbers and years
from the bill, and it is kept only with its validity checks, printed and saved beside it:

* **swapped input**: the course score with every bill's own text against the score with the
  next bill's text (inputs rotated by one, references fixed). A reader must lose at least half:
  swapped <= 50% of own. (A perfect reader given the wrong bill still scores ~0.3: the template
  words.)
* **names copied**: the bill's exact short title, and the exact name of the Act it amends
  (bills that amend one), must appear in >= 80% of the held-out summaries.

Shape: t5-small's layout (6+6 blocks, 8 heads, ReLU FFN of 4x width, tied embedding, 32
relative-position buckets) at d_model 128 (d_kv 16, d_ff 512), a width two CPU cores train in
``--minutes``; a BPE vocabulary of 4,000 trained on the corpus, in which the corpus's made-up names
are one token each (and, since the tokenizer spaces an opening ````, the same token in the bill
and in its summary).

Curriculum: a model trained on the bills alone learns every summary's structure but copies
nothing (the committed proxy of 2026-12-01 morning: 1,679 steps, title copied in 0%): most summary
words are template words the decoder predicts alone, so little of the loss asks for the
cross-attention that copies. So training starts with a **name-copy warm-up**
(``--names-warmup``, the first 10% of the budget): sequences of 4-8 made-up names and numbers,
"copy: Dorvain 390 Strekal" -> "Dorvain 390 Strekal", where every target token must be found in
the input; these steps are cheap (~780 of them in 4 minutes on one core). After it,
``--names-frac`` (20%) of the steps stay name copies, so the summaries keep the mechanism.
Training: AdamW, linear warm-up then cosine decay to 10% over the time budget, no dropout (every
batch is fresh data: ``--train-docs`` documents, so there is nothing to over-fit), batches of similar length (less padding). It
evaluates every ``--eval-every`` steps (validation loss and the two copy rates on 50 validation
bills), keeps the state with the best validation loss, and checkpoints in ``--work`` so an
interrupted run resumes.

Output (``--out``, default ``docs/results/proxy/``): the model in the compact format, fp16 (a few
MB, loads with ``summprune.export.load_model``), its tokenizer, and ``proxy.json`` (corpus
difficulty and seed, splits, ``max_source_length``, shape, training settings and history, and the
validity results). Benchmarks rebuild the same held-out bills from ``proxy.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "summarize: "
COPY_PREFIX = "copy: "
DEFAULT_OUT = ROOT / "docs" / "results" / "proxy"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- data


def splits(meta: dict) -> dict:
    """The proxy's train / val / eval rows, rebuilt from ``proxy.json``'s ``corpus`` entry."""
    from summprune.synthetic import make_corpus

    c = meta["corpus"]
    rows = make_corpus(c["train_docs"] + c["val_docs"] + c["eval_docs"], seed=c["seed"], difficulty=c["difficulty"])
    n_tr, n_va = c["train_docs"], c["val_docs"]
    return {"train": rows[:n_tr], "val": rows[n_tr:n_tr + n_va], "eval": rows[n_tr + n_va:]}


def to_dataset(rows: list[dict], tok, max_source_length: int, max_target_length: int = 128):
    import datasets

    from summprune.data import tokenize

    ds = datasets.Dataset.from_list([{"text": r["text"], "summary": r["summary"]} for r in rows])
    return tokenize(ds, tok, PREFIX, max_source_length, max_target_length)


def generate(model, tok, texts: list[str], max_source_length: int, batch_size: int = 32) -> list[str]:
    """Greedy summaries, max length 128: the course's decoding, through the package's generator."""
    from summprune.generate import generate_summaries

    out = generate_summaries(model, tok, texts, prefix=PREFIX, max_source_length=max_source_length,
                             max_length=128, num_beams=1, batch_size=batch_size, progress=False)
    return [out[i] for i in range(len(texts))]


# ----------------------------------------------------------------------------- validity


_AMENDS = re.compile(r"Amends the (.+? Act) to ")


def copy_rates(preds: list[str], rows: list[dict]) -> dict:
    """Share of summaries holding the bill's exact short title, and (bills that amend an Act) the
    exact name of every Act the reference summary says it amends."""
    title = sum(r["title"] in p for p, r in zip(preds, rows)) / max(1, len(rows))
    acts = [(p, _AMENDS.findall(r["summary"])) for p, r in zip(preds, rows)]
    acts = [(p, names) for p, names in acts if names]
    act = sum(all(n in p for n in names) for p, names in acts) / max(1, len(acts))
    return {"title_rate": round(title, 4), "act_rate": round(act, 4), "act_docs": len(acts)}


def validity(model, tok, rows: list[dict], max_source_length: int, batch_size: int = 32) -> dict:
    """The two checks of a proxy that reads its input (see the module docstring)."""
    from summprune.metrics import kaggle_score, rouge

    texts = [r["text"] for r in rows]
    refs = [r["summary"] for r in rows]
    t0 = time.time()
    own = generate(model, tok, texts, max_source_length, batch_size)
    swapped = generate(model, tok, texts[1:] + texts[:1], max_source_length, batch_size)
    own_s, swap_s = kaggle_score(own, refs), kaggle_score(swapped, refs)
    res = {
        "docs": len(rows),
        "own_kaggle": round(own_s, 4), "swapped_kaggle": round(swap_s, 4),
        "swapped_over_own": round(swap_s / own_s, 4) if own_s else None,
        "own_rougeLsum": round(rouge(own, refs)["rougeLsum"], 4),
        **copy_rates(own, rows),
        # a perfect reader given the wrong bill: how much of a summary the template alone gives
        "reference_swapped_kaggle": round(kaggle_score(refs[1:] + refs[:1], refs), 4),
        "example": {"reference": refs[0], "own": own[0], "swapped": swapped[0]},
        "seconds": round(time.time() - t0, 1),
    }
    res["passes"] = {"swapped_le_50pct": res["swapped_over_own"] is not None and res["swapped_over_own"] <= 0.5,
                     "title_ge_80pct": res["title_rate"] >= 0.8, "act_ge_80pct": res["act_rate"] >= 0.8}
    return res


# ----------------------------------------------------------------------------- training


def settings_of(a) -> dict:
    return {"corpus": {"difficulty": a.difficulty, "seed": a.corpus_seed, "train_docs": a.train_docs,
                       "val_docs": a.val_docs, "eval_docs": a.eval_docs},
            "shape": {"d_model": a.d_model, "layers": a.layers, "heads": a.heads, "d_ff": 4 * a.d_model,
                      "vocab": a.vocab, "dropout": a.dropout},
            "max_source_length": a.max_source_length, "max_target_length": 128,
            "train": {"lr": a.lr, "batch_size": a.batch_size, "minutes": a.minutes, "warmup": a.warmup,
                      "eval_every": a.eval_every, "seed": a.seed,
                      # listed only when used, so a checkpoint of a run without one resumes
                      **({"curriculum": {"copy_frac": a.copy_frac, "copy_until": a.copy_until,
                                         "copy_tokens": a.copy_tokens}} if a.copy_until > 0 else {}),
                      **({"names": {"warmup": a.names_warmup, "frac": a.names_frac, "until": a.names_until,
                                    "items": a.names_items}} if max(a.names_until, a.names_warmup) > 0 else {})}}


def _batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar source length (chunks of 50 batches sorted by length)."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    out = []
    chunk = 50 * batch_size
    for i in range(0, len(order), chunk):
        part = sorted(order[i:i + chunk], key=lambda j: lengths[j])
        out += [part[k:k + batch_size] for k in range(0, len(part) - batch_size + 1, batch_size)]
    rng.shuffle(out)
    return out


def _names_batch(tok, collator, n: int, items: int, rng: random.Random):
    """A pure copy task on the corpus's made-up names and numbers ("copy: Dorvain 390 Strekal" ->
    "Dorvain 390 Strekal"). Every target token must be found in the input, so the cross-attention
    that copies a token forms in a few hundred steps (on the bills, where most summary words are
    template words the decoder predicts alone, it had not formed after 1,679 steps)."""
    from summprune.synthetic import _NAMES

    seqs = []
    for _ in range(n):
        # 80% names, else a number or a year (days, amounts, street numbers, fiscal years)
        words = [rng.choice(_NAMES) if rng.random() < 0.8
                 else str(rng.choice([rng.randint(2, 9999), rng.randint(2009, 2030)]))
                 for _ in range(rng.randint(max(1, items // 2), items))]
        seqs.append(" ".join(words))
    enc = tok([COPY_PREFIX + s for s in seqs])
    lab = tok(text_target=seqs)["input_ids"]
    return collator([{"input_ids": i, "attention_mask": m, "labels": y}
                     for i, m, y in zip(enc["input_ids"], enc["attention_mask"], lab)])


def _own_tensors(model) -> dict:
    """The state dict with each shared tensor once (the tied embedding: ``shared.weight``)."""
    tied = ("lm_head.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if k not in tied}


def train(a, work: Path) -> tuple:
    from safetensors.torch import load_file, save_file
    from transformers import DataCollatorForSeq2Seq

    from summprune.modeling import build_tiny_model, load_tokenizer
    from summprune.tokenizer import train_tokenizer
    from summprune.train import validation_loss

    settings = settings_of(a)
    data = splits(settings)
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else None
    if state is not None and state["settings"] != settings:
        log(f"{work}: a checkpoint of other settings; starting afresh")
        state = None
    if state is None:
        tok = train_tokenizer([PREFIX + r["text"] for r in data["train"][:5000]] +
                              [r["summary"] for r in data["train"][:5000]], vocab_size=a.vocab)
        tok.save_pretrained(str(work / "tokenizer"))
    tok = load_tokenizer(work / "tokenizer")
    torch.manual_seed(a.seed)
    model = build_tiny_model(len(tok), a.d_model, a.layers, a.heads, 4 * a.d_model, seed=a.seed)
    model.config.dropout_rate = a.dropout
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = a.dropout
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    if state is not None:
        model.load_state_dict(load_file(str(work / "model.safetensors")), strict=False)
        model.tie_weights()
        opt.load_state_dict(torch.load(work / "optimizer.pt", weights_only=True))
        log(f"resuming at step {state['step']} ({state['elapsed_s']:.0f} s of {a.minutes * 60:.0f} s done)")
    else:
        state = {"settings": settings, "step": 0, "elapsed_s": 0.0, "history": [], "best_val_loss": None,
                 "epoch": 0, "batch_in_epoch": 0}
    train_ds = to_dataset(data["train"], tok, a.max_source_length)
    val_ds = to_dataset(data["val"], tok, a.max_source_length)
    collator = DataCollatorForSeq2Seq(tok, model=model, label_pad_token_id=-100)
    lengths = [len(x) for x in train_ds["input_ids"]]
    budget = a.minutes * 60
    log(f"proxy: {sum(p.numel() for p in model.parameters()):,} parameters, {len(train_ds)} train docs, "
        f"budget {a.minutes} min")
    model.train()
    t_start = time.time() - state["elapsed_s"]
    done = False
    while not done:
        batches = _batches(lengths, a.batch_size, random.Random(f"{a.seed}/{state['epoch']}"))
        for bi in range(state["batch_in_epoch"], len(batches)):
            frac = min(1.0, (time.time() - t_start) / budget)
            from_epoch = True  # a batch of the full bills' epoch (a resumed run goes on after it)
            if frac < a.names_warmup or (frac < a.names_until and
                                           random.Random(f"names/{a.seed}/{state['step']}").random() < a.names_frac):
                batch = _names_batch(tok, collator, 2 * a.batch_size, a.names_items,
                                     random.Random(f"names-batch/{a.seed}/{state['step']}"))
                state["names_batches"] = state.get("names_batches", 0) + 1
                from_epoch = False
            elif frac < a.copy_until and random.Random(f"copy/{a.seed}/{state['step']}").random() < a.copy_frac:
                # curriculum: the same bills as a pure copy task ("copy: " + bill -> its first
                # --copy-tokens tokens). Every target token is a copy, so the copy mechanism that
                # t5-small has from pre-training is learnt here first; summaries then reuse it.
                texts = [data["train"][j]["text"] for j in batches[bi]]
                enc = tok([COPY_PREFIX + t for t in texts], max_length=a.max_source_length, truncation=True)
                lab = tok(texts, max_length=a.copy_tokens, truncation=True)
                feats = [{"input_ids": i, "attention_mask": m, "labels": y}
                         for i, m, y in zip(enc["input_ids"], enc["attention_mask"], lab["input_ids"])]
                batch = collator(feats)
                state["copy_batches"] = state.get("copy_batches", 0) + 1
            else:
                feats = [train_ds[j] for j in batches[bi]]
                batch = collator([{k: f[k] for k in ("input_ids", "attention_mask", "labels")} for f in feats])
            scale = min(1.0, (state["step"] + 1) / a.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
            for g in opt.param_groups:
                g["lr"] = a.lr * scale
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            state["step"] += 1
            if from_epoch:
                state["batch_in_epoch"] = bi + 1
            last = time.time() - t_start > budget
            if state["step"] % a.eval_every == 0 or last:
                model.eval()
                vloss = validation_loss(model, tok, val_ds, batch_size=32)
                preds = generate(model, tok, [r["text"] for r in data["val"][:50]], a.max_source_length)
                rates = copy_rates(preds, data["val"][:50])
                model.train()
                state["elapsed_s"] = time.time() - t_start
                rec = {"step": state["step"], "loss": round(loss.item(), 4), "val_loss": round(vloss, 4), **rates,
                       "lr": round(a.lr * scale, 6), "elapsed_s": round(state["elapsed_s"], 1)}
                state["history"].append(rec)
                log(f"step {rec['step']}: loss {rec['loss']} val loss {rec['val_loss']} title {rates['title_rate']} "
                    f"act {rates['act_rate']} lr {rec['lr']} ({rec['elapsed_s']} s)")
                if state["best_val_loss"] is None or vloss < state["best_val_loss"]:
                    state["best_val_loss"] = vloss
                    state["kept"] = rec
                    save_file(_own_tensors(model),
                              str(work / "best.safetensors"))
                save_file(_own_tensors(model),
                          str(work / "model.safetensors"))
                torch.save(opt.state_dict(), work / "optimizer.pt")
                tmp = state_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(state, indent=1))
                os.replace(tmp, state_path)
                if last:
                    done = True
                    break
        else:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    model.load_state_dict(load_file(str(work / "best.safetensors")), strict=False)
    model.tie_weights()
    model.eval()
    return model, tok, data, state


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="where the proxy, its tokenizer and proxy.json go")
    p.add_argument("--page-only", action="store_true", help="rewrite README.md from --out's proxy.json; train nothing")
    p.add_argument("--work", default=str(ROOT / "runs" / "proxy_train"), help="training checkpoints (resume)")
    p.add_argument("--check-only", action="store_true", help="re-run the validity checks on --out and stop")
    p.add_argument("--difficulty", default="copy", help="make_corpus difficulty of the training corpus")
    p.add_argument("--corpus-seed", type=int, default=7)
    p.add_argument("--train-docs", type=int, default=40000, help="fresh training bills (more than one pass needs)")
    p.add_argument("--val-docs", type=int, default=100, help="validation bills (early choice of the state kept)")
    p.add_argument("--eval-docs", type=int, default=200, help="held-out bills for the checks and the benchmarks")
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=6, help="encoder and decoder blocks each (t5-small: 6)")
    p.add_argument("--heads", type=int, default=8, help="attention heads (t5-small: 8)")
    p.add_argument("--vocab", type=int, default=4000, help="BPE vocabulary (4,000: most made-up names are one token)")
    p.add_argument("--dropout", type=float, default=0.0, help="0: fresh data every batch, nothing to over-fit")
    p.add_argument("--max-source-length", type=int, default=384, help="covers the whole bill (at most ~345 tokens)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--minutes", type=float, default=40.0, help="training time budget (the cosine decay's length)")
    p.add_argument("--eval-every", type=int, default=150)
    p.add_argument("--copy-frac", type=float, default=0.5,
                   help="curriculum: share of batches that are a pure copy task while it lasts")
    p.add_argument("--copy-until", type=float, default=0.0,
                   help="curriculum: the copy batches stop after this share of the time budget (0: none)")
    p.add_argument("--copy-tokens", type=int, default=96, help="curriculum: tokens of the bill a copy batch copies")
    p.add_argument("--names-warmup", type=float, default=0.1,
                   help="curriculum: only name-copy steps for this first share of the time budget (0.1: ~780 cheap "
                        "steps in 4 min of a 40-min budget on one core)")
    p.add_argument("--names-frac", type=float, default=0.2,
                   help="curriculum: after the warm-up, this share of steps copies names and numbers")
    p.add_argument("--names-until", type=float, default=1.0,
                   help="curriculum: the mixed-in name-copy steps stop after this share of the budget (0: none)")
    p.add_argument("--names-items", type=int, default=8, help="curriculum: at most this many names per copy sequence")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    out = Path(a.out)
    from summprune.export import load_model, save_compact
    from summprune.modeling import load_tokenizer

    if a.page_only:
        write_page(json.loads((out / "proxy.json").read_text()), out)
        return 0
    if a.check_only:
        meta = json.loads((out / "proxy.json").read_text())
        model, tok = load_model(out), load_tokenizer(out)
        res = validity(model, tok, splits(meta)["eval"], meta["max_source_length"])
        print(json.dumps({k: v for k, v in res.items() if k != "example"}, indent=1))
        return 0 if all(res["passes"].values()) else 1
    t0 = time.time()
    model, tok, data, state = train(a, Path(a.work))
    log("validity checks on the held-out bills")
    res = validity(model, tok, data["eval"], a.max_source_length)
    log(json.dumps({k: v for k, v in res.items() if k != "example"}))
    meta = {**settings_of(a), "difficulty": a.difficulty,
            "params": sum(p.numel() for p in model.parameters()),
            "steps": state["step"], "kept": state["kept"], "train_s": round(state["elapsed_s"], 1),
            "history": state["history"], "validity": res,
            "command": "python benchmarks/proxy.py " + shlex.join(argv if argv is not None else sys.argv[1:])}
    save_compact(model, out, tokenizer=tok, dtype="fp16")
    # the checks on the stored fp16 model, the one every benchmark loads
    res16 = validity(load_model(out), tok, data["eval"], a.max_source_length)
    meta["validity"] = res16
    meta["validity_fp32"] = res
    (out / "proxy.json").write_text(json.dumps(meta, indent=1) + "\n")
    write_page(meta, out)
    log(f"done in {time.time() - t0:.0f} s: {out} (passes: {res16['passes']})")
    return 0


def write_page(meta: dict, out: Path) -> Path:
    """README.md beside the proxy (its folder is a model directory: load_model reads it as usual)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import pages

    v = meta["validity"]

    def f(key: str, spec: str) -> str:  # a check a tiny proxy could not compute is None
        return "-" if v.get(key) is None else format(v[key], spec)

    rows = ["| check | value | passes |", "|---|---|---|",
            f"| course score with each bill's own text | {f('own_kaggle', '.4f')} | - |",
            f"| with the next bill's text (share of own) | {f('swapped_kaggle', '.4f')} ({f('swapped_over_own', '.0%')}) | "
            f"{v['passes'].get('swapped_le_50pct', '-')} |",
            f"| the bill's exact title copied | {f('title_rate', '.1%')} | {v['passes'].get('title_ge_80pct', '-')} |",
            f"| every Act the reference amends named ({v.get('act_docs')} bills) | {f('act_rate', '.1%')} | "
            f"{v['passes'].get('act_ge_80pct', '-')} |"]
    shape = meta.get("shape", {})
    body = (f"A {meta['params'] / 1e6:.2f}M-parameter T5 ({', '.join(f'{k} {x}' for k, x in shape.items())}) "
            f"trained {meta['steps']} steps on the synthetic `{meta['difficulty']}` corpus; checks on "
            f"{v['docs']} held-out bills, on the stored fp16 model:\n\n" + "\n".join(rows)
            + "\n\nWhat it is and why: docs/proxy.md.")
    return pages.write_readme(out, "The quality proxy", "proxy.py", meta.get("command", "python benchmarks/proxy.py"),
                              body, page_only="--page-only", source="proxy.json")


if __name__ == "__main__":
    sys.exit(main())
