"""The model-family layer (summprune.models): every supported family, as a tiny random model built
from a config, through groups, pruning (stages, gradual magnitude and OBS), every export format
back through load_model, step checkpoints, generation and the honest ratio."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from summprune import sparsity
from summprune.export import export_model, load_model
from summprune.modeling import build_tiny_model, group_modules
from summprune.models import family_names, family_of, supported_model_types
from summprune.prune import apply_stage, permanent_copy, prepare_model

AMOUNTS = {"enc_self_attn": 0.3, "enc_ffn": 0.5, "dec_self_attn": 0.3, "cross_attn": 0.3, "dec_ffn": 0.5, "lm_head": 0.4}
#: (id, family, tiny_config keyword arguments): t5-small's layout, the v1.1 / flan-T5 one, mT5, then
#: every other registered family (BART, Pegasus, mBART, Marian, ...) as its tiny_config builds it
FAMILIES = [("t5", "t5", {}), ("t5-v1.1", "t5", {"gated": True, "tied": False}),
            ("mt5", "t5", {"gated": True, "tied": False, "mt5": True})] + [
            (name, name, {}) for name in family_names() if name != "t5"]
#: the families other than T5 (a parameter list for tests of what T5 does differently)
OTHERS = [name for name in family_names() if name != "t5"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every test here on one torch thread (conftest.one_thread)."""


def tiny(family: str, kw: dict, seed: int = 0) -> nn.Module:
    # d_model 64: the 64 x 64 matrices reach int8's 4,096-element minimum
    return build_tiny_model(vocab_size=120, d_model=64, layers=2, heads=4, d_ff=128, seed=seed, family=family, **kw).eval()


X = torch.tensor([[5, 17, 42, 8, 99, 3, 1], [7, 7, 60, 12, 1, 0, 0]])
Y = torch.tensor([[0, 11, 23, 4], [0, 50, 2, 9]])


@torch.no_grad()
def logits(m):
    return m(input_ids=X, attention_mask=(X != 0).long(), decoder_input_ids=Y).logits


@pytest.fixture(params=FAMILIES, ids=[f[0] for f in FAMILIES])
def fam(request):
    return request.param


def test_every_linear_falls_in_exactly_one_group(fam):
    _, family, kw = fam
    m = tiny(family, kw)
    groups = group_modules(m)
    named = [n for g in groups.values() for n, _ in g]
    assert len(named) == len(set(named))
    linears = {n for n, mod in m.named_modules() if isinstance(mod, nn.Linear)}
    assert set(named) == linears
    assert family_of(m).name == family


@pytest.mark.parametrize("tie_mode", ["tied", "untie"])
def test_stages_then_every_format_reloads_exactly(fam, tie_mode, tmp_path):
    _, family, kw = fam
    m = tiny(family, kw)
    prepare_model(m, tie_mode)
    for _ in range(2):
        apply_stage(m, AMOUNTS, tie_mode=tie_mode)
    ref = logits(m)
    want = {k: v.detach().clone() for k, v in permanent_copy(m).state_dict().items()}
    ratio = sparsity.nonzero_ratio(m)
    assert 0.3 < ratio < 0.9
    for fmt in ("hf", "compact"):
        got = load_model(export_model(m, tmp_path / f"{fmt}-{tie_mode}", format=fmt))
        assert type(got) is type(m)
        sd = got.state_dict()
        assert set(sd) == set(want) and all(torch.equal(sd[k], v) for k, v in want.items()), fmt
        assert torch.equal(logits(got), ref), fmt
        assert sparsity.nonzero_ratio(got) == pytest.approx(ratio, abs=1e-12), fmt
        # Pegasus' sinusoidal positions are fixed: loading (from_pretrained makes them trainable)
        # freezes them again, whatever the format
        assert not any(p.requires_grad for n, p in got.named_parameters() if n.endswith("embed_positions.weight")
                       and family == "pegasus"), fmt
    # int8: the same zeros; biases, positions and tables of the family's exemptions untouched
    got = load_model(export_model(m, tmp_path / f"int8-{tie_mode}", format="compact", dtype="int8"))
    import re

    sd = got.state_dict()
    exempt = family_of(m).int8_exempt
    for k, w in want.items():
        assert torch.equal(sd[k] == 0, w == 0), k
        if not k.endswith(".weight") or any(re.search(rx, k) for rx in exempt):
            assert torch.equal(sd[k], w), k
    man = json.loads((tmp_path / f"int8-{tie_mode}" / "compact.json").read_text())
    assert man["model_class"] == type(m).__name__
    assert any("quant" in e for e in man["tensors"])


