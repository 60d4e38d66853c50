"""How many steps a small T5 needs before it can copy its input: the yardstick's reading problem.

    python benchmarks/copy_transition.py --layers 2 --length 32 --lr 3e-3 --steps 1000

Why: T5 has no absolute positions (its relative bias is in self-attention only), so copying the
input means an induction circuit: the encoder marks each token with the one before it, the decoder
looks up the token after the one it just wrote. A small model learns that circuit suddenly, after
a plateau: the loss of copying random tokens stays near log(ids) for hundreds of steps, then drops
to near zero. The yardstick's span-corruption pretraining never asked for it (every target token
is hidden from the input), and its fine-tuned models wrote the same summary whatever the input
(docs/yardstick.md). This measures the plateau for a shape and learning rate in minutes, on
random token sequences (no corpus needed): a reading phase must run past it.
Prints the running loss every ``--every`` steps; ``--out`` also writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def copy_curve(layers: int, d_model: int, heads: int, length: int, ids: int, lr: float, steps: int,
               batch_size: int = 32, warmup: int = 50, every: int = 50, seed: int = 0, init: str | None = None,
               save: str | None = None) -> list[dict]:
    """Train a T5 of this shape (the package's tiny-model builder, dropout off) to copy random
    sequences of ``length`` tokens drawn from ``ids`` ids; the loss every ``every`` steps. ``init``:
    start from these weights (a safetensors file of this shape, e.g. a yardstick checkpoint, whose
    vocabulary size is read from it); ``save``: write the weights there at the end."""
    from safetensors.torch import load_file, save_file

    from summprune.modeling import build_tiny_model

    state = load_file(init) if init else None
    vocab = state["shared.weight"].shape[0] if state else ids + 100
    model = build_tiny_model(vocab, d_model=d_model, layers=layers, heads=heads, d_ff=4 * d_model, seed=seed)
    if state:
        model.load_state_dict(state, strict=False)
        model.tie_weights()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    eos = torch.full((batch_size, 1), model.config.eos_token_id, dtype=torch.long)
    curve, t0 = [], time.time()
    for step in range(steps):
        x = torch.cat([torch.randint(100, 100 + ids, (batch_size, length), generator=gen), eos], 1)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / warmup)
        loss = model(input_ids=x, attention_mask=torch.ones_like(x), labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if (step + 1) % every == 0:
            curve.append({"step": step + 1, "loss": round(loss.item(), 3), "elapsed_s": round(time.time() - t0, 1)})
            print(f"step {step + 1:5d}  loss {loss.item():.3f}  ({time.time() - t0:.0f} s)", flush=True)
    if save:
        from yardstick import _own_tensors  # the checkpoints' layout: the tied copies left out

        save_file(_own_tensors(model), save + ".tmp")
        os.replace(save + ".tmp", save)
    return curve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=2, help="encoder and decoder blocks each")
    p.add_argument("--d-model", type=int, default=128, help="the yardstick's width")
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--length", type=int, default=32, help="tokens copied per example")
    p.add_argument("--ids", type=int, default=3000, help="distinct random token ids")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--every", type=int, default=50, help="print the loss every this many steps")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="also write the curve and settings here (JSON)")
    p.add_argument("--init", default=None, help="start from these weights (safetensors, this shape)")
    p.add_argument("--save", default=None, help="write the trained weights here (safetensors)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    curve = copy_curve(a.layers, a.d_model, a.heads, a.length, a.ids, a.lr, a.steps, a.batch_size, every=a.every,
                       init=a.init, save=a.save)
    if a.out:
        out = Path(a.out)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps({"settings": vars(a), "curve": curve}, indent=1) + "\n")
        os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
