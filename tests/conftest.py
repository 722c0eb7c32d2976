"""Shared test fixtures: the golden reference figures produced by the papers' authors' code."""
import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    """Folder of the golden files: $TTM_TORCHDISTILL_REFERENCE, else ../shared/reference beside the repository."""
    path = Path(os.environ.get('TTM_TORCHDISTILL_REFERENCE', REPO_ROOT.parent / 'shared' / 'reference'))
    if not (path / 'losses.json').is_file():
        pytest.fail(f'golden reference files not found in {path}: set TTM_TORCHDISTILL_REFERENCE to the folder '
                    'holding losses.json and cifar_models.json', pytrace=False)
    return path


def load_reference(name: str) -> dict:
    with open(reference_dir() / name) as f:
        return json.load(f)