def test_the_course_format_round_trips_for_t5_families(fam, tmp_path):
    _, family, kw = fam
    if family != "t5":
        pytest.skip("the course's grader is t5-small's")
    m = tiny(family, kw)
    prepare_model(m, "tied")
    apply_stage(m, AMOUNTS)
    got = load_model(export_model(m, tmp_path / "course", format="course"))
    assert torch.equal(logits(got), logits(m))


@pytest.mark.parametrize("importance", ["magnitude", "wanda", "obs"])
def test_gradual_magnitude_wanda_and_obs_prune_every_family(fam, importance):
    """Each registered gradual criterion, two cubic steps to an honest 0.5, on every family."""
    from summprune.methods.gradual import CRITERIA, plan_gradual

    _, family, kw = fam
    m = tiny(family, kw)
    prepare_model(m, "tied")
    plan = plan_gradual(m, 0.5, schedule="cubic", steps=2)
    torch.manual_seed(0)
    ids = torch.randint(3, 120, (4, 12))
    batches = [{"input_ids": ids[i:i + 2], "attention_mask": torch.ones(2, 12, dtype=torch.long),
                "labels": ids[i:i + 2, :6].clone()} for i in (0, 2)]
    for keep in plan["step_keep"]:
        CRITERIA[importance].fn(m, batches, keep=keep, patterns=None, tie_mode="tied", progress=False)
    assert sparsity.nonzero_ratio(m) <= 0.5
    assert sparsity.nonzero_ratio(m) > 0.49  # the exact count, not more
    assert torch.isfinite(logits(m)).all()


def test_step_checkpoints_rebuild_the_family(fam, tmp_path):
    from summprune.pipeline import load_step, save_step

    _, family, kw = fam
    m = tiny(family, kw)
    prepare_model(m, "tied")
    apply_stage(m, AMOUNTS)
    save_step(tmp_path, m, {"step": 1})
    got, info = load_step(tmp_path, "tied")
    assert type(got) is type(m) and info["step"] == 1
    assert torch.equal(logits(got), logits(m))


def test_generation_through_the_package(fam):
    from summprune.generate import generate_summaries
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer

    _, family, kw = fam
    rows = make_corpus(20, seed=1)
    tok = train_tokenizer([r["text"] for r in rows] + [r["summary"] for r in rows], vocab_size=120)
    m = tiny(family, kw)
    out = generate_summaries(m, tok, [r["text"][:300] for r in rows[:3]], prefix=family_of(m).default_prefix,
                             max_source_length=48, max_length=10, num_beams=2, progress=False)
    assert len(out) == 3 and all(isinstance(v, str) for v in out.values())


def test_a_model_untied_by_nature_counts_its_own_lm_head():
    """transformers 5 marks every T5 config tied; a flan-T5 / v1.1 model with an lm_head of its own
    must count it in the dense model (its ratio was above 1 before the family said so)."""
    from summprune.prune import untie_lm_head

    m = tiny("t5", {"gated": True, "tied": False})
    untie_lm_head(m)  # what a published flan-T5 checkpoint loads as
    assert not family_of(m).native_tied(m.config)
    assert sparsity.nonzero_ratio(m) == pytest.approx(1.0)
    t5 = tiny("t5", {})
    untie_lm_head(t5)  # t5-small untied by tie_mode 'untie': its copy is not part of the dense model
    assert sparsity.dense_param_count(t5) == sparsity.dense_param_count(tiny("t5", {}))


