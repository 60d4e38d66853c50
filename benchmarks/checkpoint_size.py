"""On-disk size of a pruned t5-small in each save format, and whether each reloads exactly.

A random model of the t5-small shape (no weights needed, only config.json) is pruned with the
recipe's stages and no training, then saved as (the uncompressed formats' sizes depend only on
the sparsity pattern's density; compact's lzma-coded masks and int8 values also on the pattern's
layout and the values, which are a random model's here):

  dense-hf       save_pretrained of the unpruned model (the baseline)
  course         what the course does: save_pretrained of the masked model (weight_orig +
                 weight_mask) plus torch.save(model.state_dict()) with the masks
  pruned-hf      summprune.export.save_hf (pruning made permanent, safetensors)
  course-format  summprune.export.save_course (export_format='course': pruned-hf + the grader's
                 model_state_dict.pth); reloaded with summprune.load_model
  compact-fp32/fp16/bf16/int8   summprune.export.save_compact (int8: per-row symmetric int8
                 values, zeros exact; masks and int8 values lzma-compressed where smaller)

Then the same random model is pruned to each honest ``--targets`` non-zero ratio (uniform
magnitude per group, the tied embedding pruned for both uses, one cut: what gradual pruning ends
with, without the training) and saved as pruned-hf and compact in every dtype, beside the
computed limits of a bitmask format (values x bits + 1 bit per weight; for int8, the mask at its
entropy H(density) per weight and the float32 row scales) and dense int8 (what CTranslate2 stores).

Each is reloaded and compared with the pruned model: exactly for fp32 (the course-style one
through its torch.save'd state dict, loaded with weights_only=True, as weight_orig * weight_mask),
for fp16/bf16 exactly against the pruned weights rounded to that dtype and back, and for int8:
the same zeros, every value within one quantization step. Sizes are
of the model files only (no tokenizer). MB = 10**6 bytes. Save/load seconds include
checksumming and (for load) the integrity checks; the course's load time is the torch.load.

    python benchmarks/checkpoint_size.py [--config-dir ../shared/t5-small] [--recipe configs/seed.toml] \
        [--targets 0.3 0.1] [--json docs/results/checkpoint_size/results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pages import repo_path as _resolve, versions as _versions  # noqa: E402  (shared with the other benchmarks)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().float() for k, v in model.state_dict().items()}


def _compare(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> str:
    """'exact' or a description of the first difference."""
    if set(got) != set(want):
        return f"keys differ: missing {sorted(set(want) - set(got))[:3]}, extra {sorted(set(got) - set(want))[:3]}"
    for k in want:
        if got[k].shape != want[k].shape:
            return f"{k}: shape {list(got[k].shape)} != {list(want[k].shape)}"
        if not torch.equal(got[k], want[k]):
            return f"{k}: max |diff| {float((got[k] - want[k]).abs().max()):.3g}"
    return "exact"


def _course_reload(path: Path, want: dict[str, torch.Tensor]) -> str:
    """The course's state dict (weights_only) as weight_orig * weight_mask, vs the pruned model."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    eff: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.endswith("_mask"):
            continue
        if k.endswith("_orig"):
            base = k[: -len("_orig")]
            eff[base] = (v * sd[base + "_mask"]).float()
        else:
            eff[k] = v.float()
    return _compare(eff, want)


