"""The per-run lock: one holder at a time, and a stale lock (ended process, reused pid, requeued or finished Slurm
job) taken over; a lock that cannot be judged is kept, and so is one of a live process in the same allocation.
Real processes where it matters; the cluster's side (a real allocation, PrivateData, a second Unix user) is in
tests/test_study_cluster.py."""
import json
import os
import re
import socket
import subprocess
import sys

import pytest

import runner_support as support
import slurm_support
from ttm_torchdistill.study import locks
from ttm_torchdistill.study.slurm_queue import QueueSnapshot


def no_queue():
    return QueueSnapshot(lambda: None, private=lambda: None)


def queue_of(jobs, private=False):
    """A queue listing ``jobs`` (``{id: state}``), on a cluster that hides other users' jobs when ``private``."""
    return QueueSnapshot(lambda: jobs, private=lambda: private)


def write_lock(folder, **record):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, locks.LOCK_FILE), 'w') as fp:
        json.dump(record, fp)


@pytest.fixture
def env_outside_slurm(monkeypatch):
    for name in ('SLURM_JOB_ID', 'SLURM_ARRAY_JOB_ID', 'SLURM_ARRAY_TASK_ID', 'SLURM_RESTART_COUNT', 'SLURM_STEP_ID'):
        monkeypatch.delenv(name, raising=False)


def ended_pid():
    process = subprocess.Popen([sys.executable, '-c', 'pass'])
    process.wait()
    return process.pid


def test_one_holder_then_released(tmp_path, env_outside_slurm):
    run = str(tmp_path / 'run')
    lock, holder = locks.acquire(run, str(tmp_path), no_queue())
    record = locks.read_lock(run)
    assert holder is None and record['pid'] == os.getpid() and record['host'] == socket.gethostname()
    assert record['job_id'] is None and record['pid_start'] == locks.process_start(os.getpid())
    assert record['uid'] == os.getuid() and record['step_id'] is None and record['restart'] == 0
    again, holder = locks.acquire(run, str(tmp_path), no_queue())  # this live process holds it
    assert again is None and holder == f'pid {os.getpid()} on {socket.gethostname()}'
    lock.release()
    assert locks.read_lock(run) is None
    lock.release()  # releasing twice is harmless


def test_lock_of_an_ended_process_is_taken_over(tmp_path, env_outside_slurm):
    run = str(tmp_path / 'run')
    pid = ended_pid()
    write_lock(run, host=socket.gethostname(), pid=pid, pid_start='1', job_id=None)
    lock, _ = locks.acquire(run, str(tmp_path), no_queue())
    assert lock.record['took_over'] == f'pid {pid} on {socket.gethostname()}: process {pid} on ' \
                                       f'{socket.gethostname()} has ended'


def test_lock_of_a_reused_pid_is_taken_over(tmp_path, env_outside_slurm):
    run = str(tmp_path / 'run')
    write_lock(run, host=socket.gethostname(), pid=os.getppid(), pid_start='not-its-start', job_id=None)
    lock, _ = locks.acquire(run, str(tmp_path), no_queue())
    assert lock.record['took_over'].endswith('has ended (its pid was reused)')


def test_a_requeued_array_task_on_another_node_takes_over_its_earlier_attempt(tmp_path, monkeypatch,
                                                                              env_outside_slurm):
    """A requeued array task keeps its array job and task ids, gets a higher SLURM_RESTART_COUNT, and may run on
    another node: the earlier attempt's lock is stale."""
    monkeypatch.setenv('SLURM_ARRAY_JOB_ID', '41')
    monkeypatch.setenv('SLURM_ARRAY_TASK_ID', '3')
    monkeypatch.setenv('SLURM_RESTART_COUNT', '1')
    run = str(tmp_path / 'run')
    write_lock(run, host='node-a', pid=12, job_id='41_3', restart=0)
    lock, _ = locks.acquire(run, str(tmp_path), no_queue())
    assert lock.record['job_id'] == '41_3' and lock.record['restart'] == 1
    assert lock.record['took_over'] == ('pid 12 on node-a, Slurm job 41_3: an earlier attempt of Slurm job 41_3 '
                                        '(requeued: restart 0, now 1)')


