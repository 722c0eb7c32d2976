"""Every loss the plugin registers has a complete spec (tests/loss_specs.py) and its rows in the docs; a loss left out
fails here with a message naming it and what to add."""
import ast
import inspect
import re
import sys

import pytest
from torch import nn

import loss_specs
from conftest import REPO_ROOT
from loss_specs import REGISTERED, SPECS, ErrorCase, registered_losses, spec_of, spec_problems

README = (REPO_ROOT / 'README.md').read_text()
LOSSES_DOC = (REPO_ROOT / 'docs' / 'losses.md').read_text()


def test_every_registered_loss_has_a_complete_spec():
    problems = spec_problems(registered_losses(), SPECS)
    assert not problems, '\n'.join(problems)


def test_the_plugin_registers_losses_and_the_tests_see_them():
    # a test that iterates nothing checks nothing: the registry must yield the plugin's losses
    assert {'TTMLoss', 'WTTMLoss', 'ATDISTLoss', 'ATKDLoss', 'DKDLoss', 'MLKDLoss', 'ITRDLoss'} <= set(REGISTERED)
    assert REGISTERED == list(registered_losses())


def test_test_helpers_registered_by_the_tests_need_no_spec():
    import runner_support  # noqa: F401  (registers test_runner_epoch_recorder, ...)
    from torchdistill.losses.registry import MIDDLE_LEVEL_LOSS_DICT
    assert 'test_runner_epoch_recorder' in MIDDLE_LEVEL_LOSS_DICT
    assert 'test_runner_epoch_recorder' not in registered_losses()


@pytest.mark.parametrize('key', REGISTERED)
def test_removing_a_spec_fails_naming_the_loss_and_what_to_add(key):
    problems = spec_problems(registered_losses(), {k: v for k, v in SPECS.items() if k != key})
    assert len(problems) == 1, problems
    assert problems[0].startswith(f'{key} (ttm_torchdistill.')
    for part in (f"SPECS[{key!r}] = LossSpec(", 'function=..., args=..., inputs=..., valid=..., errors=..., '
                 'variants=..., identities=...', 'tests/loss_specs.py', 'docs/extending.md'):
        assert part in problems[0], part


def test_a_newly_registered_loss_without_a_spec_fails_every_test_that_reads_it(monkeypatch):
    class NewLoss(nn.Module):
        pass
    NewLoss.__module__ = 'ttm_torchdistill.losses'
    registry = dict(registered_losses(), NewLoss=NewLoss)
    (problem,) = spec_problems(registry, SPECS)
    assert problem.startswith("NewLoss (ttm_torchdistill.losses.") and "SPECS['NewLoss'] = LossSpec(" in problem
    from torchdistill.losses.registry import MIDDLE_LEVEL_LOSS_DICT
    monkeypatch.setitem(MIDDLE_LEVEL_LOSS_DICT, 'NewLoss', NewLoss)
    with pytest.raises(pytest.fail.Exception, match=r"^NewLoss .* has no spec: add SPECS\['NewLoss'\]"):
        spec_of('NewLoss')


def test_a_spec_without_its_loss_is_named():
    problems = spec_problems({k: v for k, v in registered_losses().items() if k != 'TTMLoss'}, SPECS)
    assert problems == ["tests/loss_specs.py has SPECS['TTMLoss'], but ttm_torchdistill registers no loss 'TTMLoss': "
                        'remove the spec or register the loss']


def test_an_argument_without_a_valid_value_or_an_error_case_is_named():
    spec = SPECS['DKDLoss']
    trimmed = loss_specs.LossSpec(**{**vars(spec), 'valid': tuple({k: v for k, v in c.items() if k != 'warmup_epochs'}
                                                                  for c in spec.valid),
                                     'errors': tuple(e for e in spec.errors if 'warmup_epochs' not in e.kwargs)})
    problems = spec_problems({'DKDLoss': registered_losses()['DKDLoss']}, {'DKDLoss': trimmed})
    assert problems == [
        "tests/loss_specs.py: SPECS['DKDLoss'].valid never gives 'warmup_epochs': add a kwargs with a valid value",
        "tests/loss_specs.py: SPECS['DKDLoss'].errors has no case for 'warmup_epochs': add ErrorCase("
        "{'warmup_epochs': <bad value>}, <error>, <message regex>)"]


def test_a_spec_with_an_unknown_argument_or_exemption_is_named():
    spec = SPECS['ATKDLoss']
    wrong = loss_specs.LossSpec(**{**vars(spec), 'valid': spec.valid + ({'standardise': True},),
                                   'errors': spec.errors + (ErrorCase({'x': 1}, TypeError, 'x'),),
                                   'exempt': {'shift_invariance': 'typo'}, 'identities': ()})
    problems = spec_problems({'ATKDLoss': registered_losses()['ATKDLoss']}, {'ATKDLoss': wrong})
    assert ("tests/loss_specs.py: SPECS['ATKDLoss'].valid passes 'standardise', which ATKDLoss does not accept"
            in problems)
    assert any("exempt names 'shift_invariance', not one of" in p for p in problems)
    assert any('.identities is empty' in p for p in problems)


# ---- the docs: the module, README's loss table and docs/losses.md ----

@pytest.mark.parametrize('key', REGISTERED)
def test_the_module_of_a_loss_exports_it_and_lists_its_key(key):
    cls = registered_losses()[key]
    module = sys.modules[cls.__module__]
    assert cls.__name__ in module.__all__, f'{cls.__module__}.__all__ lacks {cls.__name__}'
    assert f'``{key}``' in module.__doc__, f'the docstring of {cls.__module__} does not list the key {key}'


def _rows(text, header_start):
    lines = text.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith('| '):
            break
        rows.append([cell.strip() for cell in line.strip('|').split('|')])
    return rows


def _defaults(cls):
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items() if name != 'self'}


@pytest.mark.parametrize('key', REGISTERED)
def test_readme_loss_table_has_a_row_with_the_signature_defaults(key):
    rows = {row[0].strip('`'): row for row in _rows(README, '| Key | Arguments (defaults) |')}
    assert key in rows, f'README.md\'s loss table (## Losses) has no row for {key}: add one'
    defaults = _defaults(registered_losses()[key])
    for item in filter(None, (part.strip() for part in rows[key][1].strip('`').split(','))):
        name, _, shown = item.partition('=')
        assert name in defaults, f'README.md lists {name!r} for {key}, which it does not accept'
        if shown:
            assert ast.literal_eval(shown) == defaults[name], f'README.md: {key} default of {name} is {shown}'
        else:
            assert defaults[name] is inspect.Parameter.empty, f'README.md: {key}.{name} has a default: write it'


@pytest.mark.parametrize('key', [k for k in REGISTERED if k in SPECS and SPECS[k].views])
def test_losses_doc_says_what_the_max_logit_temperature_replaces(key):
    rows = _rows(LOSSES_DOC, '| Loss | What T_i replaces |')
    keys = {k for row in rows for k in re.findall(r'`(\w+)`', row[0])}
    assert key in keys, f'docs/losses.md\'s max-logit table has no row for {key}, which takes a temperature: add one'


@pytest.mark.parametrize('key', REGISTERED)
def test_spec_of_returns_the_spec(key):
    assert spec_of(key) is SPECS[key]
