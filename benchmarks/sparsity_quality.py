"""Quality against honest sparsity on a base model (the synthetic proxy or the yardstick), at equal
budgets, with a control and seeds.

    python benchmarks/sparsity_quality.py            # the committed grid (see --help for its size)
    python benchmarks/sparsity_quality.py --targets 0.1 --methods gradual_kd gradual_kd_wanda --seeds 0 1 2
    python benchmarks/sparsity_quality.py --recovery-steps 200 800   # a recovery-budget axis
    python benchmarks/sparsity_quality.py --merge runs/part2/results.json  # a part run with --out runs/part2
    python benchmarks/sparsity_quality.py --base docs/results/yardstick --out runs/sq_yardstick  # on the yardstick

Every method prunes a fresh copy of the base model (``--base``, see below; by default the committed
synthetic proxy ``docs/results/proxy/``, made by ``benchmarks/proxy.py``: a 6+6-block T5 that
reads its bill) to each honest ``nonzero_ratio`` target through the package's driver
(``summprune.pipeline.prune_model``, what ``run`` and ``prune`` use), and every method gets the
same recovery budget: ``--recovery-steps`` optimizer steps in all, batch ``--batch-size``,
learning rate ``--recover-lr``, and the same teacher (the dense base: distillation alpha 0.5, T 2,
the issue-7 recipe). ``dense_control`` is the dense base given that same training without
pruning; percentages are against the control's mean at the same budget (the untrained dense base
is shown too).

``reference``          the course recipe: its group proportions scaled to the target (each group
                       keeps ``keep_ref ** c``), 6 equal-amount (geometric) stages, recovery after
                       each.
``gradual_kd``         cubic schedule (Zhu & Gupta), uniform sparsity per group, ``--steps``
                       steps, recovery after each and a final recovery (``--final-recovery-frac``
                       of the budget).
``gradual_kd_wanda``   ``gradual_kd`` with Wanda importance (|w| times the input feature's L2 norm
                       over 16 training batches, measured again at every step; Sun et al. 2023).
``gradual_kd_auto``    ``gradual_kd`` with per-group sparsities from measured sensitivities.
``oneshot`` / ``oneshot_wanda``
                       one global step (magnitude / Wanda), then the whole budget as recovery.

Each (method, target, budget) runs with every ``--seeds`` seed (the recovery's data order and
dropout); the table gives mean and [min-max], and says "beats" only where the min-max ranges do
not overlap, else "ties". Every pruned model is scored on the base's held-out rows (greedy,
max length 128: the course metric ``kaggle_score`` and ROUGE-Lsum), with, on the proxy, the share of
summaries that copy the bill's title.

Outputs (``--out``, default ``docs/results/sparsity_quality/``): ``results.json`` (``{"records":
[...]}``, one record per method, target, seed and recovery_steps, written after each, so a
stopped run resumes where it stopped), ``table.md`` and ``pareto.png`` (means, min-max bars), and
with two or more budgets ``budget.png`` (% of each budget's control against recovery steps).
On 2 cores the grid is hours: split it over one-thread processes, each with its own ``--out`` and
``--work``, then ``--merge`` their results.json into one (same settings required; a cell measured
twice with different results is refused, identical copies skipped). A part whose ``--out`` starts
with a copy of the main results.json skips the controls (and cells) already measured there; a
part started beside the one that trains the controls takes ``--no-control``.

``--base`` (alias ``--proxy``) picks the model every cell starts from: the synthetic proxy (the
default; a directory with ``proxy.json``) or the yardstick (``docs/results/yardstick``, made by
``benchmarks/yardstick.py``: a small T5 pretrained on real text and fine-tuned on docstring ->
summary; its training pairs are the corpus in ``--corpus``, rebuilt from this install if absent,
and its held-out pairs are ``test.jsonl``). The settings and results name the base (kind and
sha256) and the page says which it was. Title copy rates exist for the proxy's bills only.

The synthetic proxy is a synthetic corpus and a 3M-parameter model that copies: it checks that a
recipe runs and ranks recipes coarsely; it does not predict t5-small's BillSum scores.
"""

