"""Course metric: the plain-Python LCS (``kaggle_score_reference``) against ours (rapidfuzz),
timed in one run on the same synthetic input, with a check that they agree within 1e-9.

    python benchmarks/score_speed.py                      # 3,269 docs (BillSum test size)
    python benchmarks/score_speed.py --reference-docs 500 # reference on a subset, extrapolated
    python benchmarks/score_speed.py --rouge --workers 2  # also time summprune.metrics.rouge

The input is deterministic (``--seed``): pseudo-English words with a Zipf-like frequency;
references of 150-250 words with commas and periods, predictions of 60-128 words, part copied
from the reference in runs and part drawn at random.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from pathlib import Path

from summprune.metrics import kaggle_score_reference, kaggle_scores, rouge

BILLSUM_TEST_DOCS = 3269


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    onsets = ["b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "pr", "st", "tr"]
    vowels = ["a", "e", "i", "o", "u", "ea", "io"]
    suffixes = ["", "", "", "s", "ed", "ing", "tion", "ment", "al", "ly"]
    words = {"the", "of", "to", "and", "a", "in", "for", "or", "such", "any", "by", "shall"}
    while len(words) < size:
        stem = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(1, 3)))
        words.add(stem + rng.choice(suffixes))
    return sorted(words)


def synthetic_pairs(n_docs: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(predictions, references)``: deterministic for a given ``n_docs`` and ``seed``."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng, 4000)
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]
    preds, refs = [], []
    for _ in range(n_docs):
        words = rng.choices(vocab, weights, k=rng.randint(150, 250))
        ref = []
        for w in words:
            if not ref or ref[-1].endswith("."):
                w = w.capitalize()  # sentences start with a capital, as rougeLsum's splitter needs
            r = rng.random()
            ref.append(w + ("," if r < 0.05 else "." if r < 0.10 else ""))
        refs.append(" ".join(ref) + ".")
        k = rng.randint(60, 128)
        pred: list[str] = []
        while len(pred) < k:
            if rng.random() < 0.6:  # copy a run of the reference (commas and periods included)
                start = rng.randrange(len(ref))
                pred.extend(ref[start:start + rng.randint(3, 15)])
            else:
                pred.extend(rng.choices(vocab, weights, k=rng.randint(1, 6)))
        preds.append(" ".join(pred[:k]))
    return preds, refs


def _timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=BILLSUM_TEST_DOCS,
                    help="documents in the synthetic input (default: %(default)s, BillSum test)")
    ap.add_argument("--reference-docs", type=int, default=None, metavar="N",
                    help="time the plain-Python reference on the first N documents only and "
                         "extrapolate linearly to --docs (default: all; it takes ~10-20 s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rouge", action="store_true", help="also time summprune.metrics.rouge")
    ap.add_argument("--workers", type=int, default=1, help="processes for --rouge (default: 1)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "results" / "score_speed"),
                    help="where results.json and the README.md page are written ('' = nowhere)")
    a = ap.parse_args(argv)
    if a.docs < 1 or (a.reference_docs is not None and not 1 <= a.reference_docs <= a.docs):
        ap.error("need --docs >= 1 and 1 <= --reference-docs <= --docs")

    preds, refs = synthetic_pairs(a.docs, a.seed)
    n_ref = a.reference_docs or a.docs
    print(f"input: {a.docs} synthetic docs (seed {a.seed}); references "
          f"{sum(len(r.split()) for r in refs) / a.docs:.0f} words, predictions "
          f"{sum(len(p.split()) for p in preds) / a.docs:.0f} words on average")

    fast_scores, t_fast = _timed(kaggle_scores, preds, refs)
    fast = sum(fast_scores) / len(fast_scores)
    ref_score, t_ref = _timed(kaggle_score_reference, preds[:n_ref], refs[:n_ref])
    fast_sub = sum(fast_scores[:n_ref]) / n_ref
    diff = abs(ref_score - fast_sub)

    print(f"kaggle_score (rapidfuzz)      {a.docs:>6} docs  {t_fast:8.3f} s   score {fast:.12f}")
    if n_ref == a.docs:
        print(f"kaggle_score_reference (DP)   {n_ref:>6} docs  {t_ref:8.3f} s   score {ref_score:.12f}")
        t_ref_full = t_ref
    else:
        t_ref_full = t_ref * a.docs / n_ref
        print(f"kaggle_score_reference (DP)   {n_ref:>6} docs  {t_ref:8.3f} s   score {ref_score:.12f}"
              f"  (ours on the same docs: {fast_sub:.12f})")
        print(f"  EXTRAPOLATED to {a.docs} docs: {t_ref_full:.3f} s (measured on {n_ref} docs only)")
    print(f"speed-up: {t_ref_full / t_fast:.1f}x{' (extrapolated)' if n_ref != a.docs else ''}; "
          f"|difference| = {diff:.2e} ({'agree' if diff <= 1e-9 else 'DISAGREE'} within 1e-9)")

    res = {"command": "python benchmarks/score_speed.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
           "docs": a.docs, "seed": a.seed, "reference_docs": n_ref, "ours_seconds": round(t_fast, 4),
           "reference_seconds": round(t_ref, 4), "reference_seconds_full": round(t_ref_full, 4),
           "extrapolated": n_ref != a.docs, "speedup": round(t_ref_full / t_fast, 2), "difference": diff,
           "score": fast}
    if a.rouge:
        scores, t_rouge = _timed(rouge, preds, refs, workers=a.workers)
        print(f"rouge (rouge_score, stemmer) {a.docs:>6} docs  {t_rouge:8.3f} s   workers={a.workers}  "
              + " ".join(f"{k}={v:.4f}" for k, v in scores.items()))
        res.update(rouge_seconds=round(t_rouge, 3), rouge_workers=a.workers)
    if a.out:
        write_outputs(res, Path(a.out))
    return 0 if diff <= 1e-9 else 1


def write_outputs(res: dict, out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import pages

    res["machine"] = pages.machine()
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    ext = " (extrapolated from {} docs)".format(res["reference_docs"]) if res["extrapolated"] else ""
    rows = ["| scorer | docs | seconds | course score |", "|---|---|---|---|",
            f"| ours: `summprune.metrics.kaggle_scores` (rapidfuzz) | {res['docs']} | {res['ours_seconds']:.3f} | "
            f"{res['score']:.12f} |",
            f"| reference: plain-Python LCS (`kaggle_score_reference`) | {res['docs']} | "
            f"{res['reference_seconds_full']:.3f}{ext} | agrees within {res['difference']:.1e} |"]
    if "rouge_seconds" in res:
        rows.append(f"| ROUGE (`summprune.metrics.rouge`, rouge_score with stemmer, {res['rouge_workers']} worker(s)) | "
                    f"{res['docs']} | {res['rouge_seconds']:.3f} | - |")
    body = "\n".join(rows) + f"\n\nSpeed-up of ours over the reference: **{res['speedup']:.1f}x**, both timed in this run."
    pages.write_readme(out, "Course metric speed", "score_speed.py", res["command"], body,
                       settings={"input": f"{res['docs']} synthetic documents, seed {res['seed']}",
                                 **{k: v for k, v in res["machine"].items()}},
                       page_only=None)  # it re-measures in seconds


if __name__ == "__main__":
    sys.exit(main())
