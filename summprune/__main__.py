"""Command line: ``python -m summprune {run,prune,export,report,random-model,plan} ...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import ConfigError, load_config


def _cmd_run(a) -> int:
    from .pipeline import run

    cfg = load_config(a.config, a.overrides)
    run(cfg, overwrite=a.overwrite, command=a.command)
    return 0


def _cmd_prune(a) -> int:
    from . import sparsity as S
    from .pipeline import prune_existing

    overrides = list(a.overrides)
    cfg = load_config(a.config, overrides)
    if not Path(a.model).is_dir():
        raise FileNotFoundError(f"--model {a.model}: model directory not found")
    info = prune_existing(a.model, cfg, a.output, train=not a.no_train, overwrite=a.overwrite, command=a.command)
    fin = info["final"]
    print(S.format_table(fin))
    print(f"wrote {a.output} (pruning.json: {len(info['stages'])} stages)")
    return 0


def _cmd_export(a) -> int:
    from .export import export_model
    from .io.files import lock_output

    trim = None
    if a.trim_vocab is not None:
        from .inputs import trim_spec

        trim = trim_spec(a.trim_vocab, a.model, a.format, a.trim_min_count, a.prefix)  # checked before any loading
    elif a.trim_min_count is not None or a.prefix is not None:
        raise ValueError("--trim-min-count and --prefix apply to --trim-vocab DATA only")
    with lock_output(a.output):
        export_model(a.model, a.output, format=a.format, dtype=a.dtype, trim=trim)
    if trim is not None:
        from .io.files import read_json
        from .vocab import MAP_FILE

        rec = read_json(Path(a.output) / MAP_FILE)
        print(f"vocabulary trimmed to {rec['vocab_size']:,} of {rec['original_vocab_size']:,} tokens "
              f"(min count {rec['min_count']} in {rec['documents']:,} documents of {a.trim_vocab}); "
              f"parameters {rec['params']['before']:,} -> {rec['params']['after']:,}; mapping in {MAP_FILE}")
        below = rec["dropped_occurring"]
        if below["occurrences"]:
            print(f"warning: {below['occurrences']:,} token occurrences in the data ({below['distinct']:,} distinct "
                  f"tokens) are below --trim-min-count {rec['min_count']}: such text is now split into kept pieces "
                  "or read as <unk>", file=sys.stderr)
    print(f"wrote {a.output} ({a.format}, {a.dtype})")
    return 0


def _cmd_report(a) -> int:
    from . import sparsity as S
    from .card import card_for_report
    from .export import load_model
    from .summary import format_summary, original_from, summarize

    original, source = original_from(a.model, a.original)  # --original checked before the model loads
    model = load_model(a.model)
    rep = summarize(model, a.model if Path(a.model).is_dir() else None, original, source)
    recorded = S.recorded_mask_ratio(a.model, warn=lambda m: print(m, file=sys.stderr))
    if recorded is not None:
        rep["mask_ratio"] = recorded  # masks are gone once saved; this is the ratio at export
    print(format_summary(rep))
    if Path(a.model).is_dir():
        print(f"\nmodel card ({Path(a.model) / 'README.md'}, written at export; made now where missing):\n")
        print(card_for_report(model, a.model))
    return 0


def _cmd_random(a) -> int:
    from .io.files import atomic_dir, check_output
    from .io.hf import TokenizerFiles, meta_model, tokenizer_files
    from .modeling import random_model_from_config

    src = Path(a.config_dir)
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"--config-dir {a.config_dir}: no config.json there")
    out = check_output(a.output)
    meta_model(src)  # config.json's sizes checked before the model is allocated
    files = tokenizer_files(src)  # none: a config-only directory, the model still serves for counting
    tokenizer = TokenizerFiles(files) if files else None  # refuses a broken or symlinked-out file
    model = random_model_from_config(src, seed=a.seed)
    # atomically, and with a normal file's mode (safetensors alone writes 0600)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
    print(f"wrote a randomly initialised model of {a.config_dir}'s shape to {a.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m summprune",
                                description="Compress an encoder-decoder summarizer: run a config end to end, "
                                            "prune a saved model, export it, report its sparsity, make a "
                                            "random model of a config's shape, or plan a cut on this machine.")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="fine-tune -> prune in stages -> export, as one config says")
    r.add_argument("config", help="experiment TOML, e.g. configs/smoke.toml")
    r.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=1")
    r.add_argument("--overwrite", action="store_true",
                   help="start the run folder again when it holds a run of another config (a matching "
                        "fine-tuned model is kept); without it a killed run of the same config continues")
    r.set_defaults(fn=_cmd_run)

    q = sub.add_parser("prune", help="apply a config's recipe to a saved model")
    q.add_argument("--model", required=True, help="model directory (hf or compact format)")
    q.add_argument("--config", required=True, help="experiment TOML holding the recipe")
    q.add_argument("--output", required=True, help="directory to write the pruned model to")
    q.add_argument("--no-train", action="store_true", help="skip recovery fine-tuning (checks counts)")
    q.add_argument("--overwrite", action="store_true",
                   help="start again when <output>.trainer/ holds the checkpoints of another model or config; "
                        "without it a killed prune of the same model and config continues after its last step")
    q.add_argument("overrides", nargs="*", help="key=value overrides")
    q.set_defaults(fn=_cmd_prune)

    e = sub.add_parser("export", help="convert a model directory to the compact, hf or course format")
    e.add_argument("--model", required=True, help="model directory (any format) or hub name")
    e.add_argument("--output", required=True, help="directory to write")
    from .export import FORMATS, stored_dtypes  # the registry: a registered format is a choice here too

    e.add_argument("--format", choices=list(FORMATS), default="compact",
                   help="compact: non-zeros + bitmask (small); hf: save_pretrained; course: hf + "
                        "model_state_dict.pth, what the course's grader reads")
    e.add_argument("--dtype", choices=stored_dtypes(), default="fp32",
                   help="value dtype of the compact format: fp32 is bit-exact; fp16/bf16 round every value; "
                        "int8 stores each matrix row as int8 times a scale (zeros exact, the smallest file)")
    e.add_argument("--trim-vocab", metavar="DATA", default=None,
                   help="trim the vocabulary to the tokens of DATA's train split (a folder with train.jsonl, a "
                        "file, or a hub name; inputs with the prefix, and summaries) plus every special token: a "
                        "smaller embedding and lm_head for one domain; not for the course's submission")
    e.add_argument("--trim-min-count", type=int, default=None, metavar="N",
                   help="with --trim-vocab: keep a token occurring at least N times (default 1)")
    e.add_argument("--prefix", default=None,
                   help="with --trim-vocab: the input prefix (default: the model's pruning.json data.prefix, "
                        "else its family's convention, 'summarize: ' for T5)")
    e.set_defaults(fn=_cmd_export)

    s = sub.add_parser("report", help="print a saved model's shape, parameters against the original, stored dtype "
                                      "and size, and mask_ratio / nonzero_ratio per group")
    s.add_argument("--model", required=True, help="model directory (any format)")
    s.add_argument("--original", default=None, metavar="DIR",
                   help="the model it was pruned from (a model directory; only its config.json is read), where "
                        "its pruning.json does not record it (default: what pruning.json records, if anything)")
    s.set_defaults(fn=_cmd_report)

    m = sub.add_parser("random-model", help="save a random model of a config's shape (benchmarks)")
    m.add_argument("--config-dir", default="../shared/t5-small",
                   help="directory holding the config.json to copy the shape of; its tokenizer files, if any, "
                        "are copied too (default: %(default)s, relative to the current directory: the real "
                        "t5-small config and tokenizer beside a checkout)")
    m.add_argument("--output", required=True, help="directory to write the model to")
    m.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    m.set_defaults(fn=_cmd_random)

    from .plan import add_parser as add_plan_parser  # `plan`: its arguments and command live in summprune/plan.py

    add_plan_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may come before or after the flags (``run CONFIG --overwrite k=v``):
    # argparse stops a positional list at the first flag and leaves the rest unrecognized, and
    # its parse_intermixed_args does not take subcommands, so the leftovers that are overrides
    # join the command's own
    argv = sys.argv[1:] if argv is None else list(argv)
    a, extra = parser.parse_known_args(argv)
    # what pruning.json and the model card record as the command that made a model
    import shlex

    a.command = "python -m summprune " + shlex.join(argv)
    odd = [x for x in extra if x.startswith("-") or "=" not in x or not hasattr(a, "overrides")]
    if odd:
        parser.error(f"unrecognized arguments: {' '.join(odd)}")
    if extra:
        a.overrides = [*a.overrides, *extra]
    try:
        return a.fn(a)
    except (ConfigError, ValueError, OSError) as e:  # FileNotFoundError, FileExistsError, PermissionError, ...
        print(f"summprune {a.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"summprune {a.cmd}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
