"""``study run --executor local``: a study of 2 tiny CIFAR-100 configs x 2 seeds with teacher caches, in 2 slots,
stopped with Ctrl-C mid-run and continued. Also: a failing run does not stop the others and `study status` shows
its error line; a failed cache build fails the runs that read it."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import runner_support as support
import study_files
from study_files import KD, WTTM, in_process
from ttm_torchdistill.commands import report as report_cli
from ttm_torchdistill.commands import study as study_cli

pytestmark = pytest.mark.usefixtures('one_torch_thread')

STUDY = ['study', 'run', 'study.yaml', '--executor', 'local', '--slots', '2']


def wait_for(path, process, timeout=300):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if process.poll() is not None:
            raise AssertionError(f'the study ended before {path} appeared: {process.communicate()}')
        if time.time() > deadline:
            process.kill()
            raise AssertionError(f'{path} did not appear within {timeout} s')
        time.sleep(0.2)



@pytest.fixture(scope='module')
def interrupted_then_finished(tmp_path_factory):
    """Run the study, Ctrl-C it while one run waits at its second epoch, then run it again twice."""
    folder = str(tmp_path_factory.mktemp('local_study'))
    study_files.study_folder(folder)
    study_files.write_study(folder)
    hold = os.path.join(folder, 'hold.json')
    first = subprocess.Popen([sys.executable, '-m', 'ttm_torchdistill'] + STUDY, cwd=folder, text=True,
                             env=support.subprocess_env({'TTM_TEST_HOLD_FILE': hold, 'TTM_TEST_HOLD_EPOCH': '1'}),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(hold, first)
    first.send_signal(signal.SIGINT)  # the executor passes it on to every command it started
    out, err = first.communicate(timeout=120)
    cwd = os.getcwd()
    with pytest.MonkeyPatch.context() as patch:
        # the commands the executor starts import this worktree's package and the tests' hooks, on one thread
        patch.setenv('PYTHONPATH', support.subprocess_env()['PYTHONPATH'])
        patch.setenv('OMP_NUM_THREADS', '1')
        os.chdir(folder)
        try:
            status_after_stop = in_process(['status', 'study.yaml'])
            second = in_process(STUDY[1:])
            third = in_process(STUDY[1:])
        finally:
            os.chdir(cwd)
    return {'folder': folder, 'first': (first.returncode, out, err), 'status': status_after_stop, 'second': second,
            'third': third}


def run_folder(folder, experiment, seed):
    return os.path.join(folder, 'runs', 'tiny', 'runs', experiment, 'base', f'seed{seed}')


def attempts(folder):
    with open(os.path.join(folder, 'console.log')) as fp:
        return [line for line in fp if line.startswith('=== attempt')]


def held_run(result):
    """``(experiment, seed)`` of the run that waited at its second epoch: `study status` after the stop shows it as
    interrupted after its first epoch (the other running one may have been stopped before its first)."""
    found = re.findall(r'^  (\S+)/base/seed(\d): interrupted \(continues from its last checkpoint\), epoch 1/3$',
                       result['status'][1], flags=re.M)
    assert found, result['status'][1]
    return found[0][0], int(found[0][1])


def test_ctrl_c_stops_every_command_and_says_how_to_continue(interrupted_then_finished):
    code, out, err = interrupted_then_finished['first']
    assert code == 130, err[-3000:]
    assert 'stopping (Ctrl-C): every run keeps its last checkpoint; `study run` again continues' in err
    code, out, err = interrupted_then_finished['status']
    assert code == 0, err
    # the run that waited at its second epoch shows as interrupted after its first epoch
    assert 'interrupted (continues from its last checkpoint), epoch 1/3' in out


def test_the_second_run_finishes_everything_and_the_third_runs_nothing(interrupted_then_finished):
    code, out, err = interrupted_then_finished['second']
    assert code == 0, err[-3000:]
    assert 'study study: 4 runs: 4 done' in out and 'study study: 1 teacher cache: 1 done' in out
    assert re.fullmatch(r'study study: \d+ done, 0 running, 0 failed, 0 waiting', err.splitlines()[-1])
    code, out, err = interrupted_then_finished['third']
    assert code == 0, err
    assert 'study study: 4 runs and 1 teacher cache, 0 to do, 2 slot(s)' in err
    folder = interrupted_then_finished['folder']
    for experiment in (KD, WTTM):
        for seed in (0, 1):
            assert 1 <= len(attempts(run_folder(folder, experiment, seed))) <= 2


def test_the_interrupted_run_resumed_and_both_logs_keep_every_attempt(interrupted_then_finished):
    # Bit-identity of a resumed study run to its standalone command is checked on Slurm (tests/test_study_slurm.py),
    # with the same attempt code; here: the second attempt resumed, and the logs keep both.
    folder = interrupted_then_finished['folder']
    experiment, seed = held_run(interrupted_then_finished)
    run = run_folder(folder, experiment, seed)
    assert 'resuming from the last checkpoint' in attempts(run)[1]
    with open(os.path.join(run, 'console.log')) as fp:
        console = fp.read()
    commands = [line for line in console.splitlines() if line.startswith(f'=== {sys.executable} ')]
    assert commands[1].endswith('--resume') and not commands[0].endswith('--resume')
    assert 'error: interrupted' in console and '=== exit status 130' in console
    with open(os.path.join(run, 'run.log')) as fp:
        log = fp.read()
    assert log.count('=== attempt') == 2 and 'Resuming from' in log and 'Epoch 3/3 done' in log
    with open(os.path.join(run, 'student.json')) as fp:
        summary = json.load(fp)
    rel = os.path.relpath(run, folder)
    assert summary['overrides'] == [f'models.student_model.dst_ckpt={rel}/student.pt']
    assert summary['seed'] == seed and [e['epoch'] for e in summary['epochs']] == [1, 2, 3]


def test_every_run_of_every_seed_read_the_one_complete_cache_built_once(interrupted_then_finished):
    """teacher_cache: auto with a crop-and-flip transform: one complete cache (every view of every image) serves both
    seeds; the per-seed kind is exercised on Slurm (tests/test_study_slurm.py)."""
    folder = interrupted_then_finished['folder']
    caches = sorted(os.listdir(os.path.join(folder, 'runs', 'tiny', 'caches')))
    assert len(caches) == 1 and '-all-views-' in caches[0]
    with open(os.path.join(folder, 'runs', 'tiny', 'caches', caches[0], 'logits', 'metadata.json')) as fp:
        assert json.load(fp)['num_views'] == 162
    for experiment in (KD, WTTM):
        for seed in (0, 1):
            with open(os.path.join(run_folder(folder, experiment, seed), 'console.log')) as fp:
                assert f'--teacher-cache runs/tiny/caches/{caches[0]}/logits' in fp.read()
    # one successful build (an interrupted one may precede it)
    with open(os.path.join(folder, 'runs', 'tiny', 'caches', caches[0], 'console.log')) as fp:
        assert fp.read().count('=== exit status 0') == 1


def test_report_of_the_study_folder_aggregates_the_seeds(interrupted_then_finished, monkeypatch, capsys):
    monkeypatch.chdir(interrupted_then_finished['folder'])
    assert report_cli.main(['runs/tiny', '--format', 'json']) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(r['experiment'], r['runtime'], r['n'], r['seeds']) for r in data['rows']] == [
        (KD, 'device_data, teacher_cache', 2, [0, 1]), (WTTM, 'device_data, teacher_cache', 2, [0, 1])]
    assert data['failed'] == [] and data['missing'] == []
    for row in data['rows']:
        assert row['epochs'] == '3' and row['paper_top1'] == 1.0 and row['images_per_s'] > 0
        assert len(row['summaries']) == 2


# ---- failures stay local ----
def test_a_failing_run_does_not_stop_the_others_and_status_shows_its_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    study_files.study_folder(str(tmp_path))
    text = open('configs/cifar100/wttm/tiny_from_tiny.yaml').read()
    os.makedirs('configs/cifar100/bad_loss')
    with open('configs/cifar100/bad_loss/tiny_from_tiny.yaml', 'w') as fp:
        fp.write(text.replace('temperature: 5.0', 'temperature: -1.0'))
    study_files.write_study(str(tmp_path), seeds=[0], runtime={'device_data': True},
                            configs=['configs/cifar100/kd/tiny_from_tiny.yaml',
                                     'configs/cifar100/bad_loss/tiny_from_tiny.yaml'])
    monkeypatch.setenv('PYTHONPATH', support.subprocess_env()['PYTHONPATH'])
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    assert study_cli.main(STUDY[1:]) == 1
    capsys.readouterr()
    assert study_cli.main(['status', 'study.yaml']) == 0
    out = capsys.readouterr().out
    assert 'study study: 2 runs: 1 done, 1 failed' in out
    lines = out.splitlines()
    failed = lines[lines.index('failed:') + 1:lines.index('failed:') + 3]
    assert failed[0].startswith('  cifar100/bad_loss/tiny_from_tiny/base/seed0: error: ') and 'temperature' in failed[0]
    assert failed[1] == '    log: runs/tiny/runs/cifar100/bad_loss/tiny_from_tiny/base/seed0/console.log'
    with open('runs/tiny/runs/cifar100/bad_loss/tiny_from_tiny/base/seed0/console.log') as fp:
        assert failed[0].split(': ', 1)[1] in fp.read()  # the runner's own error line
    assert os.path.isfile(f'runs/tiny/runs/{KD}/base/seed0/student.json')


def test_a_failed_cache_fails_the_runs_that_read_it_with_its_error_line(tmp_path, monkeypatch):
    """Without starting anything: a cache whose build failed makes each of its runs fail at once, with a line
    naming the cache, its error and its log; the plan's states say so."""
    from ttm_torchdistill.study import attempt, task_state
    from ttm_torchdistill.study.plan import make_plan
    from ttm_torchdistill.study.study_file import load_study
    from ttm_torchdistill.study.slurm_queue import QueueSnapshot
    monkeypatch.chdir(tmp_path)
    study_files.study_folder(str(tmp_path))
    plan = make_plan(load_study(study_files.write_study(str(tmp_path), seeds=[0])), python='no-such-python')
    cache = plan.caches[0]
    os.makedirs(cache.folder)
    task_state.record_failure(cache, "error: models.teacher_model.src_ckpt: no such file './missing.pt'", 1)
    assert attempt.attempt(plan.runs[0], plan) == attempt.FAILED
    expected = (f"error: teacher cache {cache.key} failed: error: models.teacher_model.src_ckpt: no such file "
                f"'./missing.pt' (log: {cache.folder}/console.log)")
    assert task_state.failure(plan.runs[0])['error'] == expected
    states = {task_state.task_id(s.task): s for s in task_state.plan_states(plan, QueueSnapshot(lambda: None))}
    assert states[plan.runs[1].run_id].state == 'failed'  # not attempted yet: failed through its cache
    assert states[plan.runs[1].run_id].detail.startswith(f'teacher cache {cache.key} failed: error: models.')
    assert not os.path.exists(os.path.join(plan.runs[0].folder, 'console.log'))  # nothing was started
