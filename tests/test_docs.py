"""The documentation stays short, linked and true: the README's headline numbers are recomputed
from the results files the benchmarks wrote, every link resolves, every page under docs/ is
reachable from the README, and config headers stay a few lines."""

from __future__ import annotations

import json
import re
from pathlib import Path
from statistics import mean

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
RESULTS = ROOT / "docs" / "results"


def _json(rel: str) -> dict:
    return json.loads((RESULTS / rel).read_text(encoding="utf-8"))


def _headline_table() -> str:
    start = README.index("## Headline results")
    return README[start:README.index("\n## ", start + 1)]


def _pct_of_control(records: list[dict], method: str, target: float, steps: int, key: str = "method") -> float:
    ctrl = mean(r["kaggle_score"] for r in records if r[key] == "dense_control" and r["recovery_steps"] == steps)
    return 100 * mean(r["kaggle_score"] for r in records
                      if r[key] == method and r.get("target") == target and r["recovery_steps"] == steps) / ctrl


def _int8_cost(target: float) -> float:
    recs = [r for r in _json("int8_quality/results.json")["records"] if r["target"] == target]
    return mean(100 * (r["fp16"]["kaggle_score"] - r["int8"]["kaggle_score"]) / r["fp16"]["kaggle_score"] for r in recs)


S43 = "ctranslate2 int8 structured 4+3 L, ffn 0.5, heads 0.5"


def flag(data: dict, run: str, text: str = " (flagged)") -> str:
    """``text`` where the run that measured ``run`` flagged it as disturbed (threads under-busy)."""
    return text if run in data.get("flagged_busy", []) else ""