def test_the_same_job_on_another_node_without_a_requeue_is_another_live_process_of_the_allocation(
        tmp_path, monkeypatch, env_outside_slurm):
    """``srun -N2 ... study run --executor local``: two nodes, one job, one restart count: the lock is kept (edge
    case: a lock written before locks recorded a restart count reads as restart 0)."""
    monkeypatch.setenv('SLURM_JOB_ID', '77')
    run = str(tmp_path / 'run')
    write_lock(run, host='node-b', pid=12, job_id='77', step_id='0', restart=0)
    assert locks.acquire(run, str(tmp_path), queue_of({'77': 'RUNNING'})) == (
        None, 'pid 12 on node-b, Slurm job 77 step 0')
    write_lock(run, host='node-b', pid=12, job_id='77')
    assert locks.acquire(run, str(tmp_path), queue_of({'77': 'RUNNING'}))[0] is None


HOLDER = '''
import sys, time
from ttm_torchdistill.study import locks
from ttm_torchdistill.study.slurm_queue import QueueSnapshot
lock, holder = locks.acquire(sys.argv[1], sys.argv[2], QueueSnapshot(lambda: None, private=lambda: None))
print('held' if lock else 'refused: ' + holder, flush=True)
time.sleep(float(sys.argv[3]))
'''