def _int8_check(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> str:
    """'exact zeros, within one step' if ``got`` has ``want``'s zeros and every value of a
    quantized matrix is within one step (its row's max |w| / 127), the others exact."""
    if set(got) != set(want):
        return "keys differ"
    worst = 0.0
    for k, w in want.items():
        g = got[k]
        if not torch.equal(g == 0, w == 0):
            return f"{k}: zeros differ"
        if w.dim() == 2 and w.numel() >= 4096:
            step = (w.abs().amax(dim=1) / 127).clamp_min(1e-30)[:, None]
            err = float(((g - w).abs() / step).max())
            if err > 1.0 + 1e-4:
                return f"{k}: {err:.3f} steps off"
            worst = max(worst, err)
        elif not torch.equal(g, w):
            return f"{k}: not exact (kept fp32)"
    return f"exact zeros, within {worst:.3f} step"


def _entropy(p: float) -> float:
    import math

    return 0.0 if p <= 0 or p >= 1 else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def limits(model: torch.nn.Module) -> dict:
    """Computed sizes (bytes) of a bitmask format for ``model`` (pruning permanent): every
    distinct floating-point tensor's non-zeros at b bits plus a mask of 1 bit per element
    (``fpB``), or, for int8, the mask at its entropy per element plus the float32 row scales of
    each matrix; and dense int8 (every weight a byte, CTranslate2's int8)."""
    seen, numel, nnz, rows, mask_entropy_bits = set(), 0, 0, 0, 0.0
    for t in model.state_dict(keep_vars=True).values():  # keep_vars: tied names give one object
        if id(t) in seen or not t.is_floating_point():
            continue
        seen.add(id(t))
        n, z = t.numel(), int(torch.count_nonzero(t))
        numel, nnz = numel + n, nnz + z
        mask_entropy_bits += n * _entropy(z / n)
        if t.dim() == 2:
            rows += t.shape[0]
    return {"numel": numel, "nnz": nnz, "density": nnz / numel,
            "fp32+mask": (nnz * 32 + numel) / 8, "fp16+mask": (nnz * 16 + numel) / 8,
            "int8+mask": (nnz * 8 + numel) / 8 + rows * 4,
            "int8+entropy-mask": nnz + mask_entropy_bits / 8 + rows * 4,
            "dense-int8": numel + rows * 4}


def _formats_at(model, tmp: Path, dir_size, load_model, save_compact, save_hf, timed) -> list[tuple]:
    """pruned-hf and compact in every dtype of the pruned ``model``: (name, bytes, check, save s, load s)."""
    from summprune.prune import permanent_copy

    want = _state(permanent_copy(model))
    rows = []
    hf_dir = tmp / "pruned-hf"
    _, ts = timed(save_hf, model, hf_dir)
    got, tl = timed(load_model, hf_dir)
    rows.append(("pruned-hf", dir_size(hf_dir), _compare(_state(got), want), ts, tl))
    for dt, tdt in (("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16), ("int8", None)):
        d = tmp / f"compact-{dt}"
        _, ts = timed(save_compact, model, d, dtype=dt)
        got, tl = timed(load_model, d)
        if tdt is None:
            check = _int8_check(_state(got), want)
        else:
            check = _compare(_state(got), {k: v.to(tdt).float() for k, v in want.items()})
            if check == "exact" and dt != "fp32":
                check = f"exact vs weights rounded to {dt}"
        if got.lm_head.weight is not got.shared.weight and model.lm_head.weight is model.shared.weight:
            check += "; lm_head NOT tied"
        rows.append((f"compact-{dt}", dir_size(d), check, ts, tl))
    return rows


def prune_to_target(model: torch.nn.Module, target: float) -> None:
    """``model`` (unpruned) cut once to honest non-zero ratio ``target``: uniform magnitude per
    group, the tied embedding pruned for both uses (the plan gradual pruning ends with)."""
    from summprune.methods.gradual import plan_gradual
    from summprune.prune import prepare_model, prune_to_counts

    prepare_model(model, "tied")
    plan = plan_gradual(model, target, schedule="cubic", steps=1, allocation="uniform")
    prune_to_counts(model, plan["step_keep"][-1], None, "tied")


LIMIT_NOTES = {
    "fp32+mask": "non-zeros at 32 bits + 1 bit per weight",
    "fp16+mask": "non-zeros at 16 bits + 1 bit per weight",
    "int8+mask": "non-zeros at 8 bits + 1 bit per weight + float32 row scales",
    "int8+entropy-mask": "non-zeros at 8 bits + the mask at its entropy H(density) + row scales",
    "dense-int8": "every weight at 8 bits (CTranslate2's int8) + row scales",
}


def write_page(results: dict, path: Path) -> None:
    """``README.md`` of the results folder, from ``results`` (what ``--json`` holds)."""
    L = ["# Checkpoint size by format and dtype", "",
         "Written by `benchmarks/checkpoint_size.py` from `results.json` beside this page (its docstring says "
         "what each row is). Command:", "", "    " + results.get("command", "python benchmarks/checkpoint_size.py"), "",
         f"Model: a random model of the shape in `{results['config_dir']}`, pruned without training. The dense, "
         "course and pruned-hf sizes and the computed limits depend only on the sparsity pattern's density; the "
         "compact formats also lzma-code the masks (every dtype) and the int8 values where that saves at least 2%, "
         "so their sizes depend on the pattern's layout and the values too: a trained model's may differ. "
         "MB = 10^6 bytes, model files only (no tokenizer). Machine: "
         + (", ".join(f"{k} {v}" for k, v in results["machine"].items()) if "machine" in results else "not recorded")
         + " (save/load seconds are indicative: a shared machine).", "",
         f"## The reference recipe (`{results['recipe']}`, {results['stages']} stages, tie_mode "
         f"{results['tie_mode']}): mask ratio {results['mask_ratio']:.4f}, honest ratio {results['nonzero_ratio']:.4f}", "",
         "| format | MB | x dense | save s | load s | reload check |", "|---|---|---|---|---|---|"]
    dense = results["sizes"]["dense-hf"]["bytes"]
    for name, r in results["sizes"].items():
        if "@" in name:
            continue
        L.append(f"| {name} | {r['MB']:.2f} | {r['bytes'] / dense:.3f} | {r['save_seconds']} | {r['load_seconds']} | "
                 f"{r['check']} |")
    for target, t in results.get("targets", {}).items():
        L += ["", f"## Honest non-zero ratio {target}", "",
              f"{t['nnz']:,} of {t['numel']:,} distinct values non-zero (density {t['density']:.4f}); uniform "
              "magnitude per group, the tied embedding pruned for both uses.", "",
              "| format | MB | bits per non-zero | bits per weight | save s | load s | reload check |",
              "|---|---|---|---|---|---|---|"]
        for name, r in t["sizes"].items():
            L.append(f"| {name} | {r['MB']:.2f} | {r['bits_per_nnz']:.2f} | {r['bits_per_weight']:.3f} | "
                     f"{r['save_seconds']} | {r['load_seconds']} | {r['check']} |")
        for name, r in t["limits"].items():
            L.append(f"| computed: {LIMIT_NOTES.get(name, name)} | {r['MB']:.2f} | {r['bits_per_nnz']:.2f} | "
                     f"{r['bits_per_weight']:.3f} | | | |")
    L += ["", "compact-int8 beats the computed bitmask limits because it also entropy-codes (lzma) the mask and "
          "the int8 values where that saves at least 2%; the check column says how each reloaded (int8: the same "
          "zeros, every value within the stated share of one quantization step).", ""]
    path.write_text("\n".join(L), encoding="utf-8")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config-dir", default="../shared/t5-small", help="directory with the model's config.json")
    ap.add_argument("--recipe", default="configs/seed.toml", help="experiment TOML whose [prune] stages are applied")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. prune.tie_mode=course (repeatable)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    ap.add_argument("--tmp-dir", default=None, help="where the checkpoints are written (deleted afterwards)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--page-only", action="store_true",
                    help="rewrite README.md beside --json from that file; measure nothing")
    ap.add_argument("--targets", type=float, nargs="*", default=[0.3, 0.1],
                    help="honest non-zero ratios to prune the random model to, one table each (none: skip)")
    args = ap.parse_args(argv)
    if args.page_only:
        if not args.json:
            ap.error("--page-only needs --json (the results file to read)")
        results = json.loads(Path(args.json).read_text(encoding="utf-8"))
        write_page(results, Path(args.json).with_name("README.md"))
        return results
    if args.threads:
        torch.set_num_threads(args.threads)

    from summprune import sparsity
    from summprune.config import load_config
    from summprune.methods.stages import expand_stages
    from summprune.export import dir_size, load_model, save_compact, save_course, save_hf
    from summprune.prune import permanent_copy
    from summprune.modeling import random_model_from_config
    from summprune.prune import apply_stage, prepare_model
    from summprune.ties import TieMode

    cfg = load_config(_resolve(args.recipe), args.overrides)
    stages = expand_stages(cfg.prune.stages)
    if not stages:
        raise SystemExit(f"{args.recipe}: no [[prune.stages]]; nothing to prune")
    config_dir = _resolve(args.config_dir)
    if not (config_dir / "config.json").is_file():
        raise SystemExit(f"{config_dir}: no config.json")

    model = random_model_from_config(config_dir, seed=args.seed).eval()
    results: dict = {"config_dir": str(config_dir), "recipe": str(args.recipe), "tie_mode": cfg.prune.tie_mode,
                     "stages": len(stages), "sizes": {}}
    rows: list[tuple[str, int, str, float, float]] = []  # name, bytes, check, save s, load s

    def timed(fn, *a, **kw):
        t = time.perf_counter()
        r = fn(*a, **kw)
        return r, time.perf_counter() - t

    with tempfile.TemporaryDirectory(prefix="ckpt_size_", dir=args.tmp_dir) as tmp_s:
        tmp = Path(tmp_s)

        # (a) dense baseline
        dense_dir = tmp / "dense-hf"
        _, ts = timed(model.save_pretrained, str(dense_dir))
        got, tl = timed(load_model, dense_dir)
        rows.append(("dense-hf", dir_size(dense_dir), _compare(_state(got), _state(model)), ts, tl))

        t0 = time.perf_counter()
        prepare_model(model, cfg.prune.tie_mode)
        for st in stages:
            apply_stage(model, st.amounts, cfg.prune.groups, cfg.prune.tie_mode)
        results["prune_seconds"] = round(time.perf_counter() - t0, 1)
        results["mask_ratio"] = sparsity.mask_ratio(model)
        results["nonzero_ratio"] = sparsity.nonzero_ratio(model)
        results["nonzero"] = sparsity.nonzero_count(model)
        results["dense_params"] = sparsity.dense_param_count(model)
        want = _state(permanent_copy(model))

        # (b) the course's save: masked save_pretrained + torch.save(state_dict) with the masks
        course_dir = tmp / "course"
        t = time.perf_counter()
        model.save_pretrained(str(course_dir))
        torch.save(model.state_dict(), course_dir / "pruned_state_dict.pt")
        ts = time.perf_counter() - t
        check, tl = timed(_course_reload, course_dir / "pruned_state_dict.pt", want)
        try:
            load_model(course_dir)
            check += "; its save_pretrained part loads"
        except ValueError:
            check += "; its save_pretrained part alone is refused by load_model (no 'weight' keys)"
        rows.append(("course", dir_size(course_dir), check, ts, tl))

        # (c) permanent hf, our course format (hf + the grader's state dict), compact
        hf_dir = tmp / "pruned-hf"
        _, ts = timed(save_hf, model, hf_dir)
        got, tl = timed(load_model, hf_dir)
        rows.append(("pruned-hf", dir_size(hf_dir), _compare(_state(got), want), ts, tl))
        if not TieMode.of(cfg.prune.tie_mode).unties_head:  # the course format ties lm_head again
            cdir = tmp / "course-format"
            _, ts = timed(save_course, model, cdir)
            got, tl = timed(load_model, cdir)
            rows.append(("course-format", dir_size(cdir), _compare(_state(got), want), ts, tl))
        rows += [r for r in _formats_at(model, tmp, dir_size, load_model, save_compact, save_hf, timed)
                 if r[0] != "pruned-hf"]
        target_rows: dict[float, tuple[dict, list[tuple]]] = {}
        for target in args.targets:
            m = random_model_from_config(config_dir, seed=args.seed).eval()
            prune_to_target(m, target)
            sub = tmp / f"target-{target}"
            sub.mkdir()
            target_rows[target] = (limits(permanent_copy(m)),
                                   _formats_at(m, sub, dir_size, load_model, save_compact, save_hf, timed))
            del m

    dense = rows[0][1]
    print(f"recipe {args.recipe} ({len(stages)} stages, tie_mode={cfg.prune.tie_mode}), "
          f"model {config_dir}, pruned in {results['prune_seconds']} s")
    print(f"mask_ratio {results['mask_ratio']:.4f}   nonzero_ratio {results['nonzero_ratio']:.4f}   "
          f"({results['nonzero']:,} of {results['dense_params']:,} parameters non-zero)")
    print(f"{'format':<14}{'bytes':>14}{'MB':>9}{'MiB':>9}{'x dense':>9}{'save s':>8}{'load s':>8}  reload check")
    for name, size, check, ts, tl in rows:
        print(f"{name:<14}{size:>14,}{size / 1e6:>9.2f}{size / 2**20:>9.2f}{size / dense:>9.3f}{ts:>8.1f}{tl:>8.1f}  {check}")
        results["sizes"][name] = {"bytes": size, "MB": round(size / 1e6, 3), "check": check,
                                  "save_seconds": round(ts, 2), "load_seconds": round(tl, 2)}
    results["targets"] = {}
    for target, (lim, trows) in target_rows.items():
        nnz, numel = lim["nnz"], lim["numel"]
        print(f"\nhonest non-zero ratio {target}: {nnz:,} of {numel:,} distinct values non-zero "
              f"(density {lim['density']:.4f}; mask entropy {_entropy(lim['density']):.3f} bits/weight)")
        print(f"{'format':<24}{'MB':>9}{'bits/nnz':>10}{'bits/weight':>13}{'save s':>8}{'load s':>8}  reload check")
        rec = {"nnz": nnz, "numel": numel, "density": round(lim["density"], 6), "sizes": {}, "limits": {}}
        for name, size, check, ts, tl in trows:
            print(f"{name:<24}{size / 1e6:>9.2f}{8 * size / nnz:>10.2f}{8 * size / numel:>13.3f}{ts:>8.1f}{tl:>8.1f}  {check}")
            rec["sizes"][name] = {"bytes": size, "MB": round(size / 1e6, 3), "bits_per_nnz": round(8 * size / nnz, 3),
                                  "bits_per_weight": round(8 * size / numel, 4), "check": check,
                                  "save_seconds": round(ts, 2), "load_seconds": round(tl, 2)}
            rows.append((f"{name}@{target}", size, check, ts, tl))
        for name in ("fp32+mask", "fp16+mask", "int8+mask", "int8+entropy-mask", "dense-int8"):
            size = lim[name]
            print(f"{'limit ' + name:<24}{size / 1e6:>9.2f}{8 * size / nnz:>10.2f}{8 * size / numel:>13.3f}"
                  f"{'':>16}  computed")
            rec["limits"][name] = {"MB": round(size / 1e6, 3), "bits_per_nnz": round(8 * size / nnz, 3),
                                   "bits_per_weight": round(8 * size / numel, 4)}
        results["targets"][str(target)] = rec
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        results["command"] = "python benchmarks/checkpoint_size.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        results["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                              "date": time.strftime("%Y-%m-%d", time.gmtime())}
        results["versions"] = _versions()
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        write_page(results, Path(args.json).with_name("README.md"))
    bad = [r[0] for r in rows if not r[2].startswith("exact")]
    if bad:
        print(f"RELOAD MISMATCH: {bad}", file=sys.stderr)
        raise SystemExit(1)
    return results


if __name__ == "__main__":
    main()
