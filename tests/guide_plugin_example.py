"""A pytest plugin (``-p guide_plugin_example``) that adds the loss of docs/extending.md, part A, to the plugin and
its tests in this process before the tests are collected: each ``<!-- add to: PATH -->`` block runs in the namespace
of the module at PATH, as if it were written there. The loss tests then see one more registered loss, with its spec.
Used by tests/test_extending_guide.py in a separate pytest process; never imported by the suite itself."""
import importlib

from guide_blocks import guide_blocks

#: Where each block of the guide goes, as a module (tests/ is on sys.path).
MODULES = {'ttm_torchdistill/_core/kernels.py': 'ttm_torchdistill._core.kernels',
           'ttm_torchdistill/functional.py': 'ttm_torchdistill.functional',
           'ttm_torchdistill/losses.py': 'ttm_torchdistill.losses',
           'tests/slow_reference.py': 'slow_reference',
           'tests/loss_identities.py': 'loss_identities'}
SPECS_PATH = 'tests/loss_specs.py'


def pytest_configure(config):
    blocks = guide_blocks('add to')
    for block in blocks:
        if block.path != SPECS_PATH:
            module = importlib.import_module(MODULES[block.path])
            exec(compile(block.code, block.path, 'exec'), vars(module))
    # imported after the adapter is registered, so its REGISTERED holds the new loss; the spec block is an entry
    # of the SPECS dict
    import loss_specs
    (spec,) = [block for block in blocks if block.path == SPECS_PATH]
    exec(compile('SPECS.update({\n' + spec.code + '})', SPECS_PATH, 'exec'), vars(loss_specs))
