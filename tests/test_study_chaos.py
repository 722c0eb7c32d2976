"""Two studies on the real one-node Slurm cluster at once: one run under a real time limit, and a 2 x 2 study under
chaos; every run ends bit for bit equal to its standalone command and no run is ever held by two processes at once.

**Time limit.** One run with ``time_min: 1`` and ``signal_delay_s: 5`` that needs about a minute (10 epochs made 5 s
longer by ``TTM_TEST_EPOCH_SLEEP_S``). Slurm sends the pre-timeout USR2 between 25 and 55 s into the job (it checks
limits every 30 s and sends up to 30 s early), submitit's handler calls the study's checkpoint, which stops the
command, and requeues the job; the next attempt resumes from the last completed epoch.

**Chaos** (kill, requeue, kill, requeue; targets and delays from ``random.Random(SEED)``) on a 2 x 2 study with
per-seed caches:

1. a live process holds one cache's lock and the other cache's (pending) job is cancelled: the locked cache's job
   fails, having no result, and no run of either cache starts anything (Slurm 22.05 does start the ``afterok``
   dependants of the cancelled pending array task: they find the cache missing and exit non-zero);
2. the next ``study run`` submits them again, and a driver SIGKILLs runners (crashes, retried at once) and requeues
   running jobs with ``scontrol requeue``;
3. a final ``study run --wait`` submits what the chaos broke and waits.

Requeued jobs are started at once (Slurm holds them back ~2 min). Checked: every run ends bit for bit equal to its
standalone command; the ``attempts.jsonl`` of every run and cache shows one holder at a time; no run started before
its cache was built; ``study status`` showed what happened.
"""
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

import runner_support as support
import slurm_support
import study_files
from slurm_support import squeue, wait_for
from study_files import KD, WTTM, in_process
from ttm_torchdistill.study import locks

SEED = 7
HOLDER = '''
import sys, time
from ttm_torchdistill.study import locks
from ttm_torchdistill.study.slurm_queue import QueueSnapshot
lock, holder = locks.acquire(sys.argv[1], sys.argv[2], QueueSnapshot(lambda: None, private=lambda: None))
print('held' if lock else holder, flush=True)
sys.stdin.read()
lock.release()
'''


@pytest.fixture(scope='module', autouse=True)
def cluster():
    slurm_support.require_cluster()



class Releaser(threading.Thread):
    """Releases the study's held jobs, and starts requeued jobs at once (Slurm holds a requeued job back, BeginTime,
    for about two minutes)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop, self.released = threading.Event(), []

    def run(self):
        while not self.stop.wait(1.0):
            for job, job_state, reason in squeue('%i', '%T', '%r'):
                if job_state == 'PENDING' and reason == 'BeginTime':
                    subprocess.run(['scontrol', 'update', f'jobid={job}', 'starttime=now'], capture_output=True)
                    self.released.append(job)
                elif job_state == 'PENDING' and reason == 'JobHeldUser':
                    subprocess.run(['scontrol', 'release', job], capture_output=True)


def runners(folder):
    """``{run.log path: pid}`` of the runner processes of the study in ``folder`` (found in /proc)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            argv = open(f'/proc/{pid}/cmdline', 'rb').read().decode().split('\0')
            cwd = os.readlink(f'/proc/{pid}/cwd')
        except OSError:
            continue
        if cwd == folder and '--run_log' in argv and 'study' not in argv:
            found[argv[argv.index('--run_log') + 1]] = int(pid)
    return found


def study_jobs(*prefixes):
    """Jobs in the queue whose name starts with one of ``prefixes`` (the chaos study's arrays are named
    ``study:...`` until their tasks rename themselves after their run or cache)."""
    return [job for job, name in squeue('%i', '%j') if name.startswith(prefixes)]


def chaos(folder, rng, log):
    """SIGKILL two runners and requeue two running run jobs, one event every 1-3 s while runners are up (the schedule
    stops early if the study has finished first); returns the run folders whose jobs were requeued."""
    touched = set()
    for action in ('kill', 'requeue', 'kill', 'requeue'):  # the order fixed, targets and delays drawn
        time.sleep(rng.uniform(1, 3))
        found = wait_for(lambda: runners(folder) or not study_jobs('study:', 'cifar100/', 'cache ') and 'done',
                         'a runner running, or the study finished', timeout=120)
        if found == 'done':
            break
        run_log = rng.choice(sorted(found))
        run_folder = os.path.dirname(os.path.join(folder, run_log))
        if action == 'kill':
            try:
                os.kill(found[run_log], signal.SIGKILL)
            except ProcessLookupError:  # it ended meanwhile
                continue
        else:
            held = locks.read_lock(run_folder) or {}
            if not held.get('job_id'):
                continue
            subprocess.run(['scontrol', 'requeue', str(held['job_id'])], capture_output=True)
            touched.add(run_folder)
        log.append((action, run_log))
    return touched


