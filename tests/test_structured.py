"""Structured pruning: physical removal computes what masking computes, and the result is a
standard smaller T5."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, T5Config, T5ForConditionalGeneration

from conftest import ROOT
from summprune.methods import structured as st
from summprune.config import ConfigError, load_config


def _batch(vocab=100, seed=1, n=3, src=13, tgt=7):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (n, src), generator=g)
    mask = torch.ones_like(ids)
    mask[0, -4:] = 0  # some padding, so the attention mask path is covered
    labels = torch.randint(2, vocab, (n, tgt), generator=g)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _model(gated: bool = False, layers: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=layers, num_decoder_layers=layers,
                   num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0,
                   feed_forward_proj="gated-gelu" if gated else "relu", pad_token_id=0, eos_token_id=1,
                   decoder_start_token_id=0, tie_word_embeddings=True)
    m = T5ForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # a non-trivial position bias, so that slicing it wrongly shows
        for stack in (m.encoder, m.decoder):
            stack.block[0].layer[0].SelfAttention.relative_attention_bias.weight.normal_(0, 1.0)
    return m


def _random_plan(model, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    scores = {k: torch.rand(v.shape, generator=g) for k, v in st.weight_importance(model).items()}
    return st.plan_structure(model, scores, **kw)


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("ffn_keep,heads_keep", [(0.5, 1.0), (1.0, 0.5), (0.25, 0.75)])
def test_removal_equals_masking(gated, ffn_keep, heads_keep):
    model = _model(gated)
    plan = _random_plan(model, ffn_keep=ffn_keep, heads_keep=heads_keep)
    small = st.apply_plan(model, plan)
    masked = copy.deepcopy(model)
    st.mask_plan(masked, plan)
    batch = _batch()
    torch.testing.assert_close(_logits(small, batch), _logits(masked, batch), rtol=1e-5, atol=1e-5)
    # and removing something changes the model: the test is not vacuous
    assert not torch.allclose(_logits(model, batch), _logits(masked, batch), atol=1e-3)
    # greedy generation (with the KV cache) gives the same tokens
    gen = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_length=10,
               min_new_tokens=9, num_beams=1, do_sample=False)
    assert torch.equal(small.generate(**gen), masked.generate(**gen))


def test_shapes_follow_the_plan_and_the_config():
    model = _model()
    plan = _random_plan(model, ffn_keep=0.5, heads_keep=0.5, decoder_layers=2, encoder_layers=2)
    small = st.apply_plan(model, plan)
    c = small.config
    assert (c.num_layers, c.num_decoder_layers, c.d_ff, c.num_heads, c.d_kv) == (2, 2, 32, 2, 8)
    assert plan.encoder_layers == [0, 2] and plan.decoder_layers == [0, 2]
    assert small.decoder.block[1].layer[2].DenseReluDense.wi.weight.shape == (32, 32)
    assert small.encoder.block[1].layer[0].SelfAttention.q.weight.shape == (16, 32)
    assert small.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight.shape == (8, 2)
    assert small.lm_head.weight is small.shared.weight  # the tie survives
    assert model.config.num_layers == 3 and model.config.d_ff == 64  # the original is untouched


def test_layer_removal_equals_skipping_the_blocks():
    """Dropping blocks is the original model run without them; the stack's position bias comes
    from the old block 0 even when block 0 itself goes ('first' keeps it, so drop by hand)."""
    model = _model(layers=3)
    plan = st.StructurePlan(
        encoder_layers=[1, 2], decoder_layers=[0, 2],
        ffn={**{f"encoder.block.{i}.layer.1.DenseReluDense": list(range(64)) for i in (1, 2)},
             **{f"decoder.block.{i}.layer.2.DenseReluDense": list(range(64)) for i in (0, 2)}},
        enc_self_heads=[0, 1, 2, 3], dec_self_heads=[0, 1, 2, 3],
        cross_heads={f"decoder.block.{i}.layer.1.EncDecAttention": [0, 1, 2, 3] for i in (0, 2)})
    small = st.apply_plan(model, plan)
    ref = copy.deepcopy(model)
    bias = ref.encoder.block[0].layer[0].SelfAttention
    ref.encoder.block = torch.nn.ModuleList([ref.encoder.block[1], ref.encoder.block[2]])
    ref.decoder.block = torch.nn.ModuleList([ref.decoder.block[0], ref.decoder.block[2]])
    # what the smaller model does: the first kept encoder block computes the stack's bias
    first = ref.encoder.block[0].layer[0].SelfAttention
    first.has_relative_attention_bias = True
    first.relative_attention_bias = bias.relative_attention_bias
    batch = _batch()
    torch.testing.assert_close(_logits(small, batch), _logits(ref, batch), rtol=1e-5, atol=1e-5)


def test_exported_model_reloads_with_plain_from_pretrained(tmp_path):
    from summprune.export import load_model, save_compact, save_hf

    model = _model()
    small, plan = st.shrink(model, ffn_keep=0.5, heads_keep=0.5, decoder_layers=1)
    save_hf(small, tmp_path / "hf")
    again = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "hf").eval()
    assert (again.config.d_ff, again.config.num_heads, again.config.num_decoder_layers) == (32, 2, 1)
    batch = _batch()
    torch.testing.assert_close(_logits(again, batch), _logits(small, batch))
    save_compact(small, tmp_path / "compact")
    torch.testing.assert_close(_logits(load_model(tmp_path / "compact").eval(), batch), _logits(small, batch))


def test_heads_are_chosen_once_per_stack_and_cross_attention_per_block():
    model = _model()
    att = st.attention_modules(model)
    scores = {k: torch.zeros(v.shape) for k, v in st.weight_importance(model).items()}
    # encoder: head 3 best in block 0, head 1 in the others; summed over blocks, 1 then 3 win
    for i, name in enumerate(att["enc_self"]):
        scores[name] = torch.tensor([0.0, 1.0, 0.1, 5.0 if i == 0 else 0.2])
    cross = list(att["cross"])
    scores[cross[0]] = torch.tensor([0.0, 0.0, 1.0, 2.0])
    scores[cross[1]] = torch.tensor([3.0, 2.0, 0.0, 0.0])
    plan = st.plan_structure(model, scores, heads_keep=0.5)
    assert plan.enc_self_heads == [1, 3]
    assert plan.cross_heads[cross[0]] == [2, 3] and plan.cross_heads[cross[1]] == [0, 1]
    assert len({len(v) for v in plan.ffn.values()}) == 1


def test_taylor_importance_scores_a_dead_neuron_zero_and_restores_the_model():
    model = _model()
    ffn = model.encoder.block[1].layer[1].DenseReluDense
    with torch.no_grad():
        ffn.wo.weight[:, 5] = 0
        ffn.wi.weight[5] = 0
    model.train()
    scores = st.taylor_importance(model, [_batch(seed=s) for s in range(2)])
    name = "encoder.block.1.layer.1.DenseReluDense"
    assert scores[name].shape == (64,) and float(scores[name][5]) == 0.0 and float(scores[name].max()) > 0
    assert all(s.shape == (4,) for k, s in scores.items() if k.endswith("Attention"))
    assert model.training and all(p.grad is None for p in model.parameters())


def test_select_layers_and_bad_plans():
    assert st.select_layers(6, 3) == [0, 3, 5] and st.select_layers(6, 2) == [0, 5]
    assert st.select_layers(6, 2, "first") == [0, 1] and st.select_layers(6, 6) == list(range(6))
    with pytest.raises(ValueError, match="cannot keep 7 of 6"):
        st.select_layers(6, 7)
    model = _model()
    with pytest.raises(ValueError, match="ffn_keep"):
        _random_plan(model, ffn_keep=0.0)
    plan = _random_plan(model, ffn_keep=0.5)
    name = next(iter(plan.ffn))
    plan.ffn[name] = plan.ffn[name][:-1]
    with pytest.raises(ValueError, match="same number of neurons"):
        st.apply_plan(model, plan)


def test_refuses_a_model_with_unstructured_masks(tiny_model):
    from summprune.prune import apply_stage

    apply_stage(tiny_model, {"enc_ffn": 0.5})
    with pytest.raises(ValueError, match="before unstructured pruning"):
        st.shrink(tiny_model, ffn_keep=0.5)


def test_structured_config_validates():
    from summprune.config import config_from_dict

    ok = config_from_dict({"prune": {"structured": {"ffn_keep": 0.5, "decoder_layers": 2}}})
    assert ok.prune.structured.ffn_keep == 0.5
    for bad, match in [({"ffn_keep": 1.5}, "ffn_keep"), ({"heads_keep": 0}, "heads_keep"),
                       ({"importance": "magic"}, "importance"), ({"layer_selection": "last"}, "layer_selection"),
                       ({"decoder_layers": -1}, "decoder_layers"), ({"distill_alpha": 2.0}, "distill_alpha")]:
        with pytest.raises(ConfigError, match=match):
            config_from_dict({"prune": {"structured": bad}})


TINY = ["model.name=tiny", "model.tiny_d_model=32", "model.tiny_d_ff=64", "model.tiny_vocab=300",
        "data.dataset=synthetic", "data.synthetic_docs=40", "data.val_size=8", "data.max_source_length=64",
        "data.max_target_length=16", "train.max_steps=2", "train.batch_size=4", "train.logging_steps=1",
        "train.precision=fp32", "eval.docs=2", "eval.max_length=8", "eval.batch_size=2",
        "prune.structured.encoder_layers=1", "prune.structured.decoder_layers=1",
        "prune.structured.importance_batches=2",
        "prune.structured.recover_epochs=0", "prune.structured.recover_steps=2", "threads=1"]


def test_ready_config_starts_on_a_tiny_model_and_combines_with_unstructured(tmp_path):
    from summprune.pipeline import run

    path = ROOT / "configs" / "structured_kd.toml"
    cfg = load_config(path)
    sc = cfg.prune.structured
    assert cfg.model.name == "t5-small" and (sc.encoder_layers, sc.decoder_layers) == (4, 3) and sc.distill_alpha < 1
    cfg = load_config(path, TINY + [f"runs_dir={tmp_path}", f"output_dir={tmp_path / 'model'}",
                                    "prune.gradual.target_nonzero_ratio=0.5", "prune.gradual.steps=1",
                                    "prune.gradual.recover_steps=1", "export_format=compact"])
    summary = run(cfg, log_print=lambda s: None)
    info = json.loads((tmp_path / "model" / "pruning.json").read_text())
    s = info["structured"]
    assert s["params_after"] < s["params_before"] and s["plan"]["decoder_layers"] == [0]
    assert summary["final"]["nonzero_ratio"] == pytest.approx(0.5, abs=1e-3)  # of the smaller model
    assert summary["final"]["nonzero_ratio_vs_original"] < 0.5 * s["params_after"] / s["params_before"] + 1e-3
    recs = [json.loads(l) for l in (tmp_path / "structured_kd" / "metrics.jsonl").read_text().splitlines()]
    # step 1 is the removal (structural methods run first), its distilled recovery ran, then gradual
    steps = [r for r in recs if r.get("event") == "stage"]
    assert [r["method"] for r in steps] == ["structured", "gradual"]
    assert any(r.get("stage") == "recover-1" and r.get("event") == "train_log" for r in recs)
    assert steps[0]["recovery"]["global_step"] > 0 and "kaggle_score" in steps[0]
    from summprune.export import load_model

    m = load_model(tmp_path / "model")
    assert m.config.num_decoder_layers == 1 and m.config.d_ff == 32 and m.config.num_heads == 2

    # the smaller model goes through the user's scripts as any other
    import importlib.util

    from summprune.synthetic import make_corpus

    rows = make_corpus(4, seed=3)
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps({"text": r["text"], "summary": r["summary"]}) + "\n" for r in rows))
    mods = {}
    for name in ("generate_csv", "score_result"):
        spec = importlib.util.spec_from_file_location(name, ROOT / f"{name}.py")
        mods[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mods[name])
    out = tmp_path / "sub.csv"
    assert mods["generate_csv"].main(["--model", str(tmp_path / "model"), "--data", str(data), "--output", str(out),
                                      "--max-length", "8", "--device", "cpu", "--no-progress"]) == 0
    assert mods["score_result"].main(["--predictions", str(out), "--references", str(data), "--model",
                                      str(tmp_path / "model"), "--json", str(tmp_path / "s.json")]) == 0
    scores = json.loads((tmp_path / "s.json").read_text())
    assert 0 < scores["nonzero_ratio"] <= 0.5 + 1e-3
    assert scores["nonzero_ratio_vs_original"] == pytest.approx(summary["final"]["nonzero_ratio_vs_original"])


def test_a_model_with_its_own_lm_head_keeps_it():
    """A model whose lm_head is not the shared embedding (tie_mode 'untie'/'course', masks made
    permanent) must not have lm_head's values loaded into the tied embedding of the new model."""
    from summprune.prune import untie_lm_head

    model = _model()
    untie_lm_head(model)
    with torch.no_grad():
        model.lm_head.weight.mul_(3.0).add_(0.1)
    plan = _random_plan(model, ffn_keep=0.5, heads_keep=0.5)
    small = st.apply_plan(model, plan)
    assert small.lm_head.weight is not small.shared.weight
    assert small.encoder.embed_tokens.weight is small.shared.weight is small.decoder.embed_tokens.weight
    assert torch.equal(small.shared.weight, model.shared.weight)
    assert torch.equal(small.lm_head.weight, model.lm_head.weight)
    masked = copy.deepcopy(model)
    st.mask_plan(masked, plan)
    batch = _batch()
    torch.testing.assert_close(_logits(small, batch), _logits(masked, batch), rtol=1e-5, atol=1e-5)


