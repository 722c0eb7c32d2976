"""``search:`` in a study file, run locally: 4 Optuna trials of WTTM's weight and temperature (2 epochs each on 8
held-out images of a tiny CIFAR-100, median pruning on) in 2 slots, stopped with Ctrl-C
while a trial waits at its second epoch, continued by two ``study run`` at once, then confirmed on the full
training set over seeds 0 and 1 and reported. The pruner's stop of a running command is checked on its own
(the tiny runs' held-out top-1 are all alike, so the median pruner has nothing to prune there). Also the one-line
errors of the ``search:`` key."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import runner_support as support
import search_support
from study_files import WTTM, in_process
from ttm_torchdistill.commands import report as report_cli
from ttm_torchdistill.errors import StudyError
from ttm_torchdistill.study.study_file import load_study

optuna = pytest.importorskip('optuna')
pytestmark = pytest.mark.usefixtures('one_torch_thread')

RUN = [sys.executable, '-m', 'ttm_torchdistill', 'study', 'run', 'study.yaml', '--executor', 'local']


def wait_for(path, process, timeout=300):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, f'the study ended before {path} appeared: {process.communicate()}'
        assert time.time() < deadline, f'{path} did not appear within {timeout} s'
        time.sleep(0.2)



def trials(folder):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        os.path.join(folder, 'runs', 'tiny', 'search', WTTM, 'journal.log')))
    return optuna.load_study(study_name=WTTM, storage=storage).get_trials()


def trial_run(folder, number, seed=0):
    return os.path.join(folder, 'runs', 'tiny', 'search', WTTM, f'trial{number}', f'seed{seed}')


def started_attempts(run):
    return len(attempts(run)) if os.path.exists(os.path.join(run, 'console.log')) else 0


def attempts(run):
    with open(os.path.join(run, 'console.log')) as fp:
        return [line for line in fp if line.startswith('=== attempt')]


@pytest.fixture(scope='module')
def searched(tmp_path_factory):
    """Stop the search at a trial's second epoch, continue it with two processes at once, then once more."""
    folder = search_support.search_folder(str(tmp_path_factory.mktemp('search_study')))
    hold = os.path.join(folder, 'hold.json')
    first = subprocess.Popen(RUN + ['--slots', '2'], cwd=folder, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE,
                             env=support.subprocess_env({'TTM_TEST_HOLD_FILE': hold, 'TTM_TEST_HOLD_EPOCH': '1'}))
    wait_for(hold, first)
    first.send_signal(signal.SIGINT)
    result = {'folder': folder, 'first': (first.returncode, *first.communicate(timeout=120)),
              'after_stop': [(t.number, t.state.name) for t in trials(folder)]}
    # a trial claimed just before Ctrl-C may not have started its command yet (no attempt in its console.log)
    result['attempts_at_stop'] = {n: started_attempts(trial_run(folder, n)) for n, _ in result['after_stop']}
    result['first'] = (first.returncode,) + result['first'][1:]
    both = [subprocess.Popen(RUN + ['--slots', '1'], cwd=folder, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=support.subprocess_env()) for _ in range(2)]
    result['both'] = [(p.wait(timeout=600),) + p.communicate() for p in both]
    result['last'] = subprocess.run(RUN, cwd=folder, text=True, capture_output=True, env=support.subprocess_env(),
                                    timeout=600)
    return result


def test_ctrl_c_leaves_the_held_trial_running_in_the_storage(searched):
    code, _, err = searched['first']
    assert code == 130, err[-3000:]
    assert 'stopping (Ctrl-C)' in err
    held = json.load(open(os.path.join(searched['folder'], 'hold.json')))
    assert held['pid']
    assert 'RUNNING' in [state for _, state in searched['after_stop']]


