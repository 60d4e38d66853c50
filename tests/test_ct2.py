"""The CTranslate2 engine: greedy fp32 equals the torch engine token for token, every format
converts (once, cached), generate_csv.py resumes with it and refuses to mix engines."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

pytest.importorskip("ctranslate2")

from conftest import ROOT  # noqa: E402
from summprune import ct2  # noqa: E402
from summprune import generate as gen  # noqa: E402
from summprune.config import DECODING_DEFAULTS  # noqa: E402
from summprune.models import family_names  # noqa: E402

#: every registered family but T5 (the registry's: a new family is tested here without an edit)
_OTHER_FAMILIES = [f for f in family_names() if f != "t5"]

_spec = importlib.util.spec_from_file_location("generate_csv", ROOT / "generate_csv.py")
generate_csv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate_csv)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SUMMPRUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny T5 whose greedy outputs vary with the input (position bias scaled up), saved as hf,
    plus 6 short synthetic bills."""
    from summprune.modeling import build_tiny_model
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer

    rows = make_corpus(30, seed=5)
    tok = train_tokenizer([r["text"] for r in rows] + [r["summary"] for r in rows], vocab_size=300)
    model = build_tiny_model(vocab_size=len(tok), d_model=32, layers=2, heads=4, d_ff=64, seed=1).eval()
    with torch.no_grad():
        model.shared.weight.mul_(0.03)
        for n, p in model.named_parameters():
            if "relative_attention_bias" in n:
                p.mul_(20)
    d = tmp_path_factory.mktemp("m") / "hf"
    model.save_pretrained(str(d))
    tok.save_pretrained(str(d))
    texts = [r["text"][: 200 + 60 * i] for i, r in enumerate(rows[:6])]
    data = d.parent / "test.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return {"dir": d, "tok": tok, "model": model, "texts": texts, "data": data}


def both(setup, model_dir, **decoding):
    kw = dict(prefix="summarize: ", max_source_length=64, batch_size=4, progress=False, **decoding)
    t = gen.generate_summaries(setup["model"], setup["tok"], setup["texts"], **kw)
    c = gen.generate_summaries(ct2.Ct2Model.from_dir(model_dir, setup["tok"], threads=1), setup["tok"],
                               setup["texts"], **kw)
    return t, c


@pytest.mark.parametrize("decoding", [{"max_length": 20}, {"max_length": 12, "min_new_tokens": 11},
                                      {"max_length": 20, "no_repeat_ngram_size": 2},
                                      {"max_length": 20, "repetition_penalty": 1.3}])
def test_greedy_fp32_is_the_torch_engines_tokens(setup, decoding):
    t, c = both(setup, setup["dir"], **decoding)
    assert t == c
    assert len(set(t.values())) > 3  # the documents get different summaries: the test can fail


def test_every_format_converts_to_the_same_model(setup, tmp_path):
    import copy

    from summprune.export import export_model
    from summprune.prune import apply_stage

    m = copy.deepcopy(setup["model"])
    apply_stage(m, {"enc_ffn": 0.5, "dec_ffn": 0.5, "lm_head": 0.3})
    tok = setup["tok"]
    dirs = {f: export_model(m, tmp_path / f, format=f, tokenizer=tok) for f in ("hf", "compact", "course")}
    outs = {f: gen.generate_summaries(ct2.Ct2Model.from_dir(d, tok, threads=1), tok, setup["texts"],
                                      max_length=16, max_source_length=64, progress=False) for f, d in dirs.items()}
    ref = gen.generate_summaries(m, tok, setup["texts"], max_length=16, max_source_length=64, progress=False)
    assert outs["hf"] == outs["compact"] == outs["course"] == ref


