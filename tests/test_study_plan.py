"""``study plan``: a study file expanded into runs and caches, and every kind of bad study file as one line.

Nothing is trained here: the plan reads configs only.
"""
import dataclasses
import os

import pytest

import study_files
import runner_support as support
from study_files import KD, WTTM
from ttm_torchdistill.commands import study as study_cli
from ttm_torchdistill.study import plan as plan_mod
from ttm_torchdistill.study import slurm_queue
from ttm_torchdistill.errors import StudyError
from ttm_torchdistill.study.study_file import load_study


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return study_files.study_folder(str(tmp_path))


def make(folder, **keys):
    return plan_mod.make_plan(load_study(study_files.write_study(folder, **keys)), python='PY')


def test_runs_are_configs_times_variants_times_seeds_with_the_runners_command(folder):
    plan = make(folder, grid={'train.criterion.kwargs.sub_terms.ce.weight': [1.0, 2]})
    assert [r.run_id for r in plan.runs] == [f'{e}/weight={w}/seed{s}' for e in (KD, WTTM) for w in ('1.0', '2')
                                             for s in (0, 1)]
    run = plan.runs[1]
    assert (run.experiment, run.variant, run.seed, run.config) == (KD, 'weight=1.0', 1,
                                                                   'configs/cifar100/kd/tiny_from_tiny.yaml')
    folder_ = f'runs/tiny/runs/{KD}/weight=1.0/seed1'
    assert run.argv('PY', resume=False) == [
        'PY', '-m', 'ttm_torchdistill', '--config', 'configs/cifar100/kd/tiny_from_tiny.yaml', '--seed', '1',
        '--set', 'train.criterion.kwargs.sub_terms.ce.weight=1.0',
        '--set', f'models.student_model.dst_ckpt={folder_}/student.pt', '--run_log', f'{folder_}/run.log',
        '--device-data', '--teacher-cache', f'runs/tiny/caches/{run.cache.key}/logits']
    assert run.argv('PY', resume=True)[-1] == '--resume'
    assert run.summary == f'{folder_}/student.json' and run.last_ckpt == f'{folder_}/student.last.pt'


def test_auto_builds_one_complete_cache_per_teacher_for_every_seed_and_epoch_count(folder):
    """The tiny configs' transform is RandomCrop + flip: every view can be listed, so one cache serves all runs."""
    plan = make(folder, grid={'train.num_epochs': [2, 5]})
    assert len(plan.caches) == 1 and plan.caches[0].kind == 'complete'
    cache = plan.caches[0]
    assert cache.key.startswith('test_runner_tiny_bn_net-all-views-') and cache.epochs is None and cache.seed is None
    assert {r.cache.key for r in plan.runs} == {cache.key}
    assert cache.build_argv('PY') == ['PY', '-m', 'ttm_torchdistill', 'cache-teacher', '--config',
                                      'configs/cifar100/kd/tiny_from_tiny.yaml', '--views', 'all', '--out',
                                      f'runs/tiny/caches/{cache.key}/logits', '--dtype', 'float32',
                                      '--set', 'train.num_epochs=2']
    # a transform whose views cannot be listed (here: none at all) falls back to one cache per seed
    listless = make(folder, set=['datasets.cifar100/train.init.kwargs.transform=null'])
    assert {c.kind for c in listless.caches} == {'per_seed'} and len(listless.caches) == 2


@pytest.mark.parametrize('device_data', [True, 'auto'])
def test_a_holdout_with_device_data_reads_the_complete_cache_of_the_whole_training_set(folder, device_data):
    """The held-out runs read the cache a study without a holdout builds: ``cache-teacher`` is given no holdout (it
    caches every training image; a sample keeps its index in the whole training set on the device data path)."""
    whole = make(folder, runtime={'device_data': True, 'teacher_cache': 'auto'})
    plan = make(folder, runtime={'holdout': 10, 'device_data': device_data, 'teacher_cache': 'auto'})
    assert [c.key for c in plan.caches] == [c.key for c in whole.caches] and plan.caches[0].kind == 'complete'
    assert plan.caches[0].build_argv('PY') == whole.caches[0].build_argv('PY')
    assert not any('holdout' in arg for arg in plan.caches[0].build_argv('PY'))
    argv = plan.runs[0].argv('PY', resume=False)
    assert argv[argv.index('--device-data'):] == ['--device-data', '--holdout', '10', '--holdout-seed', '0',
                                                  '--teacher-cache', f'runs/tiny/caches/{plan.caches[0].key}/logits']


