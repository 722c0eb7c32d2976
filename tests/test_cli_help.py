"""``python -m ttm_torchdistill --help`` lists the training run and every subcommand of the dispatcher, one line
each, so a new subcommand cannot be left out."""
import importlib
import re

import pytest

from ttm_torchdistill import cli

LINE = re.compile(r'^  python -m ttm_torchdistill (?:(?P<name>[a-z][\w-]*) --help|--config X\.yaml)'
                  r'(?:\s{2,}(?P<summary>.+))?$')


def _commands(help_text):
    """``[(subcommand or None for the training run, summary)]`` of the ``commands:`` section."""
    help_text = '\n' + help_text
    assert '\ncommands:\n' in help_text, 'the help has no commands: section'
    rows = []
    for line in help_text.split('\ncommands:\n', 1)[1].splitlines():
        if not line.strip():
            break
        match = LINE.match(line)
        assert match, f'not a command line of the help: {line!r}'
        rows.append((match['name'], (match['summary'] or '').strip()))
    return rows


def _problems(help_text, subcommands):
    rows = _commands(help_text)
    listed = [name for name, _ in rows if name is not None]
    problems = [] if None in [name for name, _ in rows] else [
        'the help lists no training run (python -m ttm_torchdistill --config X.yaml)']
    problems += [f'the help does not list the subcommand {name!r}: add it to cli.SUMMARIES' for name in subcommands
                 if name not in listed]
    problems += [f'the help lists {name!r}, which the dispatcher does not know' for name in listed
                 if name not in subcommands]
    problems += [f'the help gives {name or "the training run"!r} no summary: add one to cli.SUMMARIES'
                 for name, summary in rows if not summary]
    return problems


def test_help_lists_the_training_run_and_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(['--help'])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert _problems(out, cli.SUBCOMMANDS) == []
    assert [name for name, _ in _commands(out)] == [None] + list(cli.SUBCOMMANDS)
    assert {'study', 'cache-teacher', 'generate-configs', 'fetch-teachers', 'report'} <= set(cli.SUBCOMMANDS)
    assert all(len(line) <= 120 for line in cli.commands_help().splitlines())


def test_a_subcommand_added_to_the_dispatcher_without_a_summary_is_caught(monkeypatch):
    monkeypatch.setitem(cli.SUBCOMMANDS, 'new-thing', 'ttm_torchdistill.commands.new_thing')
    assert _problems(cli.commands_help(), cli.SUBCOMMANDS) == [
        "the help gives 'new-thing' no summary: add one to cli.SUMMARIES"]
    # and a help text written by hand that forgets it
    assert "the help does not list the subcommand 'new-thing': add it to cli.SUMMARIES" in _problems(
        '\ncommands:\n  python -m ttm_torchdistill --config X.yaml  train\n', cli.SUBCOMMANDS)


@pytest.mark.parametrize('name', list(cli.SUBCOMMANDS))
def test_every_listed_subcommand_has_its_own_help(name):
    parser = importlib.import_module(cli.SUBCOMMANDS[name]).build_parser()
    assert parser.prog == f'python -m ttm_torchdistill {name}'
    assert parser.format_help()
