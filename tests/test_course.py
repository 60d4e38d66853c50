"""The course's submission format: the grader's own code reads what we export.

``grader`` below is the course's loader and ratio, written out as the course's tutorial and the
reference student's scripts have them, independent of summprune: a test that is the grader.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import re
from pathlib import Path

import pytest
import torch
from torch.nn.utils import prune
from transformers import AutoModelForSeq2SeqLM

from conftest import ROOT
from summprune import sparsity as S
from summprune.io.course import STATE_FILE
from summprune.export import load_model, save_course
from summprune.modeling import build_tiny_model
from summprune.prune import apply_stage, prepare_model

AMOUNTS = {"enc_self_attn": 0.3, "enc_ffn": 0.5, "dec_self_attn": 0.3, "cross_attn": 0.3, "dec_ffn": 0.5, "lm_head": 0.5}
X = torch.tensor([[5, 17, 42, 8, 99, 3, 1], [7, 7, 60, 12, 1, 0, 0]])
Y = torch.tensor([[0, 11, 23, 4], [0, 50, 2, 9]])


def grader(d) -> tuple[torch.nn.Module, float]:
    """The course's code, literally (plus weights_only=True, which the tensors-only file passes)."""
    d = str(d)
    model = AutoModelForSeq2SeqLM.from_pretrained(d)
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            prune.identity(m, "weight")
    model.load_state_dict(torch.load(d + "/model_state_dict.pth", weights_only=True))
    total = sum(p.numel() for p in model.parameters())
    zeros = sum(int((b == 0).sum()) for name, b in model.named_buffers() if "mask" in name)
    return model.eval(), (total - zeros) / total


@torch.no_grad()
def logits(m):
    return m.eval()(input_ids=X, attention_mask=(X != 0).long(), decoder_input_ids=Y).logits


def pruned(tie_mode: str, vocab: int = 100):
    m = build_tiny_model(vocab_size=vocab)
    with torch.no_grad():  # let inputs steer greedy outputs, so that generations can differ
        m.shared.weight.mul_(0.05)
    prepare_model(m, tie_mode)
    for _ in range(2):
        apply_stage(m, AMOUNTS, tie_mode=tie_mode)
    return m.eval()


@pytest.mark.parametrize("tie_mode", ["tied", "course"])
def test_grader_reads_our_export(tmp_path, tie_mode):
    m = pruned(tie_mode)
    out = save_course(m, tmp_path / "pruned_model", pruning_info={"final": {"mask_ratio": S.mask_ratio(m)}})
    g, ratio = grader(out)
    assert ratio == pytest.approx(S.mask_ratio(m), abs=1e-12)  # the course ratio we report is the grader's
    assert ratio < 0.5
    assert torch.equal(logits(g), logits(m))  # the grader computes with the model we pruned
    ours = load_model(out)
    assert torch.equal(logits(ours), logits(m))
    gen = dict(max_length=12, do_sample=False, num_beams=1)
    assert torch.equal(g.generate(input_ids=X, **gen), ours.generate(input_ids=X, **gen))
    assert S.nonzero_ratio(ours) == pytest.approx(S.nonzero_ratio(m), abs=1e-12)
    if tie_mode == "tied":  # one tensor, one count: the honest ratio is the course ratio
        assert ours.lm_head.weight is ours.shared.weight
        assert S.nonzero_ratio(ours) == pytest.approx(ratio, abs=1e-12)
    else:  # the course's model: lm_head masked, inputs on the dense embedding
        assert torch.count_nonzero(ours.shared.weight) == ours.shared.weight.numel()
        assert S.nonzero_ratio(ours) > ratio + 0.02
    # every Linear has weight_orig + weight_mask, as prune.identity makes them
    sd = torch.load(out / STATE_FILE, weights_only=True)
    linears = [n for n, mod in m.named_modules() if isinstance(mod, torch.nn.Linear)]
    assert all(f"{n}.weight_orig" in sd and f"{n}.weight_mask" in sd and f"{n}.weight" not in sd for n in linears)
    assert sd["lm_head.weight_mask"].dtype == torch.float32
    # the plain weights are tied, so the grader's from_pretrained counts the parameters once
    plain = AutoModelForSeq2SeqLM.from_pretrained(str(out))
    assert plain.lm_head.weight is plain.shared.weight
    assert sum(p.numel() for p in plain.parameters()) == S.dense_param_count(m)
    assert "model_state_dict.pth" in json.loads((out / "checksums.json").read_text())["files"]