def submit(folder, patch, sleep_s, wait=False):
    """``study run --executor slurm`` of the study in ``folder``, its jobs' epochs ``sleep_s`` longer."""
    patch.setenv('TTM_TEST_EPOCH_SLEEP_S', str(sleep_s))
    patch.chdir(folder)
    return in_process(['run', 'study.yaml', '--executor', 'slurm'] + (['--wait'] if wait else []))


@pytest.fixture(scope='module')
def studies(tmp_path_factory):
    timed = str(tmp_path_factory.mktemp('time_limit_study'))
    study_files.study_folder(timed)
    study_files.write_study(timed, runtime={'device_data': True}, seeds=[0], set=['train.num_epochs=10'],
                            configs=['configs/cifar100/kd/tiny_from_tiny.yaml'], slurm={'signal_delay_s': 5},
                            resources={'gpus': 0, 'cpus': 1, 'mem_gb': 1, 'time_min': 1})
    folder = str(tmp_path_factory.mktemp('chaos_study'))
    study_files.study_folder(folder)
    # the jobs are submitted held, so that a cache's lock can be taken before its job runs (the releaser frees them)
    study_files.write_study(folder, runtime={'device_data': True, 'teacher_cache': 'per_seed'},
                            slurm={'additional': {'hold': True}})
    rng, result = random.Random(SEED), {'folder': folder, 'timed': timed, 'events': []}
    releaser, cwd = Releaser(), os.getcwd()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv('PYTHONPATH', support.subprocess_env()['PYTHONPATH'])
            patch.setenv('OMP_NUM_THREADS', '1')
            result['timed_submit'] = submit(timed, patch, 5)
            caches = sorted(os.path.join(folder, 'runs', 'tiny', 'caches', key) for key in _cache_keys(folder))
            result['first'] = submit(folder, patch, 2)
            jobs = dict(re.findall(r'submitted (.+): Slurm job (\S+)', result['first'][1]))
            holder = subprocess.Popen([sys.executable, '-c', HOLDER, caches[0], os.path.join(folder, 'runs', 'tiny')],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                      env=support.subprocess_env())
            assert holder.stdout.readline().strip() == 'held'
            subprocess.run(['scancel', jobs[f'cache {os.path.basename(caches[1])}']], check=True)
            releaser.start()
            wait_for(lambda: not study_jobs('study:'), 'the first submission leaving the queue', timeout=180)
            result['locked_job'] = subprocess.run(['scontrol', 'show', 'job',
                                                   jobs[f'cache {os.path.basename(caches[0])}']],
                                                  capture_output=True, text=True).stdout
            result['started_after_first'] = _run_files(folder)
            patch.chdir(folder)
            result['status_after_first'] = in_process(['status', 'study.yaml'])
            holder.communicate('')
            result['second'] = submit(folder, patch, 2)
            result['touched'] = chaos(folder, rng, result['events'])
            wait_for(lambda: not study_jobs('study:', 'cifar100/', 'cache '), 'the chaos study leaving the queue',
                     timeout=400)
            result['status_after_chaos'] = in_process(['status', 'study.yaml'])
            result['final'] = submit(folder, patch, 2, wait=True)
            result['timed_final'] = submit(timed, patch, 5, wait=True)
            result['timed_job'] = subprocess.run(['scontrol', 'show', 'job', re.findall(
                r'Slurm job (\S+)', result['timed_submit'][1])[0]], capture_output=True, text=True).stdout
    finally:
        releaser.stop.set()
        os.chdir(cwd)
    return result


def _cache_keys(folder):
    from ttm_torchdistill.study.plan import make_plan
    from ttm_torchdistill.study.study_file import load_study
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return [cache.key for cache in make_plan(load_study('study.yaml')).caches]
    finally:
        os.chdir(cwd)


def run_folder(folder, experiment, seed):
    return os.path.join(folder, 'runs', 'tiny', 'runs', experiment, 'base', f'seed{seed}')


def _run_files(folder):
    """Run folders in which anything happened: an attempt, a failure."""
    return [run_folder(folder, e, s) for e in (KD, WTTM) for s in (0, 1)
            if any(os.path.exists(os.path.join(run_folder(folder, e, s), name))
                   for name in ('attempts.jsonl', 'failed.json', 'console.log'))]


def test_a_locked_cache_job_fails_and_no_run_starts_on_a_missing_cache(studies):
    assert studies['first'][0] == 0, studies['first']
    assert 'JobState=FAILED' in studies['locked_job'] and 'ExitCode=1:0' in studies['locked_job']
    assert studies['started_after_first'] == []  # no attempt, no failure recorded
    code, out, _ = studies['status_after_first']
    # the live holder still held seed 0's cache: status shows it running, held by that process, and nothing else
    assert code == 0 and 'study study: 4 runs: 4 pending' in out, out
    assert 'study study: 2 teacher caches: 1 running, 1 pending' in out, out
    assert re.search(r'^  cache \S+-seed0-\S+: running \(pid \d+ on \S+\), building$', out, flags=re.M), out


