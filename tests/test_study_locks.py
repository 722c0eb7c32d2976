"""The per-run lock: one holder at a time, and a stale lock (ended process, reused pid, requeued or finished Slurm
job) taken over; a lock that cannot be judged is kept."""
import json
import os
import socket
import subprocess
import sys

import pytest

from ttm_torchdistill.study import locks


def no_queue():
    return None


def write_lock(folder, **record):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, locks.LOCK_FILE), 'w') as fp:
        json.dump(record, fp)


@pytest.fixture
def env_outside_slurm(monkeypatch):
    for name in ('SLURM_JOB_ID', 'SLURM_ARRAY_JOB_ID', 'SLURM_ARRAY_TASK_ID'):
        monkeypatch.delenv(name, raising=False)


def ended_pid():
    process = subprocess.Popen([sys.executable, '-c', 'pass'])
    process.wait()
    return process.pid


def test_one_holder_then_released(tmp_path, env_outside_slurm):
    run = str(tmp_path / 'run')
    lock, holder = locks.acquire(run, str(tmp_path), no_queue)
    record = locks.read_lock(run)
    assert holder is None and record['pid'] == os.getpid() and record['host'] == socket.gethostname()
    assert record['job_id'] is None and record['pid_start'] == locks.process_start(os.getpid())
    again, holder = locks.acquire(run, str(tmp_path), no_queue)  # this live process holds it
    assert again is None and holder == f'pid {os.getpid()} on {socket.gethostname()}'
    lock.release()
    assert locks.read_lock(run) is None
    lock.release()  # releasing twice is harmless


def test_lock_of_an_ended_process_is_taken_over(tmp_path, env_outside_slurm):
    run = str(tmp_path / 'run')
    pid = ended_pid()
    write_lock(run, host=socket.gethostname(), pid=pid, pid_start='1', job_id=None)
    lock, _ = locks.acquire(run, str(tmp_path), no_queue)
    assert lock.record['took_over'] == f'pid {pid} on {socket.gethostname()}: process {pid} on ' \
                                       f'{socket.gethostname()} has ended'


def test_lock_of_a_reused_pid_is_taken_over(tmp_path, env_outside_slurm):
    run = str(tmp_path / 'run')
    write_lock(run, host=socket.gethostname(), pid=os.getppid(), pid_start='not-its-start', job_id=None)
    lock, _ = locks.acquire(run, str(tmp_path), no_queue)
    assert lock.record['took_over'].endswith('has ended (its pid was reused)')


def test_an_earlier_attempt_of_the_same_slurm_job_is_stale(tmp_path, monkeypatch):
    monkeypatch.setenv('SLURM_ARRAY_JOB_ID', '41')
    monkeypatch.setenv('SLURM_ARRAY_TASK_ID', '3')
    run = str(tmp_path / 'run')
    write_lock(run, host='node-a', pid=12, job_id='41_3')
    lock, _ = locks.acquire(run, str(tmp_path), no_queue)
    assert lock.record['job_id'] == '41_3' and 'an earlier attempt of Slurm job 41_3' in lock.record['took_over']


def test_a_slurm_job_that_left_the_queue_is_stale_a_running_one_is_not(tmp_path, env_outside_slurm):
    run = str(tmp_path / 'run')
    write_lock(run, host='node-a', pid=12, job_id='7_1')
    lock, holder = locks.acquire(run, str(tmp_path), lambda: {'7_1': 'RUNNING'})
    assert lock is None and holder == 'pid 12 on node-a, Slurm job 7_1'
    lock, _ = locks.acquire(run, str(tmp_path), lambda: {'7_2': 'RUNNING'})
    assert lock.record['took_over'] == 'pid 12 on node-a, Slurm job 7_1: Slurm job 7_1 is not running'


def test_a_lock_that_cannot_be_judged_is_kept(tmp_path, env_outside_slurm):
    run = str(tmp_path / 'run')
    write_lock(run, host='node-a', pid=12, job_id=None)  # another host, no job: nothing tells it is gone
    assert locks.acquire(run, str(tmp_path), no_queue) == (None, 'pid 12 on node-a')
    write_lock(run, host='node-a', pid=12, job_id='9')  # a job, but no squeue to ask
    assert locks.acquire(run, str(tmp_path), no_queue) == (None, 'pid 12 on node-a, Slurm job 9')


def test_a_lock_being_written_is_held(tmp_path, env_outside_slurm):
    run = tmp_path / 'run'
    run.mkdir()
    (run / locks.LOCK_FILE).write_text('')
    assert locks.acquire(str(run), str(tmp_path), no_queue) == (None, 'a process writing its lock')


def test_current_job_id_is_the_array_task_as_squeue_shows_it(monkeypatch, env_outside_slurm):
    assert locks.current_job_id() is None
    monkeypatch.setenv('SLURM_JOB_ID', '105')
    assert locks.current_job_id() == '105'
    monkeypatch.setenv('SLURM_ARRAY_JOB_ID', '100')
    monkeypatch.setenv('SLURM_ARRAY_TASK_ID', '5')
    assert locks.current_job_id() == '100_5'
