"""Command line of ``python -m ttm_torchdistill`` / ``ttm-torchdistill``: a dispatcher.

The first argument names a subcommand (``fetch-teachers``, ``cache-teacher``, ``report``, ``study``,
``generate-configs``), whose front in :mod:`ttm_torchdistill.commands` parses the rest; anything else is the
runner's own command line (:mod:`ttm_torchdistill.commands.train`: ``--config X.yaml [...]``). Every front reports
a problem with the user's input as one ``error: ...`` line on stderr and exit code 1 (2 for command-line syntax),
without a traceback.
"""
import importlib
import sys
from typing import List, Optional

#: Subcommand name -> the module of its front (a ``main(argv) -> int`` and a ``build_parser()``).
SUBCOMMANDS = {'fetch-teachers': 'ttm_torchdistill.commands.fetch_teachers',
               'cache-teacher': 'ttm_torchdistill.commands.cache_teacher',
               'report': 'ttm_torchdistill.commands.report',
               'study': 'ttm_torchdistill.commands.study',
               'generate-configs': 'ttm_torchdistill.commands.generate_configs'}
#: The front of the runner's command line (no subcommand).
TRAIN = 'ttm_torchdistill.commands.train'
#: One line per subcommand for ``--help`` (:func:`commands_help`); a test checks that every subcommand has one.
SUMMARIES = {'fetch-teachers': 'download and check the public CIFAR-100 teachers',
             'cache-teacher': "compute a config's teacher logits once, for --teacher-cache",
             'report': 'tabulate run summaries and studies next to the papers\' numbers',
             'study': 'run a results table (configs x variants x seeds), local or Slurm',
             'generate-configs': 'write the experiment YAMLs of configs/ from the experiment table'}
TRAIN_SUMMARY = 'train and test a config (the options above)'


def commands_help() -> str:
    """The ``commands:`` section of ``--help``: the training run, then every subcommand of :data:`SUBCOMMANDS`."""
    rows = [('python -m ttm_torchdistill --config X.yaml', TRAIN_SUMMARY)]
    rows += [(f'python -m ttm_torchdistill {name} --help', SUMMARIES.get(name, '')) for name in SUBCOMMANDS]
    width = max(len(command) for command, _ in rows)
    return 'commands:\n' + ''.join(f'  {command.ljust(width)}  {summary}'.rstrip() + '\n' for command, summary in rows)


def _front(name: str, module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f'error: the `{name}` subcommand is not available in this installation ({module_name} is missing)',
              file=sys.stderr)
        return None


def main(argv: Optional[List[str]] = None) -> int:
    """Dispatch to a subcommand or run a config; returns (and, as a console script, exits with) the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        front = _front(argv[0], SUBCOMMANDS[argv[0]])
        return 1 if front is None else int(front.main(argv[1:]) or 0)
    return int(importlib.import_module(TRAIN).main(argv) or 0)


if __name__ == '__main__':
    sys.exit(main())
