"""The study's locks and queue reading against the real one-node Slurm cluster (``bash tests/slurm/start.sh``):
two study processes inside one real allocation, and a cluster that hides other users' jobs (``PrivateData=jobs``,
set for the test and restored) read by a second real Unix user. Skips without a cluster (fails when CI=true)."""
import json
import os
import socket
import subprocess
import sys

import pytest

import runner_support as support
import slurm_support

HOLDER = '''
import sys, time
from ttm_torchdistill.study import locks
from ttm_torchdistill.study.slurm_queue import QueueSnapshot
lock, holder = locks.acquire(sys.argv[1], sys.argv[2], QueueSnapshot())
print(('held' if lock else 'refused: ' + holder), flush=True)
time.sleep(float(sys.argv[3]))
'''


@pytest.fixture(scope='module', autouse=True)
def cluster():
    slurm_support.require_cluster()


def test_two_study_processes_in_one_salloc_allocation_never_both_hold_a_run(tmp_path):
    """Two terminals in one allocation: both see the allocation's SLURM_JOB_ID; the second finds the lock held by
    the first (it took it over as "an earlier attempt of the same job" before locks recorded the restart count)."""
    run, out = str(tmp_path / 'out' / 'runs' / 'r'), str(tmp_path / 'out')
    script = tmp_path / 'holder.py'
    script.write_text(HOLDER)
    shell = (f'{sys.executable} {script} {run} {out} 60 > first.txt & '
             f'until grep -q . first.txt; do sleep 0.2; done; '
             f'{sys.executable} {script} {run} {out} 0; echo "job $SLURM_JOB_ID"; kill %1')
    result = subprocess.run(['salloc', '-N1', '-n1', '-c1', '--time=5', '--job-name=ttm-two-terminals', 'bash', '-c',
                             shell], cwd=tmp_path, capture_output=True, text=True, env=support.subprocess_env(),
                            timeout=300)
    assert result.returncode == 0, result.stderr
    first = (tmp_path / 'first.txt').read_text().strip()
    second, job = result.stdout.strip().splitlines()[-2:]
    job = job.split()[1]
    assert first == 'held'
    assert second.startswith('refused: pid ') and second.endswith(f' on {socket.gethostname()}, Slurm job {job}')


USER_VIEW = '''
import json
record = json.loads(sys.argv[4])
queue = slurm_queue.QueueSnapshot()
print(json.dumps({'listed': queue(), 'running': queue.running(record['job_id'], record['uid']),
                  'stale': locks.stale_reason(record, queue, job_id='')}))
'''


def test_a_job_of_another_user_hidden_by_private_data_is_not_read_as_ended(tmp_path):
    """PrivateData=jobs: squeue shows the second user none of root's jobs (and ``squeue -j``/``scontrol show job``
    answer "Invalid job id" as for a job that does not exist), so root's running job's lock is kept, not taken over;
    the user's own job missing from the queue has ended."""
    slurm_support.require_root('the PrivateData test')
    job = subprocess.run(['sbatch', '--parsable', '-o', '/dev/null', '--time=5', '-c1', '--job-name=ttm-private',
                          '--wrap', 'sleep 120'], capture_output=True, text=True, check=True).stdout.strip()
    try:
        slurm_support.wait_for(lambda: [j for j in slurm_support.squeue('%i', '%T') if j == [job, 'RUNNING']],
                               f'job {job} running')
        record = {'host': 'another-node', 'pid': 12, 'uid': 0, 'job_id': job}
        with slurm_support.other_user() as (uid, gid), slurm_support.shared_folder(gid) as folder, \
                slurm_support.slurm_conf_lines('PrivateData=jobs'):
            seen = slurm_support.run_as(uid, gid, USER_VIEW, folder, json.dumps(record))
            own = slurm_support.run_as(uid, gid, USER_VIEW, folder, json.dumps(dict(record, uid=uid)))
        assert seen.returncode == 0 and own.returncode == 0, seen.stderr + own.stderr
        assert json.loads(seen.stdout) == {'listed': {}, 'running': None, 'stale': None}
        assert json.loads(own.stdout)['stale'] == f'Slurm job {job} is not running'
    finally:
        subprocess.run(['scancel', job], capture_output=True)
