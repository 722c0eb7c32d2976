"""The study's locks, queue reading and limits against the real one-node Slurm cluster (``bash tests/slurm/start.sh``):
two study processes inside one real allocation; a cluster that hides other users' jobs (``PrivateData=jobs``, set for
the test and restored) read by a second real Unix user; a second partition with a small MaxTime (created and
deleted); MaxArraySize=3 (set and restored). Skips without a cluster (fails when CI=true)."""
import contextlib
import glob
import io
import json
import os
import re
import socket
import subprocess
import sys

import pytest

import runner_support as support
import slurm_support
import study_files
from ttm_torchdistill.commands import study as study_cli

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


# ---- the cluster's limits, read before anything is submitted ----
def study_cli_in(folder, argv, monkeypatch):
    """``study ARGV`` run in this process in ``folder``: ``(exit status, stdout, stderr)``."""
    monkeypatch.chdir(folder)
    monkeypatch.setenv('PYTHONPATH', support.subprocess_env()['PYTHONPATH'])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = study_cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def partition(name, max_time):
    """A second partition of the node with ``MaxTime=max_time`` (``scontrol create partition``), deleted after."""
    node = socket.gethostname().split('.')[0]
    subprocess.run(['scontrol', 'create', f'PartitionName={name}', f'Nodes={node}',
                    f'MaxTime={max_time}', 'State=UP'], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(['scontrol', 'delete', f'PartitionName={name}'], capture_output=True)


def test_every_limit_a_study_breaks_is_one_error_line_and_nothing_is_submitted(tmp_path, monkeypatch):
    folder = str(tmp_path)
    study_files.study_folder(folder)
    study_files.write_study(folder, runtime={'device_data': True}, slurm={'partition': 'ttmshort'},
                            resources={'gpus': 1, 'cpus': 64, 'mem_gb': 100000, 'time_min': 5})
    with partition('ttmshort', '00:02:00'):
        code, out, err = study_cli_in(folder, ['run', 'study.yaml', '--executor', 'slurm'], monkeypatch)
    mem_mb = int(subprocess.check_output(['sinfo', '-h', '-N', '-o', '%m']).split()[0])
    cpus = int(subprocess.check_output(['sinfo', '-h', '-N', '-o', '%c']).split()[0])
    assert code == 1 and out == ''
    assert err.splitlines() == [
        f'error: study.yaml: resources.time_min: expected at most 2 (MaxTime of partition ttmshort), got 5: '
        f'its jobs would never start (EnforcePartLimits=NO)',
        f'error: study.yaml: resources.cpus: expected at most {cpus} (the largest node of partition '
        f'ttmshort), got 64',
        f'error: study.yaml: resources.mem_gb: expected at most {mem_mb / 1024:g} (the largest node of '
        f'partition ttmshort: {mem_mb} MB), got 100000',
        f'error: study.yaml: resources.gpus: expected at most 0 (GPUs of the largest node of partition '
        f'ttmshort), got 1']
    assert not os.path.exists(os.path.join(folder, 'runs', 'tiny', 'slurm'))  # nothing submitted


def test_a_partition_the_cluster_does_not_have_is_an_error_line(tmp_path, monkeypatch):
    folder = str(tmp_path)
    study_files.study_folder(folder)
    study_files.write_study(folder, runtime={'device_data': True}, slurm={'partition': 'gpu-huge'})
    code, _, err = study_cli_in(folder, ['run', 'study.yaml', '--executor', 'slurm'], monkeypatch)
    assert code == 1
    assert re.fullmatch(r"error: slurm.partition: expected one of the cluster's partitions \(debug\S*\), got "
                        r"'gpu-huge'\n", err), err


def test_arrays_are_cut_at_max_array_size_and_jobs_ask_for_requeue_and_the_cpus_of_their_step(tmp_path,
                                                                                               monkeypatch):
    """MaxArraySize=3 (set for the test): the 4 runs without a cache go as an array of 3 and a job (held, then
    cancelled); each job asks for --requeue and passes --cpus-per-task to srun."""
    folder = str(tmp_path)
    study_files.study_folder(folder)
    study_files.write_study(folder, runtime={'device_data': True}, slurm={'additional': {'hold': True}},
                            resources={'gpus': 0, 'cpus': 2, 'mem_gb': 1, 'time_min': 10})
    with slurm_support.slurm_conf_lines('MaxArraySize=3'):
        code, out, err = study_cli_in(folder, ['run', 'study.yaml', '--executor', 'slurm'], monkeypatch)
        jobs = re.findall(r'submitted \S+: Slurm job (\S+)', out)
        try:
            assert code == 0, err
            queued = [job for job, _ in slurm_support.squeue('%i', '%T')]
            info = subprocess.run(['scontrol', 'show', 'job', jobs[0]], capture_output=True, text=True).stdout
        finally:
            subprocess.run(['scancel'] + sorted({job.split('_')[0] for job in jobs}), capture_output=True)
    arrays = {}
    for job in jobs:  # a chunk of one task is a plain job (no _<task>)
        arrays.setdefault(job.split('_')[0], []).append(job.split('_')[1] if '_' in job else None)
    assert sorted(arrays.values(), key=len) == [[None], ['0', '1', '2']] and set(jobs) <= set(queued)
    assert 'Requeue=1' in info
    scripts = glob.glob(os.path.join(folder, 'runs', 'tiny', 'slurm', '*_submission.sh'))
    for script in scripts:
        text = open(script).read()
        assert '#SBATCH --requeue' in text and re.search(r'^srun .* --cpus-per-task 2 ', text, flags=re.M), text


def test_runs_of_a_cache_built_outside_slurm_are_not_submitted_until_it_is_done(tmp_path, monkeypatch):
    """A `study run --executor local` building seed 0's cache holds its lock: a Slurm submission meanwhile has no job
    to make that cache's runs depend on, so it leaves them out and says so (before, they were submitted without a
    dependency and failed on the missing cache)."""
    folder = str(tmp_path)
    study_files.study_folder(folder)
    study_files.write_study(folder, runtime={'device_data': True, 'teacher_cache': 'per_seed'},
                            slurm={'additional': {'hold': True}})
    monkeypatch.chdir(folder)
    from ttm_torchdistill.study.plan import make_plan
    from ttm_torchdistill.study.study_file import load_study
    plan = make_plan(load_study('study.yaml'))
    seed0 = next(cache for cache in plan.caches if cache.seed == 0)
    holder = subprocess.Popen([sys.executable, '-c', HOLDER, seed0.folder, plan.study.out_dir, '120'],
                              stdout=subprocess.PIPE, text=True, env=support.subprocess_env())
    try:
        assert holder.stdout.readline().strip() == 'held'
        code, out, err = study_cli_in(folder, ['run', 'study.yaml', '--executor', 'slurm'], monkeypatch)
    finally:
        holder.kill()
        holder.wait()
        jobs = re.findall(r'Slurm job (\S+)', out)
        subprocess.run(['scancel'] + sorted({job.split('_')[0] for job in jobs}), capture_output=True)
    assert code == 0, err
    submitted = re.findall(r'^submitted (.+): Slurm job', out, flags=re.M)
    assert sorted(submitted) == sorted([f'cache {c.key}' for c in plan.caches if c.seed == 1] +
                                       [r.run_id for r in plan.runs if r.seed == 1])
    assert re.search(rf'^not submitted: 2 run\(s\) of teacher cache {seed0.key}, which is being built \(pid '
                     rf'{holder.pid} on \S+\); `study run` again once it is done$', out, flags=re.M), out
