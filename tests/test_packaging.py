"""The commands a newcomer copies from the README are the ones CI and the package actually provide."""
import configparser
import re

from conftest import REPO_ROOT

README = (REPO_ROOT / 'README.md').read_text()


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


def _readme_commands():
    """Every `python -m ttm_torchdistill` / `torchrun ... -m ttm_torchdistill` invocation in the README's bash blocks."""
    commands = []
    for block in _bash_blocks(README):
        text = block.replace('\\\n', ' ')  # join continuation lines
        for line in text.splitlines():
            for part in line.split('&&'):
                part = part.split('  #')[0].strip()
                marker = '-m ttm_torchdistill'
                if marker in part:
                    commands.append(part[part.index(marker) + len(marker):].strip())
    return commands


def test_every_readme_command_parses():
    import shlex

    from ttm_torchdistill import cli, report, teachers
    commands = _readme_commands()
    assert len(commands) > 10
    for command in commands:
        # shell variables of the seed-sweep loop stand for a config path and a seed
        argv = shlex.split(command.replace('$cfg', 'configs/x.yaml').replace('$s', '1'))
        if argv[0] == 'fetch-teachers':
            teachers.build_parser().parse_args(argv[1:])
        elif argv[0] == 'report':
            report.build_parser().parse_args(argv[1:])
        else:
            cli.build_parser().parse_args(argv)