def test_one_cache_per_teacher_and_seed_shared_by_every_config_and_variant(folder):
    plan = make(folder, grid={'train.num_epochs': [2, 5]}, runtime={'device_data': True, 'teacher_cache': 'per_seed'})
    assert len(plan.caches) == 2  # seeds 0 and 1; both configs and both variants read the same teacher
    for seed in (0, 1):
        keys = {r.cache.key for r in plan.runs if r.seed == seed}
        assert len(keys) == 1 and next(iter(keys)).startswith(f'test_runner_tiny_bn_net-seed{seed}-')
    cache = plan.caches[0]
    assert cache.epochs == 5  # the most epochs any of its runs trains
    assert cache.build_argv('PY') == ['PY', '-m', 'ttm_torchdistill', 'cache-teacher', '--config',
                                      'configs/cifar100/kd/tiny_from_tiny.yaml', '--seed', '0', '--out',
                                      f'runs/tiny/caches/{cache.key}/logits', '--epochs', '5', '--dtype', 'float32',
                                      '--set', 'train.num_epochs=2']


def test_a_changed_teacher_or_data_is_another_cache(folder):
    before = {c.key for c in make(folder).caches}
    assert {c.key for c in make(folder, set=['datasets.cifar100/train.init.kwargs.transform=null']).caches}.isdisjoint(
        before)
    os.utime('teacher.pt', ns=(1, 1))
    assert {c.key for c in make(folder).caches}.isdisjoint(before)
    assert len(before) == 1


def test_no_cache_without_auto_or_teacher_hooks_and_the_plan_says_why(folder, capsys):
    plan = make(folder, runtime={'device_data': True})
    assert not plan.caches and all(r.cache is None for r in plan.runs)
    assert '--teacher-cache' not in plan.runs[0].argv('PY', False)
    hooked = make(folder, set=["train.teacher={forward_proc: forward_batch_only, requires_grad: false, "
                               "forward_hook: {input: [], output: [fc]}}"])
    assert not hooked.caches and 'asks for its modules fc' in hooked.runs[0].no_cache
    study_files.write_study(folder, set=["train.teacher={forward_proc: forward_batch_only, requires_grad: false, "
                                         "forward_hook: {input: [], output: [fc]}}"])
    assert study_cli.main(['plan', 'study.yaml']) == 0
    out = capsys.readouterr().out
    assert f'no teacher cache for {KD}, {WTTM}: runtime.teacher_cache holds the teacher\'s logits only' in out


def test_plan_lists_runs_states_and_the_caches_built_first(folder, capsys):
    study_files.write_study(folder)
    assert study_cli.main(['plan', 'study.yaml']) == 0
    out = capsys.readouterr().out
    assert out.startswith('study study: 4 runs (2 experiments x 1 variant x 2 seeds) in runs/tiny\n')
    lines = out.splitlines()
    assert lines[2].split() == ['run', 'experiment', 'variant', 'seed', 'state', 'teacher', 'cache']
    assert lines[3].split()[:5] == [f'{KD}/base/seed0', KD, 'base', '0', 'pending']
    assert 'built first: 1 teacher cache(s)' in out
    assert not os.path.exists('runs')  # planning writes nothing


def test_variant_labels_use_the_shortest_unique_key_suffix(folder):
    plan = make(folder, seeds=[0], grid={'train.criterion.kwargs.sub_terms.ce.weight': [1.0],
                                         'train.criterion.kwargs.sub_terms.kd.weight': [0.5],
                                         'train.optimizer.kwargs.lr': [0.1]},
                configs=['configs/cifar100/kd/tiny_from_tiny.yaml'])
    assert plan.runs[0].variant == 'ce.weight=1.0,kd.weight=0.5,lr=0.1'


