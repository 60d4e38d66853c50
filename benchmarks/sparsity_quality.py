"""Quality against honest sparsity on an offline proxy: which recipe keeps the score lowest down?

    python benchmarks/sparsity_quality.py                        # everything (~45 min on 2 cores)
    python benchmarks/sparsity_quality.py --proxy-only           # train/cache the dense proxy only
    python benchmarks/sparsity_quality.py --targets 0.3 0.1 --methods reference gradual_kd_auto
    python benchmarks/sparsity_quality.py --recovery-steps 100 --proxy-minutes 10   # cheaper

No pretrained t5-small or BillSum here, so the claims are made on a proxy: a small T5 (d_model
128, 2+2 layers, t5-small's layout with its tied embedding, vocabulary 2,000) trained from scratch
on 4,000 documents of the *hard* synthetic BillSum-like corpus (``make_corpus(..., difficulty=
"hard")``, ~900-token bills read up to ``--max-source-length`` 256 tokens, as the course reads
BillSum's longer bills up to 1024) until its validation loss and course score stop improving or
``--proxy-minutes`` run out (cosine learning-rate decay over that budget). It is trained once and
cached in ``runs/proxy/`` (reused while its settings are the same; the training time depends on
the machine's load, so a retrained proxy differs a little).

Then every method prunes a fresh copy of the proxy to each honest ``nonzero_ratio`` target
(``--targets``, default 0.5 0.3 0.2 0.1), every method but ``oneshot`` with the same recovery
budget (``--recovery-steps`` optimizer steps in all, same batch, same learning rate):

``oneshot``          one global L1 threshold over every prunable weight, no recovery.
``reference``        the course recipe's group proportions scaled to the target (each group keeps
                     ``keep_ref ** c``), in 6 equal-amount stages like the recipe, recovery after
                     each.
``gradual``          cubic schedule (Zhu & Gupta), uniform sparsity per group, recovery after
                     each step and a final recovery.
``gradual_kd``       ``gradual`` with distillation from the dense proxy during recovery.
``gradual_kd_auto``  ``gradual_kd`` with per-group sparsities from measured sensitivities.

Every pruned model is scored on the same fixed ``--eval-docs`` held-out documents (greedy, max
length 128: the course metric ``kaggle_score`` and ROUGE-Lsum). Results go to
``runs/sparsity_quality/``: ``results.json`` (written after every cell, so an interrupted run
resumes where it stopped), ``table.md`` and ``pareto.png``. A control row gives the dense proxy
the same recovery budget without pruning (does fine-tuning alone move the score?).

This is a *proxy*: a synthetic corpus and a 1.2M-parameter model. It ranks recipes; it does not
predict t5-small's BillSum scores (configs/gradual_kd.toml runs the real comparison).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "summarize: "

METHODS = ("oneshot", "reference", "gradual", "gradual_kd", "gradual_kd_auto")
METHOD_LABELS = {
    "dense": "dense proxy",
    "oneshot": "one-shot global L1, no recovery",
    "reference": "reference proportions, 6 stages",
    "gradual": "gradual cubic + recovery",
    "gradual_kd": "gradual + distillation",
    "gradual_kd_auto": "gradual + distillation + auto allocation",
}


def pct(x: float, ref: float) -> str:
    """``x`` as a percentage of ``ref`` ("-" when ``ref`` is 0: an untrained tiny proxy in the tests)."""
    return f"{100 * x / ref:.1f}%" if ref else "-"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"


# ----------------------------------------------------------------------------- data


def make_data(a) -> dict:
    """Fixed splits of one hard synthetic corpus: train / validation (early stopping,
    sensitivity) / evaluation (the scores in the table)."""
    from summprune.synthetic import make_corpus

    rows = make_corpus(a.train_docs + a.val_docs + a.eval_docs_pool, seed=a.corpus_seed, difficulty="hard")
    train = rows[: a.train_docs]
    val = rows[a.train_docs: a.train_docs + a.val_docs]
    ev = rows[a.train_docs + a.val_docs:][: a.eval_docs]
    return {"train": train, "val": val, "eval": ev}


def to_dataset(rows: list[dict], tok, a):
    import datasets

    from summprune.data import tokenize

    ds = datasets.Dataset.from_list([{"text": r["text"], "summary": r["summary"]} for r in rows])
    return tokenize(ds, tok, PREFIX, a.max_source_length, a.max_target_length)


def score(model, tok, rows: list[dict], a, batch_size: int = 24) -> dict:
    from summprune.pipeline import evaluate

    ds = {"text": [r["text"] for r in rows], "summary": [r["summary"] for r in rows]}

    class _Rows(dict):
        def __len__(self):
            return len(self["text"])

    res = evaluate(model, tok, _Rows(ds), prefix=PREFIX, max_source_length=a.max_source_length,
                   max_length=128, num_beams=1, batch_size=batch_size)
    return {k: res[k] for k in ("kaggle_score", "rougeLsum", "eval_s", "example", "empty")}


# ----------------------------------------------------------------------------- the dense proxy


def proxy_settings(a) -> dict:
    return {"d_model": a.d_model, "layers": a.layers, "heads": a.heads, "d_ff": 4 * a.d_model, "vocab": a.vocab,
            "train_docs": a.train_docs, "val_docs": a.val_docs, "corpus_seed": a.corpus_seed,
            "max_source_length": a.max_source_length, "max_target_length": a.max_target_length,
            "lr": a.proxy_lr, "batch_size": a.batch_size, "minutes": a.proxy_minutes,
            "eval_every": a.proxy_eval_every, "patience": a.proxy_patience, "format": 2}


def _fingerprint(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def train_proxy(a, data: dict, out: Path) -> dict:
    """Train the dense proxy from scratch (own loop: AdamW, cosine LR decay over the time budget).

    Every ``eval_every`` steps: validation loss and course score. The run stops when neither has
    improved for ``patience`` evaluations, or when the time budget runs out, and keeps the state
    with the best validation loss. The course score alone is too noisy to stop on for this model
    (+-0.03 between evaluations: it cannot copy names yet, and greedy decoding sometimes loops on
    a guessed title), so it was stopping runs whose loss was still falling fast."""
    from transformers import DataCollatorForSeq2Seq

    from summprune.export import save_hf
    from summprune.modeling import build_tiny_model
    from summprune.tokenizer import train_tokenizer
    from summprune.train import validation_loss

    settings = proxy_settings(a)
    t0 = time.time()
    tok = train_tokenizer([PREFIX + r["text"] for r in data["train"]] + [r["summary"] for r in data["train"]],
                          vocab_size=a.vocab)
    model = build_tiny_model(len(tok), a.d_model, a.layers, a.heads, 4 * a.d_model, seed=0)
    train_ds = to_dataset(data["train"], tok, a)
    val_ds = to_dataset(data["val"], tok, a)
    collator = DataCollatorForSeq2Seq(tok, model=model, label_pad_token_id=-100)
    opt = torch.optim.AdamW(model.parameters(), lr=a.proxy_lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(0)
    budget = a.proxy_minutes * 60
    warmup = 100
    history = []
    best_loss, best_score, best_state, bad = math.inf, -1.0, None, 0
    step = 0
    eval_s = 0.0
    model.train()
    log(f"proxy: {sum(p.numel() for p in model.parameters()):,} parameters, {len(train_ds)} train docs, "
        f"budget {a.proxy_minutes} min (load {load_avg()})")
    t_train = time.time()
    stop = False
    while not stop:
        order = torch.randperm(len(train_ds), generator=g).tolist()
        for i in range(0, len(order) - a.batch_size + 1, a.batch_size):
            feats = [train_ds[j] for j in order[i: i + a.batch_size]]
            batch = collator([{k: f[k] for k in ("input_ids", "attention_mask", "labels")} for f in feats])
            if step == 20:
                log(f"proxy: {(time.time() - t_train) / 20:.2f} s/step (load {load_avg()})")
            # cosine decay to 10% over the *time* budget, so that the schedule ends with the budget
            # whatever the machine's load
            frac = min(1.0, (time.time() - t0) / budget)
            lr_scale = min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
            for group in opt.param_groups:
                group["lr"] = a.proxy_lr * lr_scale
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            last = time.time() - t0 > budget
            if step % a.proxy_eval_every == 0 or last:
                te = time.time()
                res = score(model, tok, data["val"], a)
                vloss = validation_loss(model, tok, val_ds, batch_size=16)
                eval_s += time.time() - te
                model.train()
                rec = {"step": step, "loss": round(loss.item(), 4), "val_loss": round(vloss, 4),
                       "val_kaggle": round(res["kaggle_score"], 4), "val_rougeLsum": round(res["rougeLsum"], 4),
                       "lr": round(a.proxy_lr * lr_scale, 6), "elapsed_s": round(time.time() - t0, 1)}
                history.append(rec)
                log(f"proxy step {step}: loss {rec['loss']} val loss {rec['val_loss']} val kaggle {rec['val_kaggle']} "
                    f"rougeLsum {rec['val_rougeLsum']} lr {rec['lr']} ({rec['elapsed_s']} s)")
                improved = False
                if vloss < best_loss * 0.995:
                    improved = True
                if vloss < best_loss:
                    best_loss = vloss
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    best_at = rec
                if res["kaggle_score"] > best_score + 0.005:
                    best_score, improved = res["kaggle_score"], True
                bad = 0 if improved else bad + 1
                if bad >= a.proxy_patience:
                    log(f"proxy: validation loss and course score stopped improving ({a.proxy_patience} evaluations)")
                    stop = True
                elif last:
                    log("proxy: time budget reached")
                    stop = True
                if stop:
                    break
    model.load_state_dict(best_state)
    model.eval()
    meta = {"settings": settings, "fingerprint": _fingerprint(settings), "steps": step,
            "kept": best_at, "best_val_kaggle": best_at["val_kaggle"], "best_val_loss": best_loss,
            "train_s": round(time.time() - t0, 1), "val_eval_s": round(eval_s, 1),
            "history": history}
    save_hf(model, out / "model", tokenizer=tok)
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def get_proxy(a, data: dict):
    """(model, tokenizer, meta): the cached proxy if its settings match, else a fresh one."""
    from summprune.export import load_model
    from summprune.modeling import load_tokenizer

    out = Path(a.proxy_dir)
    fp = _fingerprint(proxy_settings(a))
    meta_path = out / "meta.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("fingerprint") == fp and not a.retrain_proxy:
        meta = json.loads(meta_path.read_text())
        log(f"proxy: reusing {out} (trained {meta['train_s']} s, {meta['steps']} steps, kept step "
            f"{meta['kept']['step']}: val loss {meta['best_val_loss']:.4f}, val kaggle {meta['best_val_kaggle']:.4f})")
    else:
        out.mkdir(parents=True, exist_ok=True)
        meta = train_proxy(a, data, out)
    return load_model(out / "model"), load_tokenizer(out / "model"), meta


# ----------------------------------------------------------------------------- methods


def method_config(method: str, target: float, a):
    """The GradualConfig that implements ``method`` (oneshot: one step, no recovery)."""
    from summprune.config import GradualConfig

    if method == "oneshot":
        return GradualConfig(target_nonzero_ratio=target, schedule="constant", steps=1, allocation="global")
    if method == "reference":
        steps = 6
        per, final = a.recovery_steps // steps, a.recovery_steps % steps
        return GradualConfig(target_nonzero_ratio=target, schedule="geometric", steps=steps, allocation="reference",
                             recover_steps=per, final_recover_steps=final)
    final = int(round(a.recovery_steps * a.final_recovery_frac))
    per = (a.recovery_steps - final) // a.steps
    final = a.recovery_steps - per * a.steps  # the whole budget, to the step
    kd = method.startswith("gradual_kd")
    return GradualConfig(target_nonzero_ratio=target, schedule="cubic", steps=a.steps,
                         allocation="auto" if method == "gradual_kd_auto" else "uniform",
                         recover_steps=per, final_recover_steps=final,
                         distill_alpha=a.alpha if kd else 1.0, distill_temperature=a.temperature,
                         sensitivity_levels=list(a.levels))


def recovery_train_config(a, seed: int):
    """The recovery training settings every cell shares (the proxy's batch, ``--recover-lr``)."""
    from summprune.config import TrainConfig

    return TrainConfig(learning_rate=a.recover_lr, weight_decay=0.01, lr_scheduler="linear", warmup_ratio=0.0,
                       batch_size=a.batch_size, logging_steps=10**6, precision="fp32", seed=seed,
                       progress_bar=False)


def run_cell(method: str, target: float, dense, tok, train_ds, a, data, sensitivity, workdir: Path) -> dict:
    """Prune a fresh copy of the proxy with ``method`` to ``target`` through the package's driver
    (``summprune.pipeline.prune_model``, what ``run`` and ``prune`` use) and score it."""
    from summprune import sparsity as S
    from summprune.config import ExperimentConfig, PruneConfig
    from summprune.pipeline import prune_model

    gcfg = method_config(method, target, a)
    # recovery step n (1-based) trains with seed train.seed + n: 1000 * seed + n, as before
    cfg = ExperimentConfig(name=f"{method}-{target}", train=recovery_train_config(a, 1000 * a.seed),
                           prune=PruneConfig(tie_mode="tied", methods={"gradual": gcfg}))
    t0 = time.time()
    model, records, sections = prune_model(copy.deepcopy(dense), tok, cfg, train_ds=train_ds,
                                           work_dir=workdir, cache={"sensitivity": sensitivity} if sensitivity else None,
                                           log_print=lambda s: None)
    prune_s = time.time() - t0
    plan = sections["gradual"]
    steps_done = sum(int(r.get("recovery", {}).get("global_step", 0)) for r in records)
    rep = S.report(model)
    res = score(model, tok, data["eval"], a)
    return {
        "method": method, "target": target, "kaggle_score": res["kaggle_score"], "rougeLsum": res["rougeLsum"],
        "nonzero_ratio": rep["nonzero_ratio"], "mask_ratio": rep["mask_ratio"], "nonzero": rep["nonzero"],
        "target_nonzero": plan["target_nonzero"], "recovery_steps": steps_done,
        "prune_s": round(prune_s, 1), "eval_s": res["eval_s"], "example": res["example"],
        "groups": {g: round(r["nonzero_ratio"], 4) for g, r in plan["groups"].items()},
        "schedule": gcfg.schedule, "steps": gcfg.steps, "allocation": gcfg.allocation,
        "distill_alpha": gcfg.distill_alpha, "distill_temperature": gcfg.distill_temperature,
    }


def get_sensitivity(dense, tok, data, a, results: dict) -> dict:
    """Per-group sensitivity of the dense proxy (validation loss), measured once and kept in
    results.json."""
    from summprune.allocate import measure_sensitivity
    from summprune.modeling import group_modules
    from summprune.train import validation_loss

    key = json.dumps(list(a.levels))
    cached = results.get("sensitivity")
    if cached and cached.get("key") == key:
        return cached
    val_ds = to_dataset(data["val"], tok, a)
    model = copy.deepcopy(dense).eval()
    t = time.time()
    sens = measure_sensitivity({g: [m for _, m in mods] for g, mods in group_modules(model).items()},
                               lambda: validation_loss(model, tok, val_ds, batch_size=16), a.levels, log=log)
    sens["seconds"] = round(time.time() - t, 1)
    sens["key"] = key
    log(f"sensitivity measured in {sens['seconds']} s (base validation loss {sens['base']:.4f})")
    return sens


# ----------------------------------------------------------------------------- output


def write_outputs(results: dict, out: Path, a) -> str:
    cells = results["cells"]
    dense = results["dense"]
    targets = sorted({c["target"] for c in cells.values()}, reverse=True)
    methods = [m for m in METHODS if any(c["method"] == m for c in cells.values())]
    lines = [f"Dense proxy: course score {dense['kaggle_score']:.4f}, ROUGE-Lsum {dense['rougeLsum']:.4f} "
             f"({dense['eval_docs']} held-out docs, nonzero_ratio 1.0)."]
    if "dense_ft" in results:
        c = results["dense_ft"]
        lines.append(f"Control, dense + the same {a.recovery_steps} recovery steps without pruning: course score "
                     f"{c['kaggle_score']:.4f} ({pct(c['kaggle_score'], dense['kaggle_score'])} of dense), "
                     f"ROUGE-Lsum {c['rougeLsum']:.4f}.")
    lines += ["",
             "| method | target | course score | % of dense | ROUGE-Lsum | honest ratio | course ratio | recovery steps | time (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in methods:
        for t in targets:
            c = cells.get(f"{m}@{t}")
            if c is None:
                continue
            secs = c["prune_s"] + c["eval_s"]
            lines.append(f"| {METHOD_LABELS[m]} | {t:.2f} | {c['kaggle_score']:.4f} | "
                         f"{pct(c['kaggle_score'], dense['kaggle_score'])} | {c['rougeLsum']:.4f} | "
                         f"{c['nonzero_ratio']:.4f} | {c['mask_ratio']:.4f} | {c['recovery_steps']} | {secs:.0f} |")
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(10, 4.5))
        for m in methods:
            pts = sorted((c["nonzero_ratio"], c["kaggle_score"]) for c in cells.values() if c["method"] == m)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=METHOD_LABELS[m])
        ax.axhline(dense["kaggle_score"], color="k", ls="--", lw=1, label="dense proxy")
        ax.axhline(0.95 * dense["kaggle_score"], color="k", ls=":", lw=1, label="95% of dense")
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(targets)
        ax.set_xticklabels([f"{t:g}" for t in targets])
        ax.invert_xaxis()
        ax.set_ylim(bottom=0)
        ax.set_xlabel("honest nonzero_ratio (log scale, sparser to the right)")
        ax.set_ylabel("course score (kaggle_score)")
        ax.set_title(f"Proxy (synthetic hard corpus, {results['proxy']['params'] / 1e6:.1f}M-param T5): "
                     f"{a.recovery_steps} recovery steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: no line hidden
        fig.tight_layout()
        fig.savefig(out / "pareto.png", dpi=120)
        plt.close(fig)
    except ImportError:  # pragma: no cover
        log("matplotlib missing: no pareto.png")
    return table


# ----------------------------------------------------------------------------- CLI


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.3, 0.2, 0.1],
                   help="honest nonzero_ratio targets")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--recovery-steps", type=int, default=200,
                   help="optimizer steps of recovery per (method, target), all methods but oneshot")
    p.add_argument("--steps", type=int, default=8, help="pruning steps of the gradual methods")
    p.add_argument("--final-recovery-frac", type=float, default=0.25,
                   help="share of the recovery budget spent after the last gradual step")
    p.add_argument("--recover-lr", type=float, default=1e-3, help="recovery learning rate")
    p.add_argument("--alpha", type=float, default=0.5, help="distillation: weight of the label CE")
    p.add_argument("--temperature", type=float, default=2.0, help="distillation temperature")
    p.add_argument("--seed", type=int, default=0,
                   help="offsets the recovery runs' data order (repeat a run with another seed to see its noise)")
    p.add_argument("--eval-docs", type=int, default=100, help="fixed held-out documents scored per cell")
    p.add_argument("--proxy-minutes", type=float, default=20.0, help="time budget of the dense proxy")
    p.add_argument("--proxy-only", action="store_true", help="train/cache the proxy and stop")
    p.add_argument("--retrain-proxy", action="store_true")
    p.add_argument("--fresh", action="store_true", help="ignore results.json and redo every cell")
    p.add_argument("--no-control", dest="control", action="store_false",
                   help="skip the control run (dense proxy + the recovery budget, no pruning)")
    p.add_argument("--out", default=str(ROOT / "runs" / "sparsity_quality"))
    p.add_argument("--proxy-dir", default=str(ROOT / "runs" / "proxy"))
    # proxy shape and data (changing any retrains the proxy)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=2, help="encoder and decoder layers each")
    p.add_argument("--heads", type=int, default=4, help="attention heads (d_kv = d_model / heads)")
    p.add_argument("--vocab", type=int, default=2000)
    p.add_argument("--train-docs", type=int, default=4000)
    p.add_argument("--val-docs", type=int, default=100)
    p.add_argument("--corpus-seed", type=int, default=7)
    p.add_argument("--max-source-length", type=int, default=256)
    p.add_argument("--max-target-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--proxy-lr", type=float, default=2e-3)
    p.add_argument("--proxy-eval-every", type=int, default=400)
    p.add_argument("--proxy-patience", type=int, default=4)
    p.add_argument("--levels", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.9, 0.95, 0.98],
                   help="sensitivity levels of the auto allocation")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    a.eval_docs_pool = max(a.eval_docs, 200)
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    data = make_data(a)
    model, tok, meta = get_proxy(a, data)
    if a.proxy_only:
        log(f"done in {time.time() - t0:.0f} s")
        return 0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.json"
    settings = {"recovery_steps": a.recovery_steps, "steps": a.steps, "final_recovery_frac": a.final_recovery_frac,
                "recover_lr": a.recover_lr, "alpha": a.alpha, "temperature": a.temperature,
                "eval_docs": len(data["eval"]), "proxy": meta["fingerprint"], "levels": list(a.levels),
                "seed": a.seed}
    results = {}
    if res_path.is_file() and not a.fresh:
        results = json.loads(res_path.read_text())
        if results.get("settings") != settings:
            log("results.json has other settings: starting afresh")
            results = {}
    results.setdefault("cells", {})
    results["settings"] = settings
    results["proxy"] = {"params": sum(p.numel() for p in model.parameters()), "train_s": meta["train_s"],
                        "steps": meta["steps"], "best_val_kaggle": meta["best_val_kaggle"]}

    def save():
        tmp = res_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        os.replace(tmp, res_path)

    if "dense" not in results:
        d = score(model, tok, data["eval"], a)
        results["dense"] = {**d, "eval_docs": len(data["eval"])}
        save()
    log(f"dense proxy: kaggle {results['dense']['kaggle_score']:.4f} rougeLsum {results['dense']['rougeLsum']:.4f} "
        f"on {len(data['eval'])} eval docs ({results['dense']['eval_s']} s)")
    train_ds = to_dataset(data["train"], tok, a)
    if a.control and "dense_ft" not in results:
        # control: the dense proxy given the same recovery budget, no pruning (does fine-tuning
        # alone move the score?)
        m2 = copy.deepcopy(model)
        t = time.time()
        from summprune.config import RecoveryConfig
        from summprune.recovery import recover

        recover(m2, tok, train_ds, recovery_train_config(a, 1000 * a.seed), RecoveryConfig(recover_steps=a.recovery_steps),
                output_dir=out / "trainer")
        d = score(m2, tok, data["eval"], a)
        results["dense_ft"] = {**d, "recovery_s": round(time.time() - t - d["eval_s"], 1)}
        save()
        del m2
    if "dense_ft" in results:
        log(f"control, dense + {a.recovery_steps} fine-tuning steps: kaggle {results['dense_ft']['kaggle_score']:.4f} "
            f"rougeLsum {results['dense_ft']['rougeLsum']:.4f}")
    sensitivity = None
    if "gradual_kd_auto" in a.methods:
        sensitivity = get_sensitivity(model, tok, data, a, results)
        results["sensitivity"] = sensitivity
        save()
    for t in sorted(a.targets, reverse=True):
        for m in a.methods:
            key = f"{m}@{t}"
            if key in results["cells"]:
                continue
            log(f"{key}: running (load {load_avg()})")
            c = run_cell(m, t, model, tok, train_ds, a, data, sensitivity, out)
            results["cells"][key] = c
            save()
            log(f"{key}: kaggle {c['kaggle_score']:.4f} ({pct(c['kaggle_score'], results['dense']['kaggle_score'])} "
                f"of dense) rougeLsum {c['rougeLsum']:.4f} nonzero_ratio {c['nonzero_ratio']:.4f} "
                f"[{c['recovery_steps']} steps, prune+recover {c['prune_s']} s, eval {c['eval_s']} s]")
    table = write_outputs(results, out, a)
    print(table)
    log(f"done in {time.time() - t0:.0f} s; {out / 'results.json'}, {out / 'table.md'}, {out / 'pareto.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
