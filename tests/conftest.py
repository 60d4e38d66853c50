"""Shared fixtures: tiny T5 models built from a config, and paths to ../shared when present."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
# The scripts (generate_csv.py, score_result.py) live at the repo root; tests import them.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tiny models gain nothing from threads, and on a loaded 2-core machine two threads made
# small matmuls ~10x slower.
torch.set_num_threads(1)


@pytest.fixture
def tiny_model():
    from summprune.modeling import build_tiny_model

    return build_tiny_model(vocab_size=100, d_model=32, layers=2, heads=4, d_ff=64, seed=0)


@pytest.fixture
def shared_dir():
    if not (SHARED / "t5-small" / "config.json").is_file():
        pytest.skip("../shared/t5-small not present")
    return SHARED


@pytest.fixture
def tiny_dir(tmp_path, tiny_model):
    """``tiny_model`` saved with a tokenizer trained on the synthetic corpus (a model directory)."""
    from summprune.synthetic import make_corpus
    from summprune.tokenizer import train_tokenizer

    d = tmp_path / "tiny"
    tiny_model.save_pretrained(d)
    train_tokenizer([r["text"] for r in make_corpus(20)], vocab_size=100).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matmuls: intra-op threads only add synchronisation cost (a lot on a busy CPU). A test
    module opts in with an autouse fixture that requests this one."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