# ---- a bad study file: one `error:` line naming the key, before anything is run or written ----
def plan_error(folder, capsys, **keys):
    study_files.write_study(folder, **keys)
    assert study_cli.main(['plan', 'study.yaml']) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == '' and len(lines) == 1 and lines[0].startswith('error: study.yaml: '), captured.err
    assert not os.path.exists('runs')
    return lines[0]


@pytest.mark.parametrize('keys, message', [
    ({'outt': 'x'}, "unknown key 'outt'; expected one of name, out, configs, seeds, set, grid, runtime"),
    ({'runtime': {'device_data': True, 'ampp': 'bf16'}}, "unknown key runtime.'ampp'"),
    ({'resources': {'gpu': 1}}, "unknown key resources.'gpu'; expected one of gpus, cpus, mem_gb, time_min"),
    ({'slurm': {'partitions': 'gpu'}}, "unknown key slurm.'partitions'"),
    ({'seeds': None}, "missing key 'seeds' (required: out, configs, seeds)"),
])
def test_unknown_or_missing_key(folder, capsys, keys, message):
    assert message in plan_error(folder, capsys, **keys)


def test_no_config_matched_a_glob(folder, capsys):
    line = plan_error(folder, capsys, configs=['configs/cifar100/*/nothing_*.yaml'])
    assert "configs: no config matched the glob 'configs/cifar100/*/nothing_*.yaml' (relative to" in line
    line = plan_error(folder, capsys, configs=['configs/missing.yaml'])
    assert "configs: no such config file 'configs/missing.yaml'" in line


def test_a_set_path_missing_from_one_config(folder, capsys):
    # kd has sub_terms.kd, wttm has sub_terms.wttm: the path exists in one config only
    line = plan_error(folder, capsys, set=['train.criterion.kwargs.sub_terms.kd.weight=2.0'])
    assert line.startswith("error: study.yaml: set: --set path 'train.criterion.kwargs.sub_terms.kd.weight' does "
                           "not exist: no key 'kd' under train.criterion.kwargs.sub_terms")
    assert line.endswith('(in configs/cifar100/wttm/tiny_from_tiny.yaml)')


def test_a_grid_path_missing_from_a_config(folder, capsys):
    line = plan_error(folder, capsys, grid={'train.criterion.kwargs.sub_terms.wttm.weight': [1.0]})
    assert "grid.train.criterion.kwargs.sub_terms.wttm.weight: --set path" in line and "no key 'wttm'" in line


@pytest.mark.parametrize('values, message', [
    (['a lot'], "grid.train.num_epochs: value 'a lot' is str, but configs/cifar100/kd/tiny_from_tiny.yaml has an "
                "int there"),
    ([2.5], 'grid.train.num_epochs: value 2.5 is float, but'),
    ([True], 'grid.train.num_epochs: value True is bool, but'),
    (3, 'grid.train.num_epochs: expected a non-empty list of values, got 3'),
    ([2, 2], 'grid.train.num_epochs: a value is listed twice in [2, 2]'),
])
def test_a_grid_value_of_the_wrong_type(folder, capsys, values, message):
    assert message in plan_error(folder, capsys, grid={'train.num_epochs': values})


def test_an_int_may_replace_a_float_and_null_is_open(folder):
    plan = make(folder, seeds=[0], grid={'train.optimizer.kwargs.lr': [1, 0.5],
                                         'models.student_model.src_ckpt': ['x.pt']})
    assert [r.variant for r in plan.runs][:2] == ['lr=1,src_ckpt=x.pt', 'lr=0.5,src_ckpt=x.pt']