def test_untied_lm_head_is_refused_before_writing(tmp_path):
    m = pruned("untie")
    with torch.no_grad():  # recovery training would move lm_head's own copy away from the embedding
        m.lm_head.weight_orig.add_(0.01)
    with pytest.raises(ValueError, match="untie"):
        save_course(m, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


def test_the_course_notebooks_own_directory_loads(tmp_path):
    """The course notebook saves the masked model (weight_orig keys in the safetensors) plus
    torch.save(state_dict): load_model and score_result read it."""
    m = build_tiny_model(vocab_size=100)
    for mod in m.modules():
        if isinstance(mod, torch.nn.Linear):
            prune.l1_unstructured(mod, "weight", amount=0.6)
    d = tmp_path / "course_model"
    m.save_pretrained(str(d))
    torch.save(m.state_dict(), d / "model_state_dict.pth")
    g, ratio = grader(d)
    ours = load_model(d)
    assert torch.equal(logits(ours), logits(g)) and torch.equal(logits(ours), logits(m))
    assert ratio == pytest.approx(S.mask_ratio(m), abs=1e-12)
    # the embedding stays dense, lm_head is masked: honest ratio above the course's
    assert S.nonzero_ratio(ours) > ratio

    spec = importlib.util.spec_from_file_location("score_result", ROOT / "score_result.py")
    score_result = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(score_result)
    ratios, source = score_result.model_ratios(d)
    assert ratios["mask_ratio"] == pytest.approx(ratio, abs=1e-12) and "grader" in source


def test_score_result_says_whether_the_submission_meets_the_constraints(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("score_result", ROOT / "score_result.py")
    score_result = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(score_result)
    m = pruned("tied")
    out = save_course(m, tmp_path / "pruned_model")
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps({"summary": "Amends the Act. Requires a report."}) + "\n")
    (tmp_path / "submission.csv").write_text('"ID","Predict"\n"0","Amends the Act. Requires a report."\n')
    assert score_result.main(["--references", str(refs)]) == 0  # pruned_model/ found by default
    stdout = capsys.readouterr().out
    got = json.loads((tmp_path / "submission.scores.json").read_text())["course"]
    ratio = S.mask_ratio(m)
    assert got == {"readable_by_grader": True, "max_ratio": 0.3, "ratio": pytest.approx(ratio), "ratio_ok": ratio <= 0.3,
                   "baseline": 0.1134, "beats_baseline": True}
    assert f"ratio {ratio:.4f} <= 0.3: {'yes' if ratio <= 0.3 else 'NO'}" in stdout
    assert "course metric 1.0000 > baseline 0.1134: yes" in stdout
    assert f"pruned_model/{STATE_FILE}" in stdout and out.is_dir()


@pytest.mark.parametrize("damage", ["truncate", "hostile", "extra_key", "bad_mask", "checksum"])
def test_bad_state_files_are_refused_by_name(tmp_path, damage):
    out = save_course(pruned("tied"), tmp_path / "m")
    pth = out / STATE_FILE
    if damage == "truncate":
        pth.write_bytes(pth.read_bytes()[:1000])
    elif damage == "hostile":
        class Evil:
            def __reduce__(self):
                return (Path.touch, (tmp_path / "pwned",))

        pth.write_bytes(pickle.dumps({"x": Evil()}))
    else:
        sd = torch.load(pth, weights_only=True)
        if damage == "extra_key":
            sd["encoder.block.0.layer.0.SelfAttention.q.weight"] = sd["encoder.block.0.layer.0.SelfAttention.q.weight_orig"]
        elif damage == "bad_mask":
            sd["lm_head.weight_mask"] = sd["lm_head.weight_mask"] * 2
        else:
            sd["lm_head.weight_mask"] = torch.ones_like(sd["lm_head.weight_mask"])
        torch.save(sd, pth)
    if damage != "checksum":  # the checksum catches every change; remove it to reach the others
        (out / "checksums.json").unlink()
    with pytest.raises(ValueError, match=STATE_FILE if damage != "checksum" else "checksum mismatch") as e:
        load_model(out)
    assert str(pth) in str(e.value)
    assert not (tmp_path / "pwned").exists()  # weights_only: no code ran


def test_export_cli_converts_any_model_to_the_course_format(tmp_path, capsys):
    from summprune.__main__ import main
    from summprune.export import save_hf

    m = pruned("tied")
    hf = save_hf(m, tmp_path / "hf")
    assert main(["export", "--model", str(hf), "--output", str(tmp_path / "course"), "--format", "course"]) == 0
    g, ratio = grader(tmp_path / "course")
    # from a permanent model the mask is where the weights are zero: the same ratio as the masks
    assert ratio == pytest.approx(S.mask_ratio(m), abs=1e-12)
    assert torch.equal(logits(g), logits(m))


def test_course_export_from_a_config(tmp_path):
    from summprune.config import ConfigError, load_config

    cfg = load_config(ROOT / "configs" / "seed.toml")
    assert cfg.export_format == "course" and cfg.output_dir == "pruned_model"
    with pytest.raises(ConfigError, match="untie"):
        load_config(ROOT / "configs" / "seed.toml", ["prune.tie_mode=untie"])


@pytest.mark.slow
def test_seed_recipe_on_t5_small_shape_is_read_by_the_grader(shared_dir, tmp_path, capsys):
    """The README's command: prune a t5-small-shaped model with configs/seed.toml into the
    course format; the grader's code reads it to ratio 0.2989, and computes what we do. (The
    six stage ratios were test_prune's test_seed_recipe_ratios_on_t5_small_shape; one prune of
    the t5-small shape now checks both.)"""
    from summprune.__main__ import main
    from summprune.config import load_config
    from summprune.methods.stages import expand_stages
    from summprune.modeling import load_tokenizer, random_model_from_config

    src = tmp_path / "t5rand"
    model = random_model_from_config(shared_dir / "t5-small")
    assert S.dense_param_count(model) == 60_506_624
    model.save_pretrained(str(src))
    load_tokenizer(shared_dir / "t5-small").save_pretrained(str(src))
    del model
    out = tmp_path / "pruned_model"
    assert main(["prune", "--model", str(src), "--config", str(ROOT / "configs" / "seed.toml"),
                 "--output", str(out), "--no-train"]) == 0
    info = json.loads((out / "pruning.json").read_text())
    got = [r["mask_ratio"] for r in info["stages"]]
    expected = [0.7729, 0.6056, 0.4812, 0.3877, 0.3167, 0.2989]
    assert len(got) == 6 and len(expand_stages(load_config(ROOT / "configs" / "seed.toml").prune.stages)) == 6
    for g_, e in zip(got, expected):
        assert abs(g_ - e) <= 5e-4, (got, expected)
    assert info["stages"][-1]["nonzero_ratio"] == pytest.approx(info["stages"][-1]["mask_ratio"], abs=1e-6)

    g, ratio = grader(out)
    assert round(ratio, 4) == 0.2989
    assert ratio == pytest.approx(info["final"]["mask_ratio"], abs=1e-9)
    ours = load_model(out)
    assert S.nonzero_ratio(ours) == pytest.approx(ratio, abs=1e-9)  # tied: honest = course
    tok = load_tokenizer(out)
    rows = [json.loads(x) for x in (shared_dir / "billsum" / "us_test_sample.jsonl").read_text().splitlines()[:2]]
    enc = tok(["summarize: " + r["text"] for r in rows], max_length=256, truncation=True, padding=True,
              return_tensors="pt")
    with torch.no_grad():
        a = g.generate(**enc, max_length=16, do_sample=False, num_beams=1)
        b = ours.generate(**enc, max_length=16, do_sample=False, num_beams=1)
    assert torch.equal(a, b)


def test_a_course_mode_submission_is_not_pruned_further_into_the_course_format(tmp_path):
    """Its loaded lm_head is a tensor of its own beside the dense embedding, which the course
    format cannot hold once trained further: refused before any work, naming the way out."""
    from summprune.config import load_config
    from summprune.pipeline import prune_existing
    from summprune.tokenizer import train_tokenizer

    tok = train_tokenizer(["the act of congress amends the law"] * 4, vocab_size=100)
    src = save_course(pruned("course", vocab=len(tok)), tmp_path / "submitted", tokenizer=tok)
    with pytest.raises(ValueError, match="lm_head is a tensor of its own"):
        prune_existing(src, load_config(ROOT / "configs" / "seed.toml"), tmp_path / "again", train=False)
    assert not (tmp_path / "again").exists()


# ------------------------------------------------------------------------------ issue 22 (fuzz)


def _damaged(tmp_path, edit, model=None):
    out = save_course(model if model is not None else pruned("tied"), tmp_path / "m")
    pth = out / STATE_FILE
    sd = torch.load(pth, weights_only=True)
    edit(sd)
    torch.save(sd, pth)
    (out / "checksums.json").unlink()  # it catches any change; removed to reach the other checks
    return out, pth


@pytest.mark.parametrize("kind", ["sparse", "quantized", "integer"])
def test_sparse_quantized_or_integer_tensors_are_refused_by_key(tmp_path, kind):
    key = "encoder.block.0.layer.0.SelfAttention.q.weight_orig"

    def edit(sd):
        v = sd[key]
        if kind == "sparse":
            sd[key] = v.to_sparse()
        elif kind == "quantized":
            sd[key] = torch.quantize_per_tensor(v, 0.01, 0, torch.qint8)
        else:
            sd[key] = v.round().to(torch.int64)

    out, pth = _damaged(tmp_path, edit)
    match = {"sparse": "is a torch.sparse_coo tensor", "quantized": "has dtype torch.qint8",
             "integer": "has dtype torch.int64"}[kind]
    with pytest.raises(ValueError, match=re.escape(f"{pth}: tensor {key!r} {match}")):
        load_model(out)


def test_an_expanded_tensor_is_refused_before_it_is_used(tmp_path):
    """torch.save keeps a stride-0 view as its one stored element: a 15 MB file expanded to a
    16 GB tensor. Here a [100, 64] mask stored as 4 bytes."""
    key = "lm_head.weight_mask"

    def edit(sd):
        sd[key] = torch.ones(1).expand(*sd[key].shape)

    out, pth = _damaged(tmp_path, edit)
    assert torch.load(pth, weights_only=True)[key].untyped_storage().nbytes() == 4
    with pytest.raises(ValueError, match=re.escape(f"{pth}: tensor {key!r}") + r" of shape \[100, 64\] is a view of "
                                         r"a storage of only 4 bytes"):
        load_model(out)


def test_one_storage_under_many_names_is_refused(tmp_path):
    """Every [32, 32] weight and mask one view of the same data: small on disk, each name a copy in
    memory."""
    m = build_tiny_model(vocab_size=100, d_model=32, d_ff=32)
    prepare_model(m, "tied")

    def edit(sd):
        orig = sd["encoder.block.0.layer.0.SelfAttention.q.weight_orig"]
        mask = torch.ones_like(orig)
        for k, v in list(sd.items()):
            if v.shape == orig.shape and k.endswith("weight_orig"):
                sd[k] = orig
            elif v.shape == orig.shape and k.endswith("weight_mask"):
                sd[k] = mask

    out, pth = _damaged(tmp_path, edit, model=m.eval())
    with pytest.raises(ValueError, match=re.escape(str(pth)) + r": its tensors take .* bytes but the file stores only"):
        load_model(out)


def test_a_huge_vocab_is_refused_before_allocating(tmp_path, monkeypatch):
    """vocab_size=5e7 allocated 12.8 GB (the model built for real) before any check."""
    import summprune.io.course as course_io

    out = save_course(pruned("tied"), tmp_path / "m")
    cfg = json.loads((out / "config.json").read_text())
    cfg["vocab_size"] = 50_000_000
    (out / "config.json").write_text(json.dumps(cfg))

    def no_real_model(*a, **kw):
        raise AssertionError("a model was built for real")

    monkeypatch.setattr("transformers.T5ForConditionalGeneration.__init__", no_real_model)
    monkeypatch.setattr(course_io, "read_state_file", no_real_model)  # and the file is not even read
    with pytest.raises(ValueError, match=re.escape(str(out / "config.json")) + r": vocab_size=50,000,000 exceeds"):
        load_model(out)


def test_the_grader_model_is_built_on_the_meta_device_and_checked_first(tmp_path, monkeypatch):
    """A [100, 32] tensor where config.json implies another shape: refused before any memory is
    allocated for the model (the old loader built it for real first)."""
    from summprune.io import course as course_io

    out, pth = _damaged(tmp_path, lambda sd: sd.update({"lm_head.weight_mask": torch.ones(100, 31)}))
    real = []
    orig_init = torch.nn.Linear.__init__

    def spy(self, *a, **kw):
        orig_init(self, *a, **kw)
        if not self.weight.is_meta:
            real.append(self)

    monkeypatch.setattr(torch.nn.Linear, "__init__", spy)
    with pytest.raises(ValueError, match=re.escape(f"{pth}: tensor 'lm_head.weight_mask' has shape [100, 31]")):
        course_io.grader_model(out)
    assert real == []
