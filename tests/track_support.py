"""Helpers of the tracker tests: a zero loss term that can kill its process at a chosen step, the tiny run folder,
and readers of what each tracker wrote (each with the tracker's own reader)."""
import json
import os
import signal
import time

import pytest
from torch import nn
from ttm_torchdistill._registry import mid_level_loss

import runner_support as support

CONFIG = os.path.join(support.CONFIG_DIR, 'runner_tiny_track.yaml')


@mid_level_loss('test_track_probe')
class ProbeLoss(nn.Module):
    """A zero loss counting its calls; at call ``$TTM_TEST_KILL_AT_CALL`` (1-indexed, over the process) it waits
    ``$TTM_TEST_KILL_WAIT`` seconds (so that trackers' background writers catch up, as time passes in a real run)
    and SIGKILLs its process: a kill in the middle of an epoch. At call ``$TTM_TEST_FAIL_AT_CALL`` it raises (a
    failed run)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, student_io_dict, teacher_io_dict, targets=None, *args, **kwargs):
        self.calls += 1
        if os.environ.get('TTM_TEST_FAIL_AT_CALL') == str(self.calls):
            raise ValueError(f'probe failure at call {self.calls}')
        if os.environ.get('TTM_TEST_KILL_AT_CALL') == str(self.calls):
            time.sleep(float(os.environ.get('TTM_TEST_KILL_WAIT', '1.5')))
            os.kill(os.getpid(), signal.SIGKILL)
        return (0.0 * student_io_dict['.']['output'].sum()).abs()  # +0.0 in the log lines


def prepare_folder(folder: str) -> str:
    """``folder`` with the teacher checkpoint and the generated CIFAR-100 (40 training, 20 test images)."""
    support.prepare_tiny_run_folder(folder)
    # the teacher of width 16 of prepare_tiny_run_folder has 10 classes: this config's has 100 and width 8
    import torch
    torch.manual_seed(0)
    torch.save({'model': support.TinyBNNet(100, width=8).state_dict()}, os.path.join(folder, 'teacher.pt'))
    support.write_tiny_cifar100(os.path.join(folder, 'data', 'cifar100'))
    return folder


# --- which trackers can be tested here ---------------------------------------------------------------------------

#: the trackers the test extra installs (setup.cfg): their tests fail under CI=true when the package is missing
IN_TEST_EXTRA = ('tensorboard',)


def installed(engine: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(engine) is not None


def require(engine: str) -> None:
    """Skip (saying which extra installs it) when ``engine``'s package is missing; under CI=true that is a failure
    for a tracker the test extra installs."""
    import pytest
    if installed(engine):
        return
    message = f'{engine} is not installed (pip install -e ".[{engine}]")'
    if os.environ.get('CI') == 'true' and engine in IN_TEST_EXTRA:
        pytest.fail(f'{message}, but the test extra installs it', pytrace=False)
    pytest.skip(message)


def available_engines() -> list:
    return [engine for engine in ('tensorboard', 'wandb', 'trackio') if installed(engine)]


# --- reading what each tracker wrote, with its own reader ---------------------------------------------------------

def tensorboard_series(folder: str) -> dict:
    """``{tag: [(step, value), ...]}`` and ``{tag: [(step, text), ...]}`` of the event files in ``folder``, read by
    TensorBoard's ``EventAccumulator`` (purges applied, as TensorBoard shows them)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    accumulator = EventAccumulator(folder, size_guidance={'scalars': 0, 'tensors': 0})
    accumulator.Reload()
    scalars = {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()['scalars']}
    texts = {tag: [(e.step, b''.join(e.tensor_proto.string_val).decode()) for e in accumulator.Tensors(tag)]
             for tag in accumulator.Tags()['tensors']}
    return {'scalars': scalars, 'texts': texts}


def _key(item) -> str:
    """A W&B record item's key (a name with slashes may be stored split, as ``nested_key``)."""
    return item.key or '/'.join(item.nested_key)