def test_the_search_ends_with_every_trial_once(searched):
    found = trials(searched['folder'])
    assert [t.number for t in found] == list(range(4))
    states = [t.state.name for t in found]
    assert set(states) <= {'COMPLETE', 'PRUNED'} and 'COMPLETE' in states, states
    for trial in found:
        run = trial_run(searched['folder'], trial.number)
        held_or_pruned = 2 if trial.state.name == 'COMPLETE' else 1
        assert 1 <= len(attempts(run)) <= held_or_pruned + 1
        if trial.state.name == 'PRUNED':  # stopped cleanly: the runner's interruption, no summary, no failure
            console = open(os.path.join(run, 'console.log')).read()
            assert 'error: interrupted' in console and '=== exit status 130' in console
            assert not os.path.exists(os.path.join(run, 'student.json'))
            assert not os.path.exists(os.path.join(run, 'failed.json'))
        else:
            summary = json.load(open(os.path.join(run, 'student.json')))
            assert summary['holdout']['size'] == 8 and summary['selected_on'].endswith('/holdout')
            assert trial.value == summary['best']['top1']
            assert sorted(trial.intermediate_values) == [0, 1]
    # the trials Ctrl-C stopped were continued (by one of the two processes), each once; the one held at its second
    # epoch from its checkpoint
    running = {number for number, state in searched['after_stop'] if state == 'RUNNING'}
    # (a trial whose run had just finished when Ctrl-C came is told its value without another attempt)
    at_stop = searched['attempts_at_stop']
    after = {n: started_attempts(trial_run(searched['folder'], n)) for n in running}
    assert all(at_stop[n] <= after[n] <= at_stop[n] + 1 for n in running), (running, at_stop, after)
    resumed = {n for n in running if after[n] == 2}
    assert resumed, (at_stop, after)  # at least the trial held at its second epoch
    seconds = [open(os.path.join(trial_run(searched['folder'], n), 'console.log')).read().split('=== attempt')[2]
               for n in resumed]
    assert any(second.splitlines()[1].endswith('--resume') for second in seconds), seconds


def test_two_processes_shared_the_search_and_a_third_has_nothing_left(searched):
    codes = [code for code, _, _ in searched['both']]
    assert 0 in codes, searched['both']
    last = searched['last']
    assert last.returncode == 0, last.stderr[-3000:]
    assert 'starts' not in last.stderr and 'continues' not in last.stderr, last.stderr
    assert '2 runs and 0 teacher caches, 0 to do' in last.stderr


def test_the_chosen_setting_is_confirmed_on_the_full_training_set(searched):
    folder = searched['folder']
    best = max((t for t in trials(folder) if t.state.name == 'COMPLETE'), key=lambda t: (t.value, -t.number))
    for seed in (0, 1):
        summary = json.load(open(os.path.join(folder, 'runs', 'tiny', 'runs', WTTM, 'tuned', f'seed{seed}',
                                              'student.json')))
        assert summary['holdout'] is None and summary['selected_on'] == 'cifar100/test'
        assert summary['seed'] == seed and summary['planned_epochs'] == 2
        for path, value in best.params.items():
            assert any(o.startswith(f'{path}=') and float(o.split('=', 1)[1]) == value for o in summary['overrides'])
    code, out, err = in_process([os.path.join(folder, 'runs', 'tiny'), '--format', 'json'], main=report_cli.main)
    assert code == 0, err
    tuned = json.loads(out)['tuned']
    assert [(r['experiment'], r['trial'], r['n'], r['seeds']) for r in tuned] == [(WTTM, best.number, 2, [0, 1])]
    assert tuned[0]['val_top1'] == best.value and tuned[0]['paper_top1'] == 1.0
    code, out, err = in_process([os.path.join(folder, 'runs', 'tiny')], main=report_cli.main)
    assert '### tuned on held-out training images, confirmed on test' in out and '| 2 of 2 |' in out


def test_status_shows_the_search_and_the_confirm_runs(searched, monkeypatch):
    monkeypatch.chdir(searched['folder'])
    code, out, err = in_process(['status', 'study.yaml'])
    assert code == 0, err
    assert f'search {WTTM}: 4 of 4 trials asked (' in out and '; finished' in out
    assert 'study study: 2 runs: 2 done' in out


