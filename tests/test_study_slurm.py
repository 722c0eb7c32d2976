"""``study run --executor slurm`` against a real one-node Slurm cluster (``bash tests/slurm/start.sh``), not a mock.

A study of 2 tiny CIFAR-100 configs x 2 seeds with teacher caches: the caches run as one job array and the runs as
arrays that depend on them (``afterok``); one run is requeued with ``scontrol requeue`` while it waits at its second
epoch, resumes from its last checkpoint and ends bit-identical to its standalone command; ``report`` aggregates the
seeds; further ``study run`` submit nothing. Without a running cluster these tests skip (they fail when CI=true).
"""
import json
import os
import re
import subprocess

import pytest

import runner_support as support
import slurm_support
import study_files
from study_files import KD, WTTM, in_process
from ttm_torchdistill.commands import report as report_cli
from slurm_support import squeue, wait_for


@pytest.fixture(scope='module', autouse=True)
def cluster():
    slurm_support.require_cluster()



@pytest.fixture(scope='module')
def slurm_study(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp('slurm_study'))
    study_files.study_folder(folder)
    # per-seed caches here (the local test builds the complete one): one cache array, one run array per cache
    study_files.write_study(folder, slurm={'array_parallelism': 2, 'additional': {'comment': 'ttm study test'}},
                            runtime={'device_data': True, 'teacher_cache': 'per_seed'})
    hold = os.path.join(folder, 'hold.json')
    result = {'folder': folder}
    cwd = os.getcwd()
    with pytest.MonkeyPatch.context() as patch:
        # sbatch hands this environment to the jobs: the worktree's package, the tests' hooks, one thread
        patch.setenv('PYTHONPATH', support.subprocess_env()['PYTHONPATH'])
        patch.setenv('OMP_NUM_THREADS', '1')
        patch.setenv('TTM_TEST_HOLD_FILE', hold)
        patch.setenv('TTM_TEST_HOLD_EPOCH', '1')
        os.chdir(folder)
        try:
            result['submit'] = in_process(['run', 'study.yaml', '--executor', 'slurm'])
            assert result['submit'][0] == 0, result['submit']
            result['queue_after_submit'] = squeue('%i', '%E')  # job id, dependency
            held = json.load(open(wait_for(lambda: os.path.exists(hold) and hold, 'a run reaching epoch 2')))
            job = f'{held["array_job_id"]}_{held["array_task_id"]}' if held['array_job_id'] else held['job_id']
            result['requeued_job'] = job
            subprocess.run(['scontrol', 'requeue', job], check=True, capture_output=True)
            # a requeued job waits about two minutes (BeginTime) before it may start again: start it now
            wait_for(lambda: [j for j in squeue('%i', '%T') if j == [job, 'PENDING']], f'job {job} pending again')
            subprocess.run(['scontrol', 'update', f'jobid={job}', 'starttime=now'], check=True, capture_output=True)
            result['second'] = in_process(['run', 'study.yaml', '--executor', 'slurm', '--wait'])
            result['third'] = in_process(['run', 'study.yaml', '--executor', 'slurm'])
            result['job_info'] = subprocess.run(['scontrol', 'show', 'job', job], capture_output=True, text=True).stdout
        finally:
            os.chdir(cwd)
    return result


def run_folder(folder, experiment, seed):
    return os.path.join(folder, 'runs', 'tiny', 'runs', experiment, 'base', f'seed{seed}')


def test_caches_then_runs_as_job_arrays_with_afterok(slurm_study):
    code, out, _ = slurm_study['submit']
    jobs = dict(re.findall(r'submitted (.+): Slurm job (\S+)', out))
    assert len(jobs) == 6
    cache_jobs = {jobs[k] for k in jobs if k.startswith('cache ')}
    run_jobs = {jobs[k] for k in jobs if not k.startswith('cache ')}
    assert len({j.split('_')[0] for j in cache_jobs}) == 1  # one array for the two caches
    # one array per cache (both configs of a seed read the same cache), each waiting for its cache
    assert len({j.split('_')[0] for j in run_jobs}) == 2
    dependencies = dict(slurm_study['queue_after_submit'])
    folder = slurm_study['folder']
    caches = sorted(os.listdir(os.path.join(folder, 'runs', 'tiny', 'caches')))
    for seed in (0, 1):
        cache_job = jobs[f'cache {caches[seed]}']
        for experiment in (KD, WTTM):
            run_job = jobs[f'{experiment}/base/seed{seed}']
            assert dependencies[run_job] == f'afterok:{cache_job}(unfulfilled)', dependencies
            with open(os.path.join(run_folder(folder, experiment, seed), 'submitted.json')) as fp:
                assert json.load(fp)['jobs'][0]['job_id'] == run_job