@pytest.mark.parametrize('keys, message', [
    ({'seeds': [0, -1]}, 'seeds: expected a non-empty list of non-negative integers, got [0, -1]'),
    ({'seeds': [1, 1]}, 'seeds: seed 1 is listed twice'),
    ({'configs': []}, 'configs: expected at least one entry, got an empty list'),
    ({'out': 3}, 'out: expected a folder path, got 3'),
    ({'set': ['train.num_epochs']}, "set: expected KEY=VALUE entries (e.g. train.num_epochs=240), got "
                                    "'train.num_epochs'"),
    ({'set': ['models.student_model.dst_ckpt=x.pt']}, 'the study gives every run its own dst_ckpt below out'),
    ({'resources': {'gpus': -1}}, 'resources.gpus: expected an integer >= 0, got -1'),
    ({'resources': {'mem_gb': 0}}, 'resources.mem_gb: expected a number > 0, got 0'),
    ({'runtime': {'amp': 'fp8'}}, "runtime.amp: expected one of off, bf16, fp16, got 'fp8'"),
    ({'runtime': {'teacher_cache': 'auto'}}, 'runtime.teacher_cache: needs runtime.device_data: true or auto'),
    ({'runtime': {'device_data': 'yes'}}, "runtime.device_data: expected true, false or auto, got 'yes'"),
    ({'slurm': {'array_parallelism': 0}}, 'slurm.array_parallelism: expected an integer >= 1, got 0'),
    ({'slurm': {'additional': ['x']}}, "slurm.additional: expected a mapping of sbatch option -> value"),
    ({'slurm': {'signal_delay_s': 0}}, 'slurm.signal_delay_s: expected an integer >= 1 (seconds), got 0'),
    ({'cache_dtype': 'int8'}, "cache_dtype: expected one of float32, float16, got 'int8'"),
])
def test_values_of_the_wrong_kind(folder, capsys, keys, message):
    assert message in plan_error(folder, capsys, **keys)


def test_device_data_true_with_a_config_it_refuses_is_the_study_files_error(monkeypatch, capsys):
    monkeypatch.chdir(support.REPO_ROOT)
    study = load_study('configs/studies/ttm_ilsvrc2012.yaml')
    strict = dataclasses.replace(study, runtime=dataclasses.replace(study.runtime, device_data=True))
    with pytest.raises(StudyError, match=r"runtime.device_data is true, but the device data path refuses "
                                         r"configs/ilsvrc2012/\S+\.yaml \(dataset 'ilsvrc2012/train' .* is not "
                                         r"supported by the device data path.*\); write device_data: auto to run such "
                                         r"configs on torchdistill's loader, or leave them out$"):
        plan_mod.make_plan(strict, python='PY')


def test_two_configs_of_one_experiment(folder, capsys):
    os.makedirs('other/configs/cifar100/kd')
    import shutil
    shutil.copy('configs/cifar100/kd/tiny_from_tiny.yaml', 'other/configs/cifar100/kd/tiny_from_tiny.yaml')
    line = plan_error(folder, capsys, configs=['configs/cifar100/kd/*.yaml', 'other/configs/cifar100/kd/*.yaml'])
    assert f"are both experiment '{KD}' (its folder below out); keep one" in line


def test_not_a_study_file(folder, capsys):
    with open('study.yaml', 'w') as fp:
        fp.write('out: [unclosed\n')
    assert study_cli.main(['plan', 'study.yaml']) == 1
    assert capsys.readouterr().err.startswith('error: study.yaml: not valid YAML at line 2')
    assert study_cli.main(['plan', 'missing.yaml']) == 1
    assert capsys.readouterr().err.strip() == 'error: missing.yaml: no such study file'
    with open('study.yaml', 'w') as fp:
        fp.write('- a list\n')
    assert study_cli.main(['plan', 'study.yaml']) == 1
    assert 'error: study.yaml: a study file is a YAML mapping with keys name, out' in capsys.readouterr().err


def test_run_option_misuse(folder, capsys):
    study_files.write_study(folder)
    assert study_cli.main(['run', 'study.yaml', '--executor', 'local', '--slots', '0']) == 1
    assert capsys.readouterr().err.strip() == 'error: --slots must be at least 1, got 0'
    assert study_cli.main(['run', 'study.yaml', '--executor', 'local', '--wait']) == 1
    assert 'error: --wait applies to --executor slurm' in capsys.readouterr().err
    assert study_cli.main(['run', 'study.yaml', '--executor', 'slurm', '--slots', '2']) == 1
    assert 'error: --slots applies to --executor local' in capsys.readouterr().err