def _figures() -> list[tuple[str, str]]:
    """(what, the text the README's table must hold), each computed from a results file."""
    cs = _json("checkpoint_size/results.json")["targets"]
    gs = _json("generate_speed/results.json")["runs"]
    obs = _json("obs_step/results.json")
    sq = _json("sparsity_quality/results.json")["records"]
    fr = {(r["shape"], r["steps"], r["engine"], r["mode"]): r for r in _json("frontier/results.json")["rows"]}
    six3 = lambda engine, mode: fr[("6+3 L, ffn 1, heads 1", 400, engine, mode)]  # noqa: E731
    w43 = lambda engine, mode: fr[("4+3 L, ffn 0.5, heads 0.5", 1600, engine, mode)]  # noqa: E731
    gw = _json("generate_speed_width/results.json")["runs"]
    quiet = lambda run: gw[run + "structured 4+3 L, ffn 0.5, heads 0.5"]  # noqa: E731  (the quiet 1-thread timing)
    fr_dense = _json("frontier/results.json")["dense"]
    x = lambda engine, mode: f"{six3(engine, mode)['speedup_vs_dense_same_engine']:.2f}×"  # noqa: E731
    # a pair of same-engine ratios carries the flag where the speed run flagged either
    flagged = lambda engine: " (flagged)" if any(six3(engine, m)["speed_flagged"] for m in ("greedy", "beams")) else ""  # noqa: E731
    shapes, gsf = _json("generate_speed_shapes/results.json"), _json("generate_speed/results.json")
    others = sorted((_json(f"{d}/results.json") for d in ("generate_speed_width_2threads", "generate_speed_shapes",
                                                          "generate_speed")),
                    key=lambda d: -d["runs"][S43]["speedup_vs_reference"])
    return [
        ("int8 MB at 0.30", f"**{cs['0.3']['sizes']['compact-int8']['MB']:.1f} MB**"),
        ("fp16 MB at 0.30", f"fp16 {cs['0.3']['sizes']['compact-fp16']['MB']:.1f} MB"),
        ("int8 MB at 0.10", f"**{cs['0.1']['sizes']['compact-int8']['MB']:.1f} MB**"),
        ("int8 cost at 0.30", f"**{_int8_cost(0.3):+.2f}%** at 0.30"),
        ("int8 cost at 0.10", f"**{_int8_cost(0.1):+.2f}%** at 0.10"),
        ("OBS at 0.30", f"**{_pct_of_control(sq, 'gradual_kd_obs', 0.3, 100):.1f}%**"),
        ("reference at 0.30", f"proportions {_pct_of_control(sq, 'reference', 0.3, 100):.1f}%"),
        ("beams fp32", f"fp32 **{gs['ctranslate2 fp32 beams4']['speedup_vs_torch']:.2f}×**"),
        ("beams fp32 flag", f"fp32 **{gs['ctranslate2 fp32 beams4']['speedup_vs_torch']:.2f}×**"
                            + flag(gsf, "ctranslate2 fp32 beams4") + " torch"),
        ("beams int8", f"int8 **{gs['ctranslate2 int8 beams4']['speedup_vs_torch']:.2f}×**"
                       + flag(gsf, "ctranslate2 int8 beams4")),
        ("OBS step before", f"**{obs['before']['total_seconds']:.1f} s** before"),
        ("OBS step after", f"**{obs['after']['total_seconds']:.1f} s** now"),
        ("6+3 quality", f"**{six3('torch fp32', 'greedy')['pct_mean']:.1f}%**"),
        ("6+3 torch, same engine", f"torch {x('torch fp32', 'greedy')} greedy / {x('torch fp32', 'beams')} 4 beams"
                                   + flagged("torch fp32")),
        ("6+3 int8, same engine", f"CTranslate2 int8 {x('CTranslate2 int8', 'greedy')} / "
                                  f"{x('CTranslate2 int8', 'beams')}" + flagged("CTranslate2 int8")),
        ("6+3 int8 beams vs dense torch",
         f"its {six3('CTranslate2 int8', 'beams')['speedup_vs_dense_torch']:.2f}× over dense torch with 4 beams"),
        ("dense int8 beams: the engine", f"dense CTranslate2 int8 alone: {fr_dense['beams']['CTranslate2 int8']:.2f}×"
                                         + flag(shapes, "ctranslate2 int8 beams4", ", flagged")),
        ("4+3 quality", f"**{w43('torch fp32', 'greedy')['pct_mean']:.1f}%** [{w43('torch fp32', 'greedy')['pct_min']:.1f}–"
                        f"{w43('torch fp32', 'greedy')['pct_max']:.1f}%]"),
        ("4+3 torch", f"torch **{quiet('torch fp32 ')['speedup_vs_torch']:.2f}×** greedy / "
                      f"**{quiet('torch fp32 beams4 ')['speedup_vs_torch']:.2f}×** 4 beams"),
        ("4+3 ct2 fp32", f"CTranslate2 fp32 {quiet('ctranslate2 fp32 ')['speedup_vs_dense_same_engine']:.2f}× / "
                         f"{quiet('ctranslate2 fp32 beams4 ')['speedup_vs_dense_same_engine']:.2f}×"),
        ("4+3 int8", f"int8 {quiet('ctranslate2 int8 ')['speedup_vs_dense_same_engine']:.2f}× / "
                     f"{quiet('ctranslate2 int8 beams4 ')['speedup_vs_dense_same_engine']:.2f}×"),
        ("4+3 int8 vs reference", f"int8 **{quiet('ctranslate2 int8 ')['speedup_vs_reference']:.1f}×** the reference path"),
        # every other run of that shape, each with its flag (the figure alone would pick the best run)
        ("4+3 int8 vs reference, other runs", "the shape's other runs, 2 threads: " + ", ".join(
            f"{d['runs'][S43]['speedup_vs_reference']:.2f}×" for d in others) + (", all flagged" if all(
                S43 in d.get("flagged_busy", []) for d in others) else "")),
    ]


@pytest.mark.parametrize("what,text", _figures(), ids=[w for w, _ in _figures()])
def test_headline_numbers_are_those_of_the_results_files(what, text):
    assert text in _headline_table(), f"README's headline table should say {text!r} ({what})"


def test_the_readme_is_short_and_links_every_page():
    assert len(README.splitlines()) <= 200
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert pages and all(f"docs/{p}" in README for p in pages), pages


