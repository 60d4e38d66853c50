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
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "summarize: "
MAX_SOURCE = 1024


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


def reference(model, tok, rows, max_length: int) -> Run:
    """The course's way: Seq2SeqTrainer.predict(predict_with_generate) at eval batch 2 on the
    tokenized test set (inputs and labels, as summprune.data.tokenize makes them)."""
    import numpy as np
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    from summprune.data import tokenize

    ds = tokenize(rows, tok, PREFIX, MAX_SOURCE, max_length)
    with tempfile.TemporaryDirectory() as out_dir:
        args = Seq2SeqTrainingArguments(output_dir=out_dir, per_device_eval_batch_size=2,
                                        predict_with_generate=True, generation_max_length=max_length,
                                        report_to=[], disable_tqdm=True, use_cpu=True)
        trainer = Seq2SeqTrainer(model=model, args=args, processing_class=tok,
                                 data_collator=DataCollatorForSeq2Seq(tok, model=model))
        with _Clock() as clock:
            pred = trainer.predict(ds, min_new_tokens=max_length - 1)
    ids = np.where(pred.predictions != -100, pred.predictions, tok.pad_token_id)
    return Run("reference (Trainer, bs 2)", clock.wall, clock.cpu, tok.batch_decode(ids, skip_special_tokens=True))


def ours(model, tok, texts: list[str], max_length: int, batch_size: int, dtype: str = "fp32") -> Run:
    from summprune.generate import generate_summaries

    with _Clock() as clock:
        out = generate_summaries(model, tok, texts, prefix=PREFIX, max_source_length=MAX_SOURCE,
                                 max_length=max_length, min_new_tokens=max_length - 1,
                                 batch_size=batch_size, dtype=dtype, device="cpu", progress=False)
    return Run(f"ours {dtype}, bs {batch_size}", clock.wall, clock.cpu, [out[i] for i in range(len(texts))])


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
    p.add_argument("--embed-scale", type=float, default=0.03,
                   help="multiply the random model's (tied) embedding by this. At T5's random init "
                        "the embedding dominates the decoder, so every step predicts its own input "
                        "token: <pad> forever, which decodes to '' and would make the identity check "
                        "vacuous. Scaled down, the encoder steers the output through cross-attention "
                        "and documents get different, non-empty summaries. Speed is unaffected.")
    args = p.parse_args(argv)

    import datasets
    import torch
    import transformers

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
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    starved = [r.name for r in all_runs if r.cpu < 0.85 * r.wall * threads]
    if starved:
        print(f"WARNING: other jobs took the CPUs during: {', '.join(starved)} (under 85% busy); "
              "their times are inflated. Re-run on a quiet machine before quoting them.")
    if mismatched:
        print(f"FAILED: outputs differ from the reference in: {', '.join(mismatched)}")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