def test_a_compact_int8_model_converts_to_its_dequantized_weights(setup, tmp_path):
    """The int8 compact model converts with no dense copy on disk; CTranslate2 fp32 gives the
    torch tokens of the model load_model returns (the dequantized weights)."""
    import copy

    from summprune.export import export_model, load_model
    from summprune.prune import apply_stage

    m = copy.deepcopy(setup["model"])
    apply_stage(m, {"enc_ffn": 0.5, "dec_ffn": 0.5, "lm_head": 0.3})
    tok = setup["tok"]
    d = export_model(m, tmp_path / "i8", format="compact", dtype="int8", tokenizer=tok)
    kw = dict(max_length=16, max_source_length=64, progress=False)
    ref = gen.generate_summaries(load_model(d), tok, setup["texts"], **kw)
    got = gen.generate_summaries(ct2.Ct2Model.from_dir(d, tok, threads=1), tok, setup["texts"], **kw)
    assert got == ref and len(set(ref.values())) > 3
    tmp_dirs = [p for p in (tmp_path / "cache").rglob("*") if p.name == "hf"]
    assert not tmp_dirs


def test_converted_once_and_keyed_by_the_model_files(setup, tmp_path):
    import shutil

    logs = []
    ct2.Ct2Model.from_dir(setup["dir"], setup["tok"], threads=1, log=logs.append)
    ct2.Ct2Model.from_dir(setup["dir"], setup["tok"], threads=1, log=logs.append)
    assert len(logs) == 1 and "converting" in logs[0]  # the second load comes from the cache
    other = tmp_path / "other"
    shutil.copytree(setup["dir"], other)
    assert ct2.model_key(other) == ct2.model_key(setup["dir"])  # content, not path
    from summprune.modeling import build_tiny_model  # a different model in the same place

    m = build_tiny_model(vocab_size=len(setup["tok"]), d_model=32, layers=2, heads=4, d_ff=64, seed=9)
    m.save_pretrained(str(other))
    assert ct2.model_key(other) != ct2.model_key(setup["dir"])
    assert not list((tmp_path / "cache" / "ctranslate2").glob("*.tmp-*"))  # nothing half-written


def test_a_cached_conversion_that_does_not_load_is_converted_again(setup, tmp_path):
    """A conversion written by an older converter (here: its config.json holding a null token, as
    the BART converter wrote for a tokenizer without a bos token) is replaced, not an error forever."""
    logs = []
    ct2.Ct2Model.from_dir(setup["dir"], setup["tok"], threads=1)
    path = ct2.cache_root() / ct2.model_key(setup["dir"])
    cfg = json.loads((path / "config.json").read_text())
    cfg["unk_token"] = None
    (path / "config.json").write_text(json.dumps(cfg))
    m = ct2.Ct2Model.from_dir(setup["dir"], setup["tok"], threads=1, log=logs.append)
    assert any("converting again" in x for x in logs)
    assert json.loads((path / "config.json").read_text())["unk_token"] is not None
    assert m.generate_ids([[5, 6, 7, 1]], {**DECODING_DEFAULTS, "max_length": 5})


def test_a_bart_layout_with_a_tokenizer_without_bos_converts(tmp_path):
    """A BART-layout model with T5's kind of tokenizer (no bos token): the converter used to write
    a null bos_token that CTranslate2 then could not load."""
    from summprune.modeling import build_tiny_model
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer

    tok = train_tokenizer([r["text"] for r in make_corpus(10)], vocab_size=120)
    assert tok.bos_token is None
    d = tmp_path / "bart"
    build_tiny_model(vocab_size=len(tok), d_model=32, layers=2, heads=4, d_ff=64, family="bart").save_pretrained(d)
    tok.save_pretrained(d)
    m = ct2.Ct2Model.from_dir(d, tok, threads=1)
    assert json.loads((ct2.cache_root() / ct2.model_key(d) / "config.json").read_text())["bos_token"] is not None
    assert m.generate_ids([[5, 6, 7, 1]], {**DECODING_DEFAULTS, "max_length": 5})


