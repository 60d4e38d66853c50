"""The speed-quality frontier of structured students: speed-up against % of the control, one point
per (shape, engine, recovery), from results other benchmarks measured.

    python benchmarks/frontier.py --out docs/results/frontier

Speed: ``benchmarks/generate_speed.py --structured ...`` (random t5-small-shaped weights, the 20
real bills, every shape through torch fp32, CTranslate2 fp32 and int8, greedy and 4 beams, all in
one run). Quality: ``benchmarks/structured_speed.py`` result files (the proxy, each student and a
dense control recovered with the same budget, 3 seeds). Quality is the torch model's: CTranslate2
fp32 greedy gives its tokens exactly (tests/test_ct2.py); int8 and beams are not re-scored on the
proxy, so their points carry the torch model's quality (docs/results/int8_quality measures what
int8 weights cost on magnitude-pruned proxies: -0.16% at honest 0.30). Nothing is measured here;
this only joins the two. The plot's top row is against the dense model on the same engine (where
the 2.5x target applies), the bottom row against dense torch fp32 (what an engine itself adds).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pages  # noqa: E402
from structured_speed import VARIANTS  # noqa: E402

ENGINES = (("torch fp32", "torch fp32"), ("ctranslate2 fp32", "CTranslate2 fp32"), ("ctranslate2 int8", "CTranslate2 int8"))


def speed_label(spec: tuple) -> str:
    enc, dec, ffn, heads = spec
    return f"structured {int(enc)}+{int(dec)} L, ffn {ffn:g}, heads {heads:g}"


def rel(path: Path) -> str:
    """``path`` relative to the repository (a results file must not name this machine's folders)."""
    return os.path.relpath(Path(path).resolve(), pages.REPO)


def quality_points(paths: list[Path]) -> list[dict]:
    """One entry per (file, variant): % of that file's control, mean and min-max over seeds."""
    out = []
    for path in paths:
        q = json.loads(path.read_text()).get("quality", {})
        recs = q.get("records", [])
        ctrl = [r["kaggle_score"] for r in recs if r["variant"] == "dense_control"]
        if not ctrl:
            continue
        c = sum(ctrl) / len(ctrl)
        st = q.get("settings", {})
        objective = "logit KD" + (" + features" if st.get("distill_features") else "") + \
                    (" + sequences" if st.get("distill_sequences") else "") + \
                    (f", {st['layer_selection']} blocks" if st.get("layer_selection", "spread") != "spread" else "")
        for v in sorted({r["variant"] for r in recs} - {"dense_control"}):
            vals = [100 * r["kaggle_score"] / c for r in recs if r["variant"] == v]
            out.append({"variant": v, "steps": st.get("recovery_steps"), "objective": objective, "source": rel(path),
                        "seeds": len(vals), "pct_mean": sum(vals) / len(vals), "pct_min": min(vals),
                        "pct_max": max(vals), "control_mean": c})
    return out


def join(speed: dict, quality: list[dict]) -> list[dict]:
    runs = speed["runs"]
    flagged = set(speed.get("flagged_busy") or [])
    rows = []
    for q in quality:
        spec = VARIANTS.get(q["variant"])
        if spec is None:
            continue
        label = speed_label(spec)
        for mode, prefix in (("greedy", ""), ("beams", f"beams{speed.get('beams', 4)} ")):
            for key, name in ENGINES:
                run = runs.get(f"{key} {prefix}{label}")
                if run is None:
                    continue
                rows.append({**q, "shape": label.removeprefix("structured "), "engine": name, "mode": mode,
                             "speedup_vs_dense_torch": run["speedup_vs_torch"],
                             # a torch row's base is the dense torch run: the same engine
                             "speedup_vs_dense_same_engine": run.get("speedup_vs_dense_same_engine")
                             or (run["speedup_vs_torch"] if key.startswith("torch") else None),
                             "speedup_vs_reference": run.get("speedup_vs_reference"), "s_per_doc": run["s_per_doc"],
                             # the speed run found this row's threads under-busy: its time may be inflated
                             "speed_flagged": f"{key} {prefix}{label}" in flagged})
    return rows


AXES = (("speedup_vs_dense_same_engine", "speed-up vs the dense model on the same engine",
         "same engine: the 2.5x target applies here"),
        ("speedup_vs_dense_torch", "speed-up vs dense torch fp32 (engine gain included; no target)",
         "vs dense torch: the engine's own gain included"))
MARKERS = {"torch fp32": "o", "CTranslate2 fp32": "s", "CTranslate2 int8": "^"}
# the objective by how the marker is filled (colour is the shape and budget, shape the engine)
FILLS = {"logit KD": "full", "logit KD + features": "none", "logit KD + sequences": "left",
         "logit KD, first blocks": "bottom"}
# ten clearly different colours, one per (shape, budget): tab10 without its grey
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
           "#000080")