def test_mt5_is_a_t5_family_model():
    from transformers import AutoModelForSeq2SeqLM, MT5Config

    cfg = MT5Config(vocab_size=120, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, decoder_start_token_id=0)
    m = AutoModelForSeq2SeqLM.from_config(cfg)
    assert family_of(m).name == "t5" and not family_of(m).native_tied(m.config)
    assert sum(len(v) for v in group_modules(m).values()) == len(
        [1 for _, mod in m.named_modules() if isinstance(mod, nn.Linear)])


def test_an_unsupported_model_type_is_one_error_listing_the_supported(tmp_path):
    d = tmp_path / "gpt"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 10}))
    (d / "model.safetensors").write_bytes(b"")
    types = supported_model_types()  # the registry's, sorted
    with pytest.raises(ValueError, match=r"model_type 'gpt2' is not supported; supported: " + ", ".join(types) + "$"):
        load_model(d)
    assert types == sorted(types) and {"bart", "mbart", "marian", "mt5", "pegasus", "t5"} <= set(types)


def test_structured_pruning_cuts_blocks_and_neurons_of_every_family(fam, tmp_path):
    """[prune.structured] through the driver on every family: a smaller model of the same class
    (fewer blocks, narrower FFNs, half the heads of every attention), whose kept blocks are the
    original's, equal to masking where no block is removed, back through hf and compact exactly;
    Taylor importance reaches the FFN and attention biases (BART's layout)."""
    import copy

    from summprune.config import ExperimentConfig, PruneConfig, TrainConfig
    from summprune.methods import structured as S
    from summprune.pipeline import prune_model

    name, family, kw = fam
    m = build_tiny_model(vocab_size=120, d_model=64, layers=4, heads=4, d_ff=128, family=family, **kw).eval()
    st = family_of(m).structure
    assert st.heads  # every family here declares its attention layout
    heads = 0.5
    sc = S.StructuredConfig(ffn_keep=0.5, heads_keep=heads, decoder_layers=2, importance="weight")
    cfg = ExperimentConfig(train=TrainConfig(batch_size=2), prune=PruneConfig(methods={"structured": sc}))
    small, _, sections = prune_model(copy.deepcopy(m), None, cfg, work_dir=tmp_path / "w", log_print=lambda s: None)
    assert type(small) is type(m)
    c = small.config
    assert getattr(c, st.layers["decoder"]) == 2 and getattr(c, st.layers["encoder"]) == 4
    assert all(getattr(c, st.ffn_dim[k]) == 64 for k in ("encoder", "decoder"))
    old_dec, new_dec = S.blocks(m, "decoder"), S.blocks(small, "decoder")
    keep = sections["structured"]["plan"]["decoder_layers"]
    assert keep == [0, 3]  # evenly spaced, first and last
    # a kept block's norms are the original block's (its linears are narrower)
    for i, j in enumerate(keep):
        for (n, a), (_, b) in zip(old_dec[j].named_parameters(), new_dec[i].named_parameters()):
            if a.shape == b.shape and "norm" in n:
                assert torch.equal(a, b), n
    # no block removed: the smaller model is the masked one
    plan = S.plan_structure(m, S.weight_importance(m), ffn_keep=0.5, heads_keep=heads)
    masked = copy.deepcopy(m)
    S.mask_plan(masked, plan)
    assert torch.allclose(logits(S.apply_plan(m, plan)), logits(masked), atol=1e-5)
    assert all(getattr(c, st.heads_key[k]) == 2 for k in ("encoder", "decoder"))
    assert all(len(v) == 2 for v in (sections["structured"]["plan"]["enc_self_heads"],
                                     sections["structured"]["plan"]["dec_self_heads"]))
    assert st.attention.head_size(c) == st.attention.head_size(m.config)  # heads removed, not resized
    for fmt in ("hf", "compact"):
        got = load_model(export_model(small, tmp_path / fmt, format=fmt))
        assert type(got) is type(small) and torch.equal(logits(got), logits(small)), fmt
    from summprune.pipeline import load_step, save_step

    save_step(tmp_path / "step", small, {"step": 1})  # a resumed prune rebuilds the smaller shape
    assert torch.equal(logits(load_step(tmp_path / "step", "tied")[0]), logits(small))
    # T5 records fewer heads in a standard config; BART's layout cannot (its head size is d_model /
    # heads in transformers): plain from_pretrained refuses it, and its card says to use summprune
    from transformers import AutoModelForSeq2SeqLM

    card = (tmp_path / "hf" / "README.md").read_text()
    if family == "t5":
        assert torch.equal(logits(AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "hf").eval()), logits(small))
        assert "AutoModelForSeq2SeqLM.from_pretrained" in card
    else:
        assert c.head_dim == 16 and family_of(small).standard(c) is False
        with pytest.raises(RuntimeError, match="mismatched"):
            AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "hf")
        assert "Plain `from_pretrained` cannot build this model" in card
    scores = S.taylor_importance(m, [{"input_ids": X, "attention_mask": (X != 0).long(), "labels": Y[:, 1:].contiguous()}])
    assert all(torch.isfinite(v).all() and (v > 0).any() for v in scores.values())