from __future__ import annotations

import argparse
import json
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import grid as G  # noqa: E402
import pages  # noqa: E402

METHODS = ("reference", "gradual_kd", "gradual_kd_wanda", "gradual_kd_obs", "gradual_kd_auto", "oneshot", "oneshot_wanda")
CONTROL = "dense_control"
METHOD_LABELS = {
    CONTROL: "dense control (same training, no pruning)",
    "reference": "reference proportions, 6 stages",
    "gradual_kd": "gradual cubic, uniform, magnitude",
    "gradual_kd_wanda": "gradual cubic, uniform, Wanda",
    "gradual_kd_obs": "gradual cubic, uniform, OBS (SparseGPT-style)",
    "gradual_kd_auto": "gradual cubic, auto allocation, magnitude",
    "oneshot": "one-shot global magnitude + recovery",
    "oneshot_wanda": "one-shot uniform Wanda + recovery",
}


def pct(x: float, ref: float) -> str:
    """``x`` as a percentage of ``ref`` ("-" when ``ref`` is 0: an untrained tiny proxy in the tests)."""
    return f"{100 * x / ref:.1f}%" if ref else "-"


# ----------------------------------------------------------------------------- methods


def method_config(method: str, target: float, budget: int, a):
    """The GradualConfig that implements ``method`` with ``budget`` recovery steps in all."""
    from summprune.methods.gradual import GradualConfig

    kd = {"distill_alpha": a.alpha, "distill_temperature": a.temperature,
          "distill_features": getattr(a, "distill_features", 0.0),
          "distill_sequences": getattr(a, "distill_sequences", 0.0)}
    if method.startswith("oneshot"):
        wanda = method == "oneshot_wanda"
        # Wanda compares weights within a layer's output row in its paper; here within a group
        # (uniform), since one global threshold over activation-scaled scores mixes scales
        return GradualConfig(target_nonzero_ratio=target, schedule="constant", steps=1,
                             allocation="uniform" if wanda else "global", importance="wanda" if wanda else "magnitude",
                             recover_steps=budget, **kd)
    if method == "reference":
        steps = 6
        per = budget // steps
        return GradualConfig(target_nonzero_ratio=target, schedule="geometric", steps=steps, allocation="reference",
                             recover_steps=per, final_recover_steps=budget - per * steps, **kd)
    final = int(round(budget * a.final_recovery_frac))
    per = (budget - final) // a.steps
    final = budget - per * a.steps  # the whole budget, to the step
    return GradualConfig(target_nonzero_ratio=target, schedule="cubic", steps=a.steps,
                         allocation="auto" if method == "gradual_kd_auto" else "uniform",
                         importance={"gradual_kd_wanda": "wanda", "gradual_kd_obs": "obs"}.get(method, "magnitude"),
                         recover_steps=per, final_recover_steps=final, sensitivity_levels=list(a.levels), **kd)


def recovery_train_config(a, seed: int):
    """The recovery training settings every cell shares (``--batch-size``, ``--recover-lr``)."""
    from summprune.config import TrainConfig

    return TrainConfig(learning_rate=a.recover_lr, weight_decay=0.01, lr_scheduler="linear", warmup_ratio=0.0,
                       batch_size=a.batch_size, logging_steps=10**6, precision="fp32", seed=seed,
                       progress_bar=False)


def distilled_recovery(model, dense, tok, train_ds, a, seed: int, budget: int, workdir: Path) -> None:
    """``budget`` steps of the recovery every cell shares, distilled from ``dense``, in place: what
    the dense control gets (and structured_speed.py's variants)."""
    from summprune.config import RecoveryConfig
    from summprune.recovery import make_teacher, recover

    recover(model, tok, train_ds, recovery_train_config(a, 1000 * seed),
            RecoveryConfig(recover_steps=budget, distill_alpha=a.alpha, distill_temperature=a.temperature,
                           distill_features=getattr(a, "distill_features", 0.0),
                           distill_sequences=getattr(a, "distill_sequences", 0.0)),
            teacher=make_teacher(dense), seed_offset=1, output_dir=workdir / "trainer")


