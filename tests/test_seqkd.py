"""Sequence-level distillation (summprune.seqkd): the teacher's summaries are what greedy decoding
gives, generated once and read back from a content-keyed cache, resumed after an interruption,
mixed with the references by a seeded share; recovery on them lowers the student's loss on them."""

from __future__ import annotations

import copy

import pytest
import torch


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("SUMMPRUNE_CACHE", str(tmp_path / "cache"))


def _rows(n: int = 10) -> list[dict]:
    return [{"input_ids": [5 + i % 7, 6 + i % 3, 7, 8 + i % 5, 1][: 3 + i % 3] + [1], "attention_mask": [1] * (4 + i % 3),
             "labels": [9, 10 + i % 5, 1]} for i in range(n)]


def _ds(n: int = 10):
    import datasets

    rows = _rows(n)
    for r in rows:
        r["attention_mask"] = [1] * len(r["input_ids"])
    return datasets.Dataset.from_list(rows)


def test_teacher_summaries_are_the_teachers_greedy_output(tiny_model):
    from summprune.seqkd import teacher_summaries

    ds = _ds()
    out = teacher_summaries(tiny_model, ds, pad_id=0, max_length=8, batch_size=4, progress=False)
    assert len(out) == len(ds)
    assert tiny_model.training  # the mode it came in with is restored
    tiny_model.eval()  # (dropout would change the reference below)
    eos = tiny_model.generation_config.eos_token_id
    for ids, seq in zip(ds["input_ids"], out):
        # one document at a time, no padding: what batching by length must not change
        alone = tiny_model.generate(input_ids=torch.tensor([ids]), max_length=8, num_beams=1, do_sample=False)[0, 1:].tolist()
        if eos in alone:
            alone = alone[: alone.index(eos) + 1]
        assert seq == alone
        assert 1 <= len(seq) <= 7


def test_cache_is_read_back_and_keyed_by_the_teacher(tiny_model, monkeypatch):
    import summprune.seqkd as K

    ds = _ds()
    first = K.teacher_summaries(tiny_model, ds, pad_id=0, max_length=8, progress=False)

    def boom(*a, **k):
        raise AssertionError("generated again although cached")

    monkeypatch.setattr(K, "_generate", boom)
    assert K.teacher_summaries(tiny_model, ds, pad_id=0, max_length=8, progress=False) == first
    other = copy.deepcopy(tiny_model)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    with pytest.raises(AssertionError, match="generated again"):  # another teacher: another key
        K.teacher_summaries(other, ds, pad_id=0, max_length=8, progress=False)
    with pytest.raises(AssertionError, match="generated again"):  # other decoding: another key
        K.teacher_summaries(tiny_model, ds, pad_id=0, max_length=8, num_beams=2, progress=False)


def test_interrupted_generation_resumes_and_a_corrupt_chunk_is_regenerated(tiny_model, monkeypatch):
    import summprune.seqkd as K

    monkeypatch.setattr(K, "CHUNK", 3)
    ds = _ds(10)  # chunks of 3, 3, 3, 1
    real = K._generate
    calls = []

    def flaky(teacher, rows, *a, **k):
        calls.append(len(rows))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(teacher, rows, *a, **k)

    monkeypatch.setattr(K, "_generate", flaky)
    with pytest.raises(KeyboardInterrupt):
        K.teacher_summaries(tiny_model, ds, pad_id=0, max_length=8, progress=False)
    calls.clear()
    out = K.teacher_summaries(tiny_model, ds, pad_id=0, max_length=8, progress=False)
    assert calls == [3, 1]  # the two chunks written before the interruption were read back
    folder = next((K.cache_root()).iterdir())
    assert not list(folder.glob("*.tmp*"))
    (folder / "00001.safetensors").write_bytes(b"not a safetensors file")
    calls.clear()
    assert K.teacher_summaries(tiny_model, ds, pad_id=0, max_length=8, progress=False) == out
    assert calls == [3]


def test_with_teacher_labels_replaces_a_seeded_share():
    from summprune.seqkd import with_teacher_labels

    ds = _ds(10)
    teacher = [[42, 1]] * 10
    half = with_teacher_labels(ds, teacher, 0.5, seed=3)
    replaced = [i for i, lab in enumerate(half["labels"]) if lab == [42, 1]]
    assert len(replaced) == 5
    assert replaced == [i for i, lab in enumerate(with_teacher_labels(ds, teacher, 0.5, seed=3)["labels"]) if lab == [42, 1]]
    assert all(lab == [42, 1] for lab in with_teacher_labels(ds, teacher, 1.0, seed=0)["labels"])
    assert half["input_ids"] == ds["input_ids"]
    with pytest.raises(ValueError, match="10 training rows"):
        with_teacher_labels(ds, teacher[:9], 1.0, seed=0)


def test_recovery_on_teacher_summaries_lowers_the_students_loss_on_them(tiny_model, tmp_path):
    """distill_sequences=1 with distill_alpha=1: plain fine-tuning, but towards the teacher's own
    summaries; the student's loss on those summaries falls (and a teacher is required)."""
    from summprune.config import RecoveryConfig, TrainConfig
    from summprune.recovery import make_teacher, recover
    from summprune.seqkd import teacher_summaries, with_teacher_labels
    from summprune.tokenizer import train_tokenizer

    tok = train_tokenizer(["the act of congress amends the law"] * 4, vocab_size=100)
    teacher = make_teacher(tiny_model)
    student = copy.deepcopy(tiny_model)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ds = _ds(16)
    target = with_teacher_labels(ds, teacher_summaries(teacher, ds, tok.pad_token_id, progress=False), 1.0, seed=0)

    def loss() -> float:
        student.eval()
        total = 0.0
        with torch.no_grad():
            for r in target:
                total += float(student(input_ids=torch.tensor([r["input_ids"]]), labels=torch.tensor([r["labels"]])).loss)
        return total / len(target)

    before = loss()
    rc = RecoveryConfig(recover_steps=15, distill_sequences=1.0, learning_rate=3e-3)
    assert rc.needs_teacher()
    with pytest.raises(ValueError, match="needs a teacher"):
        recover(student, tok, ds, TrainConfig(batch_size=4), rc)
    recover(student, tok, ds, TrainConfig(batch_size=4, logging_steps=1, progress_bar=False), rc, teacher=teacher,
            output_dir=tmp_path / "rec")
    assert loss() < 0.8 * before