def plot(rows: list[dict], dense: dict, out: Path, flagged_note: str = "") -> None:
    """``frontier.png``: top row against the dense model on the same engine (where the 2.5x target
    is drawn), bottom row against dense torch fp32 (what an engine adds; no target line); one
    column per decoding. Colour: shape and recovery budget; marker: engine; fill: objective."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    modes = [m for m in ("greedy", "beams") if any(r["mode"] == m for r in rows)]
    budgets = sorted({(r["shape"], r["steps"]) for r in rows}, key=lambda k: (k[0], k[1] or 0))
    colour = {k: COLOURS[i % len(COLOURS)] for i, k in enumerate(budgets)}
    fig, axes = plt.subplots(2, len(modes), figsize=(7 * len(modes), 11.5), squeeze=False)
    for row_i, (key, xlabel, what) in enumerate(AXES):
        for ax, mode in zip(axes[row_i], modes):
            for r in (r for r in rows if r["mode"] == mode and r.get(key)):
                ax.errorbar(r[key], r["pct_mean"], yerr=[[r["pct_mean"] - r["pct_min"]], [r["pct_max"] - r["pct_mean"]]],
                            fmt=MARKERS[r["engine"]], color=colour[(r["shape"], r["steps"])],
                            fillstyle=FILLS.get(r["objective"], "full"), markersize=8, capsize=3, alpha=0.9)
            if row_i == 0:
                ax.plot([1.0], [100], "D", color="black", mfc="none", markersize=7)
                ax.axvline(2.5, ls="--", lw=1, color="tab:red")
            else:
                for name, x in dense.get(mode, {}).items():
                    ax.plot([x], [100], MARKERS[name], color="black", mfc="none", markersize=8)
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}x"))
                ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: f"{x:g}x" if x in (2, 3, 5, 20) else ""))
            ax.axhline(95, ls=":", lw=1, color="grey")
            ax.set_ylim(0, 106)
            ax.set_xlabel(f"{xlabel} ({mode})")
            ax.set_ylabel("% of the equally trained control (synthetic proxy)")
            ax.set_title(f"{mode}, {what}", fontsize=10)
            ax.grid(alpha=0.25)
    shape_handles = [Line2D([], [], ls="", marker="o", color=colour[k], label=f"{k[0]}, {k[1]} steps") for k in budgets]
    engine_handles = [Line2D([], [], ls="", marker=m, color="dimgrey", label=n) for n, m in MARKERS.items()]
    engine_handles += [Line2D([], [], ls="", marker="D", color="black", mfc="none",
                              label="dense model (bottom: each engine's marker)"),
                       Line2D([], [], ls="--", color="tab:red", label="target 2.5x, same engine only"),
                       Line2D([], [], ls=":", color="grey", label="target 95% of the control")]
    objectives = [o for o in FILLS if any(r["objective"] == o for r in rows)]
    fill_handles = [Line2D([], [], ls="", marker="o", color="dimgrey", fillstyle=FILLS[o], label=o) for o in objectives]
    kw = dict(fontsize=8, frameon=False, loc="upper left")
    fig.legend(handles=shape_handles, title="colour: shape, recovery budget", ncol=3, bbox_to_anchor=(0.02, 0.135), **kw)
    fig.legend(handles=engine_handles, title="marker: engine; lines", bbox_to_anchor=(0.55, 0.135), **kw)
    fig.legend(handles=fill_handles, title="fill: objective", bbox_to_anchor=(0.8, 0.135), **kw)
    fig.text(0.02, 0.01, "Speeds: t5-small shape, random weights, 2 CPU threads, 127 new tokens forced, one run. "
             + flagged_note, fontsize=8, va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.15, 1, 1))
    fig.savefig(out / "frontier.png", dpi=100)
    plt.close(fig)


def write(rows: list[dict], speed: dict, out: Path, command: str, speed_source: str = "") -> None:
    runs = speed["runs"]
    dense = {"greedy": {"torch fp32": 1.0}, "beams": {}}
    b = f"beams{speed.get('beams', 4)}"
    for key, name in ENGINES:
        g = next((r for k, r in runs.items() if k.startswith(key) and r.get("group") == "greedy"
                  and "reference" not in k), None)
        if g:
            dense["greedy"][name] = g["speedup_vs_torch"]
        bb = runs.get(f"{key} {b}")
        if bb:
            dense["beams"][name] = bb["speedup_vs_torch"]
    ref_int8 = next((r.get("speedup_vs_reference") for k, r in runs.items() if k.startswith("ctranslate2 int8, bs")), None)
    n_flagged = sum(r["speed_flagged"] for r in rows)
    flagged_note = (f"Flagged: {n_flagged} of {len(rows)} points' speeds come from rows the speed run flagged as "
                    "disturbed (threads under 85% busy; see the table)." if n_flagged else "")
    plot(rows, dense, out, flagged_note)
    (out / "results.json").write_text(json.dumps({"command": command, "speed_source": speed_source,
                                                   "speed_command": speed.get("command"), "rows": rows, "dense": dense,
                                                   "dense_ct2_int8_vs_reference": ref_int8}, indent=2) + "\n")
    lines = ["| shape | recovery | engine | decoding | vs dense, same engine | speed-up vs dense torch | vs the reference (greedy) | speed flagged | % of control [min-max] | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["mode"], r["shape"], r["steps"] or 0, r["objective"], r["engine"])):
        same = f"{r['speedup_vs_dense_same_engine']:.2f}x" if r.get("speedup_vs_dense_same_engine") else "-"
        ref = f"{r['speedup_vs_reference']:.2f}x" if r.get("speedup_vs_reference") else "-"
        lines.append(f"| {r['shape']} | {r['steps']} steps, {r['objective']} | {r['engine']} | {r['mode']} | "
                     f"{same} | {r['speedup_vs_dense_torch']:.2f}x | {ref} | {'flagged' if r['speed_flagged'] else '-'} | "
                     f"{r['pct_mean']:.1f}% "
                     f"[{r['pct_min']:.1f}-{r['pct_max']:.1f}] | {r['seeds']} |")
    dense_line = "; ".join(f"{mode}: " + ", ".join(f"{n} {x:.2f}x" for n, x in d.items()) for mode, d in dense.items() if d)
    pages.write_readme(out, "Structured students: the speed-quality frontier", "frontier.py", command, "\n".join(lines),
                       images=("frontier.png",), page_only=None,
                       note=(flagged_note + " " if flagged_note else "") + "The 2.5x target is against the dense "
                       "model on the same engine; 'vs dense torch' includes what the engine itself adds. Speeds force "
                       "127 new tokens per summary (random weights). "
                       f"Dense model, same run (speed-up vs dense torch fp32): {dense_line}"
                       + (f"; dense CTranslate2 int8 greedy vs the reference path: {ref_int8:.2f}x" if ref_int8 else "")
                       + ". Speed: " + speed.get("command", "") + ". Quality: the structured_speed result files named in "
                       "results.json. Quality is the torch model's on the synthetic proxy (CTranslate2 fp32 greedy "
                       "gives the same tokens; int8 and beams not re-scored).")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="frontier.py", description=__doc__.split("\n\n")[0])
    root = pages.REPO / "docs" / "results"
    p.add_argument("--speed", default=str(root / "generate_speed_shapes" / "results.json"))
    # every structured_speed result folder (a part run without its control adds no point)
    p.add_argument("--quality", nargs="+", default=[str(p) for p in sorted(root.glob("structured_*/results.json"))])
    p.add_argument("--out", default=str(root / "frontier"))
    a = p.parse_args(argv)
    speed = json.loads(pages.repo_path(a.speed).read_text())
    rows = join(speed, quality_points([pages.repo_path(q) for q in a.quality]))
    if not rows:
        print("no (shape, engine) has both a speed and a quality measurement", file=sys.stderr)
        return 1
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write(rows, speed, out, "python benchmarks/frontier.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
          rel(pages.repo_path(a.speed)))
    print(f"wrote {out / 'README.md'} ({len(rows)} points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
