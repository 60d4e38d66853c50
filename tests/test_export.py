"""Round trips, ties and failure modes of summprune.export (tiny models; a few seconds)."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from summprune import export
from summprune.io import hf as hf_io
from summprune.export import export_model, load_model, save_compact, save_hf
from summprune.modeling import build_tiny_model
from summprune.prune import apply_stage, permanent_copy, prepare_model

AMOUNTS = {"enc_self_attn": 0.3, "enc_ffn": 0.5, "dec_self_attn": 0.3, "cross_attn": 0.3, "dec_ffn": 0.5, "lm_head": 0.5}
PICKLES = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt")


@functools.lru_cache(maxsize=None)
def _pruned(tie_mode: str):
    return pruned_model(tie_mode, cache=False)


def pruned_model(tie_mode: str = "tied", stages: int = 2, amounts: dict | None = None, cache: bool = True):
    """A tiny T5 pruned in ``tie_mode`` (shared between tests for the default recipe: nothing in
    summprune.export modifies the model it is given, which test_fp32_round_trip_exact checks)."""
    if cache and stages == 2 and amounts is None:
        return _pruned(tie_mode)
    m = build_tiny_model(vocab_size=100)
    prepare_model(m, tie_mode)
    for _ in range(stages):
        apply_stage(m, amounts or AMOUNTS, tie_mode=tie_mode)
    return m.eval()


def effective_state(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What the (masked) model computes with, per state-dict name of the permanent model."""
    return {k: v.detach().clone() for k, v in permanent_copy(m).state_dict().items()}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every test here on one torch thread (conftest.one_thread)."""


X = torch.tensor([[5, 17, 42, 8, 99, 3, 1], [7, 7, 60, 12, 1, 0, 0]])
Y = torch.tensor([[0, 11, 23, 4], [0, 50, 2, 9]])


@torch.no_grad()
def logits(m):
    return m(input_ids=X, attention_mask=(X != 0).long(), decoder_input_ids=Y).logits


def assert_same_state(got: torch.nn.Module, want: dict[str, torch.Tensor]) -> None:
    sd = got.state_dict()
    assert set(sd) == set(want)
    for k, v in want.items():
        assert torch.equal(sd[k], v), k


def no_pickles(d: Path) -> bool:
    return not any(p for pat in PICKLES for p in Path(d).rglob(pat))


@pytest.fixture
def tied():
    return pruned_model("tied")


# ------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("fmt", ["hf", "compact"])
@pytest.mark.parametrize("tie_mode", ["tied", "untie", "course"])
def test_fp32_round_trip_exact(tmp_path, fmt, tie_mode):
    m = pruned_model(tie_mode)
    raw = {k: v.clone() for k, v in m.state_dict().items()}  # weight_orig, weight_mask, ...
    want = effective_state(m)
    ref_logits = logits(m)
    out = export_model(m, tmp_path / "out", format=fmt, pruning_info={"tie_mode": tie_mode, "ratio": 0.5})
    got = load_model(out)
    assert not got.training and next(got.parameters()).dtype == torch.float32
    assert_same_state(got, want)
    assert torch.equal(logits(got), ref_logits)
    if tie_mode == "tied":
        assert got.lm_head.weight is got.shared.weight
    else:
        assert got.lm_head.weight is not got.shared.weight
        assert torch.equal(got.lm_head.weight, want["lm_head.weight"])
    assert got.encoder.embed_tokens.weight is got.shared.weight
    assert got.decoder.embed_tokens.weight is got.shared.weight
    assert json.loads((out / "pruning.json").read_text()) == {"tie_mode": tie_mode, "ratio": 0.5}
    assert no_pickles(out)
    # the caller's model is untouched: still masked, same tensors
    assert "weight_mask" in dict(m.lm_head.named_buffers())
    sd = m.state_dict()
    assert set(sd) == set(raw) and all(torch.equal(sd[k], v) for k, v in raw.items())


def test_course_mode_keeps_dense_embedding(tmp_path):
    m = pruned_model("course")
    got = load_model(save_compact(m, tmp_path / "c"))
    assert torch.count_nonzero(got.shared.weight) == got.shared.weight.numel()
    assert torch.count_nonzero(got.lm_head.weight) < got.lm_head.weight.numel() // 2


@pytest.mark.parametrize("dtype,tdt,atol", [("fp16", torch.float16, 1e-2), ("bf16", torch.bfloat16, 1e-1)])
def test_half_precision_round_trip(tmp_path, tied, dtype, tdt, atol):
    want = {k: v.to(tdt).float() for k, v in effective_state(tied).items()}
    got = load_model(save_compact(tied, tmp_path / dtype, dtype=dtype))
    assert next(got.parameters()).dtype == torch.float32
    assert_same_state(got, want)  # exactly the rounded weights, zeros where pruned
    assert got.lm_head.weight is got.shared.weight
    assert torch.allclose(logits(got), logits(tied), atol=atol, rtol=0)
    man = json.loads((tmp_path / dtype / "compact.json").read_text())
    assert man["dtype"] == dtype and man["format"] == export.FORMAT


def test_manifest_describes_tensors_and_ties(tmp_path, tied):
    out = save_compact(tied, tmp_path / "c")
    man = json.loads((out / "compact.json").read_text())
    assert man["tied"] == {"shared.weight": ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"]}
    by = {e["name"]: e for e in man["tensors"]}
    assert by["shared.weight"]["storage"] == "bitmask"
    assert by["encoder.final_layer_norm.weight"]["storage"] == "dense"
    assert by["encoder.block.0.layer.1.DenseReluDense.wi.weight"]["nnz"] == int(
        torch.count_nonzero(effective_state(tied)["encoder.block.0.layer.1.DenseReluDense.wi.weight"]))
    for e in man["tensors"]:
        assert {"name", "shape", "storage", "nnz", "sha256"} <= set(e)
    assert man["total_nnz"] == sum(e["nnz"] for e in man["tensors"])
    assert {"config.json", "generation_config.json", "compact.safetensors"} <= {p.name for p in out.iterdir()}


def test_compact_fp16_smaller_than_hf(tmp_path):
    m = pruned_model("tied", stages=4, amounts={g: 0.5 for g in AMOUNTS})  # ~94% of matrices pruned
    hf = export.dir_size(save_hf(m, tmp_path / "hf"))
    c32 = export.dir_size(save_compact(m, tmp_path / "c32"))
    c16 = export.dir_size(save_compact(m, tmp_path / "c16", dtype="fp16"))
    assert c16 < c32 < hf
    assert c16 < 0.3 * hf


def test_load_plain_save_pretrained_dir(tmp_path):
    m = build_tiny_model(vocab_size=100).eval()
    m.save_pretrained(str(tmp_path / "plain"))
    got = load_model(tmp_path / "plain")
    assert_same_state(got, m.state_dict())
    assert got.lm_head.weight is got.shared.weight


def test_unpruned_model_is_saved_as_is(tmp_path):
    m = build_tiny_model(vocab_size=100).eval()
    got = load_model(save_compact(m, tmp_path / "c"))
    assert_same_state(got, m.state_dict())


def test_export_from_dir_carries_tokenizer_and_pruning_info(tmp_path, tied):
    src = save_hf(tied, tmp_path / "src", pruning_info={"stages": 2})
    (src / "tokenizer_config.json").write_text('{"model_max_length": 512}')
    (src / "spiece.model").write_bytes(b"\x00fake sentencepiece\xff")
    out = export_model(src, tmp_path / "dst", format="compact", dtype="fp16")
    assert (out / "spiece.model").read_bytes() == b"\x00fake sentencepiece\xff"
    assert (out / "tokenizer_config.json").is_file()
    assert json.loads((out / "pruning.json").read_text()) == {"stages": 2}
    # and back from compact to hf, in place over the source directory
    export_model(out, out, format="hf")
    assert (out / "config.json").is_file() and not (out / "compact.json").exists()
    assert (out / "spiece.model").is_file() and (out / "pruning.json").is_file()
    assert load_model(out).lm_head.weight is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "src"]


# ------------------------------------------------------------------------------ failures


def flip(path: Path, offset: int) -> None:
    b = bytearray(path.read_bytes())
    b[offset] ^= 0xFF
    path.write_bytes(bytes(b))


@pytest.fixture
def compact_dir(tmp_path, tied):
    return save_compact(tied, tmp_path / "c")


def test_corrupt_data_is_detected(compact_dir):
    f = compact_dir / "compact.safetensors"
    flip(f, f.stat().st_size - 10)  # inside the last tensor's bytes
    with pytest.raises(ValueError, match=r"compact\.safetensors.*tensor '.*'.*checksum"):
        load_model(compact_dir)


def test_corrupt_header_is_detected(compact_dir):
    flip(compact_dir / "compact.safetensors", 12)
    with pytest.raises(ValueError, match=r"compact\.safetensors"):
        load_model(compact_dir)


@pytest.mark.parametrize("fmt", ["compact", "hf"])
def test_truncated_file_is_detected(tmp_path, tied, fmt):
    out = export_model(tied, tmp_path / fmt, format=fmt)
    name = "compact.safetensors" if fmt == "compact" else "model.safetensors"
    f = out / name
    f.write_bytes(f.read_bytes()[:-1000])
    with pytest.raises(ValueError, match=re.escape(name) + ".*(truncated|corrupt)"):
        load_model(out)


def test_corrupt_hf_file_is_detected(tmp_path, tied):
    out = save_hf(tied, tmp_path / "hf")
    f = out / "model.safetensors"
    flip(f, f.stat().st_size - 10)
    with pytest.raises(ValueError, match=r"model\.safetensors.*checksum"):
        load_model(out)


def _edit_manifest(d: Path, fn) -> None:
    man = json.loads((d / "compact.json").read_text())
    fn(man)
    (d / "compact.json").write_text(json.dumps(man))


def _entry(man: dict, name: str) -> dict:
    return next(e for e in man["tensors"] if e["name"] == name)


def test_manifest_wrong_count(compact_dir):
    name = "decoder.block.1.layer.2.DenseReluDense.wo.weight"
    _edit_manifest(compact_dir, lambda m: _entry(m, name).update(nnz=_entry(m, name)["nnz"] - 1))
    with pytest.raises(ValueError, match=rf"{name}.*nnz"):
        load_model(compact_dir)


def test_manifest_wrong_shape(compact_dir):
    name = "encoder.block.0.layer.0.SelfAttention.q.weight"
    _edit_manifest(compact_dir, lambda m: _entry(m, name).update(shape=[32, 128], numel=32 * 128))
    with pytest.raises(ValueError, match=rf"{name}.*shape"):
        load_model(compact_dir)


def test_manifest_corrupt_json(compact_dir):
    (compact_dir / "compact.json").write_text('{"format": "summprune-compact", "tens')
    with pytest.raises(ValueError, match=r"compact\.json"):
        load_model(compact_dir)


@pytest.mark.parametrize("edit,match", [
    (lambda m: m.update(tensors={"a": 1}), "'tensors' is not a list"),
    (lambda m: m["tensors"][0].pop("sha256"), "sha256"),
    (lambda m: m["tensors"][3].update(storage="zip"), "storage"),
    (lambda m: m.update(version=99), "version 99"),
    (lambda m: m["tied"]["shared.weight"].append("encoder.block.0.layer.0.SelfAttention.q.weight"), "tied to"),
])
def test_manifest_malformed(compact_dir, edit, match):
    _edit_manifest(compact_dir, edit)
    with pytest.raises(ValueError, match=match):
        load_model(compact_dir)


def test_tensor_missing_from_file(compact_dir):
    from safetensors.torch import load_file

    f = compact_dir / "compact.safetensors"
    sd = load_file(str(f))
    del sd["shared.weight::mask"]
    save_file(sd, str(f))
    with pytest.raises(ValueError, match=r"shared\.weight::mask.*missing"):
        load_model(compact_dir)


def test_missing_paths(tmp_path, compact_dir):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_model(tmp_path / "nope")
    (compact_dir / "compact.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"compact\.safetensors"):
        load_model(compact_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        load_model(tmp_path / "empty")


def test_masked_checkpoint_is_refused(tmp_path, tied):
    """save_pretrained of a still-masked model holds weight_orig/weight_mask; transformers would
    load it with random weights. load_model says so instead."""
    tied.save_pretrained(str(tmp_path / "masked"))
    with pytest.raises(ValueError, match="weight_orig"):
        load_model(tmp_path / "masked")


@pytest.mark.parametrize("fmt", ["hf", "compact", "course"])
def test_atomic_write_failure_leaves_nothing(tmp_path, tied, monkeypatch, fmt):
    def boom(info, d):
        assert any(Path(d).iterdir())  # the weights are already written into the temp dir
        raise RuntimeError("disk full")

    monkeypatch.setattr(hf_io, "write_pruning", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_model(tied, tmp_path / "out", format=fmt, pruning_info={})
    assert list(tmp_path.iterdir()) == []


def test_atomic_replace_keeps_old_on_failure(tmp_path, tied, monkeypatch):
    out = save_compact(tied, tmp_path / "out", pruning_info={"v": 1})
    before = sorted((p.name, p.read_bytes()) for p in out.iterdir())

    def boom(info, d):
        raise RuntimeError("killed")

    monkeypatch.setattr(hf_io, "write_pruning", boom)
    with pytest.raises(RuntimeError):
        save_hf(tied, out, pruning_info={"v": 2})
    assert sorted((p.name, p.read_bytes()) for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    monkeypatch.undo()
    save_hf(tied, out, pruning_info={"v": 2})  # replacing a model dir succeeds
    assert json.loads((out / "pruning.json").read_text()) == {"v": 2}
    assert not (out / "compact.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_refuses_to_replace_non_model_dir(tmp_path, tied):
    d = tmp_path / "notes"
    d.mkdir()
    (d / "important.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="notes"):
        save_compact(tied, d)
    assert (d / "important.txt").read_text() == "keep me"


def test_bad_arguments(tmp_path, tied):
    with pytest.raises(ValueError, match="dtype"):
        save_compact(tied, tmp_path / "x", dtype="int4")
    with pytest.raises(ValueError, match="format"):
        export_model(tied, tmp_path / "x", format="onnx")
    assert not (tmp_path / "x").exists()


def test_fp16_overflow_is_an_error(tmp_path):
    m = build_tiny_model(vocab_size=100).eval()
    with torch.no_grad():
        m.encoder.final_layer_norm.weight[0] = 1e6
    with pytest.raises(ValueError, match="final_layer_norm.*overflow fp16"):
        save_compact(m, tmp_path / "x", dtype="fp16")
    assert not (tmp_path / "x").exists()
    load_model(save_compact(m, tmp_path / "y", dtype="bf16"))


@pytest.mark.parametrize("fmt", ["hf", "compact", "course"])
def test_exported_files_get_a_normal_files_mode(tmp_path, tied, fmt):
    """safetensors writes its files 0600 (mkstemp); an export is for others to read too."""
    import os

    old = os.umask(0o022)
    try:
        out = export_model(tied, tmp_path / "out", format=fmt)
    finally:
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()}
    assert set(modes.values()) == {"0o644"}, modes


# ------------------------------------------------------------------------------ issue 22 (fuzz)


def _unchecked(monkeypatch):
    """Let an export write a model the exporters refuse (to build a damaged model directory)."""
    monkeypatch.setattr(export, "check_finite", lambda model, source=None: None)


@pytest.mark.parametrize("fmt", ["hf", "compact"])
def test_load_refuses_non_finite_weights(tmp_path, monkeypatch, fmt):
    """A NaN/inf model loaded and generated empty summaries with exit 0 (the course format and
    every export already refused it)."""
    m = build_tiny_model(vocab_size=100).eval()
    with torch.no_grad():
        m.encoder.block[0].layer[1].DenseReluDense.wi.weight[0, 0] = float("inf")
    _unchecked(monkeypatch)
    out = export_model(m, tmp_path / fmt, format=fmt)
    monkeypatch.undo()
    name = "model.safetensors" if fmt == "hf" else "compact.safetensors"
    with pytest.raises(ValueError, match=re.escape(str(out / name)) + r": .*not all finite.*DenseReluDense\.wi"):
        load_model(out)


def _secret(tmp_path: Path) -> Path:
    s = tmp_path / "secret.txt"
    s.write_text("private key")
    return s


def test_a_tokenizer_file_that_links_out_of_the_folder_is_not_copied(tmp_path, tied):
    src = save_hf(tied, tmp_path / "src")
    (src / "tokenizer_config.json").symlink_to(_secret(tmp_path))
    with pytest.raises(ValueError, match=r"tokenizer_config\.json: a symlink to .*secret\.txt, outside"):
        export_model(src, tmp_path / "dst", format="compact")
    with pytest.raises(ValueError, match=r"tokenizer_config\.json: a symlink to .*outside"):
        save_hf(tied, tmp_path / "dst", tokenizer=src)  # a tokenizer directory given by path
    assert not (tmp_path / "dst").exists()
    # a dangling link is refused too, not skipped
    (src / "tokenizer_config.json").unlink()
    (src / "tokenizer.json").symlink_to(tmp_path / "gone.json")
    with pytest.raises(ValueError, match=r"tokenizer\.json: a symlink to .*gone\.json, which does not exist"):
        export_model(src, tmp_path / "dst", format="compact")


def test_manifests_cannot_name_files_outside_the_folder(tmp_path, tied):
    """checksums.json and the safetensors index named ``../x``, absolute paths or symlinks out:
    the files were hashed (the digests printed) and weights loaded from outside."""
    out = save_hf(tied, tmp_path / "hf")
    secret = _secret(tmp_path)
    sums = json.loads((out / "checksums.json").read_text())
    (out / "link.safetensors").symlink_to(secret)
    for name, match in [("../secret.txt", "not a file name inside"), (str(secret), "not a file name inside"),
                        ("link.safetensors", r"link\.safetensors: a symlink to .*secret\.txt, outside")]:
        bad = {**sums, "files": {**sums["files"], name: export.hf.sha256_file(secret)}}  # the right digest
        (out / "checksums.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=match):
            load_model(out)
    (out / "checksums.json").unlink()
    other = save_hf(tied, tmp_path / "other")
    for name in ("../other/model.safetensors", str(other / "model.safetensors")):
        (out / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"shared.weight": name}}))
        with pytest.raises(ValueError, match=r"model\.safetensors\.index\.json: .*not a file name inside"):
            load_model(out)
    (out / "model.safetensors.index.json").write_text("[]")
    with pytest.raises(ValueError, match=r"index\.json: malformed"):
        load_model(out)


def test_compact_weights_file_cannot_be_a_symlink_out(tmp_path, tied):
    d = save_compact(tied, tmp_path / "c")
    outside = tmp_path / "elsewhere.safetensors"
    (d / "compact.safetensors").rename(outside)
    (d / "compact.safetensors").symlink_to(outside)
    with pytest.raises(ValueError, match=r"compact\.safetensors: a symlink to .*elsewhere\.safetensors, outside"):
        load_model(d)


def _edit_config(d: Path, **changes) -> None:
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("fmt", ["hf", "compact", "course"])
@pytest.mark.parametrize("key,value,match", [
    ("num_layers", 1_000_000, "num_layers=1,000,000 exceeds this package's limit of 128"),  # hung before
    ("vocab_size", 2_000_000, "vocab_size=2,000,000 exceeds"),
    ("vocab_size", -1, "vocab_size=-1 is not a positive whole number"),  # a RuntimeError traceback before
    ("d_ff", 0, "d_ff=0 is not a positive whole number"),
    ("num_heads", 2.5, r".*'num_heads'[\s\S]*2\.5"),  # transformers' own type check, named
])
def test_config_sizes_are_checked_before_anything_is_built(tmp_path, tied, fmt, key, value, match):
    out = export_model(tied, tmp_path / fmt, format=fmt)
    _edit_config(out, **{key: value})
    with pytest.raises(ValueError, match=re.escape(str(out / "config.json")) + ": " + match):
        load_model(out)


def test_the_parameter_count_is_capped(tmp_path, tied):
    out = save_hf(tied, tmp_path / "hf")
    _edit_config(out, d_model=65_536, d_ff=1_048_576, num_layers=24, num_decoder_layers=24, vocab_size=32_128)
    with pytest.raises(ValueError, match=r"config\.json: describes a model of .* parameters, more than"):
        load_model(out)


def test_compact_tensor_of_the_wrong_dtype_is_refused(tmp_path, tied):
    """A float weight stored as integers passed every check and then raised a raw RuntimeError
    (an integer Parameter) in load_state_dict."""
    from safetensors.torch import load_file

    from summprune.io.compact import _sha256_tensors

    d = save_compact(tied, tmp_path / "c")
    name = "encoder.final_layer_norm.weight"
    sd = load_file(str(d / "compact.safetensors"))
    sd[name] = torch.ones_like(sd[name], dtype=torch.int32)
    save_file(sd, str(d / "compact.safetensors"))
    _edit_manifest(d, lambda m: _entry(m, name).update(dtype="int32", stored_dtype="int32",
                                                       sha256=_sha256_tensors(sd[name])))
    with pytest.raises(ValueError, match=rf"compact\.json: tensor '{name}' is stored as int32"):
        load_model(d)


def test_hf_tensor_of_the_wrong_dtype_is_refused(tmp_path, tied):
    from safetensors.torch import load_file

    out = save_hf(tied, tmp_path / "hf")
    (out / "checksums.json").unlink()
    sd = load_file(str(out / "model.safetensors"))
    sd["encoder.final_layer_norm.weight"] = torch.ones_like(sd["encoder.final_layer_norm.weight"], dtype=torch.int32)
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"model\.safetensors: tensor 'encoder\.final_layer_norm\.weight' is stored as I32"):
        load_model(out)


@pytest.mark.parametrize("fmt", ["hf", "compact", "course"])
def test_a_generation_config_that_is_not_an_object_is_an_error(tmp_path, tied, fmt):
    out = export_model(tied, tmp_path / fmt, format=fmt)
    (out / "generation_config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"generation_config\.json: not a JSON object \(a list\)"):
        load_model(out)


def test_a_tokenizer_json_of_the_wrong_schema_is_refused_by_name(tmp_path, tied):
    src = save_hf(tied, tmp_path / "src")
    (src / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "Nope"}}))
    with pytest.raises(ValueError, match=r"tokenizer\.json: not a tokenizer the tokenizers library can read"):
        export_model(src, tmp_path / "dst", format="hf")
    (src / "tokenizer.json").write_text("[]")
    with pytest.raises(ValueError, match=r"tokenizer\.json: not a JSON object"):
        export_model(src, tmp_path / "dst", format="hf")
    assert not (tmp_path / "dst").exists()


@pytest.mark.parametrize("fmt", ["hf", "compact", "course"])
def test_disk_full_names_the_output_and_leaves_nothing(tmp_path, tied, monkeypatch, fmt):
    import errno

    def full(info, d):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hf_io, "write_pruning", full)
    out = tmp_path / "out"
    with pytest.raises(OSError, match=re.escape(str(out)) + r": cannot be written \(No space left on device\); "
                                      "nothing was written") as e:
        export_model(tied, out, format=fmt, pruning_info={})
    assert e.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_disk_full_in_safetensors_names_the_output(tmp_path, tied, monkeypatch):
    """safetensors reports ENOSPC as a SafetensorError (not an OSError): a raw traceback before."""
    import safetensors.torch

    def full(*a, **kw):
        raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    out = save_hf(tied, tmp_path / "out")  # an existing copy: kept
    before = sorted((p.name, p.read_bytes()) for p in out.iterdir())
    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(OSError, match=re.escape(str(out)) + r": cannot be written .*the previous copy is unchanged"):
        save_compact(tied, out)
    assert sorted((p.name, p.read_bytes()) for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("fmt", ["hf", "compact", "course"])
def test_export_turns_the_cache_back_on(tmp_path, tied, fmt):
    """The Trainer turns use_cache off on the model; the export saved it so, and plain
    transformers then generated 3.5x slower."""
    m = build_tiny_model(vocab_size=100).eval()
    m.config.use_cache = False
    m.generation_config.use_cache = False
    out = export_model(m, tmp_path / fmt, format=fmt)
    assert json.loads((out / "config.json").read_text())["use_cache"] is True
    assert json.loads((out / "generation_config.json").read_text())["use_cache"] is True
    got = load_model(out)
    assert got.config.use_cache is True and got.generation_config.use_cache is True
    assert m.config.use_cache is False and m.generation_config.use_cache is False  # the caller's model as it was


def test_a_hub_cache_snapshot_with_links_into_its_blobs_exports(tmp_path, tied):
    """A Hugging Face cache snapshot keeps its files as symlinks to ``../../blobs/<sha>``: given as
    a path it is still a model folder (links into its own repository's blobs are not "outside")."""
    src = save_hf(tied, tmp_path / "src")
    repo = tmp_path / "models--org--name"
    snap, blobs = repo / "snapshots" / "abc123", repo / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    for f in src.iterdir():
        (blobs / f"sha-{f.name}").write_bytes(f.read_bytes())
        (snap / f.name).symlink_to(Path("..") / ".." / "blobs" / f"sha-{f.name}")
    (blobs / "sha-tokenizer_config.json").write_text("{}")
    (snap / "tokenizer_config.json").symlink_to(Path("..") / ".." / "blobs" / "sha-tokenizer_config.json")
    out = export_model(snap, tmp_path / "dst", format="compact")
    assert (out / "tokenizer_config.json").read_text() == "{}" and not (out / "tokenizer_config.json").is_symlink()
    # a link from the snapshot to anywhere else is still refused
    (snap / "tokenizer_config.json").unlink()
    (snap / "tokenizer_config.json").symlink_to(_secret(tmp_path))
    with pytest.raises(ValueError, match=r"tokenizer_config\.json: a symlink to .*secret\.txt, outside"):
        export_model(snap, tmp_path / "dst2", format="compact")


# ------------------------------------------------------------------------------ int8 (issue 25)


def _int8_ok(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    """The same zeros everywhere; quantized matrices within one step of their row, the rest exact."""
    from summprune.io.compact import INT8_MIN_NUMEL

    assert set(got) == set(want)
    quantized = 0
    for k, w in want.items():
        g = got[k]
        assert torch.equal(g == 0, w == 0), k
        if w.dim() == 2 and w.numel() >= INT8_MIN_NUMEL:
            step = w.abs().amax(dim=1, keepdim=True) / 127
            assert bool(((g - w).abs() <= step * (1 + 1e-5) + 1e-12).all()), k
            quantized += 1
        else:
            assert torch.equal(g, w), k  # layer norms, relative-attention biases: fp32
    assert quantized > 10


def test_int8_round_trip_keeps_every_zero_and_is_within_one_step(tmp_path, tied):
    from summprune import sparsity

    want = effective_state(tied)
    out = save_compact(tied, tmp_path / "i8", dtype="int8")
    got = load_model(out)
    assert next(got.parameters()).dtype == torch.float32
    _int8_ok(got.state_dict(), want)
    assert got.lm_head.weight is got.shared.weight
    assert sparsity.nonzero_ratio(got) == sparsity.nonzero_ratio(permanent_copy(tied))  # honest ratio unchanged
    assert torch.allclose(logits(got), logits(tied), atol=0.05, rtol=0)
    man = json.loads((out / "compact.json").read_text())
    assert man["dtype"] == "int8" and man["version"] == export.VERSION and "quantization" in man
    by = {e["name"]: e for e in man["tensors"]}
    assert by["shared.weight"]["quant"]["scheme"] == "int8-symmetric-per-row"
    assert "quant" not in by["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    assert any("codecs" in e for e in man["tensors"])  # some blob was worth compressing
    fp16 = export.dir_size(save_compact(tied, tmp_path / "f16", dtype="fp16"))
    assert export.dir_size(out) < fp16
    # a non-zero too small for its row's grid stays non-zero (+-1 step), a zero stays zero
    from summprune.io.compact import quantize_rows

    q, scale = quantize_rows(torch.tensor([[1.0, 0.001, 0.0, -0.002]]))
    assert q.tolist() == [[127, 1, 0, -1]] and torch.allclose(scale, torch.tensor([1 / 127]))


def test_int8_export_through_the_cli_and_the_config(tmp_path, tied):
    from summprune.__main__ import main as cli
    from summprune.config import ConfigError, ExperimentConfig, validate

    src = save_hf(tied, tmp_path / "hf")
    assert cli(["export", "--model", str(src), "--output", str(tmp_path / "c"), "--dtype", "int8"]) == 0
    _int8_ok(load_model(tmp_path / "c").state_dict(), effective_state(tied))
    validate(ExperimentConfig(export_format="compact", export_dtype="int8"))
    with pytest.raises(ConfigError, match="export_dtype='int8' applies to export_format='compact'"):
        validate(ExperimentConfig(export_format="course", export_dtype="int8"))


def _stored(d: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(d / "compact.safetensors"))


def _rewrite(d: Path, name: str, fn) -> None:
    """Store tensor ``name`` of compact dir ``d`` raw (uncompressed) after ``fn(parts, entry)``
    edits its raw parts, with a matching checksum: a file whose bytes are self-consistent but
    whose content lies."""
    from summprune.io import compact as C

    man = json.loads((d / "compact.json").read_text())
    e = _entry(man, name)
    sd = _stored(d)
    layout = C._stored_layout(e)
    raw = {}
    for key, (_, dt) in layout.items():
        part = "mask" if key.endswith("::mask") else "values" if key.endswith("::values") else (
            "scale" if key.endswith("::scale") else "dense")
        t = sd.pop(key)
        if part in e.get("codecs", {}):
            count = e["nnz"] if part == "values" else -(-e["numel"] // 8)
            t = C._unpack(t, "lzma", torch.int8 if part == "values" else torch.uint8, count, key)
        raw[part] = t.clone()
    fn(raw, e)
    e.pop("codecs", None), e.pop("stored_bytes", None)
    keys = {"values": name + "::values", "mask": name + "::mask", "dense": name, "scale": name + "::scale"}
    order = [p for p in ("values", "mask", "dense", "scale") if p in raw]
    for p in order:
        sd[keys[p]] = raw[p].contiguous()
    e["sha256"] = C._sha256_tensors(*(raw[p] for p in order))
    save_file(sd, str(d / "compact.safetensors"))
    (d / "compact.json").write_text(json.dumps(man))


@pytest.fixture
def int8_dir(tmp_path, tied):
    return save_compact(tied, tmp_path / "i8", dtype="int8")


def test_int8_corrupt_or_lying_files_are_refused(tmp_path, int8_dir):
    import shutil

    man = json.loads((int8_dir / "compact.json").read_text())
    packed = next(e for e in man["tensors"] if "mask" in e.get("codecs", {}))
    name = packed["name"]

    def fresh(tag: str) -> Path:
        d = tmp_path / tag
        shutil.copytree(int8_dir, d)
        return d

    # a flipped byte in a compressed mask: the checksum says so before anything is decompressed
    d = fresh("flip")
    sd = _stored(d)
    blob = sd[name + "::mask"].clone()
    blob[len(blob) // 2] ^= 0xFF
    sd[name + "::mask"] = blob
    save_file(sd, str(d / "compact.safetensors"))
    with pytest.raises(ValueError, match=rf"{re.escape(name)}.*checksum"):
        load_model(d)
    # the manifest's compressed size is not the file's
    d = fresh("size")
    _edit_manifest(d, lambda m: _entry(m, name)["stored_bytes"].update(mask=packed["stored_bytes"]["mask"] + 1))
    with pytest.raises(ValueError, match=rf"{re.escape(name)}::mask.*stored shape"):
        load_model(d)
    # a compressed stream longer than the mask it claims to be (checksum made to match): not
    # decompressed past the mask's size, refused
    import lzma

    from summprune.io import compact as C

    d = fresh("bomb")
    sd = _stored(d)
    raw = C._unpack(sd[name + "::mask"], "lzma", torch.uint8, -(-packed["numel"] // 8), name)
    big = torch.frombuffer(bytearray(lzma.compress(raw.numpy().tobytes() + bytes(10**6))), dtype=torch.uint8)
    sd[name + "::mask"] = big
    save_file(sd, str(d / "compact.safetensors"))

    def lie(m):
        e = _entry(m, name)
        e["stored_bytes"]["mask"] = big.numel()
        e["sha256"] = C._sha256_tensors(*(sd[k] for k in C._stored_layout(e)))
    _edit_manifest(d, lie)
    with pytest.raises(ValueError, match=rf"{re.escape(name)}.*does not hold"):
        load_model(d)
    # an int8 value of 0 where the mask says non-zero (the honest count would lie)
    d = fresh("zero")
    _rewrite(d, name, lambda raw, e: raw["values"].__setitem__(0, 0))
    with pytest.raises(ValueError, match=rf"{re.escape(name)}.*stored int8 value\(s\) are 0"):
        load_model(d)
    # a scale that is not finite and positive
    d = fresh("scale")
    _rewrite(d, name, lambda raw, e: raw["scale"].__setitem__(0, -1.0))
    with pytest.raises(ValueError, match=rf"{re.escape(name)}.*scales"):
        load_model(d)
    # an unknown quantization scheme
    d = fresh("scheme")
    _edit_manifest(d, lambda m: _entry(m, name)["quant"].update(scheme="int4-magic"))
    with pytest.raises(ValueError, match=rf"{re.escape(name)}.*quantization"):
        load_model(d)
    # the untouched copy still loads
    load_model(int8_dir)


def test_int8_trailing_data_after_a_compressed_stream_is_named(tmp_path, int8_dir):
    """Garbage after a complete lzma stream said "does not hold the 257024 bytes ... (got 257024)"."""
    from summprune.io import compact as C

    man = json.loads((int8_dir / "compact.json").read_text())
    name = next(e for e in man["tensors"] if "mask" in e.get("codecs", {}))["name"]
    sd = _stored(int8_dir)
    blob = torch.cat([sd[name + "::mask"], torch.tensor([1, 2, 3], dtype=torch.uint8)])
    sd[name + "::mask"] = blob
    save_file(sd, str(int8_dir / "compact.safetensors"))

    def lie(m):
        e = _entry(m, name)
        e["stored_bytes"]["mask"] = blob.numel()
        e["sha256"] = C._sha256_tensors(*(sd[k] for k in C._stored_layout(e)))
    _edit_manifest(int8_dir, lie)
    with pytest.raises(ValueError, match=rf"{re.escape(name)}.*3 byte\(s\) of trailing data after the compressed "
                                         r"stream") as e:
        load_model(int8_dir)
    assert "does not hold" not in str(e.value)


@pytest.mark.parametrize("dtype", ["int8", "fp32"])
def test_export_refuses_a_tokenizer_larger_than_the_vocabulary(tmp_path, dtype):
    """int8 export accepted a tokenizer of more ids than vocab_size (generation then failed with a
    raw IndexError): refused naming both sizes, nothing written."""
    from summprune.modeling import build_tiny_model
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer

    tok = train_tokenizer([r["text"] for r in make_corpus(20)], vocab_size=100)
    model = build_tiny_model(vocab_size=50, d_model=32, layers=2, heads=4, d_ff=64)
    with pytest.raises(ValueError, match=rf"token ids up to {len(tok) - 1} \({len(tok)} ids\) but the model's "
                                         r"vocab_size is 50.*nothing was written"):
        save_compact(model, tmp_path / "c", tokenizer=tok, dtype=dtype)
    assert not (tmp_path / "c").exists()
    tok.save_pretrained(tmp_path / "tok")  # as files copied from a model folder
    with pytest.raises(ValueError, match="vocab_size is 50"):
        export_model(model, tmp_path / "h", format="hf", tokenizer=str(tmp_path / "tok"))
    assert not (tmp_path / "h").exists()