def test_structured_pruning_is_refused_by_name_for_a_family_without_a_structure(monkeypatch):
    import dataclasses

    from summprune import models as M
    from summprune.methods import structured as S

    monkeypatch.setitem(M._FAMILIES, "bart", dataclasses.replace(M._FAMILIES["bart"], structure=None))
    with pytest.raises(TypeError, match=r"structured pruning .* not 'bart'"):
        S.structure_of(tiny("bart", {}))


def _script(name: str):
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(name, root / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_scripts_run_a_pruned_bart(tmp_path, capsys):
    """generate_csv.py (no prefix: BART's convention) and score_result.py --model on a BART."""
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer

    rows = make_corpus(20, seed=3)
    tok = train_tokenizer([r["text"] for r in rows] + [r["summary"] for r in rows], vocab_size=120)
    m = tiny("bart", {})
    prepare_model(m, "tied")
    apply_stage(m, AMOUNTS)
    d = export_model(m, tmp_path / "bart", format="compact", dtype="int8", tokenizer=tok)
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps({"text": r["text"][:300], "summary": r["summary"]}) + "\n" for r in rows[:4]))
    out = tmp_path / "sub.csv"
    assert _script("generate_csv").main(["--model", str(d), "--data", str(data), "--output", str(out),
                                         "--max-length", "8", "--max-source-length", "48", "--engine", "torch"]) == 0
    assert len(out.read_text().splitlines()) == 5
    assert "inputs: prefix=''" in capsys.readouterr().err  # BART takes no "summarize: "
    assert _script("score_result").main(["--predictions", str(out), "--references", str(data), "--model", str(d)]) == 0
    text = capsys.readouterr().out
    assert "ratio" in text
    # the grader cannot read a BART in any format: no `export --format course` is suggested
    assert "NOT READABLE by the grader" in text and "is a bart model" in text and "--format course" not in text


@pytest.mark.parametrize("family,kw", [(f, {}) for f in OTHERS] + [("t5", {"gated": True, "tied": False})],
                         ids=OTHERS + ["t5-v1.1"])
def test_run_fine_tunes_prunes_and_exports_every_family(tmp_path, family, kw):
    """`run` on a saved model of each family: fine-tuning, stages with recovery, compact export."""
    from pathlib import Path

    from summprune.config import load_config
    from summprune.pipeline import run
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer

    root = Path(__file__).resolve().parents[1]
    d = tmp_path / family
    tok = train_tokenizer([r["text"] for r in make_corpus(40)], vocab_size=120)
    tiny(family, kw).save_pretrained(d)
    tok.save_pretrained(d)
    cfg = load_config(root / "configs" / "smoke.toml", [
        f"model.name={d}", "data.synthetic_docs=48", "data.val_size=4", "data.max_source_length=64",
        "eval.docs=4", "eval.max_length=12", "eval.batch_size=4", "train.max_steps=3", "train.logging_steps=2",
        f"runs_dir={tmp_path / 'runs'}", f"output_dir={tmp_path / 'model'}", "export_format=compact"])
    for st in cfg.prune.stages:
        st.recover_steps = 1
    summary = run(cfg, log_print=lambda s: None)
    got = load_model(tmp_path / "model")
    assert family_of(got).name == family
    assert summary["final"]["nonzero_ratio"] == pytest.approx(sparsity.nonzero_ratio(got), abs=1e-9)
    assert summary["final"]["nonzero_ratio"] < 0.8
    # data.prefix 'auto' is the family's convention, recorded for generate_csv.py; the run folder's
    # config keeps 'auto' (a resume compares it as given)
    info = json.loads((tmp_path / "model" / "pruning.json").read_text())
    assert info["data"]["prefix"] == family_of(got).default_prefix == ("summarize: " if family == "t5" else "")
    assert json.loads((tmp_path / "runs" / cfg.name / "config.json").read_text())["data"]["prefix"] == "auto"