def test_a_live_process_of_the_same_job_on_this_host_keeps_its_lock(tmp_path, monkeypatch, env_outside_slurm):
    """Two study processes in one allocation (two terminals in one salloc): real processes with the same
    SLURM_JOB_ID; the second one finds the lock held, never takes it over."""
    run = str(tmp_path / 'run')
    env = support.subprocess_env({'SLURM_JOB_ID': '4242', 'SLURM_STEP_ID': '0'})
    first = subprocess.Popen([sys.executable, '-c', HOLDER, run, str(tmp_path), '30'], env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == 'held'
        monkeypatch.setenv('SLURM_JOB_ID', '4242')
        lock, holder = locks.acquire(run, str(tmp_path), no_queue())
        assert lock is None and holder == f'pid {first.pid} on {socket.gethostname()}, Slurm job 4242 step 0'
    finally:
        first.kill()
        first.wait()
    lock, _ = locks.acquire(run, str(tmp_path), no_queue())  # its process ended: now stale
    assert lock.record['took_over'].endswith(f'process {first.pid} on {socket.gethostname()} has ended')


def test_a_slurm_job_that_left_the_queue_is_stale_a_running_one_is_not(tmp_path, env_outside_slurm):
    run = str(tmp_path / 'run')
    write_lock(run, host='node-a', pid=12, job_id='7_1')
    lock, holder = locks.acquire(run, str(tmp_path), queue_of({'7_1': 'RUNNING'}))
    assert lock is None and holder == 'pid 12 on node-a, Slurm job 7_1'
    lock, _ = locks.acquire(run, str(tmp_path), queue_of({'7_2': 'RUNNING'}))
    assert lock.record['took_over'] == 'pid 12 on node-a, Slurm job 7_1: Slurm job 7_1 is not running'


def test_another_users_job_missing_from_a_private_queue_cannot_be_judged(tmp_path, env_outside_slurm):
    """PrivateData=jobs: squeue lists only the caller's jobs, so another user's job missing from it may be running;
    the caller's own job missing from it has ended; a cluster that shows every job tells either way."""
    run = str(tmp_path / 'run')
    write_lock(run, host='node-a', pid=12, job_id='7_1', uid=os.getuid() + 1)
    assert locks.acquire(run, str(tmp_path), queue_of({}, private=True)) == (None, 'pid 12 on node-a, Slurm job 7_1')
    assert locks.acquire(run, str(tmp_path), queue_of({}, private=None))[0] is None  # cannot read the config
    lock, _ = locks.acquire(run, str(tmp_path), queue_of({}, private=False))
    assert lock.record['took_over'].endswith('Slurm job 7_1 is not running')
    lock.release()
    write_lock(run, host='node-a', pid=12, job_id='7_1', uid=os.getuid())
    lock, _ = locks.acquire(run, str(tmp_path), queue_of({}, private=True))
    assert lock.record['took_over'].endswith('Slurm job 7_1 is not running')


def test_a_lock_that_cannot_be_judged_is_kept(tmp_path, env_outside_slurm):
    run = str(tmp_path / 'run')
    write_lock(run, host='node-a', pid=12, job_id=None)  # another host, no job: nothing tells it is gone
    assert locks.acquire(run, str(tmp_path), no_queue()) == (None, 'pid 12 on node-a')
    write_lock(run, host='node-a', pid=12, job_id='9')  # a job, but no squeue to ask
    assert locks.acquire(run, str(tmp_path), no_queue()) == (None, 'pid 12 on node-a, Slurm job 9')


def test_a_lock_being_written_is_held(tmp_path, env_outside_slurm):
    run = tmp_path / 'run'
    run.mkdir()
    (run / locks.LOCK_FILE).write_text('')
    assert locks.acquire(str(run), str(tmp_path), no_queue()) == (None, 'a process writing its lock')


def test_current_job_id_is_the_array_task_as_squeue_shows_it(monkeypatch, env_outside_slurm):
    assert locks.current_job_id() is None
    monkeypatch.setenv('SLURM_JOB_ID', '105')
    assert locks.current_job_id() == '105'
    monkeypatch.setenv('SLURM_ARRAY_JOB_ID', '100')
    monkeypatch.setenv('SLURM_ARRAY_TASK_ID', '5')
    assert locks.current_job_id() == '100_5'


# ---- a study folder shared by several users: a second real Unix user ----
TAKE_OVER = '''
import json
folder, out = sys.argv[4], sys.argv[5]
try:
    lock, holder = locks.acquire(folder, out, slurm_queue.QueueSnapshot(lambda: None, private=lambda: None))
except errors.StudyError as exc:
    print(json.dumps({'error': str(exc)}))
else:
    print(json.dumps({'took_over': lock.record.get('took_over') if lock else None, 'holder': holder,
                      'uid': lock.record.get('uid') if lock else None}))
'''


def shared_study(folder, umask):
    """``<folder>/out`` (a folder of the shared group) with run ``r`` whose lock a process of root left when it
    ended; root took over such a lock once under ``umask``, which created the mutex."""
    out, run = os.path.join(folder, 'out'), os.path.join(folder, 'out', 'runs', 'r')
    previous = os.umask(umask)
    try:
        write_lock(run, host=socket.gethostname(), pid=ended_pid(), pid_start='1', job_id=None)
        locks.acquire(run, out, no_queue())[0].release()
        write_lock(run, host=socket.gethostname(), pid=ended_pid(), pid_start='1', job_id=None)
    finally:
        os.umask(previous)
    return out, run


def test_a_second_user_takes_over_a_stale_lock_in_a_shared_study_folder(tmp_path, env_outside_slurm):
    """The mutex and the locks get 0o666 less the umask: under umask 002 the group can open the mutex for writing
    (a fixed 0o644 made another user's ``open(O_RDWR)`` fail with PermissionError)."""
    slurm_support.require_root('the shared-folder lock test')
    with slurm_support.other_user() as (uid, gid), slurm_support.shared_folder(gid) as folder:
        out, run = shared_study(folder, 0o002)
        assert os.stat(os.path.join(out, locks.MUTEX_FILE)).st_mode & 0o777 == 0o664
        result = slurm_support.run_as(uid, gid, TAKE_OVER, folder, run, out)
        assert result.returncode == 0, result.stderr
        taken = json.loads(result.stdout)
        assert taken['took_over'].endswith('has ended') and taken['uid'] == uid
        assert locks.read_lock(run)['uid'] == uid and os.stat(os.path.join(run, locks.LOCK_FILE)).st_uid == uid


def test_a_mutex_the_user_cannot_write_is_one_error_line_saying_why(tmp_path, env_outside_slurm):
    """Edge case: the folder was made under umask 022 (mutex 0o644): the second user gets the mode and the fix."""
    slurm_support.require_root('the shared-folder lock test')
    with slurm_support.other_user() as (uid, gid), slurm_support.shared_folder(gid) as folder:
        out, run = shared_study(folder, 0o022)
        result = slurm_support.run_as(uid, gid, TAKE_OVER, folder, run, out)
        assert result.returncode == 0, result.stderr
        error = json.loads(result.stdout)['error']
        assert re.fullmatch(r'\S+/out/\.lock-mutex: expected a file this user can open for writing \(the lock mutex '
                            r'of the study folder\), got mode 644 owned by uid 0 gid \d+: users sharing a study '
                            r'folder need a common group and umask 002 \(chmod g\+w \S+\.lock-mutex fixes this one\)',
                            error), error
