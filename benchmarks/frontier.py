"""The speed-quality frontier of structured students: speed-up against % of the control, one point
per (shape, engine, recovery), from results other benchmarks measured.

    python benchmarks/frontier.py --out docs/results/frontier

Speed: ``benchmarks/generate_speed.py --structured ...`` (random t5-small-shaped weights, the 20
real bills, every shape through torch fp32, CTranslate2 fp32 and int8, greedy and 4 beams, all in
one run). Quality: ``benchmarks/structured_speed.py`` result files (the proxy, each student and a
dense control recovered with the same budget, 3 seeds). Quality is the torch model's: CTranslate2
fp32 greedy gives its tokens exactly (tests/test_ct2.py); int8 and beams are not re-scored on the
proxy, so their points carry the torch model's quality (docs/results/int8_quality measures what
int8 weights cost: -0.16% at honest 0.30). Nothing is measured here; this only joins the two.
"""

from __future__ import annotations

import argparse
import json
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
            out.append({"variant": v, "steps": st.get("recovery_steps"), "objective": objective, "source": str(path),
                        "seeds": len(vals), "pct_mean": sum(vals) / len(vals), "pct_min": min(vals),
                        "pct_max": max(vals), "control_mean": c})
    return out


def join(speed: dict, quality: list[dict]) -> list[dict]:
    runs = speed["runs"]
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
                             "speedup_vs_reference": run.get("speedup_vs_reference"), "s_per_doc": run["s_per_doc"]})
    return rows


def plot(rows: list[dict], dense: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in ("greedy", "beams") if any(r["mode"] == m for r in rows)]
    shapes = sorted({(r["shape"], r["steps"], r["objective"]) for r in rows})
    # one key below both panels: inside an axis it hides the points it names
    fig, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), 5 + 0.17 * len(shapes)), squeeze=False)
    markers = {"torch fp32": "o", "CTranslate2 fp32": "s", "CTranslate2 int8": "^"}
    colors = [plt.cm.tab20(i) for i in range(20)]  # 20 distinct colours: a point per (shape, budget, objective)
    for ax, mode in zip(axes[0], modes):
        for i, key in enumerate(shapes):
            for r in (r for r in rows if r["mode"] == mode and (r["shape"], r["steps"], r["objective"]) == key):
                ax.errorbar(r["speedup_vs_dense_torch"], r["pct_mean"],
                            yerr=[[r["pct_mean"] - r["pct_min"]], [r["pct_max"] - r["pct_mean"]]],
                            fmt=markers[r["engine"]], color=colors[i % len(colors)], capsize=3,
                            label=f"{key[0]}, {key[1]} steps, {key[2]}" if r["engine"] == "torch fp32" else None)
        for name, x in dense.get(mode, {}).items():
            ax.plot([x], [100], markers[name], color="black", mfc="none")
        ax.axhline(95, ls="--", lw=0.8, color="grey")
        ax.axvline(2.5, ls=":", lw=0.8, color="grey")
        ax.set_xlabel(f"speed-up vs dense torch fp32 ({mode}; t5-small shape, 2 CPU threads)")
        ax.set_ylabel("% of the equally trained control (proxy, mean, min-max)")
        ax.set_title(f"{mode}: circle torch, square CTranslate2 fp32, triangle int8; black = dense")
    handles, labels = axes[0][0].get_legend_handles_labels()
    key_height = (0.17 * len(shapes) / 3 + 0.4) / (5 + 0.17 * len(shapes))
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, key_height, 1, 1))
    fig.savefig(out / "frontier.png", dpi=110)
    plt.close(fig)


def write(rows: list[dict], speed: dict, out: Path, command: str) -> None:
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
    plot(rows, dense, out)
    (out / "results.json").write_text(json.dumps({"command": command, "rows": rows, "dense": dense,
                                                   "dense_ct2_int8_vs_reference": ref_int8}, indent=2) + "\n")
    lines = ["| shape | recovery | engine | decoding | speed-up vs dense torch | vs dense, same engine | vs the reference (greedy) | % of control [min-max] | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["mode"], r["shape"], r["steps"] or 0, r["objective"], r["engine"])):
        same = f"{r['speedup_vs_dense_same_engine']:.2f}x" if r.get("speedup_vs_dense_same_engine") else "-"
        ref = f"{r['speedup_vs_reference']:.2f}x" if r.get("speedup_vs_reference") else "-"
        lines.append(f"| {r['shape']} | {r['steps']} steps, {r['objective']} | {r['engine']} | {r['mode']} | "
                     f"{r['speedup_vs_dense_torch']:.2f}x | {same} | {ref} | {r['pct_mean']:.1f}% "
                     f"[{r['pct_min']:.1f}-{r['pct_max']:.1f}] | {r['seeds']} |")
    dense_line = "; ".join(f"{mode}: " + ", ".join(f"{n} {x:.2f}x" for n, x in d.items()) for mode, d in dense.items() if d)
    pages.write_readme(out, "Structured students: the speed-quality frontier", "frontier.py", command, "\n".join(lines),
                       images=("frontier.png",), page_only=None,
                       note=f"Dense model, same run (speed-up vs dense torch fp32): {dense_line}"
                       + (f"; dense CTranslate2 int8 greedy vs the reference path: {ref_int8:.2f}x" if ref_int8 else "")
                       + ". Speed: " + speed.get("command", "") + ". Quality: the structured_speed result files named in "
                       "results.json. Quality is the torch model's (CTranslate2 fp32 greedy gives the same tokens; "
                       "int8 and beams not re-scored).")


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
    write(rows, speed, out, "python benchmarks/frontier.py " + shlex.join(argv if argv is not None else sys.argv[1:]))
    print(f"wrote {out / 'README.md'} ({len(rows)} points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
