"""The course's Kaggle metric, ROUGE, sentence splitting, and reading a submission CSV.

``kaggle_score`` is the course's metric: a recall-only, fragment-level LCS. For each document,
commas in the *reference* become periods; reference and prediction are split on ``'.'``; every
reference fragment (``fragment.strip().lower().split()``) keeps its best LCS length, in tokens,
against any prediction fragment; the sum over reference fragments is divided by the number of
reference tokens (0 when there are none); documents are averaged. The prediction's commas are
left alone (generate_csv.py replaces them when it writes the CSV). ``kaggle_score_reference`` is
that definition written out in plain Python with the textbook LCS table (the course's
hand-written DP); ``kaggle_score`` gives the same numbers (tests: within 1e-9) with
rapidfuzz's C++ LCS, ~70x faster (benchmarks/score_speed.py times both in one run).

``rouge`` gives the mean F-measures of ``rouge_score`` (rouge1, rouge2, rougeL, rougeLsum) with
the Porter stemmer. rougeLsum needs one sentence per line; ``split_sentences`` provides it
offline (see its docstring for why it is a regex and not nltk's punkt).

None, NaN and empty predictions score as empty text everywhere.
"""

from __future__ import annotations

import functools
import math
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

#: What generate_csv.py writes and score_result.py reads when given no file.
DEFAULT_PREDICTIONS = "submission.csv"

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")

#: Longest prediction or reference score_result.py scores, in characters (roughly 3,000 words;
#: the 20 BillSum test summaries in ../shared are at most 2,151 characters). The course metric and
#: ROUGE-L cost the product of the two lengths (issue 32: one 100 MB prediction took 508 s and
#: 8 GB); a longer field is cut to this, with a warning naming it.
MAX_FIELD_CHARS = 20_000


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