def run_cell(method: str, target: float, seed: int, budget: int, dense, tok, train_ds, val_ds, rows, meta: dict,
             a, cache: dict, workdir: Path) -> dict:
    """One record: ``method`` to ``target`` with ``budget`` recovery steps, recovery seed ``seed``,
    scored on ``rows`` as the base ``meta`` describes (``grid.load_base``)."""
    from summprune import sparsity as S

    model, rec = prune_cell(method, target, seed, budget, dense, tok, train_ds, val_ds, a, cache, workdir)
    rep = S.report(model)
    res = G.score_base(model, tok, rows, meta)
    return {"method": method, "target": target, "seed": seed, "recovery_steps": budget,
            "recovery_steps_done": rec.pop("recovery_steps_done"), **res, "nonzero_ratio": round(rep["nonzero_ratio"], 6),
            "mask_ratio": round(rep["mask_ratio"], 6), **rec}


def prune_cell(method: str, target: float, seed: int, budget: int, dense, tok, train_ds, val_ds, a, cache: dict,
               workdir: Path) -> tuple:
    """``(model, info)``: a copy of ``dense`` pruned by ``method`` to ``target`` with ``budget``
    recovery steps (recovery seed ``seed``), and what the record says of how it was made."""
    from summprune.config import ExperimentConfig, PruneConfig
    from summprune.pipeline import prune_model

    t0 = time.time()
    model = copy.deepcopy(dense)
    extra: dict = {}
    if method == CONTROL:
        # the same recovery (steps, batch, learning rate, teacher) without pruning
        distilled_recovery(model, dense, tok, train_ds, a, seed, budget, workdir)
        steps_done = budget
    else:
        gcfg = method_config(method, target, budget, a)
        # recovery step n (1-based) trains with seed 1000 * seed + n
        cfg = ExperimentConfig(name=f"{method}-{target}", train=recovery_train_config(a, 1000 * seed),
                               prune=PruneConfig(tie_mode="tied", methods={"gradual": gcfg}))
        model, records, sections = prune_model(model, tok, cfg, train_ds=train_ds, val_ds=val_ds, work_dir=workdir,
                                               cache=cache, log_print=lambda s: None)
        steps_done = sum(int(r.get("recovery", {}).get("global_step", 0)) for r in records)
        plan = sections["gradual"]
        extra = {"groups": {g: round(r["nonzero_ratio"], 4) for g, r in plan["groups"].items()},
                 "schedule": gcfg.schedule, "steps": gcfg.steps, "allocation": gcfg.allocation,
                 "importance": gcfg.importance}
    return model, {"recovery_steps_done": steps_done, "prune_s": round(time.time() - t0, 1), **extra}


# ----------------------------------------------------------------------------- output


def method_color(m: str) -> str:
    """One colour per method in every panel of every plot."""
    return "k" if m == CONTROL else f"C{METHODS.index(m)}"