@pytest.mark.parametrize("page", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_every_relative_link_resolves(page):
    f = ROOT / page
    missing = []
    for m in re.finditer(r"\]\(([^)\s#]+)(#[^)]*)?\)", f.read_text(encoding="utf-8")):
        target = m.group(1)
        if not target.startswith(("http://", "https://")) and not (f.parent / target).exists():
            missing.append(target)
    assert not missing


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "configs").glob("*.toml")))  # shared/ excluded
def test_config_headers_are_short_and_name_their_command(config):
    text = (ROOT / "configs" / config).read_text(encoding="utf-8")
    header = re.match(r"(?:#[^\n]*\n)*", text).group(0).splitlines()
    assert 0 < len(header) <= 12
    assert any(f"configs/{config}" in line for line in header), "the header gives the command that runs it"


def _speed_files() -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(RESULTS.glob("generate_speed*/results.json"))]


def test_the_headline_says_how_speeds_were_taken():
    """Every speed forces the same number of new tokens, and the headline says how many and what a flag means."""
    forced = {d["max_length"] - 1 for d in _speed_files()}
    assert len(forced) == 1
    intro = _headline_table().split("| what |")[0]
    assert f"forced to {forced.pop()} new tokens" in " ".join(intro.split()) and "*flagged*" in intro


def test_the_headline_labels_the_proxy_synthetic():
    table = _headline_table()
    quotes = [m.start() for m in re.finditer(r"proxy", table)]
    assert quotes and all(table[:i].endswith("synthetic ") for i in quotes), "say 'synthetic proxy' each time"


def test_the_structured_row_names_the_thread_count_of_its_figures():
    row = next(line for line in _headline_table().splitlines() if "configs/structured_kd.toml" in line)
    threads = _json("generate_speed_width/results.json")["threads"]
    assert f"same engine, {threads} thread{'s' if threads > 1 else ''}:" in row


def test_the_reference_path_range_covers_every_run_of_the_shape():
    """The README's range over the reference path: every run that timed that shape, not the best ones."""
    vals = [d["runs"][S43]["speedup_vs_reference"] for d in _speed_files() if S43 in d["runs"]]
    assert len(vals) >= 2
    assert f"**{min(vals):.1f}–{max(vals):.1f}×** the course's reference path" in README


def test_the_proxy_saturation_quoted_is_that_of_every_control():
    """'dense controls A–B: saturated' spans every dense control's mean in the committed results."""
    means = []
    for p in sorted(RESULTS.glob("**/results.json")):
        d = json.loads(p.read_text(encoding="utf-8"))
        recs = d.get("records") or d.get("quality", {}).get("records") or []
        by_budget: dict = {}
        for r in recs:
            if r.get("method", r.get("variant")) == "dense_control":
                by_budget.setdefault(r["recovery_steps"], []).append(r["kaggle_score"])
        means += [mean(v) for v in by_budget.values()]
    assert means
    assert f"dense controls {min(means):.3f}–{max(means):.3f}: saturated" in " ".join(_headline_table().split())


def test_section_2_runs_its_recipe_on_a_bart_and_says_which_model_prune_takes(tmp_path):
    """README section 2 (your own summarizer): its `run` line, given a BART directory where it
    names /models/bart-large-cnn, passes the config check (the course format its recipe exports
    is T5-only, so the line must choose another); and it says which model `--model MODEL_DIR` is."""
    import shlex

    from summprune.config import load_config
    from summprune.modeling import build_tiny_model

    start = README.index("## 2. ")
    section = README[start:README.index("\n## ", start + 1)]
    runs = [line for line in section.splitlines() if line.startswith("python -m summprune run ")]
    assert runs
    bart = tmp_path / "bart"
    build_tiny_model(100, d_model=32, layers=2, heads=4, d_ff=64, family="bart").save_pretrained(bart)
    for line in runs:
        words = shlex.split(line)[4:]
        overrides = [f"model.name={bart}" if w.startswith("model.name=") else w for w in words[1:]]
        assert any(w.startswith("model.name=") for w in words), line
        load_config(ROOT / words[0], overrides)  # ConfigError if the line exports a format a BART cannot take
    said = [line for line in section.splitlines() if "MODEL_DIR" in line and not line.startswith("python")]
    assert said and "fine-tuned" in said[0], "section 2 should say which model --model MODEL_DIR is"


