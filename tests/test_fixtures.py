"""The vendored golden files under tests/fixtures/ are the authors' figures, byte for byte.

They are copied from ``../shared/reference`` (produced by the papers' authors' code, never by this project).
When that folder is beside the repository, every file in it must be present here and identical; in a plain
clone, where it is absent, the check is skipped and the vendored copy is what the tests read.
"""
import hashlib

import pytest

from conftest import FIXTURES, SHARED_REFERENCE

NAMES = ('README.md', 'losses.json', 'cifar_models.json')


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize('name', NAMES)
def test_vendored_file_present(name):
    assert (FIXTURES / name).is_file(), f'tests/fixtures/{name} is missing: copy it from ../shared/reference'


@pytest.mark.skipif(not SHARED_REFERENCE.is_dir(), reason='no ../shared/reference beside this clone')
def test_vendored_copy_identical_to_shared_reference():
    upstream = sorted(p.name for p in SHARED_REFERENCE.iterdir() if p.is_file())
    vendored = {p.name for p in FIXTURES.iterdir()}
    assert set(upstream) <= vendored, \
        f'files of {SHARED_REFERENCE} missing from tests/fixtures/: {sorted(set(upstream) - vendored)}'
    differing = [name for name in upstream if _sha256(SHARED_REFERENCE / name) != _sha256(FIXTURES / name)]
    assert not differing, (f'tests/fixtures/ differs from {SHARED_REFERENCE} in {differing}: copy the upstream '
                           f'files again (they are the authors\' figures; never edit or regenerate them)')