@pytest.mark.parametrize("kind", ["t5", "t5-v1.1", "mt5"])
def test_ctranslate2_scores_tokens_as_torch_does_for_t5_untied_by_nature(tmp_path, monkeypatch, kind):
    """Log-probabilities of one summary under CTranslate2 and torch: equal only if the converted
    decoder output is scaled as the torch model's is (t5-small: by d_model ** -0.5; flan-T5 and
    mT5: not at all, although transformers 5 marks their configs tied). Greedy tokens would not
    show it (an argmax ignores a scale); beam scores and sampling do."""
    pytest.importorskip("ctranslate2")
    from transformers import AutoModelForSeq2SeqLM, MT5Config

    from summprune import ct2
    from summprune.prune import untie_lm_head
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer

    monkeypatch.setenv("SUMMPRUNE_CACHE", str(tmp_path / "cache"))
    rows = make_corpus(20, seed=4)
    tok = train_tokenizer([r["text"] for r in rows] + [r["summary"] for r in rows], vocab_size=120)
    if kind == "mt5":
        torch.manual_seed(0)
        m = AutoModelForSeq2SeqLM.from_config(MT5Config(vocab_size=120, d_model=64, d_kv=16, d_ff=128, num_layers=2,
                                                        num_heads=4, decoder_start_token_id=0)).eval()
    else:
        m = tiny("t5", {} if kind == "t5" else {"gated": True, "tied": False})
    if kind != "t5":
        untie_lm_head(m)  # as their checkpoints load: an lm_head of its own
        with torch.no_grad():
            m.lm_head.weight.normal_(0, 1.0)
    d = tmp_path / kind
    m.save_pretrained(d)
    tok.save_pretrained(d)
    src = tok(rows[0]["text"][:200], truncation=True, max_length=40)["input_ids"]
    tgt = tok(rows[0]["summary"][:60])["input_ids"]
    with torch.no_grad():
        logits = m(input_ids=torch.tensor([src]), decoder_input_ids=torch.tensor([[0] + tgt[:-1]])).logits
    want = torch.log_softmax(logits[0], -1).gather(1, torch.tensor(tgt)[:, None]).squeeze(1)
    cm = ct2.Ct2Model.from_dir(d, tok, threads=1)
    res = cm.translator.score_batch([tok.convert_ids_to_tokens(src)], [tok.convert_ids_to_tokens(tgt[:-1])])
    got = torch.tensor(res[0].log_probs)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=2e-3), (got - want).abs().max()


def test_each_choice_has_one_registry_and_the_config_check_agrees(monkeypatch):
    """Each method's section and validator live in its module, and the config check reads the
    names from the registries themselves: a criterion added by one function and one registry
    line is accepted by a config at once, and one that is not there is refused."""
    from summprune import config as C
    from summprune.config import ConfigError, load_config
    from summprune.methods import REGISTRY
    from summprune.methods.gradual import CRITERIA, Criterion, GradualConfig
    from summprune.methods.structured import SCORERS, StructuredConfig
    from summprune.models import family_of

    assert {family_of(t).name for t in supported_model_types()} == set(C.TINY_FAMILIES)
    assert {"stages", "gradual", "structured"} <= set(REGISTRY)
    assert C.SECTIONS["gradual"].cls is GradualConfig and C.SECTIONS["structured"].cls is StructuredConfig
    assert C.GradualConfig is GradualConfig  # still importable from its old home
    base = ["prune.gradual.target_nonzero_ratio=0.5"]
    with pytest.raises(ConfigError, match="importance='random'"):
        load_config(None, base + ["prune.gradual.importance=random"])
    with pytest.raises(ConfigError, match="importance='random'"):
        load_config(None, ["prune.structured.ffn_keep=0.5", "prune.structured.importance=random"])
    monkeypatch.setitem(CRITERIA, "random", Criterion(lambda *a, **k: {}))
    monkeypatch.setitem(SCORERS, "random", Criterion(lambda model, batches: {}))
    assert load_config(None, base + ["prune.gradual.importance=random"]).prune.gradual.importance == "random"
    assert load_config(None, ["prune.structured.ffn_keep=0.5",
                              "prune.structured.importance=random"]).prune.structured.importance == "random"


