"""A runner ended by a signal: stopped (interrupted, continued by the next attempt) or crashed (retried at once,
failed with its cause after MAX_CRASHES in a row). Real runner processes and real signals; the out-of-memory case
under a real memory cgroup limit, so that the kernel's OOM killer sends the SIGKILL."""
import json
import os
import re
import subprocess
import sys

import pytest

import runner_support as support
import study_files
from ttm_torchdistill.study import attempt, task_state
from ttm_torchdistill.study.plan import make_plan
from ttm_torchdistill.study.study_file import load_study
from ttm_torchdistill.study.slurm_queue import QueueSnapshot

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def one_run(folder):
    """A study of one KD run (no teacher cache) in ``folder``: ``(plan, run)``."""
    study_files.study_folder(folder)
    path = study_files.write_study(folder, seeds=[0], runtime={'device_data': True},
                                   configs=['configs/cifar100/kd/tiny_from_tiny.yaml'])
    plan = make_plan(load_study(path))
    return plan, plan.runs[0]


def attempts_of(run):
    with open(os.path.join(run.folder, attempt.ATTEMPTS_LOG)) as fp:
        return [json.loads(line) for line in fp]


def test_a_runner_that_crashes_is_retried_then_failed_with_its_signal_and_last_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan, run = one_run(str(tmp_path))
    env = support.subprocess_env({'TTM_TEST_CRASH_SIGNAL': 'SEGV'})
    assert attempt.settle(run, plan, env=env, queue=QueueSnapshot(lambda: None)) == attempt.FAILED
    failed = task_state.failure(run)
    assert re.fullmatch(r'error: the command was crashed with SIGSEGV in 3 attempts in a row, not stopped by the study '
                        r'or the scheduler \(SIGSEGV is not the out-of-memory killer\'s signal\); its last output: '
                        r'.+', failed['error']), failed['error']
    assert failed['exit_code'] == -11 and not task_state.crashes(run)  # the count starts again on the next study run
    with open(os.path.join(run.folder, 'console.log')) as fp:
        assert fp.read().count('=== exit status -11') == 3
    events = [(a['event'], a.get('outcome')) for a in attempts_of(run)]
    assert events == [('start', None), ('end', 'crashed')] * 2 + [('start', None), ('end', 'failed')]
    states = task_state.plan_states(plan, QueueSnapshot(lambda: None))
    assert states[0].state == 'failed' and states[0].detail == failed['error']


def test_a_runner_stopped_by_sigterm_is_interrupted_not_crashed(tmp_path, monkeypatch):
    """SIGTERM is what scancel, scontrol requeue, preemption and time limits send: the next attempt continues."""
    monkeypatch.chdir(tmp_path)
    plan, run = one_run(str(tmp_path))
    env = support.subprocess_env({'TTM_TEST_CRASH_SIGNAL': 'TERM'})
    assert attempt.settle(run, plan, env=env, queue=QueueSnapshot(lambda: None)) == attempt.INTERRUPTED
    assert task_state.failure(run) is None and task_state.crashes(run) == []
    states = task_state.plan_states(plan, QueueSnapshot(lambda: None))
    assert (states[0].state, states[0].detail) == ('interrupted', 'starts again')


def test_one_crash_shows_in_status_and_a_crash_after_the_study_asked_to_stop_is_an_interruption(tmp_path,
                                                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan, run = one_run(str(tmp_path))
    env = support.subprocess_env({'TTM_TEST_CRASH_SIGNAL': 'KILL'})
    assert attempt.attempt(run, plan, env=env, queue=QueueSnapshot(lambda: None)) == attempt.CRASHED
    states = task_state.plan_states(plan, QueueSnapshot(lambda: None))
    assert states[0].state == 'interrupted'
    assert re.fullmatch(r'crashed 1 time\(s\) in a row: SIGKILL, (not the OOM killer of this memory cgroup|out of '
                        r'memory could not be checked: .*); starts again', states[0].detail), states[0].detail
    attempt.request_stop('test: as after Ctrl-C')
    try:
        assert attempt.attempt(run, plan, env=env, queue=QueueSnapshot(lambda: None)) == attempt.INTERRUPTED
    finally:
        attempt.request_stop(None)
    assert len(task_state.crashes(run)) == 1  # neither counted nor cleared


def memory_cgroup(limit_bytes):
    """A new memory cgroup below this process's with ``limit_bytes`` (v1 or v2): its ``cgroup.procs`` path, or
    None where none can be made (not root, no writable memory controller)."""
    with open('/proc/self/cgroup') as fp:
        entries = [line.rstrip('\n').split(':', 2) for line in fp]
    for _, controllers, path in entries:
        if 'memory' in controllers.split(','):
            base, limit_file = f'/sys/fs/cgroup/memory{path}', 'memory.limit_in_bytes'
        elif controllers == '' and os.path.isfile('/sys/fs/cgroup/cgroup.controllers'):
            base, limit_file = f'/sys/fs/cgroup{path}', 'memory.max'
        else:
            continue
        folder = os.path.join(base, f'ttm-oom-{os.getpid()}')
        try:
            os.mkdir(folder)
            with open(os.path.join(folder, limit_file), 'w') as fp:
                fp.write(str(limit_bytes))
        except OSError:
            continue
        return folder
    return None


DRIVER = '''
import sys
from ttm_torchdistill.study import attempt
from ttm_torchdistill.study.plan import make_plan
from ttm_torchdistill.study.study_file import load_study
from ttm_torchdistill.study.slurm_queue import QueueSnapshot
attempt.MAX_CRASHES = int(sys.argv[2])  # the count itself is tested above; one OOM kill is enough here
plan = make_plan(load_study(sys.argv[1]))
print(attempt.settle(plan.runs[0], plan, queue=QueueSnapshot(lambda: None)))
'''


def test_a_runner_the_oom_killer_ends_fails_saying_out_of_memory(tmp_path, monkeypatch):
    """The study process and its runner in a memory cgroup of 1 GiB; the runner fills 2 GiB: the kernel kills it
    (SIGKILL), the cgroup's oom_kill count grows, and the failure says so (after one crash: MAX_CRASHES=1)."""
    folder = memory_cgroup(1 << 30)
    if folder is None:
        message = 'the OOM test needs a memory cgroup it can create (root, a writable memory controller)'
        if os.environ.get('CI') == 'true':
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    monkeypatch.chdir(tmp_path)
    try:
        plan, run = one_run(str(tmp_path))
        shell = f'echo $$ > {folder}/cgroup.procs && exec "$0" -c "$1" study.yaml 1'
        result = subprocess.run(['sh', '-c', shell, sys.executable, DRIVER], cwd=tmp_path, capture_output=True,
                                text=True, env=support.subprocess_env({'TTM_TEST_ALLOCATE_MB': '2048'}), timeout=600)
    finally:
        os.rmdir(folder)
    assert result.stdout.strip() == 'failed', result.stderr[-3000:]
    error = task_state.failure(run)['error']
    assert error.startswith('error: the command was killed by SIGKILL in 1 attempt in a row, not stopped by the study '
                            'or the scheduler (out of memory? the kernel\'s OOM killer ended a process of this '
                            'memory cgroup (oom_kill '), error