@pytest.mark.parametrize('change, message', [
    (dict(runtime=None), r'search: needs runtime.holdout: N \(a search selects on N held-out training images, never '
                         r'on the test set\)$'),
    (dict(grid={'train.num_epochs': [1, 2]}), r'search: a study either crosses a grid or searches a space'),
    (dict(search={'trials': 0, 'space': {'a.b': [1]}}), r'search.trials: expected an integer >= 1, got 0$'),
    (dict(search={'trials': 2, 'space': {'a.b': {'low': 2, 'high': 1}}}),
     r'search.space.a.b: expected numbers low < high, got low 2 and high 1$'),
    (dict(search={'trials': 2, 'space': {'a.b': [1]}, 'sampler': 'tpe'}),
     r"unknown key search.'sampler'; expected one of trials, space, seeds"),
    (dict(search={'trials': 2, 'space': {'a.b': [1]}, 'seeds': [7]}),
     r"search.seeds: expected distinct seeds of the study's seeds \[0, 1\], got \[7\]$"),
    (dict(search={'trials': 2, 'space': {'a.b': [1]}, 'storage': 'journal.log'}),
     r'search.storage: expected null \(a journal file below out\) or a database URL'),
], ids=['no-holdout', 'grid', 'trials', 'range', 'unknown', 'seeds', 'storage'])
def test_a_bad_search_key_is_one_line(tmp_path, change, message):
    data = {'out': 'runs', 'configs': ['c.yaml'], 'seeds': [0, 1], 'runtime': {'holdout': 8},
            'search': {'trials': 2, 'space': {'a.b': [1]}}}
    data.update(change)
    search_support.write_yaml(str(tmp_path / 'study.yaml'), {k: v for k, v in data.items() if v is not None})
    with pytest.raises(StudyError, match=message):
        load_study(str(tmp_path / 'study.yaml'), base=str(tmp_path))


def test_a_space_path_the_config_lacks_is_one_line(tmp_path, monkeypatch):
    search_support.search_folder(str(tmp_path), space={'train.criterion.kwargs.sub_terms.wttm.wieght': [1.0]})
    monkeypatch.chdir(tmp_path)
    code, out, err = in_process(['plan', 'study.yaml'])
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith('error: study.yaml: search.space.train.criterion.kwargs.sub_terms.wttm.wieght: ') and \
        'configs/cifar100/wttm/tiny_from_tiny.yaml' in err, err


def test_without_optuna_a_search_study_says_how_to_install_it(tmp_path, monkeypatch):
    search_support.search_folder(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, 'optuna', None)  # import optuna then raises ImportError
    code, out, err = in_process(['plan', 'study.yaml'])
    assert code == 1
    assert err == 'error: study.yaml: search: needs Optuna, which is not installed: ' \
                  'pip install "ttm_torchdistill[search]"\n'


def test_a_pruned_trial_stops_its_command_and_is_recorded_as_pruned(tmp_path):
    """The median pruner fed from a run log: a trial below the finished one's epoch-1 value is told pruned first,
    then its command gets SIGINT (the runner's clean stop)."""
    from ttm_torchdistill.study.search.trials import Monitor
    study = optuna.create_study(direction='maximize', pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    done = study.ask()
    for step, value in enumerate([50.0, 60.0]):
        done.report(value, step)
    study.tell(done, 60.0)
    run_log = tmp_path / 'run.log'
    run_log.write_text('x\tINFO\tttm_torchdistill.run\tEpoch 1/2 done in 0:00:01: train loss 1.0  val top-1 12.50  '
                       'top-5 30.00  (best top-1 12.50 at epoch 1, saved)\n')

    class FakeRun:
        pass
    run = FakeRun()
    run.run_log = str(run_log)
    trial = study.ask()
    sleeper = subprocess.Popen(['sleep', '60'])
    monitor = Monitor(trial, run, 0, set())
    monitor.started(sleeper)
    monitor.poll()
    assert monitor.pruned and sleeper.wait(timeout=30) == -signal.SIGINT
    assert study.trials[1].intermediate_values == {0: 12.5}
