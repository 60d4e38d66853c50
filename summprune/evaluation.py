"""Generate summaries for validation rows and score them: what a run logs after each step."""

from __future__ import annotations

import time
from typing import Any, Callable


def evaluate(model, tokenizer, rows, *, prefix: str, max_source_length: int, max_length: int,
             num_beams: int, batch_size: int, **decoding) -> dict:
    """Generate summaries for ``rows`` (text, summary) and score them (course metric + ROUGE).
    ``decoding``: the other options of ``generate_summaries`` (no_repeat_ngram_size, ...)."""
    from .generate import generate_summaries
    from .metrics import kaggle_score, rouge

    device = str(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    t0 = time.time()
    preds = generate_summaries(model, tokenizer, list(rows["text"]), prefix=prefix,
                               max_source_length=max_source_length, max_length=max_length,
                               num_beams=num_beams, batch_size=batch_size, device=device,
                               progress=False, **decoding)
    model.train(was_training)
    texts = [preds[i] for i in range(len(rows))]
    refs = list(rows["summary"])
    out = {"kaggle_score": kaggle_score(texts, refs), **rouge(texts, refs),
           "eval_docs": len(refs), "eval_s": round(time.time() - t0, 2)}
    out["example"] = texts[0][:300]
    # a small model that collapses emits EOS first: empty summaries, the usual cause of a score near 0
    out["empty"] = sum(not t.strip() for t in texts)
    return out


def evaluator(tokenizer, rows, *, prefix: str, max_source_length: int, batch_size: int, decoding: dict,
              state, log_print) -> Callable[[Any], dict]:
    """``evaluate_fn(model)`` for the driver: :func:`evaluate` on ``rows`` by the main process of
    ``state`` (accelerate's ``PartialState``; the others get ``{}``), its scores printed, every
    process waiting for it."""
    def evaluate_fn(model) -> dict:
        res = {}
        if state.is_main_process:
            res = evaluate(model, tokenizer, rows, prefix=prefix, max_source_length=max_source_length,
                           batch_size=batch_size, **decoding)
            log_print(f"  kaggle={res['kaggle_score']:.4f} rougeLsum={res['rougeLsum']:.4f} "
                      f"({res['eval_docs']} validation docs)")
        state.wait_for_everyone()
        return res

    return evaluate_fn