def test_inputs_longer_than_learned_positions_are_refused_or_capped(tmp_path, capsys):
    """BART reads at most max_position_embeddings tokens (an IndexError deep in torch otherwise):
    an explicit longer --max-source-length is refused naming the limit, the default is capped."""
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer

    rows = make_corpus(20, seed=3)
    tok = train_tokenizer([r["text"] for r in rows] + [r["summary"] for r in rows], vocab_size=120)
    m = build_tiny_model(vocab_size=120, d_model=32, d_ff=64, family="bart", max_positions=40).eval()
    d = export_model(m, tmp_path / "bart", format="hf", tokenizer=tok)
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in rows[:2]))
    gen_csv = _script("generate_csv")
    out = tmp_path / "sub.csv"
    assert gen_csv.main(["--model", str(d), "--data", str(data), "--output", str(out), "--max-source-length", "64",
                         "--max-length", "6"]) == 2
    assert "reads at most 40 input tokens" in capsys.readouterr().err and not out.exists()
    assert gen_csv.main(["--model", str(d), "--data", str(data), "--output", str(out), "--max-length", "6"]) == 0
    assert "max_source_length=40 (config.json)" in capsys.readouterr().err


@pytest.mark.parametrize("family", OTHERS)
def test_the_smoke_recipe_runs_on_a_tiny_model_of_another_family(tmp_path, family):
    """`model.tiny_family`: the offline smoke run (tokenizer trained on the fly) on a tiny BART or
    Pegasus, fine-tuned, pruned in stages and exported."""
    from pathlib import Path

    from summprune.config import load_config
    from summprune.pipeline import run

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "configs" / "smoke.toml", [
        f"model.tiny_family={family}", "data.synthetic_docs=48", "data.val_size=4", "eval.docs=4",
        "eval.max_length=12", "eval.batch_size=4", "train.max_steps=3", "model.tiny_d_model=32",
        "model.tiny_d_ff=64", "model.tiny_vocab=300", f"runs_dir={tmp_path / 'runs'}",
        f"output_dir={tmp_path / 'model'}"])
    for st in cfg.prune.stages:
        st.recover_steps = 1
    summary = run(cfg, log_print=lambda s: None)
    assert family_of(load_model(tmp_path / "model")).name == family
    assert summary["final"]["nonzero_ratio"] < 0.8


# ---- issue 31: the course format is refused for families its grader cannot read -----------------

@pytest.mark.parametrize("family", OTHERS)
def test_the_course_format_refuses_bart_and_pegasus_before_any_work(family, tmp_path, monkeypatch):
    """export_model, from a model or a directory: refused with the reason and the way out, nothing
    written, and (from a directory) before the model is loaded."""
    import summprune.export as E

    m = tiny(family, {})
    with pytest.raises(ValueError, match=rf"course format cannot hold a {family} model: the course's grader .*"
                                         r"T5-only.*export_format=hf"):
        export_model(m, tmp_path / "course", format="course")
    with pytest.raises(ValueError, match="course format cannot hold"):
        E.save_course(m, tmp_path / "course")
    d = export_model(m, tmp_path / "hf", format="hf")

    def no_load(*a, **kw):
        raise AssertionError("the model was loaded before the format was checked")

    monkeypatch.setattr(E, "load_model", no_load)
    with pytest.raises(ValueError, match=rf"cannot hold a {family} model"):
        export_model(d, tmp_path / "course", format="course")
    assert not (tmp_path / "course").exists()


