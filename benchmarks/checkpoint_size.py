"""On-disk size of a pruned t5-small in each save format, and whether each reloads exactly.

A random model of the t5-small shape (no weights needed, only config.json) is pruned with the
recipe's stages and no training -- sizes depend on the sparsity pattern's density, not on the
values -- then saved as:

  dense-hf       save_pretrained of the unpruned model (the baseline)
  course         what the course does: save_pretrained of the masked model (weight_orig +
                 weight_mask) plus torch.save(model.state_dict()) with the masks
  pruned-hf      summprune.export.save_hf (pruning made permanent, safetensors)
  course-format  summprune.export.save_course (export_format='course': pruned-hf + the grader's
                 model_state_dict.pth); reloaded with summprune.load_model
  compact-fp32/fp16/bf16   summprune.export.save_compact

Each is reloaded and compared with the pruned model: exactly for fp32 (the course-style one
through its torch.save'd state dict, loaded with weights_only=True, as weight_orig * weight_mask),
and for fp16/bf16 exactly against the pruned weights rounded to that dtype and back. Sizes are
of the model files only (no tokenizer). MB = 10**6 bytes. Save/load seconds include
checksumming and (for load) the integrity checks; the course's load time is the torch.load.

    python benchmarks/checkpoint_size.py [--config-dir ../shared/t5-small] [--recipe configs/seed.toml]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _resolve(p: str) -> Path:
    """A path as given (relative to cwd), else relative to the repository root."""
    path = Path(p).expanduser()
    if path.exists() or path.is_absolute():
        return path
    alt = REPO / path
    return alt if alt.exists() else path


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
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from summprune import sparsity
    from summprune.config import expand_stages, load_config
    from summprune.export import dir_size, load_model, save_compact, save_course, save_hf
    from summprune.prune import permanent_copy
    from summprune.modeling import random_model_from_config
    from summprune.prune import apply_stage, prepare_model

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
        if cfg.prune.tie_mode != "untie":
            cdir = tmp / "course-format"
            _, ts = timed(save_course, model, cdir)
            got, tl = timed(load_model, cdir)
            rows.append(("course-format", dir_size(cdir), _compare(_state(got), want), ts, tl))
        for dt, tdt in (("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
            d = tmp / f"compact-{dt}"
            _, ts = timed(save_compact, model, d, dtype=dt)
            rounded = {k: v.to(tdt).float() for k, v in want.items()}
            got, tl = timed(load_model, d)
            check = _compare(_state(got), rounded)
            if check == "exact" and dt != "fp32":
                check = f"exact vs weights rounded to {dt}"
            if cfg.prune.tie_mode == "tied" and got.lm_head.weight is not got.shared.weight:
                check += "; lm_head NOT tied"
            rows.append((f"compact-{dt}", dir_size(d), check, ts, tl))

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
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    bad = [r[0] for r in rows if not r[2].startswith("exact")]
    if bad:
        print(f"RELOAD MISMATCH: {bad}", file=sys.stderr)
        raise SystemExit(1)
    return results


if __name__ == "__main__":
    main()