def test_sequence_distillation_keys_are_validated_and_make_the_run_build_a_teacher():
    from summprune.config import ConfigError, load_config
    from summprune.methods import build_methods

    for bad in ("prune.gradual.distill_sequences=1.5", "prune.gradual.distill_sequence_beams=0"):
        with pytest.raises(ConfigError, match=bad.split(".")[2].split("=")[0]):
            load_config(None, ["prune.gradual.target_nonzero_ratio=0.5", "prune.gradual.recover_steps=2", bad])
    for key in ("distill_sequences=1.0", "distill_features=1.0", "distill_alpha=0.5"):
        cfg = load_config(None, ["prune.gradual.target_nonzero_ratio=0.5", "prune.gradual.recover_steps=2",
                                 f"prune.gradual.{key}"])
        assert any(m.distills() for m in build_methods(cfg.prune)), key
    cfg = load_config(None, ["prune.gradual.target_nonzero_ratio=0.5", "prune.gradual.recover_steps=2"])
    assert not any(m.distills() for m in build_methods(cfg.prune))


def test_a_chunk_of_another_key_or_with_other_summaries_is_generated_again(tiny_model, monkeypatch):
    """A chunk is tied to its key (teacher, documents, decoding) and position by its manifest and
    checked against its digest: another well-formed chunk put in its place (another cache's, with
    or without its manifest; one rewritten with other summaries) is generated again, with a warning."""
    import shutil

    import summprune.seqkd as K

    ds = _ds(10)
    first = K.teacher_summaries(tiny_model, ds, pad_id=0, max_length=8, progress=False)
    other_teacher = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for p in other_teacher.parameters():
            p.add_(0.3 * torch.randn_like(p))
    other = K.teacher_summaries(other_teacher, ds, pad_id=0, max_length=8, progress=False)
    assert other != first  # the swap below would change the labels: the test can fail
    mine = K.cache_root() / K.cache_key(tiny_model, [list(x) for x in ds["input_ids"]], num_beams=1, max_length=8)
    theirs = next(p for p in K.cache_root().iterdir() if p != mine)
    for names in (["00000.safetensors"], ["00000.safetensors", "00000.json"]):
        for n in names:
            shutil.copyfile(theirs / n, mine / n)
        with pytest.warns(UserWarning, match="00000.safetensors: .*generating it again"):
            assert K.teacher_summaries(tiny_model, ds, pad_id=0, max_length=8, progress=False) == first
    K._save_chunk(mine / "00000.safetensors", [[5, 1]] * 10)  # well-formed, other summaries, manifest kept
    with pytest.warns(UserWarning, match="differs from its digest"):
        assert K.teacher_summaries(tiny_model, ds, pad_id=0, max_length=8, progress=False) == first


def test_a_chunk_with_out_of_range_ids_is_discarded_not_an_index_error_forever(tiny_model):
    """Ids beyond the teacher's vocabulary (even under a manifest that matches them) would fail
    every recovery on them: the chunk is discarded with a warning naming the cache file, and
    generated again."""
    import summprune.seqkd as K
    from summprune.io.files import seal

    ds = _ds(10)
    first = K.teacher_summaries(tiny_model, ds, pad_id=0, max_length=8, progress=False)
    folder = next(K.cache_root().iterdir())
    key = folder.name
    K._save_chunk(folder / "00000.safetensors", [[tiny_model.config.vocab_size + 5, 1]] * 10)
    seal(folder / "00000.json", folder, ["00000.safetensors"], {"key": key, "chunk": 0, "rows": 10})
    with pytest.warns(UserWarning, match=f"{key}/00000.safetensors: .*vocab_size"):
        assert K.teacher_summaries(tiny_model, ds, pad_id=0, max_length=8, progress=False) == first


def test_cache_entries_that_are_symlinks_are_refused(tiny_model, tmp_path):
    """A chunk that is a symlink (to an identical copy, even) and a cache folder that is a symlink
    are replaced by files of their own; what they pointed at is left as it was."""
    import shutil

    import summprune.seqkd as K

    ds = _ds(10)
    first = K.teacher_summaries(tiny_model, ds, pad_id=0, max_length=8, progress=False)
    folder = next(K.cache_root().iterdir())
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(folder, elsewhere)
    (folder / "00000.safetensors").unlink()
    (folder / "00000.safetensors").symlink_to(elsewhere / "00000.safetensors")
    with pytest.warns(UserWarning, match="a symlink"):
        assert K.teacher_summaries(tiny_model, ds, pad_id=0, max_length=8, progress=False) == first
    assert not (folder / "00000.safetensors").is_symlink()
    shutil.rmtree(folder)
    folder.symlink_to(elsewhere, target_is_directory=True)
    before = sorted(p.name for p in elsewhere.iterdir())
    with pytest.warns(UserWarning, match="is a symlink"):
        assert K.teacher_summaries(tiny_model, ds, pad_id=0, max_length=8, progress=False) == first
    assert folder.is_dir() and not folder.is_symlink()
    assert sorted(p.name for p in elsewhere.iterdir()) == before