def run(setup, out, *extra):
    return generate_csv.main(["--model", str(setup["dir"]), "--data", str(setup["data"]), "--output", str(out),
                              "--max-length", "16", "--batch-size", "2", "--device", "cpu", "--threads", "1",
                              "--no-progress", *extra])


def test_generate_csv_engines_agree_resume_and_refuse_to_mix(setup, tmp_path, monkeypatch, capsys):
    assert run(setup, tmp_path / "torch.csv") == 0
    assert run(setup, tmp_path / "ct2.csv", "--engine", "ctranslate2") == 0
    assert (tmp_path / "torch.csv").read_bytes() == (tmp_path / "ct2.csv").read_bytes()

    # interrupted with ct2 after the first batch, resumed with ct2: the same CSV
    real = gen.generate_summaries
    calls = []

    def stop_after_one_batch(*a, on_batch=None, **kw):
        def hook(ids, summaries):
            on_batch(ids, summaries)
            calls.append(ids)
            raise KeyboardInterrupt
        return real(*a, on_batch=hook, **kw)

    monkeypatch.setattr(gen, "generate_summaries", stop_after_one_batch)
    out = tmp_path / "resumed.csv"
    assert run(setup, out, "--engine", "ctranslate2") == 130
    monkeypatch.setattr(gen, "generate_summaries", real)
    # a resume with the other engine is refused and keeps the finished rows
    partial = (tmp_path / "resumed.csv.partial.jsonl").read_text()
    assert run(setup, out) == 2
    err = capsys.readouterr().err
    assert "engine 'ctranslate2' (now 'torch')" in err and "--restart" in err
    assert (tmp_path / "resumed.csv.partial.jsonl").read_text() == partial
    assert run(setup, out, "--engine", "ctranslate2") == 0
    assert "resuming: 2 of 6 done" in capsys.readouterr().err
    assert out.read_bytes() == (tmp_path / "ct2.csv").read_bytes()


def test_ct2_dtypes_are_checked_before_any_work(setup, tmp_path, capsys):
    assert run(setup, tmp_path / "x.csv", "--engine", "ctranslate2", "--dtype", "bf16") == 2
    assert "ctranslate2 engine runs fp32, int8 on cpu" in capsys.readouterr().err
    assert not list(tmp_path.glob("x.csv*")) and not (tmp_path / "cache").exists()
    assert run(setup, tmp_path / "i8.csv", "--engine", "ctranslate2", "--dtype", "int8") == 0


def test_inputs_longer_than_1024_tokens_are_read_whole(setup):
    """CTranslate2 cuts inputs at 1024 tokens by default; the tokenizer has truncated already."""
    long_texts = [" ".join(setup["texts"]) * 3, " ".join(setup["texts"][:2]) * 8]
    enc = setup["tok"](["summarize: " + t for t in long_texts])["input_ids"]
    assert min(len(e) for e in enc) > 1100
    kw = dict(max_source_length=1500, max_length=12, progress=False)
    t = gen.generate_summaries(setup["model"], setup["tok"], long_texts, **kw)
    c = gen.generate_summaries(ct2.Ct2Model.from_dir(setup["dir"], setup["tok"], threads=1), setup["tok"], long_texts, **kw)
    assert t == c


# ---- issue 22 (fuzz): the conversion cache -----------------------------------------------------

