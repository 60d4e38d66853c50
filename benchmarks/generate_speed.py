"""Summary generation speed: the course's Seq2SeqTrainer.predict vs summprune.generate, one process.

    python benchmarks/generate_speed.py                 # 20 real BillSum docs, ~2-3 min on 2 cores
    python benchmarks/generate_speed.py --docs 8 --skip-reference --batch-sizes 8

Both sides run the same random t5-small-shaped model (``--config-dir``: config + real tokenizer,
no weights needed; embedding scaled by ``--embed-scale`` so outputs are not all ``<pad>``) on the same real BillSum test documents (``--data``), tokenized the same way
(``"summarize: " + text``, truncated to 1024 tokens) and decoded the same way
(``batch_decode(..., skip_special_tokens=True)``). Random weights would stop at random points, so
every document is forced to the full length on both sides: ``max_length=128`` (what
``generation_max_length=128`` passes to ``generate``: the decoder length including its start
token, so 127 new tokens) and ``min_new_tokens=127`` (EOS is masked until then).

1. reference: ``Seq2SeqTrainer.predict`` with ``per_device_eval_batch_size=2,
   predict_with_generate=True, generation_max_length=128``, padded by ``DataCollatorForSeq2Seq``,
   on the test set tokenized as the course does it, summaries as labels included
   (``summprune.data.tokenize``). With labels, ``predict`` also runs a loss forward pass (the
   encoder once more) per batch. Without them it cannot run at all in transformers 5: the
   collator returns ``labels=None``, which ``prediction_step`` takes for labels.
2. ours: ``generate_summaries`` (length-sorted batches, inference_mode) at each ``--batch-sizes``;
   the fastest is the one compared. Every batch size must give outputs identical to (1).
3. the opt-in fast paths (``--dtypes``, default bf16 and int8) at that batch size: speed-up vs
   (1) and how many documents differ from the fp32 output. On a random model logits are nearly
   tied, so any rounding change flips some token and the rest of the summary diverges; a
   trained model's margins are wider, so expect fewer differences there (measure with
   score_result.py on real checkpoints).

The machine's load average is printed before and after: on shared CPUs, compare the numbers of
one run with each other, not across runs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "summarize: "
MAX_SOURCE = 1024
# a run whose threads kept the CPUs under this share busy is flagged: other jobs took them
BUSY_FLOOR = 0.85


@dataclass
class Run:
    name: str
    wall: float  # seconds
    cpu: float  # this process's CPU seconds (all threads): cpu / (wall * threads) shows contention
    out: list[str]


class _Clock:
    def __enter__(self):
        self.t, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.t, time.process_time() - self.c


def reference(model, tok, rows, max_length: int, batch_size: int = 2) -> Run:
    """The course's way: Seq2SeqTrainer.predict(predict_with_generate) at eval batch 2 (the
    course's; ``batch_size`` another, to separate what batching gives from the rest) on the
    tokenized test set (inputs and labels, as summprune.data.tokenize makes them)."""
    import numpy as np
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    from summprune.data import tokenize

    ds = tokenize(rows, tok, PREFIX, MAX_SOURCE, max_length)
    with tempfile.TemporaryDirectory() as out_dir:
        args = Seq2SeqTrainingArguments(output_dir=out_dir, per_device_eval_batch_size=batch_size,
                                        predict_with_generate=True, generation_max_length=max_length,
                                        report_to=[], disable_tqdm=True, use_cpu=True)
        trainer = Seq2SeqTrainer(model=model, args=args, processing_class=tok,
                                 data_collator=DataCollatorForSeq2Seq(tok, model=model))
        with _Clock() as clock:
            pred = trainer.predict(ds, min_new_tokens=max_length - 1)
    ids = np.where(pred.predictions != -100, pred.predictions, tok.pad_token_id)
    return Run(f"reference (Trainer, bs {batch_size})", clock.wall, clock.cpu, tok.batch_decode(ids, skip_special_tokens=True))


def ours(model, tok, texts: list[str], max_length: int, batch_size: int, dtype: str = "fp32", name: str = "",
         **decoding) -> Run:
    """generate_summaries (what generate_csv.py runs) with the torch engine, or with the
    CTranslate2 engine when ``model`` is a ``summprune.ct2.Ct2Model`` (its dtype is its own)."""
    from summprune.generate import generate_summaries

    with _Clock() as clock:
        out = generate_summaries(model, tok, texts, prefix=PREFIX, max_source_length=MAX_SOURCE,
                                 max_length=max_length, min_new_tokens=max_length - 1,
                                 batch_size=batch_size, dtype=dtype, device="cpu", progress=False, **decoding)
    return Run(name or f"ours {dtype}, bs {batch_size}", clock.wall, clock.cpu, [out[i] for i in range(len(texts))])


def ct2_model(model, tok, work: Path, dtype: str, threads: int):
    """``model`` saved as a directory and loaded by the CTranslate2 engine (converted once)."""
    from summprune.ct2 import Ct2Model

    d = work / f"model-{id(model)}"
    if not d.is_dir():
        model.save_pretrained(str(d))
        tok.save_pretrained(str(d))
    return Ct2Model.from_dir(d, tok, dtype=dtype, threads=threads)


def differ(a: list[str], b: list[str]) -> tuple[int, float]:
    """Documents whose texts differ, and the mean share of words before the first difference."""
    n_diff, shares = 0, []
    for x, y in zip(a, b):
        wx, wy = x.split(), y.split()
        k = next((i for i, (p, q) in enumerate(zip(wx, wy)) if p != q), min(len(wx), len(wy)))
        n_diff += x != y
        shares.append(1.0 if x == y else k / max(len(wx), len(wy), 1))
    return n_diff, sum(shares) / max(len(shares), 1)


def line(r: Run, n: int, ref: Run | None, threads: int) -> str:
    """Wall time, throughput, how busy our threads kept the CPUs (well under 100%: other jobs
    took them and the times are inflated), and the speed-up over the reference."""
    s = (f"{r.name:<26} {r.wall:6.1f} s  {r.wall / n:6.3f} s/doc  {n / r.wall:5.2f} docs/s  "
         f"{r.cpu / (r.wall * threads):4.0%} busy")
    if ref is not None and ref is not r:
        s += f"  {ref.wall / r.wall:5.2f}x vs reference"
    return s


def trained_agreement(args) -> list[dict]:
    """Both engines on trained models (real end-of-summary decisions, which random weights do not
    make): identical summaries and course scores, greedy and beams, on held-out documents."""
    import json
    import torch

    from summprune.ct2 import Ct2Model
    from summprune.data import load_split
    from summprune.export import load_model
    from summprune.generate import generate_summaries
    from summprune.metrics import kaggle_score
    from summprune.modeling import load_tokenizer

    rows = load_split(args.trained_data, "test", columns=("text", "summary"))
    rows = rows.select(range(min(args.trained_docs, len(rows))))
    texts, refs = list(rows["text"]), list(rows["summary"])
    out = []
    for d in args.trained:
        info = Path(d) / "pruning.json"
        rec = json.loads(info.read_text()).get("data", {}) if info.is_file() else {}
        kw = dict(prefix=rec.get("prefix", PREFIX), max_source_length=rec.get("max_source_length", args.trained_max_source),
                  batch_size=16, progress=False)
        tok = load_tokenizer(d)
        engines = {"torch": load_model(d), "ctranslate2": Ct2Model.from_dir(d, tok, threads=torch.get_num_threads())}
        for name, dec in (("greedy", {}), (f"beams{args.beams}_norepeat{args.no_repeat}",
                                           {"num_beams": args.beams, "no_repeat_ngram_size": args.no_repeat})):
            res = {}
            for eng, m in engines.items():
                with _Clock() as clock:
                    g = generate_summaries(m, tok, texts, max_length=args.max_length, **kw, **dec)
                res[eng] = ([g[i] for i in range(len(texts))], clock.wall)
            (t_out, t_s), (c_out, c_s) = res["torch"], res["ctranslate2"]
            kt, kc = kaggle_score(t_out, refs), kaggle_score(c_out, refs)
            r = {"model": str(d), "decoding": name, "docs": len(texts), "identical": sum(a == b for a, b in zip(t_out, c_out)),
                 "kaggle_torch": kt, "kaggle_ctranslate2": kc, "kaggle_diff": kc - kt,
                 "s_per_doc_torch": t_s / len(texts), "s_per_doc_ctranslate2": c_s / len(texts)}
            out.append(r)
            print(f"trained {d} {name}: identical {r['identical']}/{len(texts)}; course torch {kt:.4f} "
                  f"ctranslate2 {kc:.4f} (diff {kc - kt:+.4f}); {t_s / len(texts):.3f} vs {c_s / len(texts):.3f} s/doc",
                  flush=True)
    return out


def write_page(report: dict, out: Path) -> Path:
    """README.md of the results folder: every run of ``report`` in one table, and the trained
    models' agreement (``report['trained']``, or ``trained.json`` beside it)."""
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import pages

    flagged = set(report.get("flagged_busy") or [])
    rows = ["| run | group | s/doc | speed-up vs torch | vs the reference | vs dense, same engine | identical to torch "
            "| CPU busy |", "|---|---|---|---|---|---|---|---|"]
    for name, r in report.get("runs", {}).items():
        same = r.get("identical_to_torch_structured", r.get("identical_to_torch"))
        same_s = "-" if same is None else f"{same}/{r.get('docs', '?')}"
        ref = f"{r['speedup_vs_reference']:.2f}x" if r.get("speedup_vs_reference") else "-"
        same_x = r.get("speedup_vs_dense_same_engine")
        if same_x is None and name.startswith("torch") and str(r.get("group", "")).startswith("structured"):
            same_x = r.get("speedup_vs_torch")  # the torch rows' base is the dense torch run
        same_eng = f"{same_x:.2f}x" if same_x else "-"
        busy = "not recorded" if r.get("cpu_busy") is None else f"{r['cpu_busy']:.0%}"
        if name in flagged:
            busy += " **flagged**"
        rows.append(f"| {name} | {r.get('group', '-')} | {r['s_per_doc']:.3f} | {r.get('speedup_vs_torch', 0):.2f}x | "
                    f"{ref} | {same_eng} | {same_s} | {busy} |")
    if flagged:
        rows += ["", f"**Flagged** ({len(flagged)} rows): the run found its threads under {BUSY_FLOOR:.0%} busy "
                 "there (other jobs on the CPUs, or an engine leaving a core idle); their times may be "
                 "inflated, so quote them with the flag."]
    if report.get("flagged_note"):
        rows += ["", report["flagged_note"]]
    trained = report.get("trained")
    if trained is None and (out / "trained.json").is_file():
        trained = json.loads((out / "trained.json").read_text()).get("trained")
    if trained:
        rows += ["", "Trained models (the decoding study's smoke models), both engines on held-out documents:", "",
                 "| model | decoding | docs | identical | course torch | course CTranslate2 | s/doc torch | s/doc CTranslate2 |",
                 "|---|---|---|---|---|---|---|---|"]
        for t in trained:
            rows.append(f"| {t['model']} | {t['decoding']} | {t['docs']} | {t['identical']} | {t['kaggle_torch']:.4f} | "
                        f"{t['kaggle_ctranslate2']:.4f} | {t['s_per_doc_torch']:.3f} | {t['s_per_doc_ctranslate2']:.3f} |")
    settings = {k: report[k] for k in ("docs", "threads", "batch_size", "max_length") if k in report}
    if "max_length" in report:  # random weights never stop early: every summary is forced to full length
        settings["new tokens (forced)"] = report["max_length"] - 1
    if report.get("versions"):
        settings["versions"] = report["versions"] if isinstance(report["versions"], str) else \
            ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    return pages.write_readme(out, "Generation speed: torch and CTranslate2", "generate_speed.py",
                              report.get("command") or "python benchmarks/generate_speed.py --threads 2 --json "
                              "docs/results/generate_speed/results.json", "\n".join(rows),
                              settings=settings, page_only="--page-only --json FILE",
                              note="Random weights of the t5-small shape. 'identical to torch': to torch fp32 of the "
                                   "same group (the structured CTranslate2 rows: to the structured torch model). The "
                                   "beam rows and their identity counts are discussed in docs/formats-and-engines.md."
                                   + (" output.txt is the console output of the measured run." if (out / "output.txt")
                                      .is_file() else " The console output of the run was not kept."))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="generate_speed.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "billsum" / "us_test_sample.jsonl"),
                   help="JSONL with text and summary fields (default: ../shared/billsum/us_test_sample.jsonl)")
    p.add_argument("--config-dir", default=str(ROOT.parent / "shared" / "t5-small"),
                   help="model config.json + tokenizer (default: ../shared/t5-small)")
    p.add_argument("--docs", type=int, default=20)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-sizes", default="4,8,16", help="ours: comma-separated batch sizes to try")
    p.add_argument("--dtypes", default="bf16,int8", help="fast paths to time ('' = none)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--engines", default="torch,ctranslate2", help="'torch' alone skips the CTranslate2 rows")
    p.add_argument("--ct2-dtypes", default="fp32,int8", help="CTranslate2 compute types to time")
    p.add_argument("--beam-docs", type=int, default=8, help="documents of the beam-search comparison (0 = skip)")
    p.add_argument("--beams", type=int, default=4)
    p.add_argument("--no-repeat", type=int, default=3, help="no_repeat_ngram_size of the beam comparison")
    p.add_argument("--structured", nargs="*", default=["4,3,0.5,0.5"],
                   help="structured variants timed through both engines, greedy and (with --beam-docs) beams: "
                        "each 'E,D,F,H' = encoder blocks, decoder blocks, FFN and head fractions kept "
                        "(none or '' = skip)")
    p.add_argument("--json", default=None, help="also write every run to this JSON file (and README.md beside it)")
    p.add_argument("--page-only", action="store_true",
                   help="rewrite README.md beside --json from that file (and trained.json beside it); measure nothing")
    p.add_argument("--trained", nargs="*", default=[],
                   help="trained model directories (e.g. runs/decoding_study/seed0/model): course scores of "
                        "both engines, greedy and beams, on --trained-data's test split")
    p.add_argument("--trained-data", default="synthetic", help="data of the --trained models' test split")
    p.add_argument("--trained-docs", type=int, default=100)
    p.add_argument("--trained-max-source", type=int, default=256,
                   help="input tokens of the --trained models when their pruning.json does not record it")
    p.add_argument("--trained-only", action="store_true", help="only the --trained comparison")
    p.add_argument("--embed-scale", type=float, default=0.03,
                   help="multiply the random model's (tied) embedding by this. At T5's random init "
                        "the embedding dominates the decoder, so every step predicts its own input "
                        "token: <pad> forever, which decodes to '' and would make the identity check "
                        "vacuous. Scaled down, the encoder steers the output through cross-attention "
                        "and documents get different, non-empty summaries. Speed is unaffected.")
    args = p.parse_args(argv)

    if args.page_only:
        if not args.json:
            p.error("--page-only needs --json (the results file to read)")
        import json

        write_page(json.loads(Path(args.json).read_text()), Path(args.json).parent)
        return 0

    import datasets
    import torch
    import transformers

    if args.trained_only:
        if args.threads:
            torch.set_num_threads(args.threads)
        report = {"trained": trained_agreement(args)}
        if args.json:
            import json

            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
            print(f"wrote {args.json}")
        return 0

    from summprune.data import load_split
    from summprune.modeling import load_tokenizer, random_model_from_config

    for what, path in (("--data", Path(args.data)), ("--config-dir", Path(args.config_dir) / "config.json")):
        if not path.is_file():
            print(f"generate_speed.py: error: {what}: {path} not found", file=sys.stderr)
            return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    rows = load_split(args.data, "test", columns=("text", "summary"))
    rows = rows.select(range(min(args.docs, len(rows))))
    texts = list(rows["text"])
    n = len(texts)
    tok = load_tokenizer(args.config_dir)
    model = random_model_from_config(args.config_dir).eval()
    with torch.no_grad():  # see --embed-scale
        model.shared.weight.mul_(args.embed_scale)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    lengths = [min(len(ids), MAX_SOURCE) for ids in tok([PREFIX + t for t in texts])["input_ids"]]
    print(f"{n} docs from {args.data}; source tokens (truncated to {MAX_SOURCE}): "
          f"min {min(lengths)} mean {sum(lengths) / n:.0f} max {max(lengths)}")
    print(f"model: random t5-small shape ({sum(t.numel() for t in model.parameters()):,} params), "
          f"attn={model.config._attn_implementation}; torch {torch.__version__}, "
          f"transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"every doc forced to max_length={args.max_length} ({args.max_length - 1} new tokens), greedy")

    ours(model, tok, texts[:2], 8, 2)  # warm-up (kernel selection, allocator) for both sides
    threads = torch.get_num_threads()

    ref = None
    if not args.skip_reference:
        ref = reference(model, tok, rows, args.max_length)
        print(line(ref, n, ref, threads), flush=True)

    runs = []
    for bs in batch_sizes:
        r = ours(model, tok, texts, args.max_length, bs)
        runs.append(r)
        print(line(r, n, ref, threads)
              + (f"  differ from reference: {differ(r.out, ref.out)[0]}/{n}" if ref else ""), flush=True)
    best = min(runs, key=lambda r: r.wall)
    all_runs = ([ref] if ref else []) + runs
    bs = batch_sizes[runs.index(best)]
    print(f"   fp32 summaries: {len(set(best.out))} distinct of {n}, "
          f"{sum(len(set(t.split())) for t in best.out) / n:.1f} distinct words each on average, "
          f"{sum(not t for t in best.out)} empty (random weights: repetitive, but document-dependent)")
    mismatched = [r.name for r in runs if ref and differ(r.out, ref.out)[0]]
    if ref:
        n_diff = differ(best.out, ref.out)[0]
        print(f"-> ours: batch size {bs}: {ref.wall / best.wall:.2f}x the reference's speed; "
              f"identical outputs: {n - n_diff}/{n}"
              + ("" if n_diff == 0 else "  <-- MISMATCH"))

    for dtype in dtypes:
        try:
            r = ours(model, tok, texts, args.max_length, bs, dtype=dtype)
        except (ValueError, RuntimeError) as e:
            print(f"ours {dtype}: skipped ({e})")
            continue
        all_runs.append(r)
        n_diff_fast, share = differ(r.out, best.out)
        print(line(r, n, ref, threads) + f"  differ from fp32: {n_diff_fast}/{n} docs; words before "
                                         f"the first difference: {share:.0%}", flush=True)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    ct2_dtypes = [d.strip() for d in args.ct2_dtypes.split(",") if d.strip()] if "ctranslate2" in engines else []
    report = {"docs": n, "threads": threads, "batch_size": bs, "max_length": args.max_length, "runs": {}}

    def keep(r: Run, group: str, base: Run, ref_run: Run | None = None) -> None:
        n_diff, share = differ(r.out, base.out)
        report["runs"][r.name] = {"group": group, "s_per_doc": r.wall / len(r.out), "wall_s": r.wall,
                                  # under BUSY_FLOOR: other jobs took the CPUs and the row's time is inflated
                                  "cpu_busy": round(r.cpu / (r.wall * threads), 3),
                                  "speedup_vs_torch": base.wall / r.wall, "identical_to_torch": len(r.out) - n_diff,
                                  "docs": len(r.out), "shared_words_before_first_difference": share,
                                  **({"speedup_vs_reference": ref_run.wall / r.wall} if ref_run else {})}

    keep(best, "greedy", best, ref)
    if ref:
        keep(ref, "greedy", best, ref)
        # the reference at our batch size: what batching alone gives
        ref_bs = reference(model, tok, rows, args.max_length, batch_size=bs)
        all_runs.append(ref_bs)
        print(line(ref_bs, n, ref, threads) + f"  differ from ours: {differ(ref_bs.out, best.out)[0]}/{n}", flush=True)
        keep(ref_bs, "greedy", best, ref)
    dense_ct2: dict[tuple[str, str], Run] = {}  # (greedy|beams, dtype) -> the dense model's CTranslate2 run

    def vs_ct2(r: Run, mode: str, dtype: str) -> None:
        """The structured run against the dense model on the same engine, dtype and decoding."""
        base = dense_ct2.get((mode, dtype))
        if base is not None:
            report["runs"][r.name]["speedup_vs_dense_same_engine"] = base.wall / r.wall

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        os.environ["SUMMPRUNE_CACHE"] = str(work / "cache")  # conversions of this run's random models only
        for dtype in ct2_dtypes:  # greedy through CTranslate2, same docs and batches
            r = ours(ct2_model(model, tok, work, dtype, threads), tok, texts, args.max_length, bs,
                     name=f"ctranslate2 {dtype}, bs {bs}")
            all_runs.append(r)
            keep(r, "greedy", best, ref)
            dense_ct2[("greedy", dtype)] = r
            print(line(r, n, ref, threads) + f"  {best.wall / r.wall:.2f}x torch fp32; identical to torch fp32: "
                  f"{n - differ(r.out, best.out)[0]}/{n}", flush=True)
            if dtype == "fp32" and differ(r.out, best.out)[0]:
                mismatched.append(r.name)
        bt = texts[: args.beam_docs]
        dec = {"num_beams": args.beams, "no_repeat_ngram_size": args.no_repeat}
        if args.beam_docs:
            print(f"beam search: {len(bt)} docs, {args.beams} beams, no_repeat_ngram_size {args.no_repeat}, "
                  f"forced to {args.max_length - 1} new tokens, batch {bs}")
            tb = ours(model, tok, bt, args.max_length, bs, name=f"torch fp32 beams{args.beams}", **dec)
            all_runs.append(tb)
            keep(tb, "beams", tb)
            print(line(tb, len(bt), None, threads), flush=True)
            for dtype in ct2_dtypes:
                r = ours(ct2_model(model, tok, work, dtype, threads), tok, bt, args.max_length, bs,
                         name=f"ctranslate2 {dtype} beams{args.beams}", **dec)
                all_runs.append(r)
                keep(r, "beams", tb)
                dense_ct2[("beams", dtype)] = r
                print(line(r, len(bt), None, threads) + f"  {tb.wall / r.wall:.2f}x torch beams; identical: "
                      f"{len(bt) - differ(r.out, tb.out)[0]}/{len(bt)}", flush=True)
        for spec in (x for x in args.structured if x.strip()):
            from summprune.methods.structured import shrink

            enc, dec_l, ffn, heads = (float(x) for x in spec.split(","))
            small, _ = shrink(model, importance="weight", ffn_keep=ffn, heads_keep=heads,
                              encoder_layers=int(enc), decoder_layers=int(dec_l))
            small.eval()
            label = f"structured {int(enc)}+{int(dec_l)} L, ffn {ffn:g}, heads {heads:g}"
            ts = ours(small, tok, texts, args.max_length, bs, name=f"torch fp32 {label}")
            all_runs.append(ts)
            keep(ts, "structured", best, ref)
            print(line(ts, n, ref, threads) + f"  {best.wall / ts.wall:.2f}x dense torch", flush=True)
            for dtype in ct2_dtypes:
                r = ours(ct2_model(small, tok, work, dtype, threads), tok, texts, args.max_length, bs,
                         name=f"ctranslate2 {dtype} {label}")
                all_runs.append(r)
                keep(r, "structured", best, ref)
                n_same = n - differ(r.out, ts.out)[0]
                report["runs"][r.name]["identical_to_torch_structured"] = n_same
                vs_ct2(r, "greedy", dtype)
                print(line(r, n, ref, threads) + f"  {best.wall / r.wall:.2f}x dense torch, {ts.wall / r.wall:.2f}x "
                      f"structured torch; identical to structured torch: {n_same}/{n}", flush=True)
                if dtype == "fp32" and n_same != n:
                    mismatched.append(r.name)
            if args.beam_docs:
                # the same beams as the dense rows above: the decoder runs once per beam, so depth cuts pay more
                sb = ours(small, tok, bt, args.max_length, bs, name=f"torch fp32 beams{args.beams} {label}", **dec)
                all_runs.append(sb)
                keep(sb, "structured beams", tb)
                print(line(sb, len(bt), None, threads) + f"  {tb.wall / sb.wall:.2f}x dense torch beams", flush=True)
                for dtype in ct2_dtypes:
                    r = ours(ct2_model(small, tok, work, dtype, threads), tok, bt, args.max_length, bs,
                             name=f"ctranslate2 {dtype} beams{args.beams} {label}", **dec)
                    all_runs.append(r)
                    keep(r, "structured beams", tb)
                    n_same = len(bt) - differ(r.out, sb.out)[0]
                    report["runs"][r.name]["identical_to_torch_structured"] = n_same
                    vs_ct2(r, "beams", dtype)
                    print(line(r, len(bt), None, threads) + f"  {tb.wall / r.wall:.2f}x dense torch beams, "
                          f"{sb.wall / r.wall:.2f}x structured torch beams", flush=True)
    if args.trained:
        report["trained"] = trained_agreement(args)
    starved = [r.name for r in all_runs if r.cpu < BUSY_FLOOR * r.wall * threads]
    report["flagged_busy"] = starved  # kept in the file, so every page and quote can carry the flag
    import pages

    report["versions"] = pages.versions()
    if args.json:
        import json

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        report["command"] = "python benchmarks/generate_speed.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        write_page(report, Path(args.json).parent)
        print(f"wrote {args.json} and README.md beside it")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if starved:
        print(f"WARNING: other jobs took the CPUs during: {', '.join(starved)} (under {BUSY_FLOOR:.0%} busy); "
              "their times are inflated. Re-run on a quiet machine before quoting them.")
    if mismatched:
        print(f"FAILED: exact paths differ from the reference / torch fp32 in: {', '.join(mismatched)}")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
