"""``search:`` on the real one-node Slurm (``bash tests/slurm/start.sh``): the 4 trials of tests/search_support.py
as one job array, a task requeued with ``scontrol requeue`` while its trial waits at the second epoch (the trial
continues with ``--resume``), ``study run --wait`` waiting for the search and then submitting and waiting for the
confirm runs over seeds 0 and 1, and ``report``'s tuned table. Without a running cluster it skips (fails when
CI=true)."""
import json
import os
import re
import subprocess

import pytest

import runner_support as support
import search_support
import slurm_support
from slurm_support import squeue, wait_for
from study_files import WTTM, in_process
from ttm_torchdistill.commands import report as report_cli

optuna = pytest.importorskip('optuna')


@pytest.fixture(scope='module', autouse=True)
def cluster():
    slurm_support.require_cluster()



def test_a_search_on_slurm_requeued_once_then_confirmed_and_reported(tmp_path, monkeypatch):
    folder = search_support.search_folder(str(tmp_path))
    hold = os.path.join(folder, 'hold.json')
    # sbatch hands this environment to the jobs: the worktree's package, the tests' hooks, one thread
    monkeypatch.setenv('PYTHONPATH', support.subprocess_env()['PYTHONPATH'])
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    monkeypatch.setenv('TTM_TEST_HOLD_FILE', hold)
    monkeypatch.setenv('TTM_TEST_HOLD_EPOCH', '1')
    monkeypatch.chdir(folder)
    code, out, err = in_process(['run', 'study.yaml', '--executor', 'slurm'])
    assert code == 0 and f'submitted search {WTTM}: 4 trial task(s)' in out, out + err
    assert 'the confirm runs start once every search is finished' in out
    held = json.load(open(wait_for(lambda: os.path.exists(hold) and hold, 'a trial reaching epoch 2')))
    job = f'{held["array_job_id"]}_{held["array_task_id"]}'
    subprocess.run(['scontrol', 'requeue', job], check=True, capture_output=True)
    wait_for(lambda: [j for j in squeue('%i', '%T') if j == [job, 'PENDING']], f'job {job} pending again')
    subprocess.run(['scontrol', 'update', f'jobid={job}', 'starttime=now'], check=True, capture_output=True)
    code, out, err = in_process(['run', 'study.yaml', '--executor', 'slurm', '--wait'])
    assert code == 0, out + err[-3000:]
    assert re.search(rf'search {WTTM}: 4 of 4 trials asked \(.*\); best trial \d: val top-1 .*; finished', out), out
    assert 'study study: 2 runs: 2 done' in out
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        os.path.join(folder, 'runs', 'tiny', 'search', WTTM, 'journal.log')))
    found = optuna.load_study(study_name=WTTM, storage=storage).get_trials()
    assert [t.number for t in found] == [0, 1, 2, 3]
    assert {t.state.name for t in found} <= {'COMPLETE', 'PRUNED'}
    consoles = [open(os.path.join(folder, 'runs', 'tiny', 'search', WTTM, f'trial{t.number}', 'seed0',
                                  'console.log')).read() for t in found]
    requeued = [c for c in consoles if c.count('=== attempt') == 2]
    assert len(requeued) == 1 and all(c.count('=== attempt') == 1 for c in consoles if c not in requeued)
    first, second = requeued[0].split('=== attempt')[1:]
    assert '=== exit status -15' in first and 'resuming from the last checkpoint' in second and '--resume' in second
    code, out, err = in_process(['run', 'study.yaml', '--executor', 'slurm'])
    assert code == 0 and 'submitted' not in out, out + err
    code, out, err = in_process([os.path.join(folder, 'runs', 'tiny'), '--format', 'json'], main=report_cli.main)
    tuned = json.loads(out)['tuned']
    assert [(r['experiment'], r['n'], r['seeds']) for r in tuned] == [(WTTM, 2, [0, 1])]
