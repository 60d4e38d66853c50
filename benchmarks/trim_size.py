"""What vocabulary trimming saves on the t5-small shape: parameters, non-zeros and file sizes of the
dense model and of one cut to an honest non-zero ratio, each untrimmed and trimmed to a data set's
training texts and summaries (``summprune.vocab``; the prefix ``summarize: ``).

Random weights of the t5-small shape with its real tokenizer (``--config-dir``), cut once with
uniform magnitude per group (``checkpoint_size.prune_to_target``: what gradual pruning ends with,
without the training), exported as hf and compact int8 by ``summprune.export.export_model``. The
ratios count against the dense model's parameters. Sizes are of the weight file and of the whole
folder (tokenizer, card and manifests included); MB = 10**6 bytes. It prints a table; nothing is
written outside a temporary directory.

    python benchmarks/trim_size.py --data ../shared/billsum/us_test_sample.jsonl [--target 0.3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "t5-small"))
    p.add_argument("--data", required=True, help="training texts and summaries (a file or a folder with train.jsonl)")
    p.add_argument("--target", type=float, default=0.3, help="honest non-zero ratio of the pruned model")
    a = p.parse_args(argv)

    import torch

    from checkpoint_size import prune_to_target
    from summprune import sparsity as S
    from summprune.export import export_model, load_model
    from summprune.io.files import dir_size
    from summprune.modeling import load_tokenizer, random_model_from_config
    from summprune.inputs import training_texts

    torch.set_num_threads(1)
    tok = load_tokenizer(a.config_dir)
    texts, summaries = training_texts(a.data)
    trim = {"texts": texts, "summaries": summaries, "prefix": "summarize: ", "source": str(a.data)}
    dense = random_model_from_config(a.config_dir, seed=0).eval()
    original = S.dense_param_count(dense)
    pruned = random_model_from_config(a.config_dir, seed=0).eval()
    prune_to_target(pruned, a.target)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in (("dense", dense), (f"honest {a.target}", pruned)):
            for trimmed in (False, True):
                for fmt, dtype, weights in (("hf", "fp32", "model.safetensors"),
                                            ("compact", "int8", "compact.safetensors")):
                    out = Path(tmp) / f"{name}-{trimmed}-{fmt}".replace(" ", "_")
                    export_model(model, out, format=fmt, dtype=dtype, tokenizer=tok, trim=trim if trimmed else None)
                    got = load_model(out)
                    rows.append((name, "trimmed" if trimmed else "full", f"{fmt} {dtype}", got.config.vocab_size,
                                 S.dense_param_count(got), S.nonzero_count(got), (out / weights).stat().st_size,
                                 dir_size(out)))
    print(f"t5-small shape ({a.config_dir}), trimmed to {len(texts)} documents and {len(summaries)} summaries of "
          f"{a.data}; ratios against the dense model's {original:,} parameters\n")
    print("| model | vocabulary | format | tokens | parameters | non-zero (vs dense) | weight file MB | folder MB |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for name, kind, fmt, vocab, params, nz, wbytes, dbytes in rows:
        print(f"| {name} | {kind} | {fmt} | {vocab:,} | {params:,} | {nz:,} ({nz / original:.4f}) | "
              f"{wbytes / 1e6:.1f} | {dbytes / 1e6:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
