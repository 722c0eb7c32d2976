"""Shared test fixtures: the golden reference figures produced by the papers' authors' code.

The figures are vendored unchanged under ``tests/fixtures/`` so that a plain clone tests itself;
``tests/test_fixtures.py`` checks that copy against ``../shared/reference`` when that folder exists.
"""
import json
import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


FIXTURES = REPO_ROOT / 'tests' / 'fixtures'
#: The upstream copy of the golden files, beside the repository (absent in a plain clone).
SHARED_REFERENCE = REPO_ROOT.parent / 'shared' / 'reference'


def reference_dir() -> Path:
    """Folder of the golden files: $TTM_TORCHDISTILL_REFERENCE if set, else the vendored tests/fixtures/."""
    path = Path(os.environ.get('TTM_TORCHDISTILL_REFERENCE', FIXTURES))
    if not (path / 'losses.json').is_file():
        pytest.fail(f'golden reference files not found in {path}: expected losses.json and cifar_models.json '
                    f'(tests/fixtures/ of the repository, or the folder named by TTM_TORCHDISTILL_REFERENCE)',
                    pytrace=False)
    return path


def load_reference(name: str) -> dict:
    with open(reference_dir() / name) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def one_torch_thread():
    """Run a test module on one intra-op thread (use with ``pytestmark = pytest.mark.usefixtures(...)``).

    Batch-2 model work gains nothing from intra-op threads, and on a busy 2-core machine their spin-waiting
    makes such tests several times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: Test modules that submit to the one-node Slurm cluster: under pytest-xdist (``-n 2 --dist loadgroup``) they run
#: one after the other in one worker, as they would alone (the cluster's 4 CPU slots are theirs, and a module that
#: counts the queue's jobs sees only its own).
SLURM_MODULES = ('test_study_chaos.py', 'test_study_cluster.py', 'test_study_locks.py', 'test_study_search_slurm.py',
                 'test_study_slurm.py')


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups into the test ids
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist's ``--dist loadgroup``, a module's tests stay together in one worker (its module fixtures
    are set up once), and the Slurm modules share one group, handed out first: it is the longest (mostly waiting for
    the scheduler), so the other worker runs the rest meanwhile instead of idling at the end."""
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group('slurm' if name in SLURM_MODULES else name))
    if getattr(config.option, 'dist', 'no') != 'no':
        items.sort(key=lambda item: item.path.name not in SLURM_MODULES)  # stable: file order otherwise