def wandb_sessions(track_dir: str, run_id: str) -> list:
    """Each session of W&B run ``run_id`` (oldest first): ``{'rows', 'run', 'summary', 'exit_code'}`` from its
    offline ``.wandb`` file, read with W&B's own record schema."""
    from ttm_torchdistill.run.track.wandb_engine import session_files, wandb_records
    sessions = []
    for path in session_files(track_dir, run_id):
        session = {'rows': [], 'run': None, 'summary': {}, 'exit_code': None, 'path': path}
        for record in wandb_records(path):
            kind = record.WhichOneof('record_type')
            if kind == 'history':
                session['rows'].append({_key(item): json.loads(item.value_json) for item in record.history.item})
            elif kind == 'run':
                session['run'] = record.run
            elif kind == 'summary':
                session['summary'].update({_key(u): json.loads(u.value_json) for u in record.summary.update})
            elif kind == 'exit':
                session['exit_code'] = record.exit.exit_code
        sessions.append(session)
    return sessions


def wandb_series(sessions: list) -> dict:
    """``{metric: [(x, value), ...]}`` over the sessions in order: ``train/*`` against ``train/step``, ``val/*`` and
    ``epoch/*`` against ``epoch`` (the charts' axes)."""
    series = {}
    for row in (row for session in sessions for row in session['rows']):
        for key, value in row.items():
            if key.startswith('train/') and key != 'train/step':
                series.setdefault(key, []).append((row['train/step'], value))
            elif key.startswith(('val/', 'epoch/')):
                series.setdefault(key, []).append((row['epoch'], value))
    return series


TRACKIO_READER = r'''
import json, sys
from trackio.sqlite_storage import SQLiteStorage
project, name = sys.argv[1], sys.argv[2]
print(json.dumps({'runs': SQLiteStorage.get_runs(project), 'logs': SQLiteStorage.get_logs(project, name),
                  'config': SQLiteStorage.get_run_config(project, name),
                  'alerts': SQLiteStorage.get_alerts(project, run_name=name)}, default=str))
'''


def trackio_store(track_dir: str, project: str, name: str) -> dict:
    """trackio's local store for run ``name``, read by trackio's ``SQLiteStorage`` in a new process (trackio reads its
    folder, ``$TRACKIO_DIR``, once, when it is imported)."""
    import subprocess
    import sys
    env = support.subprocess_env({'TRACKIO_DIR': os.path.abspath(os.path.join(track_dir, 'trackio'))})
    result = subprocess.run([sys.executable, '-c', TRACKIO_READER, project, name], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def trackio_series(logs: list) -> dict:
    """``{metric: [(step, value), ...]}`` of trackio's rows."""
    series = {}
    for row in logs:
        for key, value in row.items():
            if key.startswith(('train/', 'val/', 'epoch/', 'test/')):
                series.setdefault(key, []).append((row['step'], value))
    return series


def read_summary(folder: str) -> dict:
    with open(os.path.join(folder, 'ckpt', 'student.json')) as fp:
        return json.load(fp)


#: a run's command-line arguments in the tracker tests (a higher lr than the config's, so that validation moves)
RUN_ARGS = ['--config', CONFIG, '--seed', '0', '--device', 'cpu', '--set', 'train.optimizer.kwargs.lr=0.2']
RUN_NAME = 'runner_tiny_track/lr=0.2/seed0'


@pytest.fixture(scope='session')
def tracked(tmp_path_factory):
    """One uninterrupted run writing to every installed tracker (shared by the tracker test modules)."""
    engines = available_engines()
    if not engines:
        pytest.skip('no tracker installed (pip install -e ".[track]")')
    folder = prepare_folder(str(tmp_path_factory.mktemp('tracked') / 'run'))
    result = support.run_cli(RUN_ARGS + ['--track', ','.join(engines)], cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return {'folder': folder, 'summary': read_summary(folder), 'stdout': result.stdout, 'stderr': result.stderr}