def standalone(folder, run, alone, overrides=()):
    """The standalone command of a study run (its config, seed, overrides and the study's cache), started."""
    summary = json.load(open(os.path.join(run, 'student.json')))
    argv = [sys.executable, '-m', 'ttm_torchdistill', '--config', summary['config'], '--seed', str(summary['seed']),
            '--set', f'models.student_model.dst_ckpt={alone}/student.pt', '--device-data']
    for override in overrides:
        argv += ['--set', override]
    if summary['runtime'].get('teacher_cache'):
        argv += ['--teacher-cache', summary['runtime']['teacher_cache']]
    return subprocess.Popen(argv, cwd=folder, env=support.subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def test_every_run_ends_bit_identical_to_its_standalone_command(studies):
    code, out, err = studies['final']
    assert code == 0, out + err
    assert 'study study: 4 runs: 4 done' in out and 'study study: 2 teacher caches: 2 done' in out
    code, out, err = studies['timed_final']
    assert code == 0 and 'study study: 1 run: 1 done' in out, out + err
    folder, timed = studies['folder'], studies['timed']
    runs = [(folder, run_folder(folder, e, s), ()) for e in (KD, WTTM) for s in (0, 1)]
    runs.append((timed, run_folder(timed, KD, 0), ('train.num_epochs=10',)))
    for first in (0, 3):  # three commands at a time on the two cores, each in its own folder
        started = [(base, run, f'alone/{i}', standalone(base, run, f'alone/{i}', overrides))
                   for i, (base, run, overrides) in enumerate(runs[first:first + 3], start=first)]
        for base, run, alone, process in started:
            assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
            for name in ('student.last.pt', 'student.pt'):
                study_files.assert_same_weights(study_files.student_weights(os.path.join(run, name)),
                                                study_files.student_weights(os.path.join(base, alone, name)))


def intervals(folder):
    """``[(start, end)]`` of the lock holders of a run or cache folder, from its attempts.jsonl; a holder killed
    before its end line ends where the next one took the lock over (and that one must say it took it over)."""
    with open(os.path.join(folder, 'attempts.jsonl')) as fp:
        events = [json.loads(line) for line in fp]
    held, found = None, []
    for event in events:
        if event['event'] == 'start':
            if held is not None:
                assert 'took_over' in event, (folder, events)
                found.append((held['time'], event['time']))
            held = event
        else:
            assert held is not None and (event['pid'], event['since']) == (held['pid'], held['since']), events
            found.append((held['time'], event['time']))
            held = None
    return found


def test_no_run_or_cache_was_ever_held_by_two_processes_and_no_run_started_before_its_cache(studies):
    folder = studies['folder']
    caches = os.path.join(folder, 'runs', 'tiny', 'caches')
    built = {key: os.path.getmtime(os.path.join(caches, key, 'logits', 'metadata.json')) for key in os.listdir(caches)}
    tasks = [run_folder(folder, e, s) for e in (KD, WTTM) for s in (0, 1)] + [run_folder(studies['timed'], KD, 0)]
    for task in tasks + [os.path.join(caches, key) for key in built]:
        spans = sorted(intervals(task))
        assert spans and all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), (task, spans)
        if task.startswith(os.path.join(folder, 'runs', 'tiny', 'runs')):
            summary = json.load(open(os.path.join(task, 'student.json')))
            key = os.path.basename(os.path.dirname(summary['runtime']['teacher_cache'].rstrip('/')))
            assert spans[0][0] >= built[key], (task, spans[0], built[key])


def test_the_time_limited_job_got_the_pre_timeout_signal_was_requeued_and_resumed(studies):
    """Each attempt but the last ended by the pre-timeout signal (Slurm's USR2 or the study's SIGINT: whichever
    reached the command first), a later one resumed (one stopped before its first epoch leaves nothing to resume
    from), Slurm counted the requeues."""
    run = run_folder(studies['timed'], KD, 0)
    console = open(os.path.join(run, 'console.log')).read()
    statuses = re.findall(r'^=== exit status (-?\d+)$', console, flags=re.M)
    assert len(statuses) >= 2 and statuses[-1] == '0', console[-3000:]
    assert set(statuses[:-1]) <= {'-12', '-2', '130'}, statuses
    assert console.count('resuming from the last checkpoint') >= 1
    assert re.search(r'Restarts=[1-9]', studies['timed_job']), studies['timed_job']
    slurm = os.path.join(studies['timed'], 'runs', 'tiny', 'slurm')
    logs = ''.join(open(os.path.join(slurm, name)).read() for name in os.listdir(slurm) if name.endswith('.err'))
    assert 'Caught signal SIGUSR2' in logs and 'DUE TO JOB REQUEUE' in logs  # submitit's own requeue


def test_status_showed_the_chaos_and_the_crashes_were_retried(studies):
    code, out, _ = studies['status_after_chaos']
    assert code == 0 and re.search(r'study study: 4 runs: ', out), out
    kills = [log for action, log in studies['events'] if action == 'kill']
    assert kills, studies['events']
    for run_log in kills:
        console = open(os.path.join(studies['folder'], run_log.replace('run.log', 'console.log'))).read()
        assert '=== exit status -9' in console