def legend_of_all(axes) -> None:
    """One legend, right of the last panel, naming what any panel draws (panels of a budget may
    hold different methods)."""
    seen: dict = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, h)
    axes[-1].legend(list(seen.values()), list(seen), fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def pct_range(s: dict, ref: float) -> str:
    """A cell's mean [min-max] as percentages of ``ref``."""
    if not ref:
        return "-"
    seeds = "" if s["n"] >= 3 else f" ({s['n']} seed{'s' if s['n'] > 1 else ''})"  # a cell still running
    return f"{100 * s['mean'] / ref:.1f}% [{100 * s['min'] / ref:.1f}-{100 * s['max'] / ref:.1f}]{seeds}"


def axis_rows(ks: dict, budgets: list[int], targets: list[float], methods: list[str]) -> list[tuple]:
    """The (target, method) pairs measured at two or more budgets, each budget with its control:
    the recovery-budget axis."""
    have = [b for b in budgets if (CONTROL, 1.0, b) in ks]
    return [(t, m) for t in targets for m in methods if sum((m, t, b) in ks for b in have) >= 2]


def budget_axis_lines(ks: dict, budgets: list[int], targets: list[float], methods: list[str]) -> list[str]:
    """The recovery-budget axis as a markdown table ([] with fewer than two budgets)."""
    rows = axis_rows(ks, budgets, targets, methods)
    if not rows:
        return []
    lines = ["### Recovery-budget axis", "",
             "Each cell: % of the dense control trained with the same budget, mean [min-max] over seeds "
             "(- : not measured).", "",
             "| target | method | " + " | ".join(f"{b} steps" for b in budgets) + " |",
             "|---|---|" + "---|" * len(budgets),
             "| - | dense control, course score | " + " | ".join(G.fmt(ks.get((CONTROL, 1.0, b))) for b in budgets) + " |"]
    for t, m in rows:
        cells = [pct_range(ks[(m, t, b)], ks[(CONTROL, 1.0, b)]["mean"])
                 if (m, t, b) in ks and (CONTROL, 1.0, b) in ks else "-" for b in budgets]
        lines.append(f"| {t:.2f} | {METHOD_LABELS[m]} | " + " | ".join(cells) + " |")
    return lines + [""]


def plot_budget_axis(plt, ks: dict, budgets: list[int], targets: list[float], methods: list[str], path: Path) -> bool:
    """``budget.png``: % of the same budget's control against recovery steps, one panel per
    target, min-max bars. False (nothing drawn) with fewer than two budgets."""
    rows = axis_rows(ks, budgets, targets, methods)
    if not rows:
        return False
    panels = sorted({t for t, _ in rows}, reverse=True)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) + 3, 4.5), squeeze=False)
    for ax, t in zip(axes[0], panels):
        for m in [m for tt, m in rows if tt == t]:
            pts = [(b, ks[(m, t, b)], ks[(CONTROL, 1.0, b)]["mean"]) for b in budgets
                   if (m, t, b) in ks and ks.get((CONTROL, 1.0, b), {}).get("mean")]  # (0: an untrained tiny proxy)
            y = [100 * s["mean"] / c for _, s, c in pts]
            err = [[100 * (s["mean"] - s["min"]) / c for _, s, c in pts], [100 * (s["max"] - s["mean"]) / c for _, s, c in pts]]
            ax.errorbar([b for b, _, _ in pts], y, yerr=err, marker="o", capsize=3, label=METHOD_LABELS[m],
                        color=method_color(m))
        ax.axhline(100, color="k", ls="--", lw=1, label="dense control, same budget")
        ax.axhline(95, color="k", ls=":", lw=1, label="95% of control")
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(budgets)
        ax.set_xticklabels([str(b) for b in budgets])
        ax.set_ylim(0, 105)
        ax.set_xlabel("recovery steps in all (log scale)")
        ax.set_ylabel("% of the same budget's control (mean, min-max)")
        ax.set_title(f"honest nonzero_ratio {t:g}")
        ax.grid(alpha=0.3)
    legend_of_all(axes[0])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def cell_stats(records: list[dict], key: str = "kaggle_score") -> dict:
    """{(method, target, budget): stats over seeds}."""
    groups: dict = {}
    for r in records:
        groups.setdefault((r["method"], r["target"], r["recovery_steps"]), []).append(r[key])
    return {k: G.stats(v) for k, v in groups.items()}