def as_text(value) -> str:
    """A prediction or reference as text: None, NaN and pandas.NA become ``""``."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    import pandas as pd  # only for the rare non-str value (pd.NA, numpy/pandas scalars)

    if pd.api.types.is_scalar(value) and pd.isna(value):
        return ""
    raise TypeError(f"expected text, got {type(value).__name__}: {value!r}")


def _texts(predictions: Sequence, references: Sequence) -> tuple[list[str], list[str]]:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    return [as_text(p) for p in predictions], [as_text(r) for r in references]


def _fragments(text: str) -> list[list[str]]:
    return [frag.strip().lower().split() for frag in text.split(".")]


# --------------------------------------------------------------------------------------------
# The course metric
# --------------------------------------------------------------------------------------------

def _kaggle_doc(prediction: str, reference: str) -> float:
    ref_frags = [f for f in _fragments(reference.replace(",", ".")) if f]
    total = sum(map(len, ref_frags))
    if total == 0:
        return 0.0
    # Tokens become small ints, unique per document, so rapidfuzz compares exact ids (lists of
    # str would be compared by hash(): a little faster, but then equal only with probability 1).
    # A prediction token absent from the reference can match nothing: all of them share -1.
    ids: dict[str, int] = {}
    ref_ids = [[ids.setdefault(t, len(ids)) for t in f] for f in ref_frags]
    pred_ids = [[ids.get(t, -1) for t in f] for f in _fragments(prediction) if f]
    if not pred_ids:
        return 0.0
    # One C++ call per document: LCS length of every (reference, prediction) fragment pair.
    lcs = process.cdist(ref_ids, pred_ids, scorer=LCSseq.similarity, dtype=np.int32)
    return int(lcs.max(axis=1).sum()) / total


def kaggle_scores(predictions: Sequence, references: Sequence) -> list[float]:
    """The course metric of each document (same order as the inputs)."""
    preds, refs = _texts(predictions, references)
    return [_kaggle_doc(p, r) for p, r in zip(preds, refs)]


def kaggle_score(predictions: Sequence, references: Sequence) -> float:
    """The course metric: mean over documents of :func:`kaggle_scores`."""
    scores = kaggle_scores(predictions, references)
    if not scores:
        raise ValueError("no documents to score")
    return sum(scores) / len(scores)


def _lcs_reference(x: list[str], y: list[str]) -> int:
    """Longest common subsequence length: the textbook dynamic programme."""
    m, n = len(x), len(y)
    table = [[0] * (n + 1) for _ in range(m + 1)]
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            if x[i - 1] == y[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    return table[m][n]


def kaggle_score_reference(predictions: Sequence, references: Sequence) -> float:
    """The course metric as the course computes it, a hand-written LCS table in plain Python:
    the definition that :func:`kaggle_score` must match; slow, for tests and benchmarks."""
    preds, refs = _texts(predictions, references)
    if not refs:
        raise ValueError("no documents to score")
    total_score = 0.0
    for pred, ref in zip(preds, refs):
        ref = ref.replace(",", ".")
        ref_frags = [frag.strip().lower().split() for frag in ref.split(".")]
        pred_frags = [frag.strip().lower().split() for frag in pred.split(".")]
        ref_tokens = sum(len(frag) for frag in ref_frags)
        if ref_tokens == 0:
            continue  # scores 0
        hits = 0
        for rf in ref_frags:
            hits += max(_lcs_reference(rf, pf) for pf in pred_frags)
        total_score += hits / ref_tokens
    return total_score / len(refs)


# --------------------------------------------------------------------------------------------
# Sentences and ROUGE
# --------------------------------------------------------------------------------------------

# A candidate boundary: . ! or ? then whitespace, then (after an optional opening quote or
# bracket) a capital letter or a digit.
_BOUNDARY = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
# No boundary after a known abbreviation or a single capital initial (U.S., U.S.C., H. R.).
_NO_BREAK_AFTER = re.compile(
    r"(?:\b(?i:sec|secs|subsec|no|nos|mr|mrs|ms|dr|jr|sr|st|stat|inc|corp|co|ltd|gen|gov|sen|"
    r"rep|dept|pub|vol|art|ch|cl|par|para|pt|v|vs|cf|e\.g|i\.e|al)|\b[A-Z])\.$")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (existing line breaks are boundaries too), for rougeLsum.

    A regex rule, chosen because it works offline and fits BillSum summaries: a sentence ends
    at ``.``, ``!`` or ``?`` followed by whitespace and a capital letter or digit (optionally
    after ``(``, ``[`` or a quote), except after a few legal/English abbreviations (``Sec.``,
    ``No.``, ``Mr.``, ``e.g.``, ...) and single capital initials (``U.S.``, ``U.S.C.``).
    nltk's trained punkt model would need ``nltk.download``, which these machines cannot do;
    an untrained ``PunktSentenceTokenizer()`` knows no abbreviations, so it breaks after
    "U.S." and "Sec." ("Amends the U.S. | Code. | (Sec. | 2) Requires ..."). On the 20 real
    BillSum test summaries in ../shared both give the same sentences. Known limit: a sentence
    that really ends in a single capital ("... part B. Requires") is not split.
    """
    out: list[str] = []
    for line in text.splitlines():
        pending = ""
        for piece in _BOUNDARY.split(line.strip()):
            pending = f"{pending} {piece}" if pending else piece
            if not _NO_BREAK_AFTER.search(pending):
                out.append(pending)
                pending = ""
        if pending:
            out.append(pending)
    return [s for s in out if s.strip()]


def _scorer():
    """rouge_score's scorer with its own tokenizer and Porter stemmer, the stem memoised.

    The tokens are exactly those of ``RougeScorer(use_stemmer=True)`` (same function, same
    stemmer); caching the stem of each distinct word saves about a third of the time.
    """
    from nltk.stem import porter
    from rouge_score import rouge_scorer, tokenize, tokenizers

    stemmer = types.SimpleNamespace(stem=functools.lru_cache(maxsize=1 << 16)(porter.PorterStemmer().stem))

    class _Tokenizer(tokenizers.Tokenizer):
        def tokenize(self, text):
            return tokenize.tokenize(text, stemmer)

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=_Tokenizer())


