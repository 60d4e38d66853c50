"""summprune.generate: batched == one-by-one, ID order, skip/resume hooks, devices, dtypes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from summprune.generate import (check_dtype, clean_prediction, generate_summaries, prepare_model,
                                resolve_device)
from summprune.modeling import build_tiny_model

SHARED_T5 = Path(__file__).resolve().parents[2] / "shared" / "t5-small"
GEN = dict(max_length=16, progress=False)


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    from summprune.synthetic import make_corpus

    return make_corpus(40, seed=3)


@pytest.fixture(scope="module")
def tok(corpus):
    from summprune.tokenizer import train_tokenizer

    return train_tokenizer([r["text"] for r in corpus] + [r["summary"] for r in corpus], vocab_size=400)


@pytest.fixture(scope="module")
def texts(corpus) -> list[str]:
    # Very different lengths, not sorted, so batches need padding and sorting reorders them.
    cuts = [400, 60, 1500, 10, 900, 250, 2500, 120]
    return [r["text"][:c] for r, c in zip(corpus, cuts)]


def steerable(model):
    """A random T5 repeats its input token forever (the tied embedding dominates the decoder), so
    every document would get the same summary; scaled down, the encoder steers the output and
    documents get different summaries, which makes the comparisons below mean something."""
    with torch.no_grad():
        model.shared.weight.mul_(0.03)
    return model


@pytest.fixture
def model(tok):
    return steerable(build_tiny_model(vocab_size=len(tok), d_model=32, layers=2, heads=4, d_ff=64, seed=1))


def one_by_one(model, tok, texts, **kw) -> dict[int, str]:
    return {i: generate_summaries(model, tok, [t], batch_size=1, **GEN, **kw)[0] for i, t in enumerate(texts)}


def test_batched_equals_one_by_one_in_id_order(model, tok, texts):
    batched = generate_summaries(model, tok, texts, batch_size=3, max_source_length=200, **GEN)
    assert list(batched) == list(range(len(texts)))
    assert batched == one_by_one(model, tok, texts, max_source_length=200)
    assert len(set(batched.values())) > 1  # the documents really get different summaries


def test_real_t5_tokenizer_batched_equals_one_by_one(texts):
    if not (SHARED_T5 / "tokenizer.json").is_file():
        pytest.skip("../shared/t5-small not present")
    from summprune.modeling import load_tokenizer

    tok = load_tokenizer(SHARED_T5)
    model = steerable(build_tiny_model(vocab_size=len(tok), seed=2))
    batched = generate_summaries(model, tok, texts, batch_size=4, max_source_length=300, **GEN)
    assert list(batched) == list(range(len(texts)))
    assert batched == one_by_one(model, tok, texts, max_source_length=300)
    assert len(set(batched.values())) > 1


def test_batches_go_longest_first_and_on_batch_sees_every_id_once(model, tok, texts):
    seen: list[list[int]] = []
    out = generate_summaries(model, tok, texts, batch_size=3, on_batch=lambda ids, s: seen.append(ids), **GEN)
    lengths = [len(tok("summarize: " + t)["input_ids"]) for t in texts]
    flat = [i for ids in seen for i in ids]
    assert sorted(flat) == list(range(len(texts)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert [len(ids) for ids in seen] == [3, 3, 2]
    assert list(out) == list(range(len(texts)))


def test_skip_ids_are_not_generated(model, tok, texts):
    seen: list[int] = []
    full = generate_summaries(model, tok, texts, batch_size=2, **GEN)
    part = generate_summaries(model, tok, texts, batch_size=2, skip_ids={0, 3, 6},
                              on_batch=lambda ids, s: seen.extend(ids), **GEN)
    assert sorted(seen) == list(part) == [1, 2, 4, 5, 7]
    assert part == {i: full[i] for i in part}
    assert generate_summaries(model, tok, texts, skip_ids=range(len(texts)), **GEN) == {}


def test_on_batch_exception_stops_after_that_batch(model, tok, texts):
    seen: list[int] = []

    def stop(ids, summaries):
        seen.extend(ids)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_summaries(model, tok, texts, batch_size=3, on_batch=stop, **GEN)
    assert len(seen) == 3


def test_min_new_tokens_forces_full_length(model, tok, texts, monkeypatch):
    shapes = []
    real = model.generate

    def spy(**kw):
        out = real(**kw)
        shapes.append(tuple(out.shape))
        assert (out[:, 1:-1] != tok.eos_token_id).all()
        return out

    monkeypatch.setattr(model, "generate", spy)
    generate_summaries(model, tok, texts[:4], batch_size=2, max_length=17, min_new_tokens=16, progress=False)
    assert shapes == [(2, 17), (2, 17)]  # max_length counts the decoder start token
    with pytest.raises(ValueError, match="min_new_tokens"):
        generate_summaries(model, tok, texts, max_length=17, min_new_tokens=17, progress=False)


def test_bad_arguments(model, tok, texts):
    with pytest.raises(ValueError, match="max_length"):
        generate_summaries(model, tok, texts, max_length=0, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        generate_summaries(model, tok, texts, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="dtype 'fp8'"):
        generate_summaries(model, tok, texts, dtype="fp8", progress=False)


def test_training_mode_is_restored(model, tok, texts):
    model.train()
    generate_summaries(model, tok, texts[:2], **GEN)
    assert model.training


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_fast_paths_run_and_leave_the_model_alone(model, tok, texts, dtype):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = generate_summaries(model, tok, texts, batch_size=4, dtype=dtype, **GEN)
    assert list(out) == list(range(len(texts))) and all(isinstance(s, str) for s in out.values())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) and after[k].dtype == torch.float32 for k in before)
    assert all(type(m) is nn.Linear for m in model.modules() if "Linear" in type(m).__name__)


def test_int8_quantizes_a_copy(model):
    q = prepare_model(model, "cpu", "int8")
    assert q is not model
    assert not any(type(m) is nn.Linear for m in q.modules())


def test_bf16_is_a_copy_with_eager_decoder_attention_on_cpu(model):
    b = prepare_model(model, "cpu", "bf16")
    assert b is not model and b.lm_head.weight.dtype == torch.bfloat16
    assert b.decoder.config._attn_implementation == "eager"
    assert model.decoder.config._attn_implementation != "eager" or model.config._attn_implementation == "eager"
    assert prepare_model(model, "cpu", "fp32") is model


def test_clean_prediction():
    assert clean_prediction("a, b,c\nd\r\ne\rf") == "a. b.c d e f"
    assert clean_prediction("naïve “quotes” ok") == "naïve “quotes” ok"
    assert clean_prediction("") == ""


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_check_dtype():
    assert check_dtype("cpu", "fp32") == torch.device("cpu")
    assert check_dtype("cpu", "int8") == torch.device("cpu")
    with pytest.raises(ValueError, match="fp16"):
        check_dtype("cpu", "fp16")
    with pytest.raises(ValueError, match="unknown dtype"):
        check_dtype("cpu", "float32")
