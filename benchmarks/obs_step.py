"""Time one gradual OBS step (``summprune.prune.obs_step``) before and after the fast path.

    python benchmarks/obs_step.py                        # the recipe's settings, t5-small shape
    python benchmarks/obs_step.py --batches 4            # fewer calibration batches
    python benchmarks/obs_step.py --tiny --batches 1 --max-source-length 32   # seconds (the test)

A randomly initialised model of the t5-small shape (``--config-dir``: config.json only, no
weights; ``--tiny``: a 2+2-block, 32-wide T5 of the same layout instead) takes the first step of
the recipe's gradual plan (``--recipe``, default configs/gradual_kd_030.toml: honest 0.30,
cubic x 8, uniform allocation, tie_mode 'tied'; ``--steps`` another count: the committed run's
recipe had 10), with calibration batches made as the recipe's
run makes them (``methods.structured.importance_batches``: ``prune.gradual.importance_batches``
batches of ``train.batch_size`` documents, ``"summarize: "`` + text truncated to
``data.max_source_length`` tokens, summaries to ``data.max_target_length``) from the real BillSum
bills in ``--data``, tokenized with ``--config-dir``'s tokenizer; more documents than the file
holds are taken from its start again.

Both sides run the same code, ``obs_step``, from the same model and batches:

  before  ``hessian_dtype=float64, solve_dtype=float64, share_inputs=False, device='cpu'``:
          what obs_step did before these options existed (float64 Hessians and solve on the CPU,
          one Hessian and one solve per module)
  after   the defaults: float32 Hessians and solve on the model's device, one Hessian per set of
          modules fed the same input, one solve per such set (where updated alike)

Each side is timed as its Hessians (``input_hessians``, the calibration forward passes included)
and its solve (``obs_step`` given those Hessians: the OBS solves and the masks applied). The
agreement is of the weights the two sides compute with afterwards: the fraction of identical mask
entries, the overlap of the new cuts, and ``||W_after - W_before|| / ||W_before||`` over all
pruned modules. The calibration forward passes are also timed alone, without hooks: on a CPU
they are most of the "after" Hessian time. Outputs in ``--out`` (default docs/results/obs_step/): results.json, README.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pages import repo_path as _resolve  # noqa: E402  (shared with the other benchmarks)


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _side(name: str, model, keep, patterns, tie_mode, batches, settings: dict) -> dict:
    from summprune import prune as P
    from summprune.modeling import group_modules
    from summprune.ties import TieMode

    mods = [m for g in keep for _, m in group_modules(model, patterns)[g]]
    print(f"[{name}] {', '.join(f'{k}={v}' for k, v in settings.items())}", flush=True)
    t0 = time.perf_counter()
    hs = P.input_hessians(model, mods, batches, dtype=settings["hessian_dtype"], device=settings["device"],
                          share=settings["share_inputs"])
    t1 = time.perf_counter()
    P.obs_step(model, keep, patterns, tie_mode, batches, hessians=hs, log=print, **settings)
    t2 = time.perf_counter()
    head = model.get_output_embeddings()
    # the grouping obs_step solves by: one solve per (shared Hessian, updated or not)
    solves = (len({(id(hs[m]), not (m is head and TieMode.of(tie_mode).shares_mask)) for m in mods})
              if settings["share_inputs"] else len(mods))
    return {"settings": {k: (v if v is None or isinstance(v, bool) else str(v).replace("torch.", ""))
                         for k, v in settings.items()},
            "hessians": len({id(h) for h in hs.values()}), "solves": solves, "modules": len(mods),
            "hessian_seconds": round(t1 - t0, 2), "solve_seconds": round(t2 - t1, 2),
            "total_seconds": round(t2 - t0, 2)}


def _agreement(before, after, dense) -> dict:
    from summprune import prune as P

    same = total = new_both = new_before = new_after = 0
    diff = norm = 0.0
    mods = dict(before.named_modules())
    for name, a in after.named_modules():
        b = mods[name]
        if not (isinstance(a, torch.nn.Linear) and P.is_pruned(a)):
            continue
        d = dict(dense.named_modules())[name]
        was = (d.weight_mask.bool() if P.is_pruned(d) else torch.ones_like(a.weight_mask, dtype=torch.bool))
        ka, kb = a.weight_mask.bool(), b.weight_mask.bool()
        same += int((ka == kb).sum())
        total += ka.numel()
        new_before += int((was & ~kb).sum())
        new_after += int((was & ~ka).sum())
        new_both += int((was & ~ka & ~kb).sum())
        wa, wb = P.current_weight(a).double(), P.current_weight(b).double()
        diff += float((wa - wb).pow(2).sum())
        norm += float(wb.pow(2).sum())
    return {"identical_mask_entries": same / total, "mask_entries": total,
            "new_cuts_before": new_before, "new_cuts_after": new_after,
            "new_cuts_in_both": new_both / max(1, new_before),
            "relative_weight_difference": (diff / norm) ** 0.5}


def write_page(res: dict, out: Path) -> str:
    b, a, g = res["before"], res["after"], res["agreement"]
    s = res["setup"]
    rows = [("before (float64, CPU, per module)", b), ("after (defaults)", a)]
    table = ["| side | Hessians | solves | Hessian s | solve s | total s | every run's total s |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        table.append(f"| {name} | {r['hessians']} for {r['modules']} modules | "
                     f"{r['solves']} | {r['hessian_seconds']:.1f} | {r['solve_seconds']:.1f} | "
                     f"**{r['total_seconds']:.1f}** | {', '.join(f'{t:.1f}' for t in r['all_totals'])} |")
    speedup = b["total_seconds"] / max(1e-9, a["total_seconds"])
    lines = [
        "# One gradual OBS step: before and after the fast path",
        "",
        "Written by `benchmarks/obs_step.py` (its docstring says what each side runs). Command:",
        "",
        f"    {res['command']}",
        "",
        f"Model: {s['model']} ({s['params']:,} parameters, random weights), step 1 of the plan of "
        f"`{s['recipe']}` ({s['target']} honest, {s['schedule']} x {s['steps']}, tie_mode '{s['tie_mode']}'): "
        f"{s['new_cuts']:,} weights cut. Calibration batches: {s['batches']}, of {s['batch_size']} documents each, "
        f"inputs up to {s['max_source_length']} tokens (batch shapes {s['batch_shapes_summary']}), from "
        f"`{s['data']}` ({s['data_docs']} bills{', reused from the start' if s['docs_used'] > s['data_docs'] else ''}).",
        "",
        "**Before** is the same code with `hessian_dtype=float64, solve_dtype=float64, "
        "share_inputs=False, device='cpu'`: what `obs_step` did before those options existed (float64 "
        "Hessians accumulated on the CPU, one per module; a float64 solve per module on the CPU; only the "
        "inverse-Hessian factor now comes by a cheaper route, equal up to float64 rounding). "
        "**After** is the default: float32 on the model's device, one Hessian per set of modules fed "
        "the same input tensor, one solve per such set."
        + (" There is no GPU here, so both sides ran on the CPU; on a GPU machine 'after' runs on the GPU "
           "and 'before' stays on the CPU (not measured here)." if res["machine"]["device"] == "cpu" else ""),
        "",
        f"Each side ran {res['repeats']} time(s), alternating with the other; the table shows each "
        "side's fastest run.",
        "",
        *table,
        "",
        f"The calibration forward passes alone (no hooks) took {res['forward_seconds']:.1f} s: that part of "
        "each side's Hessian time no setting changes.",
        "",
        f"Speed-up: **{speedup:.1f}x**. Agreement of the two results: {g['identical_mask_entries']:.6f} of "
        f"{g['mask_entries']:,} mask entries identical; {g['new_cuts_in_both']:.4f} of before's "
        f"{g['new_cuts_before']:,} new cuts also cut after; relative weight difference "
        f"{g['relative_weight_difference']:.2e}.",
        "",
        f"Machine: {res['machine']['cpu']}, {res['machine']['threads']} torch threads, device "
        f"{res['machine']['device']}, torch {res['machine']['torch']}; load average "
        f"{res['machine']['loadavg_before']} before, {res['machine']['loadavg_after']} after "
        "(a shared machine: compare the two sides of one run, not runs with each other).",
    ]
    if res.get("note"):
        lines += ["", res["note"]]
    page = "\n".join(lines) + "\n"
    (out / "README.md").write_text(page, encoding="utf-8")
    return page


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config-dir", default="../shared/t5-small", help="config.json and tokenizer of the model shape")
    ap.add_argument("--data", default="../shared/billsum/us_test_sample.jsonl", help="JSON lines with text and summary")
    ap.add_argument("--recipe", default="configs/gradual_kd_030.toml", help="experiment TOML: the plan and the batches")
    ap.add_argument("--steps", type=int, default=None,
                    help="gradual steps of the plan whose first step is timed (default: the recipe's; the "
                         "committed run's recipe had 10)")
    ap.add_argument("--batches", type=int, default=None, help="calibration batches (default: the recipe's importance_batches)")
    ap.add_argument("--batch-size", type=int, default=None, help="documents per batch (default: the recipe's train.batch_size)")
    ap.add_argument("--max-source-length", type=int, default=None, help="input tokens (default: the recipe's)")
    ap.add_argument("--tiny", action="store_true", help="a 2+2-block, 32-wide T5 instead of --config-dir's shape")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each side, alternating (the fastest is shown)")
    ap.add_argument("--note", default="", help="a sentence added to the page (e.g. why fewer batches)")
    ap.add_argument("--out", default="docs/results/obs_step", help="directory for results.json and README.md")
    ap.add_argument("--page-only", action="store_true", help="rewrite README.md from --out's results.json; time nothing")
    args = ap.parse_args(argv)
    if args.page_only:
        out = _resolve(args.out)
        write_page(json.loads((out / "results.json").read_text(encoding="utf-8")), out)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)

    import datasets

    from summprune.config import load_config
    from summprune.data import tokenize
    from summprune.methods.gradual import plan_gradual
    from summprune.methods.structured import importance_batches
    from summprune.modeling import load_tokenizer, random_model_from_config, tiny_config
    from summprune.prune import prepare_model

    cfg = load_config(_resolve(args.recipe))
    gr = cfg.prune.gradual
    n_batches = args.batches or gr.importance_batches
    batch_size = args.batch_size or cfg.train.batch_size
    max_src = args.max_source_length or cfg.data.max_source_length
    config_dir, data = _resolve(args.config_dir), _resolve(args.data)
    tok = load_tokenizer(config_dir)
    if args.tiny:
        from transformers import T5ForConditionalGeneration

        torch.manual_seed(args.seed)
        model = T5ForConditionalGeneration(tiny_config(len(tok), d_model=32, layers=2, heads=4, d_ff=64))
        model_name = "tiny T5 (2+2 blocks, d_model 32)"
    else:
        model = random_model_from_config(config_dir, seed=args.seed)
        model_name = f"{config_dir.name} shape"
    model.eval()
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    need = n_batches * batch_size
    docs = [{"text": rows[i % len(rows)]["text"], "summary": rows[i % len(rows)]["summary"]} for i in range(need)]
    from summprune.pipeline import resolved_prefix

    ds = tokenize(datasets.Dataset.from_list(docs), tok, resolved_prefix(cfg.data.prefix, model), max_src,
                  cfg.data.max_target_length)
    batches = importance_batches(model, tok, ds, n_batches, batch_size)

    prepare_model(model, cfg.prune.tie_mode)
    steps = args.steps or gr.steps
    plan = plan_gradual(model, gr.target_nonzero_ratio, schedule=gr.schedule, steps=steps,
                        allocation=gr.allocation, patterns=cfg.prune.groups)
    keep = plan["step_keep"][0]
    start = sum(r["start"] for r in plan["groups"].values())
    shapes = sorted({tuple(b["input_ids"].shape) for b in batches})
    device = next(model.parameters()).device
    res: dict = {
        "command": "python benchmarks/obs_step.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "setup": {"model": model_name, "params": sum(p.numel() for p in model.parameters()), "recipe": args.recipe,
                  "target": gr.target_nonzero_ratio, "schedule": gr.schedule, "steps": steps,
                  "tie_mode": cfg.prune.tie_mode, "new_cuts": start - sum(keep.values()), "batches": len(batches),
                  "batch_size": batch_size, "max_source_length": max_src, "data": args.data, "data_docs": len(rows),
                  "docs_used": need, "batch_shapes_summary": ", ".join("x".join(map(str, s)) for s in shapes),
                  "encoder_tokens": sum(int(b["input_ids"].numel()) for b in batches),
                  "decoder_tokens": sum(int(b["labels"].numel()) for b in batches)},
        "machine": {"cpu": f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()})",
                    "threads": torch.get_num_threads(), "device": str(device), "torch": torch.__version__,
                    "loadavg_before": _loadavg()},
        "note": args.note, "repeats": args.repeats,
    }
    with torch.no_grad():  # one untimed forward pass, so that neither side pays the first one's set-up
        model(**batches[0])
        t = time.perf_counter()  # the calibration passes alone: the part of "Hessians" no setting changes
        for b in batches:
            model(**b)
        res["forward_seconds"] = round(time.perf_counter() - t, 2)
    dense = copy.deepcopy(model)  # not pruned yet: deep-copyable, and every run starts from it
    sides = {"before": {"hessian_dtype": torch.float64, "solve_dtype": torch.float64, "share_inputs": False,
                        "device": "cpu"},
             "after": {"hessian_dtype": torch.float32, "solve_dtype": torch.float32, "share_inputs": True,
                       "device": None}}
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for _ in range(args.repeats):  # alternating, so that a change in the machine's load hits both sides
        pruned = {}
        for side, settings in sides.items():
            pruned[side] = copy.deepcopy(dense)
            runs[side].append(_side(side, pruned[side], keep, cfg.prune.groups, cfg.prune.tie_mode, batches,
                                    settings))
    for side in sides:  # the fastest run of each side: the least disturbed by other work
        res[side] = {**min(runs[side], key=lambda r: r["total_seconds"]),
                     "all_totals": [r["total_seconds"] for r in runs[side]]}
    before_model, model = pruned["before"], pruned["after"]
    res["agreement"] = _agreement(before_model, model, dense)
    res["machine"]["loadavg_after"] = _loadavg()
    res["speedup"] = round(res["before"]["total_seconds"] / max(1e-9, res["after"]["total_seconds"]), 2)

    out = _resolve(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    for side in ("before", "after"):
        r = res[side]
        print(f"{side:>6}: Hessians {r['hessian_seconds']:.1f} s ({r['hessians']} for {r['modules']} modules), "
              f"solve {r['solve_seconds']:.1f} s, total {r['total_seconds']:.1f} s")
    g = res["agreement"]
    print(f"calibration forward passes alone {res['forward_seconds']:.1f} s")
    print(f"speed-up {res['speedup']}x; identical mask entries {g['identical_mask_entries']:.6f}, new cuts in both "
          f"{g['new_cuts_in_both']:.4f}, relative weight difference {g['relative_weight_difference']:.2e}")
    write_page(res, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
