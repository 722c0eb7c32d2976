"""Configs of one's own, as a user adds them: a shipped config copied to a new name with a value changed, in its
method's folder and in a new folder, passes the config tests and ``generate-configs --check``; a row added to the
table passes the table's coverage checks, and a row missing from them is named with where to add it.

The config tests run on a copy of the configs tree ($TTM_CONFIGS_ROOT), in one pytest subprocess for both files,
selected to what concerns them (the checks of every config, their models and criterion, ``--smoke``) and to the
folder-wide checks.
"""
import dataclasses
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

import config_checks
from conftest import REPO_ROOT
from ttm_torchdistill.commands import generate_configs
from ttm_torchdistill.config_generator import EXPERIMENTS, Param, by_name, generate

SHIPPED = 'cifar100/wttm/resnet8x4_from_resnet32x4.yaml'
#: The user's files: a copy beside the shipped one, and one in a folder of their own (the word "mine" selects them).
COPIES = ('cifar100/wttm/resnet8x4_from_resnet32x4-mine.yaml', 'mine/resnet8x4_from_resnet32x4-beta4.yaml')
#: What runs on each of them (test function names), besides the folder-wide checks.
PER_FILE = ('test_config_parses_with_torchdistill_loader_offline', 'test_config_names_plugin_and_teacher_eval_process',
            'test_model_key_resolves', 'test_criterion_builds_through_torchdistill_registry',
            'test_config_passes_smoke')
FOLDER_WIDE = ('test_configs_folder_holds_no_generated_file_without_a_row', 'test_shipped_config_is_what_the_generator',
               'test_configs_use_only_tags_torchdistill_registers')


def copy_with_one_value_changed(source, target):
    """As a user does: copy the file (its generated header too) and change beta, 3.0 -> 4.0."""
    text = source.read_text()
    assert text.count('          weight: 3.0  # beta') == 1
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text.replace('          weight: 3.0  # beta', '          weight: 4.0  # mine'))


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
    """A copy of configs/ with the user's two files."""
    root = tmp_path_factory.mktemp('user') / 'configs'
    shutil.copytree(REPO_ROOT / 'configs', root)
    for relative in COPIES:
        copy_with_one_value_changed(root / SHIPPED, root / relative)
    return root


@pytest.fixture(scope='module')
def config_tests(tree):
    """{test node id: outcome} of tests/test_configs.py run on ``tree``, selected to the user's files."""
    report = tree.parent / 'report.xml'
    selection = ' or '.join(('mine',) + FOLDER_WIDE)
    env = {**os.environ, 'TTM_CONFIGS_ROOT': str(tree)}
    env.pop('TTM_SMOKE_ALL', None)  # the selection is the point; --smoke of the user's files runs regardless
    result = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'tests/test_configs.py',
                             '-k', selection, f'--junitxml={report}'], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    outcomes = {}
    for case in ElementTree.parse(report).iter('testcase'):
        failed = [child.tag for child in case if child.tag in ('failure', 'error', 'skipped')]
        outcomes[case.get('name')] = failed[0] if failed else 'passed'
    return outcomes


@pytest.mark.parametrize('relative', COPIES)
def test_a_copied_config_passes_the_config_tests(relative, config_tests):
    name = relative[:-len('.yaml')]
    ran = {case.split('[')[0] for case, outcome in config_tests.items() if name in case and outcome == 'passed'}
    assert set(PER_FILE) <= ran, f'{name}: ran {sorted(ran)}; outcomes {config_tests}'
    assert all(outcome == 'passed' for outcome in config_tests.values()), config_tests
    assert any(case.startswith(FOLDER_WIDE[1]) for case in config_tests)


def test_a_copied_config_passes_generate_configs_check(tree, capsys):
    status = generate_configs.main(['--check', '--out', str(tree)])
    out, err = capsys.readouterr()
    assert status == 0, out + err
    assert f'{len(EXPERIMENTS)} configs under {tree} match the table; 2 other file(s) there are your own' in out
    # the copies kept the generated header: a note says to delete it (not an error)
    for relative in COPIES:
        assert f'{tree / relative}: your own config (no row of the table writes it), copied from configs/{SHIPPED}' \
            in err
    assert generate.own_files(tree) == {relative: f'configs/{SHIPPED}' for relative in COPIES}


def test_every_config_rules_say_what_to_add():
    config = {'dependencies': [], 'datasets': {}, 'models': {'teacher_model': {}, 'student_model': {}},
              'train': {}}
    problems = config_checks.every_config_problems(config, 'configs/mine/x.yaml')
    assert len(problems) == 2
    assert "add the lines \"dependencies:\" and \"  - name: 'ttm_torchdistill'\"" in problems[0]
    assert "train.pre_epoch_process is None; expected 'eval_teacher_and_set_loss_epoch'" in problems[1]
    assert 'no models, train section' in config_checks.every_config_problems(
        {'dependencies': [config_checks.PLUGIN], 'datasets': {}}, 'x')[0]


def _variant_row():
    """The row docs/configs.md's user adds: WTTM resnet32x4 -> resnet8x4 with gamma 0.2, a variant of the pair."""
    base = by_name(SHIPPED[:-len('.yaml')])
    hyper = {**base.hyper, 'gamma': Param(0.2, 'my sweep')}
    return dataclasses.replace(base, hyper=hyper, variant='gamma02')


def test_an_added_row_passes_the_coverage_checks_and_generate_configs(tmp_path, capsys, monkeypatch):
    row = _variant_row()
    table = EXPERIMENTS + (row,)
    for method in config_checks.PAIR_METHODS:
        assert config_checks.missing_pairs(table, method) == []
    new_pair = dataclasses.replace(row, variant='', student=by_name('cifar100/ce/wrn_16_2').student)
    assert config_checks.missing_pairs(table + (new_pair,), 'wttm') == []  # another pair is welcome too
    # the generator writes its file under the hyphenated name; the check says so and its advice writes it
    expected = generate.expected_files(table)
    monkeypatch.setattr(generate_configs, 'expected_files', lambda: expected)
    root = tmp_path / 'configs'
    shutil.copytree(REPO_ROOT / 'configs', root)
    assert generate_configs.main(['--check', '--out', str(root)]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f'{root}/cifar100/wttm/resnet8x4_from_resnet32x4-gamma02.yaml: missing; ')
    command = line.split('run: ')[1].split()
    assert command[:4] == generate_configs.PROG.split()
    assert generate_configs.main(command[4:]) == 0
    assert generate_configs.main(['--check', '--out', str(root)]) == 0
    assert 'temperature: 5.0' in (root / 'cifar100/wttm/resnet8x4_from_resnet32x4-gamma02.yaml').read_text()


def test_a_row_missing_from_the_coverage_is_named_with_where_to_add_it():
    table = tuple(exp for exp in EXPERIMENTS if exp.name != 'cifar100/dkd/resnet8x4_from_resnet32x4')
    (problem,) = config_checks.missing_pairs(table, 'dkd')
    assert problem.startswith('cifar100/dkd has no row for teacher resnet32x4 -> student resnet8x4')
    assert problem.endswith('add it to CIFAR100_DKD in ttm_torchdistill/config_generator/table_dkd_mlkd.py, then run '
                            'python -m ttm_torchdistill generate-configs')
