"""Vocabulary trimming (summprune.vocab, issue 35 item 1): on tiny models of every family with
Unigram, Metaspace-BPE and byte-level BPE tokenizers, in-vocabulary text gives the same summaries
before and after (torch and CTranslate2, greedy), in the hf, compact and int8 formats; text outside
the kept vocabulary becomes <unk> and generate_csv.py counts it; the course format refuses a
trimmed model; the ratios count against the untrimmed original."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from conftest import ROOT
from summprune import generate as gen
from summprune import vocab as V
from summprune.export import export_model, load_model
from summprune.modeling import build_tiny_model, load_tokenizer
from summprune.synthetic import make_corpus

_spec = importlib.util.spec_from_file_location("generate_csv", ROOT / "generate_csv.py")
generate_csv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate_csv)

PREFIX = "summarize: "


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("SUMMPRUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


# ---- tokenizers of the three kinds, trained on a corpus larger than the trim data --------------

def _wrap(tk, **special):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tk, model_max_length=4096, clean_up_tokenization_spaces=False,
                                   **special)


def unigram_tokenizer(texts):
    """SentencePiece-style Unigram (t5-small's, Pegasus' and mT5's kind): <pad>=0, </s>=1, <unk>=2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tk = Tokenizer(models.Unigram())
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    tk.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>"],
                                                          unk_token="<unk>", show_progress=False))
    tk.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return _wrap(tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def bytelevel_tokenizer(texts):
    """BART's kind: byte-level BPE, <s>=0, <pad>=1, </s>=2, <unk>=3, every input '<s> ... </s>'."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=500, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                      show_progress=False))
    tk.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return _wrap(tk, bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def metaspace_bpe_tokenizer(texts):
    from summprune.tokenizer import train_tokenizer

    return train_tokenizer(texts, vocab_size=400)


TOKENIZERS = {"unigram": unigram_tokenizer, "bytelevel": bytelevel_tokenizer, "bpe": metaspace_bpe_tokenizer}
#: (id, family, tiny_config keywords, tokenizer kind): every family, each tokenizer kind
CASES = [("t5", "t5", {}, "unigram"), ("t5-v1.1", "t5", {"gated": True, "tied": False}, "bpe"),
         ("mt5", "t5", {"gated": True, "tied": False, "mt5": True}, "unigram"),
         ("bart", "bart", {"pad_id": 1, "eos_id": 2}, "bytelevel"), ("pegasus", "pegasus", {}, "unigram"),
         ("mbart", "mbart", {"pad_id": 1, "eos_id": 2}, "bytelevel"), ("marian", "marian", {}, "unigram")]


@pytest.fixture(scope="module")
def corpus():
    import random

    rows = make_corpus(60, seed=3)
    train = rows[:25]  # the trim data: part of what the tokenizers were trained on
    # and a second "domain" (words the bills never use) the tokenizers learn pieces of too
    rng = random.Random(0)
    words = ["".join(rng.choice("bcdfghjklmnpqrstvwxzaeiouy") for _ in range(rng.randint(4, 9))) for _ in range(300)]
    other = [" ".join(rng.choice(words) for _ in range(60)) for _ in range(300)]
    return {"all": [r["text"] for r in rows] + [r["summary"] for r in rows] + other,
            "texts": [r["text"] for r in train], "summaries": [r["summary"] for r in train]}


def make(case, corpus, seed=1):
    _, family, kw, kind = case
    tok = TOKENIZERS[kind](corpus["all"])
    model = build_tiny_model(vocab_size=len(tok), d_model=32, layers=2, heads=4, d_ff=64, seed=seed,
                             family=family, **kw).eval()
    with torch.no_grad():  # weights well above init scale: summaries that differ between inputs
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embed_positions" not in name:
                p.mul_(20)
    return model, tok


def saved_model_and_data(corpus, tmp_path, test=None):
    """The first case's model and tokenizer (returned), saved in ``src``, and a data folder whose train split is
    the trim data (and a ``test`` split of these rows where given)."""
    model, tok = make(CASES[0], corpus)
    src = tmp_path / "src"
    model.save_pretrained(src)
    tok.save_pretrained(src)
    data = tmp_path / "data"
    data.mkdir()
    splits = {"train": list(zip(corpus["texts"], corpus["summaries"])), **({"test": test} if test else {})}
    for split, rows in splits.items():
        (data / f"{split}.jsonl").write_text("".join(json.dumps({"text": t, "summary": s}) + "\n" for t, s in rows))
    return model, tok, src, data


class _Ids:
    """The tokenizer, but summaries decode to token ids (specials and rows without a token dropped):
    engines and vocabularies compared id for id."""

    def __init__(self, tok, to_original=None):
        self.tok, self.pad_token_id, self.map = tok, tok.pad_token_id, to_original

    def __call__(self, *a, **kw):
        return self.tok(*a, **kw)

    def batch_decode(self, out, skip_special_tokens=True):
        special = set(self.tok.all_special_ids)
        n = len(self.tok)  # rows past the tokenizer's tokens (Marian's pad, its decoder start) are not text
        return [" ".join(str(self.map[int(i)] if self.map else int(i)) for i in ids
                         if int(i) not in special and int(i) < n) for ids in out]


KW = dict(prefix=PREFIX, max_source_length=48, max_length=16, batch_size=4, progress=False)


@pytest.fixture(params=CASES, ids=[c[0] for c in CASES])
def trimmed(request, corpus, tmp_path):
    """The model, its hf export trimmed to the trim data plus the tokens of the summaries it
    generates for the test documents (a trained summarizer's summaries are made of its domain's
    tokens; a random model's are not, so its own are kept too: ``keep_ids``), and the untrimmed
    model's summaries as ids."""
    docs = corpus["texts"][:6]
    for seed in range(1, 6):  # the first seed whose summaries differ between documents (tiny BARTs often repeat one token)
        model, tok = make(request.param, corpus, seed)
        ref = gen.generate_summaries(model, _Ids(tok), docs, **KW)
        if len(set(ref.values())) > 3:
            break
    own = {int(i) for s in ref.values() for i in s.split()}
    trim = {"texts": corpus["texts"], "summaries": corpus["summaries"], "prefix": PREFIX, "keep_ids": own}
    out = export_model(model, tmp_path / "hf", format="hf", tokenizer=tok, trim=trim)
    return {"case": request.param, "model": model, "tok": tok, "docs": docs, "ref": ref, "dir": out, "trim": trim}


def _mapping(d):
    return json.loads((d / V.MAP_FILE).read_text())["new_to_original"]


def test_in_vocabulary_text_gives_the_same_summaries_on_torch_and_ctranslate2(trimmed):
    pytest.importorskip("ctranslate2")
    from summprune import ct2

    d, tok, ref = trimmed["dir"], trimmed["tok"], trimmed["ref"]
    keep = _mapping(d)
    new_tok = load_tokenizer(d)
    # a real trim: the test compares two vocabularies; rows past the tokenizer's tokens (Marian's pad)
    # stay rows, last
    assert len(new_tok) == len([i for i in keep if i < len(tok)]) < 0.9 * len(tok)
    assert len(set(ref.values())) > 3  # the documents get different summaries: the test can fail
    docs = trimmed["docs"]
    got = gen.generate_summaries(load_model(d), _Ids(new_tok, keep), docs, **KW)
    assert got == ref  # token ids mapped back to the original's
    c = gen.generate_summaries(ct2.Ct2Model.from_dir(d, new_tok, threads=1), _Ids(new_tok, keep), docs, **KW)
    assert c == ref
    # and as text, with each tokenizer
    texts = gen.generate_summaries(trimmed["model"], tok, docs, **KW)
    assert gen.generate_summaries(load_model(d), new_tok, docs, **KW) == texts


def test_the_shrunk_tensors_are_the_kept_rows_in_every_format(trimmed, tmp_path):
    """hf and compact fp32 hold exactly the kept rows of the embedding, lm_head and
    final_logits_bias; int8 holds the kept rows of the untrimmed int8 export (per-row scales)."""
    m, tok, keep = trimmed["model"], trimmed["tok"], _mapping(trimmed["dir"])
    idx = torch.tensor(keep)
    compact = export_model(trimmed["dir"], tmp_path / "c", format="compact")  # a trimmed model re-exports
    for d in (trimmed["dir"], compact):
        got = load_model(d)
        assert got.config.vocab_size == len(keep)
        assert V.trim_record(got)["original_vocab_size"] == m.config.vocab_size  # Marian: a pad row past len(tok)
        assert torch.equal(got.get_input_embeddings().weight, m.get_input_embeddings().weight[idx])
        assert torch.equal(got.get_output_embeddings().weight, m.get_output_embeddings().weight[idx])
        if hasattr(m, "final_logits_bias"):
            assert torch.equal(got.final_logits_bias, m.final_logits_bias[:, idx])
        assert (d / V.MAP_FILE).is_file() and _mapping(d) == keep
    i8 = load_model(export_model(m, tmp_path / "i8", format="compact", dtype="int8", tokenizer=tok,
                                 trim=trimmed["trim"]))
    full = load_model(export_model(m, tmp_path / "i8full", format="compact", dtype="int8", tokenizer=tok))
    assert torch.equal(i8.get_input_embeddings().weight, full.get_input_embeddings().weight[idx])
    assert torch.equal(i8.get_output_embeddings().weight, full.get_output_embeddings().weight[idx])
    new_tok = load_tokenizer(tmp_path / "i8")
    want = gen.generate_summaries(full, _Ids(tok), trimmed["docs"], **KW)
    ok = [i for i, s in want.items() if all(int(t) in set(keep) for t in s.split())]
    assert len(ok) >= 3
    got = gen.generate_summaries(i8, _Ids(new_tok, keep), [trimmed["docs"][i] for i in ok], **KW)
    assert list(got.values()) == [want[i] for i in ok]


def test_special_ids_are_kept_and_renumbered(trimmed):
    m, tok, d = trimmed["model"], trimmed["tok"], trimmed["dir"]
    keep = _mapping(d)
    got = load_model(d)
    new_tok = load_tokenizer(d)
    for key in ("pad_token_id", "eos_token_id", "decoder_start_token_id", "bos_token_id"):
        old = getattr(m.config, key, None)
        if old is not None:
            assert keep[getattr(got.config, key)] == old, key
    for name in ("pad_token", "eos_token", "unk_token", "bos_token"):
        t = getattr(tok, name, None)
        if t is not None:
            assert keep[new_tok.convert_tokens_to_ids(t)] == tok.convert_tokens_to_ids(t), name
    for t in tok(PREFIX, add_special_tokens=False)["input_ids"]:
        assert t in keep


def test_text_outside_the_kept_vocabulary_becomes_unk_and_generate_csv_counts_it(corpus, tmp_path, capsys):
    """'~' is in the Metaspace-BPE tokenizer's alphabet but nowhere in the trim data: after the
    trim it is <unk>, and generate_csv.py says how many input tokens became <unk>."""
    model, tok = make(CASES[0][:3] + ("bpe",), corpus)
    assert not any("~" in t for t in corpus["texts"] + corpus["summaries"])
    assert tok.unk_token_id not in tok("a ~ b")["input_ids"]
    d = export_model(model, tmp_path / "m", format="hf", tokenizer=tok,
                     trim={"texts": corpus["texts"], "summaries": corpus["summaries"], "prefix": PREFIX})
    new_tok = load_tokenizer(d)
    ids = new_tok("The Act ~ of ~ 2020")["input_ids"]
    assert ids.count(new_tok.unk_token_id) == 2
    data = tmp_path / "test.jsonl"
    docs = ["The Act ~ of ~ 2020.", corpus["texts"][0][:200], "~ one more"]
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    assert generate_csv.main(["--model", str(d), "--data", str(data), "--output", str(tmp_path / "o.csv"),
                              "--max-length", "8", "--device", "cpu", "--threads", "1", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "3 input tokens not in the trimmed vocabulary became <unk> (in 2 of 3 documents)" in err
    # score_result.py's course verdict names the trim as the reason the grader cannot read it
    refs = tmp_path / "refs.jsonl"
    refs.write_text("".join(json.dumps({"text": t, "summary": "a summary"}) + "\n" for t in docs))
    spec = importlib.util.spec_from_file_location("score_result", ROOT / "score_result.py")
    score_result = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(score_result)
    assert score_result.main(["--predictions", str(tmp_path / "o.csv"), "--references", str(refs),
                              "--model", str(d)]) == 0
    out = capsys.readouterr().out
    assert "ratio: NOT READABLE by the grader" in out and "trimmed vocabulary" in out
    # an untrimmed model says nothing of the kind
    plain = export_model(model, tmp_path / "plain", format="hf", tokenizer=tok)
    assert generate_csv.main(["--model", str(plain), "--data", str(data), "--output", str(tmp_path / "p.csv"),
                              "--max-length", "8", "--device", "cpu", "--threads", "1", "--no-progress"]) == 0
    assert "<unk>" not in capsys.readouterr().err


def test_min_count_drops_rare_tokens_and_records_them(corpus, tmp_path):
    model, tok = make(CASES[0], corpus)
    trim = {"texts": corpus["texts"], "summaries": corpus["summaries"], "prefix": PREFIX}
    one = export_model(model, tmp_path / "one", format="hf", tokenizer=tok, trim=trim)
    five = export_model(model, tmp_path / "five", format="hf", tokenizer=tok, trim={**trim, "min_count": 5})
    r1, r5 = (json.loads((d / V.MAP_FILE).read_text()) for d in (one, five))
    assert r5["vocab_size"] < r1["vocab_size"] and set(r5["new_to_original"]) < set(r1["new_to_original"])
    assert r1["dropped_occurring"]["occurrences"] == 0 < r5["dropped_occurring"]["occurrences"]
    assert r5["min_count"] == 5 and r5["original_vocab_size"] == len(tok)


def test_bpe_keeps_the_merge_closure_of_every_kept_token(corpus):
    """A kept BPE token is reachable only through its merge: its parts are kept with it, and the
    trimmed tokenizer gives that one token for it."""
    tok = metaspace_bpe_tokenizer(corpus["all"])
    tj = V._tokenizer_json(tok)
    word = max(tj["model"]["vocab"], key=len)  # the longest token: a chain of several merges
    i = tj["model"]["vocab"][word]
    keep, why = V.choose(tok, tj, {i: 1}, 1, "", len(tok))
    assert why["merge_closure"] >= 2
    new = V.trim_tokenizer_json(tj, keep)
    from tokenizers import Tokenizer

    tk = Tokenizer.from_str(json.dumps(new))
    assert tk.encode(word.replace("▁", " ").strip(), add_special_tokens=False).ids == [keep.index(i)]
    # without the closure (one part dropped) the kept token could no longer be built
    part = next(k for k in keep if k not in (i, *V.special_ids(tok, tj)))
    broken = Tokenizer.from_str(json.dumps(V.trim_tokenizer_json(tj, [k for k in keep if k != part])))
    assert len(broken.encode(word.replace("▁", " ").strip(), add_special_tokens=False).ids) > 1


def test_the_course_format_refuses_a_trimmed_model(trimmed, tmp_path, capsys):
    from summprune.__main__ import main
    from summprune.config import ConfigError, load_config

    if trimmed["case"][1] != "t5":
        pytest.skip("the course format is T5-only anyway")
    with pytest.raises(ValueError, match="course's grader loads its model as t5-small's shape"):
        export_model(trimmed["dir"], tmp_path / "course", format="course")
    with pytest.raises(ValueError, match="trimmed"):
        export_model(trimmed["model"], tmp_path / "course", format="course", tokenizer=trimmed["tok"],
                     trim=trimmed["trim"])
    data = tmp_path / "d"
    data.mkdir()
    (data / "train.jsonl").write_text(json.dumps({"text": "a bill", "summary": "a law"}) + "\n")
    for argv in (["export", "--model", str(trimmed["dir"]), "--output", str(tmp_path / "c1"), "--format", "course"],
                 ["export", "--model", str(trimmed["dir"]), "--output", str(tmp_path / "c2"), "--format", "course",
                  "--trim-vocab", str(data)]):
        assert main(argv) == 2
        assert "t5-small's shape" in capsys.readouterr().err
    assert not list(tmp_path.glob("c[12]*"))
    with pytest.raises(ConfigError, match="export_trim_vocab=true with export_format='course'"):
        load_config(ROOT / "configs" / "smoke.toml", ["export_format=course", "export_trim_vocab=true"])


def test_the_export_command_trims_and_the_ratios_count_against_the_original(corpus, tmp_path, capsys):
    from summprune.__main__ import main
    from summprune.summary import original_from, summarize

    model, tok, src, data = saved_model_and_data(corpus, tmp_path)
    out = tmp_path / "out"
    assert main(["export", "--model", str(src), "--output", str(out), "--format", "compact",
                 "--trim-vocab", str(data), "--trim-min-count", "2"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    rec = json.loads((out / V.MAP_FILE).read_text())
    assert f"vocabulary trimmed to {rec['vocab_size']:,} of {len(tok):,} tokens" in printed
    below = rec["dropped_occurring"]
    assert below["occurrences"] > 0 and f"warning: {below['occurrences']:,} token occurrences" in captured.err
    assert rec["min_count"] == 2 and rec["prefix"] == PREFIX and rec["documents"] == len(corpus["texts"])
    from summprune import sparsity as S

    dense = S.dense_param_count(model)
    original, where = original_from(out)
    assert original["params"] == dense and where == "pruning.json"
    s = summarize(load_model(out), out, original, where)
    assert s["params_vs_original"] == pytest.approx(rec["params"]["after"] / dense)
    assert s["params_vs_original"] < 1 and s["nonzero_vs_original"] < 1
    card = (out / "README.md").read_text()
    assert f"vocabulary trimmed to {rec['vocab_size']:,} of {len(tok):,} tokens" in card
    assert "- vocabulary-trimmed" in card and "not for the course's submission" in card
    # a second trim of a trimmed model is refused, naming why
    assert main(["export", "--model", str(out), "--output", str(tmp_path / "again"), "--trim-vocab", str(data)]) == 2
    assert "trimmed already" in capsys.readouterr().err
    # the options of a trim without --trim-vocab are a usage error
    assert main(["export", "--model", str(src), "--output", str(tmp_path / "x"), "--trim-min-count", "3"]) == 2


def test_prune_exports_a_trimmed_model_when_the_config_says_so(corpus, tmp_path):
    """``export_trim_vocab = true``: ``prune --no-train`` (which reads no data otherwise) trims the
    export to the training split; pruning.json's original is the model before any cut."""
    from summprune.config import load_config
    from summprune.pipeline import prune_existing

    model, tok, src, data = saved_model_and_data(corpus, tmp_path, test=[("x", "y")])
    cfg = load_config(ROOT / "configs" / "smoke.toml", [f"data.dataset={data}", "data.val_size=4", "export_format=hf",
                                                         "export_trim_vocab=true", "export_trim_min_count=1"])
    logged = []
    info = prune_existing(src, cfg, tmp_path / "out", train=False, log_print=logged.append)
    out = tmp_path / "out"
    rec = json.loads((out / "pruning.json").read_text())
    n = rec["vocabulary"]["vocab_size"]
    assert any(f"vocabulary trimmed to {n:,} of {len(tok):,} tokens" in line for line in logged)
    params = rec["vocabulary"]["params"]["after"]
    assert any(line.endswith(f"parameters: {params:,} = {params / info['original']['params']:.4f} of the original's "
                             f"{info['original']['params']:,} (the original: {src})") for line in logged), logged
    assert rec["vocabulary"]["vocab_size"] < len(tok) == rec["vocabulary"]["original_vocab_size"]
    assert rec["vocabulary"]["documents"] == len(corpus["texts"]) - 4  # the training split, validation carved out
    assert rec["original"]["params"] == info["original"]["params"]
    assert load_model(out).config.vocab_size == rec["vocabulary"]["vocab_size"]


def test_t5_smalls_own_tokenizer_trims_to_the_billsum_rows(shared_dir, tmp_path):
    """The real t5-small SentencePiece tokenizer (Unigram, 32,100 tokens under 32,128 rows, 100
    sentinels), on a tiny model of its vocabulary, trimmed to the 20 shared BillSum rows: the
    tokenizer check inside the trim passes (every row is split as before, ids mapped), the
    sentinels and specials stay, the padding rows past the tokenizer go."""
    tok = load_tokenizer(shared_dir / "t5-small")
    rows = [json.loads(x) for x in (shared_dir / "billsum" / "us_test_sample.jsonl").read_text().splitlines() if x]
    model = build_tiny_model(vocab_size=32128, d_model=8, layers=1, heads=2, d_ff=16).eval()
    d = export_model(model, tmp_path / "t", format="compact", tokenizer=tok,
                     trim={"texts": [r["text"] for r in rows], "summaries": [r["summary"] for r in rows],
                           "prefix": PREFIX})
    rec = json.loads((d / V.MAP_FILE).read_text())
    assert 1_000 < rec["vocab_size"] < 8_000 and rec["original_vocab_size"] == 32128
    new_tok = load_tokenizer(d)
    assert [t for t in new_tok.convert_ids_to_tokens(list(range(len(new_tok)))) if t.startswith("<extra_id_")] \
        == [t for t in tok.convert_ids_to_tokens(list(range(len(tok)))) if t.startswith("<extra_id_")]
    assert max(rec["new_to_original"]) < 32100
    text = rows[0]["text"][:500]
    assert new_tok.decode(new_tok(text)["input_ids"], skip_special_tokens=True) == \
        tok.decode(tok(text)["input_ids"], skip_special_tokens=True)


def test_run_exports_a_trimmed_int8_model_when_the_config_says_so(tmp_path):
    """``run`` (fine-tune, prune, export) with ``export_trim_vocab = true`` and compact int8: the
    export is trimmed to the run's training split and records the fine-tuned model as original."""
    from summprune.config import load_config
    from summprune.pipeline import run

    tiny = ["data.synthetic_docs=64", "data.val_size=6", "eval.docs=6", "eval.max_length=24", "eval.batch_size=6",
            "train.max_steps=4", "train.logging_steps=2", "model.tiny_d_model=32", "model.tiny_d_ff=64",
            "model.tiny_vocab=400"]
    cfg = load_config(ROOT / "configs" / "smoke.toml",
                      tiny + [f"runs_dir={tmp_path}", f"output_dir={tmp_path / 'model'}", "export_format=compact",
                              "export_dtype=int8", "export_trim_vocab=true"])
    for st in cfg.prune.stages:
        st.recover_steps = 1
    run(cfg, log_print=lambda s: None)
    out = tmp_path / "model"
    info = json.loads((out / "pruning.json").read_text())
    voc = info["vocabulary"]
    assert voc["documents"] == 64 - 6 and voc["source"].startswith("the training split")
    got = load_model(out)
    assert got.config.vocab_size == voc["vocab_size"] == len(load_tokenizer(out)) <= voc["original_vocab_size"]
    # even a tokenizer trained on these very texts has tokens they never use (intermediate BPE merges)
    assert voc["vocab_size"] < voc["original_vocab_size"]
    assert info["original"]["params"] == voc["params"]["before"] > voc["params"]["after"]
    assert "vocabulary trimmed to" in (out / "README.md").read_text()