def _rouge_rows(pairs: list[tuple[str, str]]) -> list[tuple[float, ...]]:
    """F-measures of each (prediction, reference) pair, in ROUGE_TYPES order."""
    scorer = _scorer()
    rows = []
    for pred, ref in pairs:
        s = scorer.score("\n".join(split_sentences(ref)), "\n".join(split_sentences(pred)))
        rows.append(tuple(s[k].fmeasure for k in ROUGE_TYPES))
    return rows


def rouge(predictions: Sequence, references: Sequence, *, workers: int = 1) -> dict[str, float]:
    """Mean F-measure over documents of rouge1, rouge2, rougeL and rougeLsum (``rouge_score``,
    Porter stemmer), in [0, 1].

    Both texts are passed one sentence per line (:func:`split_sentences`). rouge1/2/L tokenise
    the whole text, so the line breaks change nothing for them; rougeLsum is the summary-level
    LCS: for each reference sentence, the union of its LCS matches with every predicted
    sentence. It therefore credits sentences that appear in another order, where rougeL (one
    LCS over the whole text) counts only one order: rougeLsum >= rougeL on reordered sentences,
    and the two are equal when both texts are one sentence.

    ``workers`` > 1 scores chunks in that many processes (``spawn``: safe beside torch threads);
    the result is the same as with 1.
    """
    preds, refs = _texts(predictions, references)
    if not refs:
        raise ValueError("no documents to score")
    pairs = list(zip(preds, refs))
    workers = max(1, min(int(workers), len(pairs) // 50 or 1))
    if workers == 1:
        rows = _rouge_rows(pairs)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        size = -(-len(pairs) // (workers * 4))
        chunks = [pairs[i:i + size] for i in range(0, len(pairs), size)]
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
            rows = [row for part in ex.map(_rouge_rows, chunks) for row in part]
    n = len(rows)
    return {k: sum(r[i] for r in rows) / n for i, k in enumerate(ROUGE_TYPES)}


# --------------------------------------------------------------------------------------------
# The submission CSV
# --------------------------------------------------------------------------------------------

class PredictionsError(ValueError):
    """An unusable predictions CSV; the message names the file and the offending rows."""


def _listing(items: list, limit: int = 10) -> str:
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


@dataclass
class Predictions:
    """A structurally valid submission: ``by_id[i]`` is the text of ID ``i``."""

    path: Path
    by_id: dict[int, str]
    #: 1-based file line (header = line 1) of each ID's row.
    line_of: dict[int, int]
    #: Lines whose Predict is empty, blank or missing: they score as empty text.
    empty_lines: list[int]

    def aligned(self, n_docs: int, limit: int | None = None) -> list[str]:
        """The texts for reference rows ``0..n-1``, in that order, where ``n`` is ``n_docs``, or
        ``min(limit, n_docs)`` for a CSV of only the first ``limit`` documents; PredictionsError if
        one of those IDs is missing or an ID has no reference. With a ``limit``, IDs from ``n`` to
        ``n_docs - 1`` are not scored (:meth:`beyond` counts them)."""
        n = n_docs if limit is None else min(limit, n_docs)
        absent = [i for i in range(n) if i not in self.by_id]
        extra = sorted(i for i in self.by_id if not 0 <= i < n_docs)
        problems = []
        if absent:
            scored = (f"the {n_docs} references (0..{n_docs - 1})" if n == n_docs
                      else f"the first {n} of the {n_docs} references (0..{n - 1})")
            problems.append(f"{len(absent)} ID(s) of {scored} have no prediction: {_listing(absent)}")
        if extra:
            problems.append(f"{len(extra)} ID(s) have no reference (only 0..{n_docs - 1} exist): "
                            + _listing([f"{i} (line {self.line_of[i]})" for i in extra]))
        if problems:
            raise PredictionsError(f"{self.path}: " + "; ".join(problems))
        return [self.by_id[i] for i in range(n)]

    def beyond(self, n: int, n_docs: int) -> int:
        """How many IDs lie in ``n..n_docs-1``: rows a scoring of the first ``n`` leaves out."""
        return sum(1 for i in self.by_id if n <= i < n_docs)

    def leading_ids(self) -> int | None:
        """``k`` when the IDs are exactly ``0..k-1`` (what ``generate_csv.py --limit k`` writes),
        else None."""
        k = len(self.by_id)
        return k if k and all(i in self.by_id for i in range(k)) else None


_INT = re.compile(r"\s*[+-]?[0-9]+\s*")


def read_predictions(path: str | Path) -> Predictions:
    """Read a course submission: header ``ID,Predict`` (other columns are ignored), any quoting.

    Raises PredictionsError naming the lines (1-based, header = line 1) for: a file that is not
    UTF-8, a stray or unterminated quote (the line its row starts on), no ID or Predict column,
    rows with more fields than the header, non-integer IDs and duplicate IDs (all problems at
    once). A row whose Predict is empty, blank or missing (a short row, what pandas reads as NaN)
    is kept as empty text and listed in ``empty_lines``.
    Rows are matched to references by ID (:meth:`Predictions.aligned`), never by position.
    """
    path = Path(path)
    if not path.exists():
        raise PredictionsError(f"{path}: not found; write it with `python3 generate_csv.py` (or pass --predictions FILE)")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PredictionsError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")  # a BOM (Excel) is fine
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise PredictionsError(f"{path}: not UTF-8: line {line} has byte {raw[e.start:e.start + 1]!r} "
                               f"(offset {e.start}); save the file as UTF-8") from None
    from .io.files import CsvError, csv_rows

    try:
        rows = csv_rows(text, path)
        first = next(rows, None)
        if first is None:
            raise PredictionsError(f"{path}: empty file; expected the header ID,Predict")
        header = first[1]
        names = [h.strip() for h in header]
        missing = [c for c in ("ID", "Predict") if c not in names]
        if missing:
            raise PredictionsError(f"{path}: no {' or '.join(missing)} column: the header (line 1) is "
                                   f"{','.join(header)!r}; expected ID,Predict")
        id_col, pred_col = names.index("ID"), names.index("Predict")
        by_id: dict[int, str] = {}
        lines_of: dict[int, list[int]] = {}
        too_long, bad_ids, empty = [], [], []
        for row_line, row in rows:  # the line a row starts on: a quoted field may span several
            if len(row) > len(header):
                too_long.append(row_line)
                continue
            raw_id = row[id_col] if id_col < len(row) else ""
            if not _INT.fullmatch(raw_id):
                bad_ids.append(f"line {row_line} ({raw_id!r})")
                continue
            doc = int(raw_id)
            pred = row[pred_col] if pred_col < len(row) else ""
            if not pred.strip():
                empty.append(row_line)
            lines_of.setdefault(doc, []).append(row_line)
            by_id[doc] = pred
    except CsvError as e:
        raise PredictionsError(str(e)) from None

    problems = []
    if too_long:
        problems.append(f"more fields than the header's {len(header)} on line(s) {_listing(too_long)}")
    if bad_ids:
        problems.append(f"non-integer ID on {_listing(bad_ids)}")
    dups = [f"{i} (lines {', '.join(map(str, ls))})" for i, ls in sorted(lines_of.items()) if len(ls) > 1]
    if dups:
        problems.append(f"duplicate ID(s): {_listing(dups)}")
    if not problems and not by_id:
        problems.append("no prediction rows after the header")
    if problems:
        raise PredictionsError(f"{path}: " + "; ".join(problems))
    return Predictions(path=path, by_id=by_id, line_of={i: ls[0] for i, ls in lines_of.items()},
                       empty_lines=empty)