def test_every_run_finished_and_no_study_run_submits_twice(slurm_study):
    code, out, err = slurm_study['second']
    assert code == 0, err
    assert 'nothing to submit (every run is done, running or queued)' in out  # all were queued or running
    assert 'study study: 4 runs: 4 done' in out and 'study study: 2 teacher caches: 2 done' in out
    code, out, err = slurm_study['third']
    assert code == 0 and 'nothing to submit' in out and 'submitted' not in out, out + err
    folder = slurm_study['folder']
    for experiment in (KD, WTTM):
        for seed in (0, 1):
            with open(os.path.join(run_folder(folder, experiment, seed), 'submitted.json')) as fp:
                assert len(json.load(fp)['jobs']) == 1


def test_the_requeued_run_resumed_and_is_bit_identical_to_its_standalone_command(slurm_study):
    folder, job = slurm_study['folder'], slurm_study['requeued_job']
    held = [(e, s) for e in (KD, WTTM) for s in (0, 1)
            if open(os.path.join(run_folder(folder, e, s), 'console.log')).read().count('=== attempt') == 2]
    assert len(held) == 1, held
    experiment, seed = held[0]
    run = run_folder(folder, experiment, seed)
    console = open(os.path.join(run, 'console.log')).read()
    first, second = console.split('=== attempt')[1:]
    assert f'Slurm job {job}: starting' in first and '=== exit status -15' in first  # SIGTERM of the requeue
    assert f'Slurm job {job}: resuming from the last checkpoint' in second and '--resume' in second
    assert 'Resuming from' in open(os.path.join(run, 'run.log')).read()
    # the job shows the run id as its name, and Slurm counted the requeue
    assert f'JobName={experiment}/base/seed{seed}' in slurm_study['job_info']
    assert 'Restarts=1' in slurm_study['job_info']
    summary = json.load(open(os.path.join(run, 'student.json')))
    standalone = support.run_cli(['--config', f'configs/{experiment}.yaml', '--seed', str(seed), '--set',
                                  'models.student_model.dst_ckpt=alone/student.pt', '--device-data',
                                  '--teacher-cache', summary['runtime']['teacher_cache']], cwd=folder, timeout=300)
    assert standalone.returncode == 0, standalone.stderr[-3000:]
    for name in ('student.last.pt', 'student.pt'):
        study_files.assert_same_weights(study_files.student_weights(os.path.join(run, name)),
                                        study_files.student_weights(os.path.join(folder, 'alone', name)))


def test_slurm_logs_are_inside_the_study_folder(slurm_study):
    logs = os.listdir(os.path.join(slurm_study['folder'], 'runs', 'tiny', 'slurm'))
    assert sum(name.endswith('_log.out') for name in logs) == 6
    script = [name for name in logs if name.endswith('_submission.sh')][0]
    text = open(os.path.join(slurm_study['folder'], 'runs', 'tiny', 'slurm', script)).read()
    for option in ('--cpus-per-task=1', '--mem=1024M', '--time=10', "--comment='ttm study test'"):
        assert f'#SBATCH {option}' in text, text


def test_report_aggregates_the_seeds(slurm_study):
    code, out, err = in_process([os.path.join(slurm_study['folder'], 'runs', 'tiny'), '--format', 'json'],
                                main=report_cli.main)
    assert code == 0, err
    data = json.loads(out)
    assert [(r['experiment'], r['n'], r['seeds'], r['epochs']) for r in data['rows']] == [
        (KD, 2, [0, 1], '3'), (WTTM, 2, [0, 1], '3')]
    assert data['failed'] == [] and data['missing'] == []
