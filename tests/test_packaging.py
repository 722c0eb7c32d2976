"""The commands a newcomer copies from the README are the ones CI and the package actually provide."""
import configparser
import re

import pytest

from conftest import REPO_ROOT

README = (REPO_ROOT / 'README.md').read_text()
DOCS = {path.name: path.read_text() for path in sorted((REPO_ROOT / 'docs').glob('*.md'))}


def _bash_blocks(text):
    return re.findall(r'```bash\n(.*?)```', text, flags=re.S)


def test_ci_runs_exactly_the_readme_test_command():
    test_commands = [line for block in _bash_blocks(README) for line in block.splitlines() if 'pytest' in line]
    assert test_commands, 'README has no test command'
    ci_lines = (REPO_ROOT / '.ci' / 'run').read_text().splitlines()
    assert test_commands[0] in ci_lines, f'.ci/run does not run the README test command {test_commands[0]!r}'


def test_setup_cfg_declares_the_runtime_dependencies_and_entry_point():
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / 'setup.cfg')
    requires = {re.split(r'[<>=!\s]', line)[0] for line in cfg['options']['install_requires'].split() if line}
    assert requires == {'torchdistill', 'torch', 'torchvision', 'pyyaml'}
    assert 'ttm-torchdistill = ttm_torchdistill.cli:main' in cfg['options.entry_points']['console_scripts']


def test_readme_main_job_config_exists():
    configs = re.findall(r'--config (configs/\S+\.yaml)', README)
    assert configs
    for path in configs:
        assert (REPO_ROOT / path).is_file(), f'README names a config that does not exist: {path}'


def _readme_commands(text=README):
    """Every `python -m ttm_torchdistill` / `torchrun ... -m ttm_torchdistill` invocation in the bash blocks of text."""
    commands = []
    for block in _bash_blocks(text):
        text = block.replace('\\\n', ' ')  # join continuation lines
        for line in text.splitlines():
            for part in line.split('&&'):
                part = part.split('  #')[0].strip()
                marker = '-m ttm_torchdistill'
                if marker in part:
                    commands.append(part[part.index(marker) + len(marker):].strip())
    return commands


def _parse(command):
    import shlex

    import importlib

    from ttm_torchdistill import cli
    # shell variables of the seed-sweep loop stand for a config path and a seed
    argv = shlex.split(command.replace('$cfg', 'configs/x.yaml').replace('$s', '1'))
    if argv[0] in cli.SUBCOMMANDS:  # every subcommand's front has a parser
        importlib.import_module(cli.SUBCOMMANDS[argv[0]]).build_parser().parse_args(argv[1:])
    else:
        importlib.import_module(cli.TRAIN).build_parser().parse_args(argv)


def test_every_docs_command_parses():
    commands = [c for text in DOCS.values() for c in _readme_commands(text)]
    assert len(commands) > 5
    for command in commands:
        _parse(command)


@pytest.mark.parametrize('page', ['README.md', 'BENCHMARKS.md'] + sorted(p.relative_to(REPO_ROOT).as_posix()
                                                                 for p in (REPO_ROOT / 'docs').glob('*.md')))
def test_relative_links_resolve(page):
    path = REPO_ROOT / page
    targets = [t for t in re.findall(r'\]\(([^)#\s]+)', path.read_text(encoding='utf-8')) if '://' not in t]
    missing = [t for t in targets if not (path.parent / t).exists()]
    assert not missing, f'{page} links to paths that do not exist from its folder: {missing}'


def test_every_readme_command_parses():
    commands = _readme_commands()
    assert len(commands) > 10
    for command in commands:
        _parse(command)


def test_ci_starts_the_slurm_cluster_before_the_tests_and_the_readme_says_how():
    ci_lines = (REPO_ROOT / '.ci' / 'run').read_text().splitlines()
    start = 'bash tests/slurm/start.sh'
    test_command = next(line for line in ci_lines if 'pytest' in line)
    assert start in ci_lines and ci_lines.index(start) < ci_lines.index(test_command)
    assert (REPO_ROOT / 'tests' / 'slurm' / 'start.sh').is_file()
    assert start in README


def test_extras_hold_what_the_study_needs():
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / 'setup.cfg')
    extras = {name: {re.split(r'[<>=!\s]', line)[0] for line in value.split('\n') if line.strip()}
              for name, value in cfg['options.extras_require'].items()}
    assert 'submitit' in extras['slurm'] and 'submitit' in extras['test'] and 'matplotlib' in extras['test']


def test_shipped_studies_name_configs_that_exist():
    import glob

    import yaml
    studies = sorted((REPO_ROOT / 'configs' / 'studies').glob('*.yaml'))
    assert [p.name for p in studies] == ['max_logit_cifar100.yaml', 'ttm_cifar100.yaml', 'ttm_ilsvrc2012.yaml']
    for path in studies:
        data = yaml.safe_load(path.read_text())
        for pattern in data['configs']:
            assert glob.glob(str(REPO_ROOT / pattern)), (path.name, pattern)
    assert yaml.safe_load(studies[2].read_text())['resources']['gpus'] == 8