def write_outputs(data: dict, out: Path, a) -> str:
    recs = data["records"]
    ks, rl = cell_stats(recs), cell_stats(recs, "rougeLsum")
    base = G.base_of(data)
    is_proxy = base["kind"] == "proxy"
    label = G.LABELS[base["kind"]]
    titles = cell_stats(recs, "title_rate") if is_proxy else {}
    dense = data["dense"]
    budgets = sorted({r["recovery_steps"] for r in recs})
    targets = sorted({r["target"] for r in recs if r["method"] != CONTROL}, reverse=True)
    methods = [m for m in METHODS if any(r["method"] == m for r in recs)]
    info = data.get("proxy", {}) if is_proxy else base
    where = base.get("dir", "docs/results/proxy")
    lines = [f"Base: the {label}, a {info['params'] / 1e6:.2f}M-parameter T5 ({info['shape']}), `{where}/`"
             + (f" (sha256 `{base['sha256'][:16]}`)" if base.get("sha256") else "")
             + (", pretrained on real text and fine-tuned on docstring -> summary" if not is_proxy else "")
             + f". The dense {label} before any recovery: course score {dense['kaggle_score']:.4f}, ROUGE-Lsum "
             f"{dense['rougeLsum']:.4f}"
             + (f", title copied in {dense['title_rate']:.0%} ({dense['docs']} held-out bills)." if is_proxy
                else f" ({dense['docs']} held-out pairs)."),
             f"Every row: recovery with distillation from the dense {label} (alpha {a.alpha}, T {a.temperature}), "
             f"batch {a.batch_size}, learning rate {a.recover_lr}; mean [min-max] over seeds "
             f"{sorted({r['seed'] for r in recs})}. '% of control': of the dense control's mean at the same budget. "
             "'vs reference': beats / ties / loses to, by non-overlapping min-max ranges.", ""]
    for b in budgets:
        c = ks.get((CONTROL, 1.0, b))
        lines.append(f"### {b} recovery steps")
        lines.append("")
        if c:
            lines.append(f"Control (dense + {b} steps, no pruning): course score {G.fmt(c)} "
                         f"({pct(c['mean'], dense['kaggle_score'])} of the dense {label}).")
            lines.append("")
        lines += ["| target | method | seeds | course score | % of control | ROUGE-Lsum | "
                  + ("title copied | " if is_proxy else "") + "vs reference | vs gradual magnitude |",
                  "|---|---|---|---|---|---|---|---|" + ("---|" if is_proxy else "")]
        for t in targets:
            ref, mag = ks.get(("reference", t, b)), ks.get(("gradual_kd", t, b))
            for m in methods:
                s = ks.get((m, t, b))
                if s is None:
                    continue
                vs = "-" if m == "reference" or ref is None else G.verdict(s, ref)
                vm = "-" if m in ("reference", "gradual_kd") or mag is None else G.verdict(s, mag)
                lines.append(f"| {t:.2f} | {METHOD_LABELS[m]} | {s['n']} | {G.fmt(s)} | "
                             f"{pct(s['mean'], c['mean']) if c else '-'} | {rl[(m, t, b)]['mean']:.4f} | "
                             + (f"{titles[(m, t, b)]['mean']:.0%} | " if is_proxy else "") + f"{vs} | {vm} |")
        lines.append("")
    lines += budget_axis_lines(ks, budgets, targets, methods)
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(budgets), figsize=(6 * len(budgets) + 3, 4.5), squeeze=False)
        for ax, b in zip(axes[0], budgets):
            for i, m in enumerate(methods):
                pts = sorted((t, ks[(m, t, b)]) for t in targets if (m, t, b) in ks)
                if not pts:
                    continue
                x = [t * (1 + 0.025 * (i - len(methods) / 2)) for t, _ in pts]  # side by side
                y = [s["mean"] for _, s in pts]
                err = [[s["mean"] - s["min"] for _, s in pts], [s["max"] - s["mean"] for _, s in pts]]
                ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=METHOD_LABELS[m], color=method_color(m))
            c = ks.get((CONTROL, 1.0, b))
            if c:
                ax.axhspan(c["min"], c["max"], color="k", alpha=0.12)
                ax.axhline(c["mean"], color="k", ls="--", lw=1, label="dense control (mean, range)")
                ax.axhline(0.95 * c["mean"], color="k", ls=":", lw=1, label="95% of control")
            ax.set_xscale("log")
            ax.minorticks_off()
            ax.set_xticks(targets)
            ax.set_xticklabels([f"{t:g}" for t in targets])
            ax.set_xlim(max(targets) * 1.15, min(targets) / 1.15)  # the same axis in every panel, sparser to the right
            ax.set_ylim(bottom=0)
            ax.set_xlabel("honest nonzero_ratio (log scale, sparser to the right)")
            ax.set_ylabel("course score (mean, min-max over seeds)")
            ax.set_title(f"{b} recovery steps")
            ax.grid(alpha=0.3)
        legend_of_all(axes[0])
        fig.tight_layout()
        fig.savefig(out / "pareto.png", dpi=120)
        plt.close(fig)
        plot_budget_axis(plt, ks, budgets, targets, methods, out / "budget.png")
    except ImportError:  # pragma: no cover
        G.log("matplotlib missing: no pareto.png")
    pages.write_readme(out, f"Quality against honest sparsity on the {label}", "sparsity_quality.py",
                       pages.command_text(data, "python benchmarks/sparsity_quality.py (the grid was run in parts and "
                                                "merged with --merge; the commands are in docs/proxy.md)"),
                       table, images=("pareto.png", "budget.png"), settings=data.get("settings"))
    return table


