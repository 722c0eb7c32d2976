"""``python -m ttm_torchdistill generate-configs`` and the experiment table it reads (no torch needed for either)."""
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO_ROOT
from ttm_torchdistill.commands import generate_configs
from ttm_torchdistill.experiments import EXPERIMENTS, by_name, generate
from ttm_torchdistill.experiments.methods import METHODS
from ttm_torchdistill.experiments.render import TEMPLATES


def test_table_and_generator_import_without_torch_or_torchdistill():
    # Load the experiments folder as a stand-alone package (the parent package's __init__ imports torch), with
    # torch and torchdistill made unimportable: the table, the templates and the generator use the stdlib only.
    code = textwrap.dedent(f'''
        import importlib.util, sys
        for name in ('torch', 'torchvision', 'torchdistill', 'yaml'):
            sys.modules[name] = None
        spec = importlib.util.spec_from_file_location(
            'experiments', {str(REPO_ROOT / 'ttm_torchdistill' / 'experiments' / '__init__.py')!r},
            submodule_search_locations=[{str(REPO_ROOT / 'ttm_torchdistill' / 'experiments')!r}])
        module = importlib.util.module_from_spec(spec)
        sys.modules['experiments'] = module
        spec.loader.exec_module(module)
        import experiments.generate
        print(len(experiments.generate.expected_files()))
    ''')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(EXPERIMENTS))


@pytest.mark.parametrize('exp', EXPERIMENTS, ids=[e.name for e in EXPERIMENTS])
def test_row_is_well_formed(exp):
    assert exp.dataset in TEMPLATES and exp.method in METHODS
    assert by_name(exp.name) is exp
    missing = set(METHODS[exp.method].hyper) - set(exp.hyper)
    assert not missing, f'{exp.name}: the {exp.method} fragment needs {sorted(missing)}'
    unused = set(exp.hyper) - set(METHODS[exp.method].hyper)
    assert not unused, f'{exp.name}: hyperparameters {sorted(unused)} are not written by the {exp.method} fragment'
    # a switched-off option (DKD's standardize: False) needs no source; every value that is set does
    assert all(param.source for name, param in exp.hyper.items() if name != 'standardize' or param.value), \
        f'{exp.name}: every hyperparameter needs its source'
    assert (exp.teacher is None) == (exp.method == 'ce')
    if exp.reference.top1 is None:
        assert exp.reference.note, f'{exp.name}: a row without a paper number must say why (reference.note)'


def test_generation_is_deterministic():
    assert generate.expected_files() == generate.expected_files()


def _run(argv, capsys):
    status = generate_configs.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_write_then_check_a_folder(tmp_path, capsys):
    status, _, err = _run(['--out', tmp_path], capsys)
    assert status == 0 and f'{len(EXPERIMENTS)} of {len(EXPERIMENTS)} configs written' in err
    assert (tmp_path / 'cifar100' / 'wttm' / 'wrn_16_2_from_wrn_40_2.yaml').is_file()
    status, out, _ = _run(['--out', tmp_path, '--check'], capsys)
    assert status == 0 and 'match the table' in out
    status, _, err = _run(['--out', tmp_path], capsys)  # nothing to rewrite the second time
    assert status == 0 and f'0 of {len(EXPERIMENTS)} configs written' in err


def test_check_lists_stale_missing_and_unexpected_files_and_writes_nothing(tmp_path, capsys):
    _run(['--out', tmp_path], capsys)
    stale = tmp_path / 'cifar100' / 'kd' / 'vgg8_from_vgg13.yaml'
    stale.write_text(stale.read_text().replace('top1: 72.98', 'top1: 99.0'))
    (tmp_path / 'cifar100' / 'ce' / 'resnet20.yaml').unlink()
    (tmp_path / 'cifar100' / 'kd' / 'extra.yaml').write_text('{}\n')
    before = {p: p.read_bytes() for p in tmp_path.rglob('*.yaml')}
    status, out, err = _run(['--out', tmp_path, '--check'], capsys)
    assert status == 1
    assert 'cifar100/kd/vgg8_from_vgg13.yaml: differs from the table' in out
    assert 'cifar100/ce/resnet20.yaml: missing' in out
    assert 'cifar100/kd/extra.yaml: not produced by the table' in out
    assert err.count('\n') == 1 and 'error: 3 file(s)' in err
    assert {p: p.read_bytes() for p in tmp_path.rglob('*.yaml')} == before


def test_out_that_is_a_file_is_one_error_line(tmp_path, capsys):
    target = tmp_path / 'configs'
    target.write_text('')
    status, out, err = _run(['--out', target], capsys)
    assert status == 1 and out == ''
    assert err.count('\n') == 1 and 'error: --out' in err and 'expected a folder' in err


def test_shipped_configs_are_up_to_date_through_the_cli():
    result = subprocess.run([sys.executable, '-m', 'ttm_torchdistill', 'generate-configs', '--check'],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