# ---- teacher checkpoints: a study whose runs would all fail at start-up starts nothing ----
def test_run_without_the_teacher_checkpoint_starts_nothing_and_says_how_to_get_it(folder, capsys):
    study_files.write_study(folder)
    os.remove('teacher.pt')
    for executor in ('local', 'slurm'):  # refused before submitit is imported or anything is written
        assert study_cli.main(['run', 'study.yaml', '--executor', executor]) == 1
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert captured.out == '' and len(lines) == 1, captured.err
        assert lines[0].startswith(f'error: study.yaml: nothing started: 4 runs to do load teacher checkpoints that '
                                   f'do not exist (paths relative to {folder}): ./teacher.pt '
                                   f'(test_runner_tiny_bn_net: 4 runs); test_runner_tiny_bn_net: no public '
                                   f'checkpoint of \'test_runner_tiny_bn_net\' is fetched by this package')
        assert lines[0].endswith('; or leave those configs out of the study file')
        assert not os.path.exists('runs')
    assert study_cli.main(['plan', 'study.yaml']) == 0  # the plan shows it and still lists the runs
    out = capsys.readouterr().out
    assert 'study run refuses to start: 4 runs to do load teacher checkpoints that do not exist' in out
    assert f'{KD}/base/seed0' in out


def test_finished_runs_do_not_need_their_teacher(folder, capsys):
    plan = make(folder)
    os.remove('teacher.pt')
    for run in plan.runs:
        if run.experiment == KD:
            os.makedirs(run.folder)
            open(run.summary, 'w').close()
    todo = [run for run in plan.runs if run.experiment != KD]
    assert [(m.path, m.run_ids) for m in plan_mod.missing_teachers(plan, todo)] == [
        ('./teacher.pt', tuple(r.run_id for r in todo))]
    study_files.write_study(folder)
    assert study_cli.main(['run', 'study.yaml', '--executor', 'local']) == 1
    assert 'nothing started: 2 runs to do load teacher checkpoints' in capsys.readouterr().err
    open('teacher.pt', 'w').close()
    assert plan_mod.missing_teachers(plan, plan.runs) == []


def test_missing_public_teachers_are_fetched_with_one_command(folder):
    plan = make(folder)
    missing = [plan_mod.MissingTeacher('a/resnet32x4.pth', 'cifar_resnet32x4', ('r1', 'r2')),
               plan_mod.MissingTeacher('b/wrn.pth', 'cifar_wrn_40_2', ('r3',)),
               plan_mod.MissingTeacher('c/x.pth', 'cifar_resnet32x4', ('r4',))]
    text = plan_mod.missing_teachers_text(plan, missing)
    assert text == (f'4 runs to do load teacher checkpoints that do not exist (paths relative to {folder}): '
                    f'a/resnet32x4.pth (cifar_resnet32x4: 2 runs), b/wrn.pth (cifar_wrn_40_2: 1 run), c/x.pth '
                    f'(cifar_resnet32x4: 1 run); fetch them with: python -m ttm_torchdistill fetch-teachers --names '
                    f'resnet32x4 wrn_40_2; or leave those configs out of the study file')