def test_a_course_recipe_on_a_bart_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """configs/gradual_kd.toml exports the course format: on a BART, `prune` and `run` refuse it up
    front naming export_format=hf (the config check where the family is known from model.name or
    model.tiny_family); with export_format=hf the same recipe goes on."""
    from pathlib import Path

    import summprune.export as E
    from summprune.__main__ import main as cli
    from summprune.config import ConfigError, load_config

    root = Path(__file__).resolve().parents[1]
    d = tmp_path / "bart"
    tiny("bart", {}).save_pretrained(d)
    recipe = root / "configs" / "gradual_kd.toml"
    with pytest.raises(ConfigError, match=r"export_format='course' with model.name=.*cannot hold a bart model.*"
                                          r"export_format=hf"):
        load_config(recipe, [f"model.name={d}"])
    with pytest.raises(ConfigError, match=r"model.tiny_family='pegasus'.*cannot hold a pegasus model"):
        load_config(recipe, ["model.name=tiny", "model.tiny_family=pegasus"])
    assert load_config(recipe, [f"model.name={d}", "export_format=hf"]).export_format == "hf"
    assert load_config(recipe, ["model.name=tiny"]).export_format == "course"  # T5: the course's format

    def no_load(*a, **kw):
        raise AssertionError("the model was loaded before the format was checked")

    monkeypatch.setattr(E, "load_model", no_load)
    out = tmp_path / "pruned"
    assert cli(["prune", "--model", str(d), "--config", str(recipe), "--output", str(out), "--no-train"]) == 2
    err = capsys.readouterr().err
    assert "export_format='course'" in err and "cannot hold a bart model" in err and "export_format=hf" in err
    assert not out.exists() and not list(tmp_path.glob("pruned*"))


# ---- issue 34: the family owns what differs; nothing outside summprune/models/ names its modules ----

#: What only a family module may name, and why each: T5's attention and FFN modules, its position
#: table and its block lists (``.block``); BART's layout's attention modules, projections, FFN
#: linears and position tables; the model classes (the family names its class). A group name such
#: as ``enc_self_attn`` is the package's own word, not a module: ``self_attn`` counts only unprefixed.
FAMILY_WORDS = {
    "SelfAttention": r"SelfAttention", "EncDecAttention": r"EncDecAttention", "DenseReluDense": r"DenseReluDense",
    "relative_attention_bias": r"relative_attention_bias", ".block": r"\.block\b", "wi_0/wi_1": r"\bwi_[01]\b",
    "self_attn": r"(?<![A-Za-z0-9_])self_attn\b", "encoder_attn": r"\bencoder_attn\b", "fc1/fc2": r"\bfc[12]\b",
    "q/k/v/out_proj": r"\b[qkv]_proj\b|\bout_proj\b", "embed_positions": r"\bembed_positions\b",
    "a model class": r"\w+ForConditionalGeneration\b|\bMarianMTModel\b",
}


def test_no_file_outside_the_family_layer_names_a_familys_modules():
    """Every .py file of the package but summprune/models/ (code, comments and docstrings alike):
    a family's module names there would mean the family no longer owns what differs."""
    import re
    from pathlib import Path

    pkg = Path(__file__).resolve().parents[1] / "summprune"
    files = [f for f in sorted(pkg.rglob("*.py")) if "models" not in f.relative_to(pkg).parts[:1]]
    assert len(files) > 20 and pkg / "methods" / "structured.py" in files  # the scan sees the package
    hits = [f"{f.relative_to(pkg.parent)}:{i}: {word}" for f in files
            for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
            for word, rx in FAMILY_WORDS.items() if re.search(rx, line)]
    assert not hits, "\n".join(hits)
    # the patterns catch what they are for
    assert all(re.search(rx, s) for rx, s in zip(FAMILY_WORDS.values(), [
        "x.SelfAttention", "EncDecAttention", "DenseReluDense", "relative_attention_bias", "model.encoder.block",
        "ffn.wi_0", "layer.self_attn", "encoder_attn", "fc1", "att.out_proj", "m.embed_positions",
        "T5ForConditionalGeneration"]))
    assert not re.search(FAMILY_WORDS["self_attn"], '"enc_self_attn"')