# ----------------------------------------------------------------------------- CLI


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", type=float, nargs="+", default=[0.1, 0.3],
                   help="honest nonzero_ratio targets (run in this order)")
    p.add_argument("--methods", nargs="+", default=["reference", "gradual_kd", "gradual_kd_wanda", "gradual_kd_obs"],
                   choices=METHODS,
                   help="methods (dense_control always runs, once per seed and budget)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="recovery seeds per cell")
    p.add_argument("--recovery-steps", type=int, nargs="+", default=[100],
                   help="recovery budgets (optimizer steps in all per cell; several = a budget axis)")
    p.add_argument("--steps", type=int, default=8, help="pruning steps of the gradual methods")
    p.add_argument("--final-recovery-frac", type=float, default=0.25,
                   help="share of the budget the gradual methods spend after their last step")
    p.add_argument("--recover-lr", type=float, default=1e-3, help="recovery learning rate")
    p.add_argument("--batch-size", type=int, default=8, help="recovery batch")
    p.add_argument("--alpha", type=float, default=0.5, help="distillation: weight of the label CE")
    p.add_argument("--temperature", type=float, default=2.0, help="distillation temperature")
    p.add_argument("--distill-features", type=float, default=0.0,
                   help="weight of feature distillation (SquareHead) in every recovery (0 = logit KD only)")
    p.add_argument("--distill-sequences", type=float, default=0.0,
                   help="share of training rows labelled with the dense model's greedy summaries in every "
                        "recovery (sequence-level KD; 0 = the references only)")
    p.add_argument("--levels", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.9, 0.95, 0.98],
                   help="sensitivity levels of gradual_kd_auto")
    p.add_argument("--eval-docs", type=int, default=100, help="held-out bills scored per record")
    p.add_argument("--recovery-docs", type=int, default=4000, help="training bills the recoveries draw from")
    G.add_base_arguments(p, "sparsity_quality", "the base model every cell prunes")
    p.add_argument("--work", default=str(G.ROOT / "runs" / "sparsity_quality"), help="trainer scratch space")
    p.add_argument("--fresh", action="store_true", help="ignore results.json and redo every record")
    p.add_argument("--merge", nargs="+", metavar="RESULTS_JSON", default=None,
                   help="append these results.json files (parts of the grid run by other processes with their own "
                        "--out and the same settings) to --out's, write its table and plot, and run nothing")
    p.add_argument("--no-control", action="store_true",
                   help="train no dense control here: a part of the grid run beside the part that trains them "
                        "(its own --out; --merge joins them)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--page-only", action="store_true",
                   help="rewrite table.md, the plots and README.md from --out's results.json; run nothing")
    a = p.parse_args(argv)
    if a.out is None:
        a.out = str(G.default_out("sparsity_quality", a.base))
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.time()
    if a.page_only:
        print(write_outputs(json.loads((Path(a.out) / "results.json").read_text()), Path(a.out), a))
        return 0
    dense, tok, meta, data = G.load_base(a.base, a.corpus)
    msl, prefix, label = meta["max_source_length"], meta["prefix"], G.LABELS[meta["kind"]]
    rows = data["eval"][: a.eval_docs]
    out = Path(a.out)
    # the proxy's keys as before (its committed files stay valid); the yardstick's name it
    settings = {**G.base_settings(meta), "eval_docs": len(rows),
                "recovery_docs": a.recovery_docs, "steps": a.steps, "final_recovery_frac": a.final_recovery_frac,
                "recover_lr": a.recover_lr, "batch_size": a.batch_size, "alpha": a.alpha,
                "temperature": a.temperature, "levels": list(a.levels),
                **({"distill_features": a.distill_features} if a.distill_features else {}),
                **({"distill_sequences": a.distill_sequences} if a.distill_sequences else {})}
    store = G.Records(out / "results.json", settings, fresh=a.fresh, strict=bool(a.merge))
    c = dense.config
    shape = f"{c.num_layers}+{c.num_decoder_layers} blocks, d_model {c.d_model}, {c.num_heads} heads, d_ff {c.d_ff}"
    store.data["base"] = {**G.base_record(meta, a.base), "shape": shape}
    if meta["kind"] == "proxy":
        store.data["proxy"] = {"params": meta["params"], "steps": meta["steps"], "sha256": meta["sha256_full"], "validity": {
            k: meta["validity"][k] for k in ("own_kaggle", "swapped_kaggle", "swapped_over_own", "title_rate", "act_rate")},
            "shape": shape}
    else:
        store.data["base"]["checks"] = G.yardstick_checks(meta)
    for path in a.merge or []:
        G.log(f"{path}: {store.merge(path, ('method', 'target', 'seed', 'recovery_steps'))} records added")
    if not a.merge:  # a merge measures nothing: its parts' commands are listed
        pages.record_command(store.data, "sparsity_quality.py", argv)
    if "dense" not in store.data:
        store.data["dense"] = {**G.score_base(dense, tok, rows, meta), "docs": len(rows)}
        store.save()
    d = store.data["dense"]
    G.log(f"dense {label}: kaggle {d['kaggle_score']:.4f} rougeLsum {d['rougeLsum']:.4f}"
          + (f" title {d['title_rate']:.0%}" if "title_rate" in d else "") + f" on {len(rows)} held-out rows")
    if a.merge:
        print(write_outputs(store.data, out, a))
        return 0
    train_ds = G.to_dataset(data["train"][: a.recovery_docs], tok, msl, prefix, meta["max_target_length"])
    # (a tiny yardstick's corpus may hold no validation package: nothing then validates)
    val_ds = G.to_dataset(data["val"], tok, msl, prefix, meta["max_target_length"]) if data["val"] else None
    cache: dict = {}
    work = Path(a.work)
    # --no-control: a part run beside the one that trains the controls (two measurements of one
    # cell would differ, at least in their timings, and --merge refuses that)
    jobs = [] if a.no_control else [(CONTROL, 1.0, s, b) for b in a.recovery_steps for s in a.seeds]
    # in the order given: a stopped run has whole cells (every seed) of the first targets
    jobs += [(m, t, s, b) for b in a.recovery_steps for t in a.targets for m in a.methods for s in a.seeds]
    for i, (m, t, s, b) in enumerate(jobs):
        if store.find(method=m, target=t, seed=s, recovery_steps=b) is not None:
            continue
        G.log(f"[{i + 1}/{len(jobs)}] {m} @ {t} seed {s}, {b} steps")
        rec = run_cell(m, t, s, b, dense, tok, train_ds, val_ds, rows, meta, a, cache, work)
        store.add(rec)
        G.log(f"    kaggle {rec['kaggle_score']:.4f} rougeLsum {rec['rougeLsum']:.4f}"
              + (f" title {rec['title_rate']:.0%}" if "title_rate" in rec else "") + f" nonzero_ratio {rec['nonzero_ratio']:.4f} [{rec['recovery_steps_done']} steps, "
              f"{rec['prune_s']} + {rec['eval_s']} s]")
    table = write_outputs(store.data, out, a)
    print(table)
    G.log(f"done in {time.time() - t0:.0f} s; {out / 'results.json'}, {out / 'table.md'}, {out / 'pareto.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