def test_key_covers_the_tokenizer_files(setup, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(setup["dir"], other)
    tok = json.loads((other / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    a, b = list(vocab)[3:5] if isinstance(vocab, dict) else (3, 4)
    vocab[a], vocab[b] = vocab[b], vocab[a]  # two tokens swap ids: a changed vocabulary, same weights
    (other / "tokenizer.json").write_text(json.dumps(tok))
    assert ct2.model_key(other) != ct2.model_key(setup["dir"])


def test_stale_conversion_temp_folders_are_removed(setup, tmp_path):
    import os
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is no longer alive: a conversion killed mid-way
    root = tmp_path / "cache" / "ctranslate2"
    stale = root / f"0123456789abcdef01234567.tmp-{dead.pid}-deadbeef"
    live = root / f"0123456789abcdef01234567.tmp-{os.getpid()}-cafecafe"  # a conversion running now
    for d in (stale, live):
        (d / "hf").mkdir(parents=True)
        (d / "hf" / "model.safetensors").write_bytes(b"x" * 100)
    ct2.convert(setup["dir"])
    assert not stale.exists() and live.exists()
    assert not [p for p in root.glob("*.tmp-*") if p != live]


def test_a_tokenizer_symlink_leaving_the_model_folder_is_refused(setup, tmp_path):
    import shutil

    d = tmp_path / "linked"
    shutil.copytree(setup["dir"], d)
    outside = tmp_path / "elsewhere.json"
    shutil.move(d / "tokenizer.json", outside)
    (d / "tokenizer.json").symlink_to(outside)
    with pytest.raises(ValueError, match=r"linked/tokenizer.json: a symlink to .*elsewhere.json"):
        ct2.convert(d)
    root = tmp_path / "cache" / "ctranslate2"
    assert not root.exists() or not list(root.iterdir())  # refused before anything was written
    # a link that stays inside the model folder is fine
    shutil.move(outside, d / "real_tokenizer.json")
    (d / "tokenizer.json").unlink()
    (d / "tokenizer.json").symlink_to("real_tokenizer.json")
    assert (ct2.convert(d) / "model.bin").is_file()


# ---- issue 32: a cache entry holds what its key names ------------------------------------------

def _other_model(setup, tmp_path):
    """Another model (other weights) with setup's tokenizer, saved beside: its conversion is a
    well-formed entry that must not be taken for setup's."""
    from summprune.modeling import build_tiny_model

    other = tmp_path / "other"
    m = build_tiny_model(vocab_size=len(setup["tok"]), d_model=32, layers=2, heads=4, d_ff=64, seed=9)
    m.save_pretrained(str(other))
    setup["tok"].save_pretrained(str(other))
    return other


def _summaries(setup, model_dir, logs=None):
    return gen.generate_summaries(ct2.Ct2Model.from_dir(model_dir, setup["tok"], threads=1, log=logs), setup["tok"],
                                  setup["texts"], max_length=16, max_source_length=64, progress=False)


@pytest.mark.parametrize("how", ["replaced", "model.bin", "symlink"])
def test_a_cache_entry_holding_another_models_conversion_is_converted_again(setup, tmp_path, how):
    """Another model's conversion copied over the entry (whole, or its model.bin), or the entry made
    a symlink to it: converted again with a warning, never used (the summaries are the model's own);
    a symlink is removed, never what it points at."""
    import shutil

    other = _other_model(setup, tmp_path)
    ref = _summaries(setup, setup["dir"])
    assert _summaries(setup, other) != ref  # the other conversion would change the summaries
    mine, theirs = (ct2.cache_root() / ct2.model_key(d) for d in (setup["dir"], other))
    if how == "replaced":
        shutil.rmtree(mine)
        shutil.copytree(theirs, mine)
    elif how == "model.bin":
        shutil.copyfile(theirs / "model.bin", mine / "model.bin")
    else:
        shutil.rmtree(mine)
        mine.symlink_to(theirs, target_is_directory=True)
    before = sorted((p.name, p.stat().st_size) for p in theirs.iterdir())
    logs = []
    assert _summaries(setup, setup["dir"], logs.append) == ref
    assert any("is not the one of its key" in m and "converting again" in m for m in logs), logs
    assert mine.is_dir() and not mine.is_symlink()
    assert sorted((p.name, p.stat().st_size) for p in theirs.iterdir()) == before
    logs.clear()
    assert _summaries(setup, setup["dir"], logs.append) == ref and not logs  # the new entry is used as is


def test_an_entry_without_a_manifest_is_converted_again_with_a_warning(setup):
    ct2.convert(setup["dir"])
    entry = ct2.cache_root() / ct2.model_key(setup["dir"])
    (entry / ct2.ENTRY_MANIFEST).unlink()  # as an entry written before entries had one
    with pytest.warns(UserWarning, match="no summprune-entry.json"):
        assert ct2.convert(setup["dir"]) == entry
    assert (entry / ct2.ENTRY_MANIFEST).is_file()


# ---- issue 31: a model vocabulary larger than the tokenizer's; a conversion that fails ---------

class _Ids:
    """The tokenizer, but summaries decode to their token ids (special ids dropped as
    ``skip_special_tokens`` drops them), so engines are compared id for id: a padding id past the
    tokenizer's end decodes to nothing and would go unseen in the text."""

    def __init__(self, tok, start: int | None = None):
        self.tok = tok
        self.pad_token_id = tok.pad_token_id
        # the model's decoder start token, where it is not the tokenizer's pad (Marian's is a row
        # of its own): torch's output begins with it, CTranslate2's does not
        self.start = start

    def __call__(self, *a, **kw):
        return self.tok(*a, **kw)

    def batch_decode(self, out, skip_special_tokens=True):
        special = {self.tok.pad_token_id, self.tok.eos_token_id, self.start}
        return [" ".join(str(int(i)) for i in ids if int(i) not in special) for ids in out]


@pytest.mark.parametrize("family", family_names())
def test_a_model_vocabulary_larger_than_the_tokenizers_converts_for_every_family(family, tmp_path):
    """BART and Pegasus with 28 embedding rows more than their tokenizer's tokens (t5-small's own
    shape: 32128 against 32100) failed to convert ("Source vocabulary 0 has size ... but the
    model expected a vocabulary of size ..."); now every family converts and CTranslate2 greedy
    gives torch's token ids, padding rows included."""
    from summprune.modeling import build_tiny_model
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer

    rows = make_corpus(30, seed=5)
    tok = train_tokenizer([r["text"] for r in rows] + [r["summary"] for r in rows], vocab_size=300)
    model = build_tiny_model(vocab_size=len(tok) + 28, d_model=32, layers=2, heads=4, d_ff=64, seed=1,
                             family=family).eval()
    with torch.no_grad():  # weights well above init scale: summaries that differ between inputs
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embed_positions" not in name:  # Pegasus' sinusoids stay
                p.mul_(20)
    d = tmp_path / family
    model.save_pretrained(d)
    tok.save_pretrained(d)
    texts = [r["text"][: 200 + 60 * i] for i, r in enumerate(rows[:6])]
    kw = dict(prefix="", max_source_length=64, max_length=20, batch_size=4, progress=False)
    ids = _Ids(tok, model.config.decoder_start_token_id)
    t = gen.generate_summaries(model, ids, texts, **kw)
    c = gen.generate_summaries(ct2.Ct2Model.from_dir(d, tok, threads=1), ids, texts, **kw)
    assert t == c
    assert len(set(t.values())) > 3  # the documents get different summaries: the test can fail
    vocab = json.loads((ct2.cache_root() / ct2.model_key(d) / "shared_vocabulary.json").read_text())
    names = tok.convert_ids_to_tokens(list(range(len(tok))))
    if family == "marian":  # its pad is a row of its own past the 28 (tiny_config), which the converter
        # drops (named "<pad>" for it); the tokenizer's own "<pad>" (id 0 here) is renamed: names need
        # only be unique
        assert len(vocab) == len(tok) + 28 == len(set(vocab)) and "<pad>" not in vocab
        assert vocab[1: len(tok)] == names[1:] and names[0] == "<pad>"
    else:
        assert len(vocab) == len(tok) + 28 == len(set(vocab))  # padded to the model's rows, one name per id
        assert vocab[: len(tok)] == names
    if family in ("pegasus", "t5"):  # these two models pick padding rows (ids past the tokenizer's end): round trip
        assert any(int(i) >= len(tok) for s in c.values() for i in s.split())


def test_the_converter_vocabulary_pads_t5_smalls_tokenizer_with_unique_names(shared_dir):
    """t5-small's tokenizer already holds ``<extra_id_0..99>``: CTranslate2's own T5 padding
    (``<extra_id_N>`` again) wrote 28 duplicate tokens; the padding names are new ones."""
    from summprune.modeling import load_tokenizer

    tok = load_tokenizer(shared_dir / "t5-small")
    vocab = ct2.converter_vocabulary(tok, 32128)
    assert len(tok) == 32100 and len(vocab) == 32128 == len(set(vocab))
    assert vocab[:32100] == tok.convert_ids_to_tokens(list(range(32100)))
    assert vocab[32100] == "<unused_32100>"


def _broken_converter(monkeypatch):
    def convert(model_dir, log=None):
        raise KeyError("'SomeConfig' has no converter")  # any error a converter may raise
    monkeypatch.setattr(ct2, "convert", convert)


def test_auto_falls_back_to_torch_with_one_line_when_the_conversion_fails(setup, tmp_path, monkeypatch, capsys):
    beams = ("--num-beams", "2")  # auto picks ctranslate2 for beams on a CPU
    assert run(setup, tmp_path / "torch.csv", "--engine", "torch", *beams) == 0
    capsys.readouterr()
    _broken_converter(monkeypatch)
    out = tmp_path / "auto.csv"
    assert run(setup, out, *beams) == 0
    err = capsys.readouterr().err
    fell = [line for line in err.splitlines() if line.startswith("engine: torch")]
    assert fell == ["engine: torch (the ctranslate2 engine cannot convert or load this model: "
                    "KeyError: \"'SomeConfig' has no converter\")"]
    assert "engine: ctranslate2 (beam search on a CPU" in err  # what auto chose first, then why not
    assert out.read_bytes() == (tmp_path / "torch.csv").read_bytes()

    # interrupted after the first batch, resumed with auto: the rows stay torch's, nothing is mixed
    real = gen.generate_summaries

    def stop_after_one_batch(*a, on_batch=None, **kw):
        def hook(ids, summaries):
            on_batch(ids, summaries)
            raise KeyboardInterrupt
        return real(*a, on_batch=hook, **kw)

    monkeypatch.setattr(gen, "generate_summaries", stop_after_one_batch)
    resumed = tmp_path / "resumed.csv"
    assert run(setup, resumed, *beams) == 130
    assert json.loads((tmp_path / "resumed.csv.partial.meta.json").read_text())["engine"] == "torch"
    monkeypatch.setattr(gen, "generate_summaries", real)
    capsys.readouterr()
    assert run(setup, resumed, *beams) == 0
    err = capsys.readouterr().err
    assert "engine: torch (the interrupted run's)" in err and "resuming: 2 of 6 done" in err
    assert resumed.read_bytes() == (tmp_path / "torch.csv").read_bytes()


def test_engine_ctranslate2_that_fails_names_engine_torch(setup, tmp_path, monkeypatch, capsys):
    _broken_converter(monkeypatch)
    assert run(setup, tmp_path / "x.csv", "--engine", "ctranslate2") == 2
    err = capsys.readouterr().err
    assert "the ctranslate2 engine cannot convert or load" in err and "has no converter" in err
    assert "--engine torch" in err
    assert not (tmp_path / "x.csv").exists()


def test_a_translator_that_does_not_load_falls_back_too(setup, tmp_path, monkeypatch, capsys):
    """A conversion that succeeds but that the runtime refuses (twice: after a fresh conversion
    too) is the same fallback under auto."""
    ctranslate2 = pytest.importorskip("ctranslate2")

    class Refusing:
        def __init__(self, *a, **kw):
            raise RuntimeError("Unsupported model spec")

    monkeypatch.setattr(ctranslate2, "Translator", Refusing)
    assert run(setup, tmp_path / "a.csv", "--num-beams", "2") == 0
    assert ("engine: torch (the ctranslate2 engine cannot convert or load this model: RuntimeError: "
            "Unsupported model spec)") in capsys.readouterr().err
    assert run(setup, tmp_path / "b.csv", "--engine", "ctranslate2") == 2
    assert "--engine torch" in capsys.readouterr().err



@pytest.mark.parametrize("shrunk", ["full", "structured", "heads"])
@pytest.mark.parametrize("family", _OTHER_FAMILIES)
def test_greedy_ctranslate2_is_torchs_for_every_bart_layout_family(family, shrunk, tmp_path):
    """Every registered family but T5 (BART, Pegasus, mBART, Marian, ...), pruned in stages and
    saved compact: CTranslate2 greedy gives torch's summaries, as is, as a structured student (1
    decoder block, half the FFN) and with half its heads cut as well (the converted attention
    scaled by the real head size, not d_model / heads)."""
    from summprune.export import export_model, load_model
    from summprune.methods.structured import shrink
    from summprune.modeling import build_tiny_model
    from summprune.prune import apply_stage, prepare_model
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer

    rows = make_corpus(20, seed=2)
    tok = train_tokenizer([r["text"] for r in rows] + [r["summary"] for r in rows], vocab_size=120)
    tok.bos_token = tok.eos_token  # a BART tokenizer has one; CTranslate2's BART converter reads it
    texts = [r["text"][:300] for r in rows[:6]]
    kw = dict(prefix="", max_source_length=48, max_length=12, progress=False)
    for seed in range(5):  # the first tiny model whose summaries differ between inputs (the test can fail)
        m = build_tiny_model(vocab_size=len(tok), d_model=64, layers=2, heads=4, d_ff=128, seed=seed,
                             family=family).eval()
        with torch.no_grad():  # weights well above init scale (there every summary is the same)
            for n, p in m.named_parameters():
                if p.dim() == 2 and not (n.endswith("embed_positions.weight") and family in ("pegasus", "marian")):
                    p.normal_(0, 0.5)  # sinusoidal tables stay
            if family == "marian":  # an OPUS-MT checkpoint's pad row, where its decoder starts, is zero
                m.get_input_embeddings().weight[m.config.pad_token_id] = 0
        if shrunk != "full":
            m, _ = shrink(m, ffn_keep=0.5, decoder_layers=1, heads_keep=0.5 if shrunk == "heads" else 1.0)
        prepare_model(m, "tied")
        apply_stage(m, {"enc_self_attn": 0.3, "enc_ffn": 0.5, "dec_self_attn": 0.3, "cross_attn": 0.3,
                        "dec_ffn": 0.5, "lm_head": 0.4})
        if len(set(gen.generate_summaries(m, tok, texts, **kw).values())) > 1:
            break
    d = export_model(m, tmp_path / family, format="compact", tokenizer=tok)
    ref = gen.generate_summaries(load_model(d), tok, texts, **kw)
    got = gen.generate_summaries(ct2.Ct2Model.from_dir(d, tok, threads=1), tok, texts, **kw)
    assert got == ref
    assert len(set(ref.values())) > 1, ref  # the summaries differ between inputs: the test can fail


def test_a_marian_whose_pad_row_is_not_zero_is_refused_for_ctranslate2(tmp_path):
    """CTranslate2 starts Marian's decoder from a zero embedding, torch from the pad row: a model
    whose pad row is not zero is refused by name rather than converted to something else."""
    from summprune.modeling import build_tiny_model
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer

    tok = train_tokenizer([r["text"] for r in make_corpus(10)], vocab_size=120)
    m = build_tiny_model(vocab_size=len(tok), d_model=32, layers=1, heads=2, d_ff=32, family="marian")
    with torch.no_grad():
        m.get_input_embeddings().weight[m.config.pad_token_id] = 1.0
    m.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match=r"pad row \(id 120, where its decoder starts\) is not zero"):
        ct2.Ct2Model.from_dir(tmp_path / "m", tok, threads=1)