def test_refuses_fewer_encoder_than_decoder_blocks():
    """transformers 5's generate() sizes the KV cache by num_layers (the encoder's): a T5 with
    fewer encoder than decoder blocks fails there, so such a plan is refused up front."""
    model = _model(layers=3)
    with pytest.raises(ValueError, match="fewer encoder than decoder"):
        st.shrink(model, encoder_layers=1, decoder_layers=3)
    small, _ = st.shrink(model, encoder_layers=2, decoder_layers=2)
    batch = _batch()
    out = small.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_length=5,
                         min_length=5, do_sample=False)
    assert out.shape == (batch["input_ids"].shape[0], 5)  # a cached 2+2 model decodes to the full length


# ---- issue 31: report and the prune log show what a structural cut did -------------------------

@pytest.mark.parametrize("family", ["t5", "bart"])
def test_report_and_the_prune_log_show_a_structural_cut(family, tmp_path, capsys):
    """A decoder cut 2 -> 1 leaves both ratios at 1.0000 (they count against the model's own size);
    the prune log and `report` now show the blocks, widths, heads, parameters against the
    original (recorded in pruning.json, or --original DIR), the stored dtype and the size."""
    from summprune.__main__ import main as cli
    from summprune.export import export_model
    from summprune.modeling import build_tiny_model
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer

    tok = train_tokenizer([r["text"] for r in make_corpus(10)], vocab_size=120)
    d = tmp_path / "orig"
    build_tiny_model(len(tok), d_model=32, layers=2, heads=4, d_ff=64, family=family).save_pretrained(d)
    tok.save_pretrained(d)
    recipe = tmp_path / "cut.toml"
    recipe.write_text('name = "cut"\nexport_format = "hf"\n[prune.structured]\ndecoder_layers = 1\n'
                      'ffn_keep = 0.5\nimportance = "weight"\nrecover_epochs = 0\n')
    out = tmp_path / "cut"
    assert cli(["prune", "--model", str(d), "--config", str(recipe), "--output", str(out), "--no-train",
                "data.max_source_length=64"]) == 0  # the tiny BART reads 256 positions
    log = capsys.readouterr().out
    info = json.loads((out / "pruning.json").read_text())
    orig_params, n, final = info["original"]["params"], info["final"]["dense_params"], info["final"]
    assert n < orig_params and final["mask_ratio"] > 0.97  # the ratios alone do not show the cut
    # the step line says what was cut
    assert (f"step 1 (structured): mask_ratio={final['mask_ratio']:.4f} nonzero_ratio={final['nonzero_ratio']:.4f} "
            f"params={n:,} of the original's {orig_params:,}") in log
    shape = f"model: {family}, encoder 2 blocks, decoder 1 block; d_model 32; d_ff 32; heads 4"
    original = "(the original: encoder 2 blocks, decoder 2 blocks; d_model 32; d_ff 64; heads 4)"
    params = f"parameters: {n:,} = {n / orig_params:.4f} of the original's {orig_params:,}"
    for text in (log, None):
        if text is None:  # report reads the original from pruning.json
            assert cli(["report", "--model", str(out)]) == 0
            text = capsys.readouterr().out
        assert f"{shape} {original}" in text
        assert params in text
        assert (f"non-zero: {final['nonzero']:,} = {final['nonzero_ratio']:.4f} of its own parameters, "
                f"{final['nonzero'] / orig_params:.4f} of the original's") in text
        assert "stored: hf format, fp32," in text and " MB on disk (" in text

    # a file that records no original (compact fp16, pruning.json gone): --original DIR names it
    small = export_model(out, tmp_path / "small", format="compact", dtype="fp16")
    (small / "pruning.json").unlink()
    assert cli(["report", "--model", str(small)]) == 0
    text = capsys.readouterr().out
    assert "stored: compact format, fp16," in text and "the original is not known" in text and shape in text
    assert cli(["report", "--model", str(small), "--original", str(d)]) == 0
    text = capsys.readouterr().out
    assert params in text and f"(the original: --original {d})" in text
    assert cli(["report", "--model", str(small), "--original", str(tmp_path / "nowhere")]) == 2
    assert "--original" in capsys.readouterr().err
