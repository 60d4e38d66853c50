"""Vocabulary trimming and the student's shape, timed on the engine the user runs (issue 35, item 4,
the speed side): the dense t5-small shape against the 4+3 half-width student (encoder 6->4,
decoder 6->3 blocks, half the FFN neurons, half the heads: ``configs/structured_kd.toml``) and one
deeper cut (decoder 6->2, the rest the same), each with t5-small's 32,128-token vocabulary and with
a trimmed one, on torch fp32, CTranslate2 fp32 and CTranslate2 int8, greedy and 4 beams, with 127
new tokens forced and at the lengths of the reference summaries.

Speed needs no training: every shape has random weights (``summprune plan``'s code path,
:func:`summprune.plan.run_plan`, one call per cell, so the dense model and its cuts are timed in the
same run, the dense model twice and the faster of the two taken as the reference). Quality is not
measured here (trimming does not change a summary whose tokens are all kept: tests/test_vocab.py).

The trimmed vocabulary's size is ``--vocab-size`` (default 16,064, half of t5-small's): what a
real training split keeps is not known here (BillSum's training split is not on this machine; its
20 shared test rows alone use 3,859 distinct tokens, 10 of them 2,492, and the count still grows by
half per doubling), so a trim to the 20 rows' tokens would flatter it.

    python benchmarks/trim_speed.py                    # ~20-40 min on 2 cores; resumes cell by cell
    python benchmarks/trim_speed.py --page-only        # rewrite README.md from results.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OUT = ROOT / "docs" / "results" / "trim_speed"
ENGINES = (("torch", "fp32"), ("ctranslate2", "fp32"), ("ctranslate2", "int8"))
BEAMS = (1, 4)
LENGTHS = ("forced", "summaries")


def cell_name(engine: str, dtype: str, beams: int, lengths: str) -> str:
    return f"{engine}-{dtype}-beams{beams}-{lengths}"


def run_cell(a, engine: str, dtype: str, beams: int, lengths: str) -> dict:
    from summprune.plan import run_plan

    plan = run_plan(a.config_dir, data=a.data, engine=engine, dtype=dtype, threads=a.threads, beams=beams,
                    output_lengths=lengths, docs=a.docs, target="speedup=4", budget_s=3600,
                    vocab_size=a.vocab_size, decoder_layers=[3, 2], encoder_layers=[4], ffn_keep=[0.5],
                    heads_keep=[0.5], cache=None, results_dir=None, progress=not a.no_progress, log=print)
    dense = plan["dense"]
    rows = []
    for cut, r in plan["rows"].items():
        rows.append({"shape": cut.name(dense), "vocab": cut.vocab_size or plan["config"].vocab_size,
                     "params": r.get("params"), "bytes": r.get("bytes"), "s_per_doc": r.get("s_per_doc"), "speedup": r.get("speedup"),
                     "busy": r.get("busy"), "skipped": r.get("skipped")})
    return {"engine": engine, "dtype": dtype, "beams": beams, "output_lengths": lengths, "rows": rows,
            "dense_run": plan["dense_run"], "seconds": round(plan["seconds"], 1),
            "load_average": round(os.getloadavg()[0], 2), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def dense_cell(run: dict) -> str:
    """The dense model's two timings of a cell: their gap is the load's drift over the run (every
    speed-up is against the faster)."""
    first, again = run.get("s_per_doc"), run.get("again_s_per_doc")
    if first is None:
        return "-"
    return f"{first:.2f}" + (f" ({again:.2f})" if again is not None else "")


def write_page(data: dict, out: Path) -> Path:
    import pages

    shapes = ["enc4_dec3_ffn50_heads50", "enc4_dec2_ffn50_heads50"]
    head = ("| engine | beams | new tokens | " + " | ".join(
        f"{s.replace('_', ' ')} {v}" for s in ("4+3 half", "4+2 half") for v in ("full vocab", "trimmed")) + " |")
    head += " dense s/doc (again at the end) |"
    lines = [head, "|---|---|---|" + "---:|" * 5]
    flagged = False
    for name, c in data["cells"].items():
        by = {(r["shape"].replace(f"_vocab{r['vocab']}", ""), "trimmed" if "vocab" in r["shape"] else "full"): r
              for r in c["rows"]}
        cells = []
        for s in shapes:
            for v in ("full", "trimmed"):
                r = by.get((s, v))
                if r is None or r.get("speedup") is None:
                    cells.append("-")
                    continue
                flag = r.get("busy") is not None and r["busy"] < 0.85
                flagged |= flag
                cells.append(f"{r['speedup']:.2f}×" + (" ⚑" if flag else ""))
        lines.append(f"| {c['engine']} {c['dtype']} | {c['beams']} | "
                     f"{'127 forced' if c['output_lengths'] == 'forced' else 'reference lengths'} | " + " | ".join(cells)
                     + f" | {dense_cell(c['dense_run'])} |")
    body = ("Speed-up against the dense t5-small shape **on the same engine, dtype, beams and lengths**, timed in the "
            f"same run (random weights; {data['settings']['docs']} of the 20 shared BillSum test rows; 1 thread). "
            f"Trimmed: a {data['settings']['vocab_size']:,}-token vocabulary (see the note on its size).\n\n"
            + "\n".join(lines)
            + "\n\nOne timing per shape and cell (`run_plan`'s `reps` 1): read differences within the gap between the "
            "dense model's two timings as noise."
            + ("\n\n⚑: the timing's busy share was under 85% (the box was loaded): read it as a lower bound."
               if flagged else ""))
    note = ("Quality is not measured here: trimming keeps every summary whose tokens are kept (tests/test_vocab.py); "
            "the students' quality on the synthetic proxy is in docs/results.md, and no real-text yardstick exists "
            "yet (docs/yardstick.md). The trimmed size is a choice, not a measurement: BillSum's training split is "
            "not on this machine, and the 20 shared rows' own tokens (3,859) would flatter trimming.")
    return pages.write_readme(out, "Vocabulary trimming and the student's shape: speed on each engine", "trim_speed.py",
                              pages.command_text(data, "python benchmarks/trim_speed.py"), body,
                              settings=data["settings"], note=note)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-dir", default=str(SHARED / "t5-small"), help="the dense shape (config + tokenizer)")
    p.add_argument("--data", default=str(SHARED / "billsum" / "us_test_sample.jsonl"), help="the documents timed")
    p.add_argument("--vocab-size", type=int, default=16064, help="tokens the trimmed vocabulary keeps")
    p.add_argument("--docs", type=int, default=8, help="documents per timing (spread over the input lengths)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--page-only", action="store_true", help="rewrite README.md from results.json, measure nothing")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    import pages

    out = Path(a.out)
    path = out / "results.json"
    data = json.loads(path.read_text()) if path.is_file() else {"cells": {}}
    if a.page_only:
        write_page(data, out)
        return 0
    settings = {"vocab_size": a.vocab_size, "docs": a.docs, "threads": a.threads,
                "shape": Path(a.config_dir).name, "data": Path(a.data).name}
    if data.get("settings") not in (None, settings):
        raise SystemExit(f"{path}: measured with other settings ({data['settings']}); use another --out")
    data["settings"] = settings
    data.setdefault("machine", pages.machine())
    data.setdefault("versions", pages.versions())
    pages.record_command(data, "trim_speed.py", argv)
    out.mkdir(parents=True, exist_ok=True)
    for engine, dtype in ENGINES:
        for beams in BEAMS:
            for lengths in LENGTHS:
                name = cell_name(engine, dtype, beams, lengths)
                if name in data["cells"]:
                    continue
                print(f"== {name}", flush=True)
                data["cells"][name] = run_cell(a, engine, dtype, beams, lengths)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, indent=1) + "\n")
                os.replace(tmp, path)  # after every cell: a killed run resumes at the next
                write_page(data, out)
    print((out / "README.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
