"""Sequence-level knowledge distillation: train on the teacher's own summaries.

Kim & Rush (2016): a student trained on what the teacher *generates* (its greedy or beam output
for each training document) instead of, or beside, the references learns the teacher's mode
rather than the references' spread, which is what a smaller decoder can still fit; Kasai et al.
(2021) and DistilBART (Shleifer & Rush 2020) report it helping shallow decoders most.

:func:`teacher_summaries` generates the teacher's summary of every training document once and
keeps it in ``$SUMMPRUNE_CACHE/teacher_summaries/<key>/`` (default ``~/.cache/summprune``), the
key being a hash of everything the output depends on: the teacher's config and every weight, the
documents' token ids, the decoding and the length limit. A second recovery with the same teacher
(every step of a run, every seed of a benchmark) reads it back instead of generating again. The
summaries are written in chunks of :data:`CHUNK` documents, each atomically, so an interrupted
generation goes on from the last complete chunk. Files are safetensors (token ids), never pickles.
Beside each chunk ``NNNNN.json`` (:func:`summprune.io.files.seal`) records the key, the chunk's
position and row count and the file's sha256: a chunk is read back only while they match (a chunk
of another key or with other summaries put in its place, a symlink, ids beyond the teacher's
vocabulary are generated again, with a warning).

:func:`with_teacher_labels` replaces the labels of a seeded ``share`` of the rows with the
teacher's summaries (1.0: all of them; in between: the rest keep their references).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

#: documents per cache file: small enough that an interruption loses little, large enough that a
#: 20k-document training set is a few dozen files
CHUNK = 256


def cache_root() -> Path:
    from .io.files import cache_dir

    return cache_dir("teacher_summaries")


def cache_key(teacher: nn.Module, input_ids: list[list[int]], *, num_beams: int, max_length: int) -> str:
    """sha256 over the teacher (config and every tensor, in name order), the documents' token ids
    and the decoding: any change gives a new key, so a stale cache is never read."""
    h = hashlib.sha256()
    h.update(json.dumps({"num_beams": num_beams, "max_length": max_length, "format": 1}).encode())
    h.update(teacher.config.to_json_string(use_diff=False).encode())
    for name, t in sorted(teacher.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(str(len(input_ids)).encode())
    for ids in input_ids:
        h.update(len(ids).to_bytes(4, "little"))
        h.update(torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
    return h.hexdigest()[:32]


def _save_chunk(path: Path, seqs: list[list[int]]) -> None:
    from safetensors.torch import save_file

    width = max((len(s) for s in seqs), default=0)
    ids = torch.zeros((len(seqs), max(width, 1)), dtype=torch.int32)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.int32)
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int32)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file({"ids": ids, "lengths": lengths}, str(tmp))
    os.replace(tmp, path)


def _load_chunk(path: Path, expect: int, vocab_size: int) -> list[list[int]] | None:
    """The chunk's sequences, or None when the file is not a complete chunk of ``expect`` rows of
    token ids below ``vocab_size`` (an id beyond the embedding would fail every recovery on it)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        t = load_file(str(path))
        ids, lengths = t["ids"], t["lengths"]
    except (SafetensorError, KeyError, OSError, RuntimeError):
        return None
    if ids.dim() != 2 or lengths.dim() != 1 or lengths.shape != (expect,) or ids.shape[0] != expect \
            or int(lengths.max()) > ids.shape[1] or int(lengths.min()) < 0:
        return None
    seqs = [ids[i, : int(n)].tolist() for i, n in enumerate(lengths)]
    if any(not 0 <= t < vocab_size for seq in seqs for t in seq):
        return None
    return seqs


def _chunk_problem(folder: Path, index: int, key: str, rows: int, vocab_size: int) -> tuple[list | None, str | None]:
    """``(sequences, None)`` of cached chunk ``index`` when it is the one of ``key`` (its manifest
    names this key, position and row count, and the file's digest matches), else ``(None, why)``;
    ``(None, None)`` when there is no such chunk yet."""
    from .io.files import check_seal

    path, manifest = folder / f"{index:05d}.safetensors", folder / f"{index:05d}.json"
    if not any(p.exists() or p.is_symlink() for p in (path, manifest)):
        return None, None
    why = check_seal(manifest, folder, {"key": key, "chunk": index, "rows": rows}, required=(path.name,))
    if why is not None:
        return None, why
    seqs = _load_chunk(path, rows, vocab_size)
    if seqs is None:
        return None, f"it is not {rows} summaries of token ids below the teacher's vocab_size={vocab_size}"
    return seqs, None