@pytest.mark.parametrize("source", ["requirements.txt", ".ci/run"])
def test_pointers_to_readme_sections_name_sections_that_exist(source):
    headings = re.findall(r"^#+ (.+)$", README, flags=re.M)
    named = re.findall(r'README,? "([^"]+)"', (ROOT / source).read_text(encoding="utf-8"))
    assert named, f"{source} names no README section (the pattern here is stale)"
    for name in named:
        assert any(name in h for h in headings), f"{source} points at README section {name!r}; there is none"


def test_readme_commands_paste_without_a_pipe():
    """A placeholder like `--data billsum|FILE` becomes a shell pipe when pasted."""
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    assert blocks
    for block in blocks:
        for line in block.splitlines():
            code = line.split(" #", 1)[0]
            assert "|" not in code, f"README command line pipes when pasted: {line!r}"


#: What the README's commands write, relative to the checkout: after them `git status` stays clean.
WRITTEN = [".venv/bin/python", "runs/smoke/summary.json", "pruned_model/model.safetensors",
           "pruned_model.trainer/steps/latest/x", "pruned_model_gradual_kd_030/config.json",
           "pruned_model_structured_kd/config.json", "pruned_model_course/model_state_dict.pth",
           "fast_model/config.json", "fast_model.trainer/prune.json", "fast_int8/compact.json",
           "fast_model_trimmed/vocab_trim.json",
           "submission.csv", "submission.csv.lock", "submission.csv.partial.jsonl", "submission.csv.partial.meta.json",
           "submission.csv.meta.json", "submission.scores.json", "quickstart/model/model.safetensors",
           "quickstart/data/train.jsonl", "quickstart/pruned.trainer/metrics.jsonl", "quickstart/submission.csv"]


def test_gitignore_covers_what_the_readme_commands_write():
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    r = subprocess.run(["git", "check-ignore", "--no-index", *WRITTEN], cwd=ROOT, capture_output=True, text=True)
    ignored = set(r.stdout.split())
    assert [p for p in WRITTEN if p not in ignored] == []


def _readme_block(heading: str) -> list[str]:
    """The command lines of the fenced bash block under README heading ``## <heading>``."""
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_setup_is_what_a_newcomer_runs_in_a_fresh_virtualenv():
    lines = _readme_block("Set-up")
    assert lines[0] == "python3 -m venv .venv && . .venv/bin/activate"
    assert "pip install -r requirements.txt" in lines
    # `jupyter execute` alone saves no outputs
    (nb,) = [line for line in lines if line.startswith("jupyter execute")]
    assert "--output=" in nb or "--inplace" in nb


def test_quick_start_commands_parse():
    """The offline quick start's commands hold no typo: each script's parser and the config loader
    accept them as written (CI runs them in full)."""
    import importlib.util
    import shlex

    from summprune.__main__ import build_parser
    from summprune.config import load_config

    lines = _readme_block("Offline quick start")
    cli_lines = [shlex.split(line) for line in lines if line.startswith(("python ", "python3 "))]
    assert [a[1] if a[1] != "-m" else a[3] for a in cli_lines] == [
        "random-model", "prune", "generate_csv.py", "score_result.py"]
    for argv in cli_lines:
        if argv[1] == "-m":
            args = build_parser().parse_args(argv[3:])
            if args.cmd == "prune":
                cfg = load_config(ROOT / args.config, args.overrides)
                assert cfg.data.dataset == "quickstart/data" and cfg.data.val_size == 4
            continue
        spec = importlib.util.spec_from_file_location(argv[1][:-3], ROOT / argv[1])
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        parser = mod.build_parser() if hasattr(mod, "build_parser") else mod._parser()
        assert parser.parse_args(argv[2:]).limit == 2