def test_shipped_studies_plan_the_readme_tables(monkeypatch):
    monkeypatch.chdir(support.REPO_ROOT)
    cifar = plan_mod.make_plan(load_study('configs/studies/ttm_cifar100.yaml'), python='PY')
    assert len(cifar.runs) == 13 * 6 * 5 and {r.seed for r in cifar.runs} == {0, 1, 2, 3, 4}
    # one complete cache per teacher (wrn_40_2, resnet56, resnet110, resnet32x4, vgg13, ResNet50) serves all 5
    # seeds; WTTM+CRD/ITRD hook the teacher and run it live
    assert len(cifar.caches) == 6 and {c.kind for c in cifar.caches} == {'complete'}
    assert {r.experiment.split('/')[1] for r in cifar.runs if r.cache is None} == {'wttm_crd', 'wttm_itrd'}
    hosts = plan_mod.make_plan(load_study('configs/studies/max_logit_cifar100.yaml'), python='PY')
    assert len(hosts.runs) == 13 * 5 * 5 and len(hosts.caches) == 6 and {c.kind for c in hosts.caches} == {'complete'}
    # the device data path makes MLKD's strong view too: device_data: auto puts every run on it, and MLKD's runs read
    # the weak view's logits from the complete cache of their teacher that the other methods read
    two_view = [r for r in hosts.runs if r.experiment.split('/')[1] in ('mlkd', 'mlkd_at')]
    assert len(two_view) == 2 * 13 * 5 and all('--device-data' in r.argv('PY', resume=False) for r in hosts.runs)
    assert all(r.cache is not None for r in hosts.runs)
    assert {r.cache.key for r in two_view} == {r.cache.key for r in hosts.runs}
    imagenet = plan_mod.make_plan(load_study('configs/studies/ttm_ilsvrc2012.yaml'), python='PY')
    assert len(imagenet.runs) == 10 and not imagenet.caches
    argv = imagenet.runs[0].argv('PY', resume=False)
    assert argv[:6] == ['PY', '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=8', '-m']
    assert argv[-4:] == ['--amp', 'bf16', '--world_size', '8']


# ---- local slots (nothing is run: the executor is only built) ----
def test_local_slots_are_visible_gpus_grouped_per_run(folder, monkeypatch):
    from ttm_torchdistill.errors import StudyError
    from ttm_torchdistill.study.local import LocalExecutor, visible_gpus
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '3,5,6,7,9')
    assert visible_gpus() == ['3', '5', '6', '7', '9']
    one = make(folder, resources={'gpus': 1, 'cpus': 2, 'mem_gb': 1, 'time_min': 1})
    assert LocalExecutor(one).free == [['3'], ['5'], ['6'], ['7'], ['9']]
    assert LocalExecutor(one, slots=2).free == [['3'], ['5']]
    assert LocalExecutor(one)._env(['6'])['CUDA_VISIBLE_DEVICES'] == '6'
    two = make(folder, resources={'gpus': 2, 'cpus': 2, 'mem_gb': 1, 'time_min': 1})
    assert LocalExecutor(two).free == [['3', '5'], ['6', '7']]  # the fifth GPU cannot hold a two-GPU run
    assert two.runs[0].argv('PY', False)[:5] == ['PY', '-m', 'torch.distributed.run', '--standalone',
                                                 '--nproc_per_node=2']
    with pytest.raises(StudyError, match=r'^--executor local: resources.gpus is 2 but 1 GPU\(s\) are visible here$'):
        LocalExecutor(two, gpus=['0'])
    with pytest.raises(StudyError, match=r'resources.gpus is 2 but this machine has no GPU$'):
        LocalExecutor(two, gpus=[])
    cpu = LocalExecutor(one, gpus=[], slots=3)
    assert cpu.free == [[], [], []] and cpu.slots == 3
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    assert cpu._env([])['OMP_NUM_THREADS'] == '2' and 'CUDA_VISIBLE_DEVICES' in cpu._env([])  # inherited as set
    assert LocalExecutor(one, gpus=[]).slots == 1  # one CPU slot unless --slots


@pytest.mark.parametrize('text, expected', [('UNLIMITED', None), ('INFINITE', None), ('60', 60), ('01:00:00', 60),
                                            ('00:02:00', 2), ('00:00:30', 1), ('1-00:00:00', 1440), ('2-12', 3600),
                                            ('5:30', 6)])
def test_slurm_times_in_minutes_rounded_up(text, expected):
    """The forms ``scontrol show partition`` gives MaxTime in (edge cases: unlimited, seconds rounded up)."""
    assert slurm_queue.minutes(text) == expected


def test_a_slurm_time_of_another_form_is_an_error():
    with pytest.raises(StudyError, match=r"expected a Slurm time such as 60, 01:00:00 or 1-00:00:00, got '1h'"):
        slurm_queue.minutes('1h')