@torch.no_grad()
def _generate(teacher: nn.Module, input_ids: list[list[int]], pad_id: int, *, num_beams: int, max_length: int,
              batch_size: int) -> list[list[int]]:
    """The teacher's summaries of ``input_ids`` as label sequences (ending in end-of-sequence,
    without the decoder start token). Documents are batched by length, results in input order."""
    device = next(teacher.parameters()).device
    eos = teacher.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    order = sorted(range(len(input_ids)), key=lambda i: -len(input_ids[i]))
    out: list[list[int] | None] = [None] * len(input_ids)
    for b in range(0, len(order), batch_size):
        idx = order[b: b + batch_size]
        width = max(len(input_ids[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, : len(input_ids[i])] = torch.tensor(input_ids[i])
            mask[r, : len(input_ids[i])] = 1
        gen = teacher.generate(input_ids=ids.to(device), attention_mask=mask.to(device), num_beams=num_beams,
                               do_sample=False, max_length=max_length, early_stopping=num_beams > 1)
        for r, i in enumerate(idx):
            seq = gen[r, 1:].tolist()  # drop the decoder start token
            # generate pads a row only after its end-of-sequence token; a row without one ran to
            # max_length and every token of it is the teacher's (a pad id there is a real choice)
            if eos is not None and eos in seq:
                seq = seq[: seq.index(eos) + 1]
            out[i] = seq
    return out  # type: ignore[return-value]


def teacher_summaries(teacher: nn.Module, train_ds, pad_id: int, *, num_beams: int = 1, max_length: int | None = None,
                      batch_size: int = 32, cache_dir: str | Path | None = None,
                      progress: bool = True) -> list[list[int]]:
    """The teacher's summary (label token ids) of every row of ``train_ds``, generated once per
    (teacher, documents, decoding) and cached; ``max_length`` defaults to the longest reference
    label, so teacher summaries are never longer than what fine-tuning saw."""
    from tqdm.auto import tqdm

    from .io.files import seal

    input_ids = [list(x) for x in train_ds["input_ids"]]
    if max_length is None:
        max_length = max((len(x) for x in train_ds["labels"]), default=1) + 1  # + the decoder start token
    key = cache_key(teacher, input_ids, num_beams=num_beams, max_length=max_length)
    folder = Path(cache_dir) if cache_dir is not None else cache_root() / key
    if folder.is_symlink():  # a cache entry is ours: never written through a link to elsewhere
        warnings.warn(f"the teacher-summary cache {folder} is a symlink (to {os.readlink(folder)}); "
                      "replacing it with a folder of its own", stacklevel=2)
        folder.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = int(teacher.config.vocab_size)
    was_training = teacher.training
    teacher.eval()
    out: list[list[int]] = []
    starts = range(0, len(input_ids), CHUNK)
    bar = tqdm(starts, desc=f"teacher summaries ({'greedy' if num_beams == 1 else f'{num_beams} beams'})",
               unit="chunk", disable=not progress)
    try:
        for start in bar:
            rows = input_ids[start: start + CHUNK]
            index = start // CHUNK
            path, manifest = folder / f"{index:05d}.safetensors", folder / f"{index:05d}.json"
            seqs, why = _chunk_problem(folder, index, key, len(rows), vocab_size)
            if why is not None:
                warnings.warn(f"teacher-summary cache {path}: {why}; generating it again", stacklevel=2)
                for p in (path, manifest):
                    if p.is_symlink() or p.is_file():
                        p.unlink()
                    elif p.exists():
                        shutil.rmtree(p)
            if seqs is None:
                seqs = _generate(teacher, rows, pad_id, num_beams=num_beams, max_length=max_length,
                                 batch_size=batch_size)
                _save_chunk(path, seqs)
                seal(manifest, folder, [path.name], {"key": key, "chunk": index, "rows": len(rows)})
            out.extend(seqs)
    finally:
        teacher.train(was_training)
    return out


def with_teacher_labels(train_ds, summaries: list[list[int]], share: float, seed: int):
    """``train_ds`` with the labels of a seeded ``share`` of its rows replaced by ``summaries``
    (same order as the rows); 1.0 replaces all of them."""
    if len(summaries) != len(train_ds):
        raise ValueError(f"{len(summaries)} teacher summaries for {len(train_ds)} training rows")
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share={share}: must be in (0, 1]")
    n = len(train_ds)
    chosen = set(range(n)) if share >= 1.0 else set(random.Random(seed).sample(range(n), round(share * n)))
    labels = [summaries[i] if i in chosen else list(lab) for i, lab in enumerate(train_ds["labels"])]
    return train_ds.remove_columns("labels").add_column("labels", labels)
