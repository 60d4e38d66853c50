"""Work folders: where one request's work is kept, so that the same request started again goes on.

Two kinds, one abstraction (:class:`WorkFolder`): a **run folder** ``runs/<name>/`` (its request:
the run's resolved config, in ``config.json``) and a **prune work folder** ``<output>.trainer/``
(its request in ``prune.json``: the model, its files' fingerprint, ``--no-train`` and the resolved
config). Both hold ``metrics.jsonl`` (one record per event, appended to on a resume), ``steps/``
(step checkpoints: :mod:`summprune.checkpoints`) and ``trainer/`` (the Trainer's files); a run
folder also keeps ``finetuned/``, the summary and the figures.

:meth:`WorkFolder.matches` is the one compare-and-refuse: the saved request, read as this version
reads it (:func:`with_new_defaults`), against the new one. The same request is continued; another
is refused naming the keys that differ, unless ``overwrite``; a folder that is not one of ours is
never adopted nor emptied, as it may be someone's data.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

from .config import ConfigError, ExperimentConfig, config_from_dict, config_to_dict
from .io.files import atomic_write_json, file_digests

METRICS = "metrics.jsonl"
STEPS = "steps"
TRAINER = "trainer"
#: A saved request that cannot be read: never the same as a new one.
UNREADABLE = "(unreadable)"


def with_new_defaults(saved: dict) -> dict:
    """A saved resolved config as this version of the package resolves it: a key added since (with
    its default, which changes nothing the old run did) does not make a folder "another config".
    A saved config this version cannot read is returned as it is (and then differs)."""
    try:
        return json.loads(json.dumps(config_to_dict(config_from_dict(saved, "saved config"))))
    except (ConfigError, TypeError, ValueError, KeyError):
        return saved


def diff_keys(a, b, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two JSON values (a key present in one only included)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def differs_in(diff: list[str]) -> str:
    """``differs in: a, b, ...`` (the first eight keys, sorted): how every refusal names what differs."""
    diff = sorted(diff)
    return f"differs in: {', '.join(diff[:8])}{' ...' if len(diff) > 8 else ''}"


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


class WorkFolder:
    """A folder holding the work of one ``request`` (JSON), recorded in ``path / record``.

    A kind says what it is (``what``, ``role``), how to avoid it (``elsewhere``), which folders
    are its own (:meth:`_foreign`), how an older version's record reads now (:meth:`_upgrade`)
    and how another request is refused (:meth:`_another`). ``spare``: paths inside it that are
    not its work (a lock the caller holds there), never counted nor removed."""

    record: str
    what: str
    role: str
    elsewhere: str
    keep: frozenset[str] = frozenset()  # kept when the folder starts again
    links_ok = False  # whether the folder itself may be a symlink

    def __init__(self, path: str | Path, request: dict, spare: tuple[Path, ...] = ()):
        self.path = Path(path)
        self.request = json.loads(json.dumps(request))
        self.spare = spare

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def steps(self) -> Path:
        return self.path / STEPS

    @property
    def trainer(self) -> Path:
        return self.path / TRAINER

    def _saved(self) -> Any:
        """The saved request: None where there is none, :data:`UNREADABLE` where it cannot be read."""
        f = self.path / self.record
        if not f.is_file():
            return None
        try:
            return json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return UNREADABLE

    def _entries(self) -> list[Path]:
        return [p for p in self.path.iterdir() if not any(_same_path(p, s) for s in self.spare)]

    def matches(self, overwrite: bool) -> bool:
        """True if the folder holds this request (to be continued); False if it is absent, holds no
        request yet, or ``overwrite`` (to be started again); raises, touching nothing, where it must
        not be used: something that is not a directory (FileExistsError), a folder that is not of
        this kind (FileExistsError), another request (ValueError naming the keys that differ)."""
        p = self.path
        if (p.is_symlink() and not self.links_ok) or (p.exists() and not p.is_dir()):
            raise FileExistsError(f"{p}: exists and is not a directory ({self.role}); move it away or "
                                  f"{self.elsewhere}")
        if not p.is_dir():
            return False
        old = self._saved()
        why = self._foreign(self._entries(), old)
        if why is not None:
            raise FileExistsError(f"{p}: exists and is not {self.what} ({why}); move it away or {self.elsewhere}")
        if overwrite or old is None:
            return False
        old = self._upgrade(old)
        if old == self.request:
            return True
        diff = diff_keys(old, self.request) if isinstance(old, dict) else [f"(unreadable {self.record})"]
        raise ValueError(self._another(diff))

    def start(self, resuming: bool, note: Callable[[str], None] = print) -> None:
        """Ready the folder for work (main process only, after :meth:`matches`). Resuming, it is
        used as it is (its metrics appended to, never wiped), its record brought up to this
        version's; otherwise emptied (but for ``keep``) and given the request, then empty metrics.
        The record is written first: a start killed after it leaves a folder of ours, with no
        step done, that the same command continues."""
        rec = self.path / self.record
        if resuming:
            saved = self._saved()
            if saved != self.request:
                atomic_write_json(rec, self.request)
                msg = self._resume_note(saved)
                if msg:
                    note(f"note: {rec} {msg}")
            return
        if self.path.is_dir():
            for p in self._entries():
                if p.name not in self.keep:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(rec, self.request)
        self.metrics.write_text("", encoding="utf-8")  # a new start's metrics start fresh

    def log(self, record: dict) -> None:
        """Append one record to ``metrics.jsonl``."""
        with self.metrics.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def logged(self, event: str) -> dict | None:
        """The last record of ``event`` in ``metrics.jsonl`` (a torn last line is skipped)."""
        found = None
        if self.metrics.is_file():
            for line in self.metrics.read_text(encoding="utf-8").split("\n"):
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and rec.get("event") == event:
                    found = rec
        return found

    # what differs between the kinds
    def _foreign(self, entries: list[Path], saved: Any) -> str | None:
        raise NotImplementedError

    def _upgrade(self, saved: Any) -> Any:
        return saved

    def _another(self, diff: list[str]) -> str:
        raise NotImplementedError

    def _resume_note(self, saved: Any) -> str | None:
        return None


# ----------------------------------------------------------------------------- run folders


def _is_run_config(obj) -> bool:
    """A run folder's ``config.json`` (a resolved ExperimentConfig), not a model's config.json."""
    return isinstance(obj, dict) and {"name", "data", "model", "train", "prune", "eval"} <= set(obj)


class RunFolder(WorkFolder):
    """``runs_dir/name``: the request is the run's config as given (``data.prefix`` 'auto' kept
    as 'auto', so a resume compares like with like). ``legacy_prefix``: what 'auto' resolves to
    for this model where known (a run saved before 'auto' was the default holds that value).
    ``--overwrite`` keeps ``finetuned/`` (reused only while its fingerprint matches)."""

    record = "config.json"
    what = "a run folder"
    role = "runs_dir/name of this run"
    elsewhere = "choose another name= / runs_dir="
    keep = frozenset({"finetuned"})
    links_ok = True

    def __init__(self, path: str | Path, cfg: ExperimentConfig, legacy_prefix: str | None = None):
        # the lock of the run's own output directory (taken before the check) may sit here
        out = Path(cfg.output_dir).expanduser()
        super().__init__(path, config_to_dict(cfg), spare=(out.parent / f".{out.name}.lock",))
        self.legacy_prefix = legacy_prefix

    def lock(self):
        """The run folder's lock (``runs_dir/.<name>.lock``: a second ``run`` of the same name is
        refused, naming the pid of the first), ``runs_dir`` made first."""
        from .io.files import lock_file

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"runs_dir={self.path.parent}: cannot be created ({e.strerror or e}); choose a writable "
                          "runs_dir=") from None
        return lock_file(self.path.parent / f".{self.path.name}.lock", f"run folder {self.path}")

    def _foreign(self, entries, saved):
        # never adopt (nor, with --overwrite, empty) a folder that is not a run folder: it may be
        # someone's data, or a model directory, that happens to sit at runs_dir/name
        return "no config.json of a run in it" if entries and not _is_run_config(saved) else None

    def _upgrade(self, saved):
        old = with_new_defaults(saved)
        # a run saved before data.prefix defaulted to 'auto' holds the prefix that then was the
        # default ("summarize: "): the same run if 'auto' resolves to it for this model
        if (isinstance(old, dict) and isinstance(old.get("data"), dict) and self.request["data"]["prefix"] == "auto"
                and old["data"].get("prefix") not in (None, "auto") and old["data"]["prefix"] == self.legacy_prefix):
            old["data"]["prefix"] = "auto"
        return old

    def _another(self, diff):
        return (f"{self.path} holds a run of another config ({differs_in(diff)}); add --overwrite to start it "
                "again (a fine-tuned model with the same data/model/train settings is kept and reused), or "
                "choose another name=")


# ----------------------------------------------------------------------------- prune work folders

#: ``<output>.trainer/prune.json``: what a ``prune`` was asked to do.
PRUNE_REQUEST = "prune.json"
#: What a prune work folder may hold: a folder with anything else is someone else's, never adopted.
PRUNE_WORK_FILES = {PRUNE_REQUEST, METRICS, STEPS, TRAINER}
#: The key of ``prune.json`` holding the starting model's fingerprint.
MODEL_DIGEST = "model_sha256"


def prune_work_dir(output: str | Path) -> Path:
    """Where ``prune`` keeps its step checkpoints, Trainer files and ``metrics.jsonl``: a sibling
    ``<output>.trainer/`` (beside the output, so a finished output directory holds the model only)."""
    out = Path(output).expanduser()
    return out.with_name(out.name + ".trainer")


def model_fingerprint(model_dir: str | Path) -> dict[str, str] | None:
    """``{file: sha256}`` of the files that decide what loading ``model_dir`` gives (config,
    weights, tokenizer, generation config: :func:`summprune.io.hf.model_file_names`); None for
    a name that is not a directory (a hub name). Reading the weights once is seconds at most
    for t5-small, next to the minutes a prune step takes."""
    from .io.hf import model_file_names

    d = Path(str(model_dir)).expanduser()
    return file_digests(d, model_file_names(d)) if d.is_dir() else None


def prune_request(model_dir: str | Path, cfg: ExperimentConfig, train: bool) -> dict:
    """What ``prune.json`` records: the model (its path, and, for a prune that trains and so keeps
    a work folder, its content's fingerprint: a resume with another model at the same path is
    refused), ``--no-train`` and the resolved config."""
    p = Path(str(model_dir)).expanduser()
    req = {"model": str(p.resolve()) if p.exists() else str(model_dir), "train": train, "config": config_to_dict(cfg)}
    if train:
        req[MODEL_DIGEST] = model_fingerprint(model_dir)
    return json.loads(json.dumps(req))


class PruneWork(WorkFolder):
    """``<output>.trainer/`` (:func:`prune_work_dir`) for ``request`` (:func:`prune_request`)."""

    record = PRUNE_REQUEST
    what = "a prune work folder"
    role = "prune keeps its checkpoints there"
    elsewhere = "choose another --output"

    def __init__(self, output: str | Path, request: dict):
        super().__init__(prune_work_dir(output), request)

    def _foreign(self, entries, saved):
        names = sorted(p.name for p in entries if p.name not in PRUNE_WORK_FILES)
        return f"it holds {names[:3]}" if names else None

    def _upgrade(self, saved):
        if isinstance(saved, dict) and isinstance(saved.get("config"), dict):
            saved = {**saved, "config": with_new_defaults(saved["config"])}
        if isinstance(saved, dict) and MODEL_DIGEST not in saved and MODEL_DIGEST in self.request:
            # a work folder from before prune.json recorded the model's content: the same request
            # if all else matches (start() records the fingerprint then)
            saved = {**saved, MODEL_DIGEST: self.request.get(MODEL_DIGEST)}
        return saved

    def _another(self, diff):
        files = sorted(k[len(MODEL_DIGEST) + 1:] for k in diff if k.startswith(MODEL_DIGEST + "."))
        what = (f"; the model at {self.request['model']} is not the one this work started from"
                + (f" (its {', '.join(files[:6])} changed)" if files else "")
                if files or MODEL_DIGEST in diff else "")
        return (f"{self.path} holds the checkpoints of another prune ({differs_in(diff)}){what}; add --overwrite "
                "to start again, or choose another --output")

    def _resume_note(self, saved):
        if isinstance(saved, dict) and MODEL_DIGEST not in saved and MODEL_DIGEST in self.request:
            return (f"was written before it recorded the model's fingerprint; recorded now from "
                    f"{self.request['model']} as it is (a model replaced before this resume cannot be told apart)")
        return None
