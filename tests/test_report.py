"""``python -m ttm_torchdistill report``: tables and plots from run summaries that the tests write."""
import json
import math
import sys

import pytest

from ttm_torchdistill import report as report_lib
from ttm_torchdistill.commands import report


def write_summary(folder, name, experiment, seed, best_top1, last_top1, dataset='cifar100', reference=None, curve=None,
                  drop=(), **replace):
    """A run summary in the runner's schema (format 1); ``replace`` sets top-level keys, ``drop`` deletes them."""
    curve = curve if curve is not None else [last_top1 - 2.0, best_top1, last_top1]
    data = {
        'format': 1, 'config': f'configs/{experiment}.yaml', 'experiment': experiment, 'dataset': dataset,
        'reference': reference, 'seed': seed, 'world_size': 1,
        'epochs': [{'epoch': i + 1, 'lr': 0.05, 'train_loss': 1.0, 'val_top1': v, 'val_top5': 90.0,
                    'epoch_time_s': 1.0} for i, v in enumerate(curve)],
        'best': {'epoch': 2, 'top1': best_top1, 'top5': 93.0},
        'last': {'epoch': len(curve), 'top1': last_top1, 'top5': 92.0},
        'test': {'student': {'top1': last_top1, 'top5': 92.0}, 'teacher': None},
        'checkpoints': {'best': 'x.pt', 'last': 'x.last.pt'}, 'wall_time_s': 3.0,
    }
    data.update(replace)
    for key in drop:
        del data[key]
    path = folder / name
    path.write_text(json.dumps(data))
    return path


WTTM = 'cifar100/wttm/wrn_16_2_from_wrn_40_2'
WTTM_REF = {'paper': 'TTM (ICLR 2024)', 'table': 'Table 1', 'top1': 76.37}


def table_dicts(text):
    """Every Markdown table row of ``text`` as ``{column: cell}``."""
    rows, header = [], None
    for line in text.splitlines():
        if not line.startswith('| ') or line.startswith('|---'):
            continue
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if cells[0] == 'experiment':
            header = cells
        else:
            rows.append(dict(zip(header, cells)))
    return rows


# the columns these tests were written for; runtime, epoch time and img/s are checked by name below
CORE = ('experiment', 'n', 'seeds', 'epochs', 'best top-1', 'last top-1', 'paper top-1', 'last - paper', 'paper source')


def table_rows(text):
    """{experiment: [cells of CORE]} of every Markdown table row in ``text``."""
    return {row['experiment']: [row[c] for c in CORE] for row in table_dicts(text)}


@pytest.fixture
def seed_sweep(tmp_path):
    bests, lasts = [76.0, 76.5, 77.0], [75.8, 76.2, 76.6]
    paths = [write_summary(tmp_path, f'wttm_seed{s}.json', WTTM, s, b, l, reference=WTTM_REF)
             for s, b, l in zip([3, 1, 2], bests, lasts)]
    paths.append(write_summary(tmp_path, 'atkd.json', 'cifar100/atkd/wrn_16_2_from_wrn_40_2', 1, 75.0, 74.5,
                               reference={'paper': 'ATKD (arXiv 2503.09030)', 'table': 'not retrievable',
                                          'top1': None, 'note': 'no table'}))
    paths.append(write_summary(tmp_path, 'in1k.json', 'ilsvrc2012/wttm/resnet18_from_resnet34', 0, 72.0, 71.9,
                               dataset='ilsvrc2012', reference={'paper': 'TTM (ICLR 2024)', 'table': 'Table 5',
                                                                'top1': 72.19}))
    return paths


def test_table_per_dataset_with_mean_sample_std_and_paper_difference(seed_sweep, capsys):
    assert report.main([str(p) for p in seed_sweep]) == 0
    out = capsys.readouterr().out
    assert out.index('### cifar100') < out.index('### ilsvrc2012')
    rows = table_rows(out)
    experiment, n, seeds, epochs, best, last, paper, diff, source = rows[WTTM]
    # independent arithmetic: best 76.0/76.5/77.0 -> mean 76.5, sample std 0.5; last 75.8/76.2/76.6 -> 76.2, 0.4
    assert (n, seeds, epochs) == ('3', '1, 2, 3', '3')
    assert best == '76.50 ± 0.50' and last == '76.20 ± 0.40'
    assert paper == '76.37' and diff == '-0.17' and source == 'TTM (ICLR 2024) Table 1'
    assert 'sample standard deviation (n - 1' in out


def test_single_run_shows_std_as_na_and_null_paper_as_na(seed_sweep, capsys):
    assert report.main([str(p) for p in seed_sweep]) == 0
    rows = table_rows(capsys.readouterr().out)
    _, n, seeds, _, best, last, paper, diff, _ = rows['cifar100/atkd/wrn_16_2_from_wrn_40_2']
    assert (n, seeds, best, last, paper, diff) == ('1', '1', '75.00 ± n/a', '74.50 ± n/a', 'n/a', 'n/a')
    _, _, seeds, _, _, last, paper, diff, _ = rows['ilsvrc2012/wttm/resnet18_from_resnet34']
    assert (seeds, last, paper, diff) == ('0', '71.90 ± n/a', '72.19', '-0.29')


def test_overrides_split_experiments_and_short_runs_are_flagged(tmp_path, capsys):
    paths = [write_summary(tmp_path, f'seed{s}.json', WTTM, s, 76.0, 76.0, reference=WTTM_REF, planned_epochs=3,
                           overrides=[f'models.student_model.dst_ckpt=x_seed{s}.pt']) for s in (1, 2)]
    paths.append(write_summary(tmp_path, 'ablation.json', WTTM, 1, 70.0, 70.0, reference=WTTM_REF, planned_epochs=240,
                               overrides=['train.criterion.kwargs.sub_terms.wttm.weight=1.0']))
    assert report.main([str(p) for p in paths]) == 0
    rows = table_rows(capsys.readouterr().out)
    # dst_ckpt overrides are bookkeeping: the two seeds form one experiment
    assert rows[WTTM][1:4] == ['2', '1, 2', '3']
    ablation = rows[WTTM + ' [train.criterion.kwargs.sub_terms.wttm.weight=1.0]']
    assert ablation[1:4] == ['1', '1', '3 of 240 (incomplete)']
    assert rows[WTTM][7] == '-0.37' and ablation[7] == 'n/a (--set)'  # last - paper only for the paper setting


def test_paper_number_comes_from_the_experiment_table(tmp_path, capsys):
    # a run of a shipped experiment whose summary recorded no (or an outdated) reference block
    paths = [write_summary(tmp_path, 'none.json', WTTM, 1, 76.0, 76.0, reference=None),
             write_summary(tmp_path, 'dist.json', 'cifar100/dist/wrn_40_1_from_wrn_40_2', 1, 74.0, 74.0,
                           reference={'paper': 'old', 'table': 'old', 'top1': 1.0})]
    assert report.main([str(p) for p in paths]) == 0
    rows = table_rows(capsys.readouterr().out)
    # TTM Table 1: WTTM 76.37 and (quoted) DIST 74.73 for these pairs
    assert rows[WTTM][6:] == ['76.37', '-0.37', 'TTM (ICLR 2024) Table 1']
    assert rows['cifar100/dist/wrn_40_1_from_wrn_40_2'][6:] == ['74.73', '-0.73', 'TTM (ICLR 2024) Table 1']


def test_experiment_outside_the_table_uses_its_recorded_reference(tmp_path, capsys):
    path = write_summary(tmp_path, 'own.json', 'cifar100/wttm/my_pair', 1, 70.0, 70.0,
                         reference={'paper': 'My paper', 'table': 'Table 9', 'top1': 71.0})
    assert report.main([str(path)]) == 0
    assert table_rows(capsys.readouterr().out)['cifar100/wttm/my_pair'][6:] == ['71.00', '-1.00', 'My paper Table 9']


def test_mean_std_is_sample_not_population():
    values = [1.0, 2.0, 3.0, 4.0]
    mean, std = report_lib.mean_std(values)
    assert mean == 2.5
    assert math.isclose(std, math.sqrt(sum((v - 2.5) ** 2 for v in values) / 3))  # n - 1 = 3, not n = 4
    assert report_lib.mean_std([5.0]) == (5.0, None)


def test_unseeded_runs_are_counted_and_listed(tmp_path, capsys):
    paths = [write_summary(tmp_path, f'r{i}.json', WTTM, None, 70.0 + i, 70.0 + i) for i in range(2)]
    paths.append(write_summary(tmp_path, 'r7.json', WTTM, 7, 73.0, 73.0))
    assert report.main([str(p) for p in paths]) == 0
    _, n, seeds, *_ = table_rows(capsys.readouterr().out)[WTTM]
    assert (n, seeds) == ('3', '7, 2 unseeded')


def test_dataset_null_is_grouped_visibly(tmp_path, capsys):
    path = write_summary(tmp_path, 'x.json', 'my_experiment', 1, 50.0, 49.0, dataset=None)
    assert report.main([str(path)]) == 0
    assert '### (dataset not recorded)' in capsys.readouterr().out


# ---- bad input: one line on stderr naming the file (and the key), exit status 1 ----
def run_error(argv, capsys):
    assert report.main([str(a) for a in argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ''
    assert 'Traceback' not in captured.err
    return captured.err


def test_missing_file(tmp_path, capsys):
    err = run_error([tmp_path / 'nope.json'], capsys)
    assert 'nope.json: no such file' in err


def test_invalid_json(tmp_path, capsys):
    path = tmp_path / 'broken.json'
    path.write_text('{"format": 1,')
    assert 'broken.json: not valid JSON' in run_error([path], capsys)


@pytest.mark.parametrize('key', ['experiment', 'best', 'last', 'seed', 'reference', 'dataset', 'epochs', 'format'])
def test_missing_key_names_file_and_key(tmp_path, capsys, key):
    path = write_summary(tmp_path, 'partial.json', WTTM, 1, 70.0, 70.0, drop=[key])
    err = run_error([path], capsys)
    assert 'partial.json' in err
    expected = {'best': 'best.top1', 'last': 'last.top1'}.get(key, key)
    assert f"missing key '{expected}'" in err


def test_missing_nested_key(tmp_path, capsys):
    path = write_summary(tmp_path, 'nested.json', WTTM, 1, 70.0, 70.0, last={'epoch': 3, 'top5': 1.0})
    assert "nested.json: missing key 'last.top1'" in run_error([path], capsys)


def test_missing_epoch_metric(tmp_path, capsys):
    path = write_summary(tmp_path, 'ep.json', WTTM, 1, 70.0, 70.0, epochs=[{'epoch': 1, 'lr': 0.1}])
    assert "ep.json: missing key 'epochs[0].val_top1'" in run_error([path], capsys)


def test_wrong_format_version(tmp_path, capsys):
    path = write_summary(tmp_path, 'v2.json', WTTM, 1, 70.0, 70.0, format=2)
    assert 'v2.json: run-summary format 2 is not supported (expected 1)' in run_error([path], capsys)


def test_non_numeric_top1(tmp_path, capsys):
    path = write_summary(tmp_path, 'nan.json', WTTM, 1, 70.0, 70.0, best={'epoch': 1, 'top1': None})
    assert "nan.json: 'best.top1' must be a finite number, got None" in run_error([path], capsys)


def test_json_that_is_not_an_object(tmp_path, capsys):
    path = tmp_path / 'list.json'
    path.write_text('[1, 2]')
    assert 'list.json: expected a JSON object (a run summary), got list' in run_error([path], capsys)


def test_directory_instead_of_files(tmp_path, capsys):
    err = run_error([tmp_path], capsys)
    assert 'is a directory without plan.json (not a study folder written by `study run`); pass run-summary files' \
        in err


def test_same_file_twice(tmp_path, capsys):
    path = write_summary(tmp_path, 'one.json', WTTM, 1, 70.0, 70.0)
    assert 'given twice' in run_error([path, path], capsys)


def test_duplicate_seed_of_one_experiment(tmp_path, capsys):
    a = write_summary(tmp_path, 'a.json', WTTM, 1, 70.0, 70.0)
    b = write_summary(tmp_path, 'b.json', WTTM, 1, 71.0, 71.0)
    err = run_error([a, b], capsys)
    assert "b.json: same experiment 'cifar100/wttm/wrn_16_2_from_wrn_40_2', runtime 'not recorded' and seed 1 as" \
        in err and 'a.json' in err


def test_inconsistent_reference_of_one_experiment(tmp_path, capsys):
    a = write_summary(tmp_path, 'a.json', WTTM, 1, 70.0, 70.0, reference=WTTM_REF)
    b = write_summary(tmp_path, 'b.json', WTTM, 2, 71.0, 71.0, reference={**WTTM_REF, 'top1': 70.0})
    assert 'b.json: reference.top1 70.0 differs from 76.37 in' in run_error([a, b], capsys)


def test_no_arguments_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        report.main([])
    assert exit_.value.code == 2
    assert 'RUN_SUMMARY|STUDY_OUT' in capsys.readouterr().err


# ---- --plot ----
def test_plot_without_matplotlib_is_a_clear_error(seed_sweep, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'matplotlib', None)  # makes `import matplotlib` raise ImportError
    out = tmp_path / 'curves.png'
    err = run_error([*seed_sweep, '--plot', out], capsys)
    assert "--plot needs matplotlib, which is not installed: pip install 'ttm_torchdistill[plot]'" in err
    assert not out.exists()


def test_plot_writes_png(seed_sweep, tmp_path, capsys):
    pytest.importorskip('matplotlib', reason='matplotlib (the optional "plot" extra) is not installed')
    out = tmp_path / 'curves.png'
    assert report.main([*map(str, seed_sweep), '--plot', str(out)]) == 0
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    import matplotlib.image
    height, width = matplotlib.image.imread(str(out)).shape[:2]
    assert width > height > 100  # two dataset panels side by side
    captured = capsys.readouterr()
    assert f'wrote {out}' in captured.err and '### cifar100' in captured.out


def test_plot_notes_runs_without_epochs(tmp_path, capsys):
    pytest.importorskip('matplotlib', reason='matplotlib (the optional "plot" extra) is not installed')
    path = write_summary(tmp_path, 'empty.json', WTTM, 1, 70.0, 70.0, epochs=[])
    assert report.main([str(path), '--plot', str(tmp_path / 'p.png')]) == 0
    assert 'empty.json: no epochs recorded, not drawn' in capsys.readouterr().err


def test_feature_distillation_rows_sit_next_to_the_papers_numbers(tmp_path, capsys):
    # WTTM+CRD and WTTM+ITRD runs, beside the plain WTTM run of the same pair; the summaries carry no reference
    # block, so the numbers can only come from the experiment table.
    crd, itrd = 'cifar100/wttm_crd/resnet8x4_from_resnet32x4', 'cifar100/wttm_itrd/MobileNetV2_from_ResNet50'
    paths = [write_summary(tmp_path, f'crd_seed{s}.json', crd, s, b, l)
             for s, b, l in ((1, 76.9, 76.5), (2, 77.1, 76.7))]
    paths.append(write_summary(tmp_path, 'itrd.json', itrd, 0, 71.9, 71.0))
    paths.append(write_summary(tmp_path, 'wttm.json', 'cifar100/wttm/resnet8x4_from_resnet32x4', 0, 76.2, 76.0))
    assert report.main([str(p) for p in paths]) == 0
    rows = table_rows(capsys.readouterr().out)
    # TTM Table 1/11: WTTM+CRD 76.65 for resnet32x4 -> resnet8x4; Table 3/12: WTTM+ITRD 71.56 for ResNet50 -> MBv2
    experiment, n, seeds, _, best, last, paper, diff, source = rows[crd]
    assert (n, seeds, best, last) == ('2', '1, 2', '77.00 ± 0.14', '76.60 ± 0.14')
    assert (paper, diff, source) == ('76.65', '-0.05', 'TTM (ICLR 2024) Table 11')
    assert rows[itrd][6:] == ['71.56', '-0.56', 'TTM (ICLR 2024) Table 12']
    assert rows['cifar100/wttm/resnet8x4_from_resnet32x4'][6:] == ['76.06', '-0.06', 'TTM (ICLR 2024) Table 1']


# ---- comparing speed options: runtime as a column, epoch time and images/s ----
STOCK = {'device_data': False, 'amp': 'off', 'channels_last': False, 'compile': False, 'teacher_cache': None}
FAST = {'device_data': True, 'amp': 'bf16', 'channels_last': True, 'compile': False, 'teacher_cache': 'cache/s0'}


def _timed_epochs(curve, epoch_time, train_time, images):
    return [{'epoch': i + 1, 'lr': 0.05, 'train_loss': 1.0, 'val_top1': v, 'val_top5': 90.0,
             'epoch_time_s': epoch_time, 'train_time_s': train_time, 'train_images': images}
            for i, v in enumerate(curve)]


def test_runs_differing_only_in_runtime_are_two_rows_with_speed_columns(tmp_path, capsys):
    stock = write_summary(tmp_path, 'stock.json', WTTM, 0, 76.0, 75.0, runtime=STOCK,
                          epochs=_timed_epochs([74.0, 76.0, 75.0], 10.0, 8.0, 50000))
    fast = write_summary(tmp_path, 'fast.json', WTTM, 0, 76.2, 75.1, runtime=FAST,
                         epochs=_timed_epochs([74.1, 76.2, 75.1], 2.5, 2.0, 50000))
    assert report.main([str(stock), str(fast)]) == 0
    rows = table_dicts(capsys.readouterr().out)
    assert [(r['experiment'], r['runtime']) for r in rows] == [(WTTM, 'stock'),
                                                               (WTTM, 'device_data, amp=bf16, channels_last, '
                                                                      'teacher_cache')]
    # 50000 images in 8 s of training -> 6250 img/s; in 2 s -> 25000 img/s; epoch times are the mean over epochs
    assert [(r['epoch time (s)'], r['img/s']) for r in rows] == [('10.0', '6250'), ('2.5', '25000')]
    assert [r['n'] for r in rows] == ['1', '1']


def test_summaries_without_speed_fields_show_na(tmp_path, capsys):
    path = write_summary(tmp_path, 'old.json', WTTM, 0, 76.0, 75.0)  # no runtime block, no train_images
    assert report.main([str(path)]) == 0
    row = table_dicts(capsys.readouterr().out)[0]
    assert (row['runtime'], row['epoch time (s)'], row['img/s']) == ('not recorded', '1.0', 'n/a')


def test_csv_and_json_formats_carry_unrounded_numbers(tmp_path, capsys):
    paths = [write_summary(tmp_path, f's{s}.json', WTTM, s, b, l, reference=WTTM_REF, runtime=STOCK)
             for s, b, l in ((1, 76.0, 75.0), (2, 77.0, 75.5))]
    assert report.main([*map(str, paths), '--format', 'csv']) == 0
    import csv
    lines = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert len(lines) == 1 and lines[0]['status'] == 'done' and lines[0]['runtime'] == 'stock'
    assert float(lines[0]['last_top1_mean']) == 75.25 and float(lines[0]['paper_top1']) == 76.37
    assert math.isclose(float(lines[0]['last_top1_std']), math.sqrt(0.125))  # (0.25^2 * 2) / (2 - 1)
    assert report.main([*map(str, paths), '--format', 'json']) == 0
    data = json.loads(capsys.readouterr().out)
    row = data['rows'][0]
    assert row['seeds'] == [1, 2] and row['best_top1'] == {'mean': 76.5, 'std': math.sqrt(0.5)}
    assert math.isclose(row['last_minus_paper'], 75.25 - 76.37)
    assert data['failed'] == [] and data['missing'] == []


def _study_folder(tmp_path):
    """A study folder as `study run` leaves it: plan.json, one finished run, one failed, one started, one not."""
    out = tmp_path / 'study'
    runs = []
    for seed in range(4):
        folder = f'runs/{WTTM}/base/seed{seed}'
        (out / folder).mkdir(parents=True)
        runs.append({'id': f'{WTTM}/base/seed{seed}', 'experiment': WTTM, 'variant': 'base', 'seed': seed,
                     'config': 'c.yaml', 'overrides': [], 'summary': f'{folder}/student.json', 'folder': folder})
    write_summary(out / runs[0]['folder'], 'student.json', WTTM, 0, 76.0, 75.0, reference=WTTM_REF, runtime=STOCK)
    (out / runs[1]['folder'] / 'failed.json').write_text(json.dumps(
        {'error': 'error: non-finite loss (nan or inf) in epoch 3', 'log': 'x/console.log'}))
    (out / runs[2]['folder'] / 'console.log').write_text('=== attempt\n')
    (out / 'plan.json').write_text(json.dumps({'format': 1, 'runs': runs}))
    return out


def test_study_folder_lists_missing_and_failed_runs(tmp_path, capsys):
    out = _study_folder(tmp_path)
    assert report.main([str(out)]) == 0
    text = capsys.readouterr().out
    assert table_rows(text)[WTTM][1:3] == ['1', '0']
    assert f'**Failed runs (1)**\n\n- {WTTM}/base/seed1: error: non-finite loss (nan or inf) in epoch 3 ' \
           f'(log: x/console.log)' in text
    assert f'**Missing runs (2)**\n\n- {WTTM}/base/seed2: started, not finished\n- {WTTM}/base/seed3: not started' \
        in text
    assert report.main([str(out), '--format', 'json']) == 0
    data = json.loads(capsys.readouterr().out)
    assert [f['run'] for f in data['failed']] == [f'{WTTM}/base/seed1']
    assert [m['state'] for m in data['missing']] == ['started, not finished', 'not started']


def test_study_folder_with_a_broken_plan(tmp_path, capsys):
    (tmp_path / 'plan.json').write_text(json.dumps({'runs': [{'id': 'x'}]}))
    assert "plan.json: every run needs 'id', 'summary' and 'folder' strings" in run_error([tmp_path], capsys)


def _captured_figure(monkeypatch):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figures = []
    close = plt.close
    monkeypatch.setattr(plt, 'close', lambda fig=None: (figures.append(fig), close(fig)))
    return figures


def test_plot_draws_one_epoch_runs_keeps_legends_off_the_axes_and_warns_nothing(tmp_path, capsys, monkeypatch):
    pytest.importorskip('matplotlib', reason='matplotlib (the optional "plot" extra) is not installed')
    long_set = 'train.criterion.kwargs.sub_terms.wttm.criterion.kwargs.temperature=' + '1' * 40
    paths = [write_summary(tmp_path, 'one.json', WTTM, 0, 70.0, 70.0, curve=[70.0]),
             write_summary(tmp_path, 'a.json', WTTM, 1, 70.0, 70.0, overrides=[long_set], curve=[60.0, 70.0]),
             write_summary(tmp_path, 'b.json', WTTM, 2, 72.0, 72.0, overrides=[long_set], curve=[62.0, 72.0])]
    figures = _captured_figure(monkeypatch)
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert report.main([*map(str, paths), '--plot', str(tmp_path / 'p.png')]) == 0
    assert not [w for w in caught if 'layout' in str(w.message).lower()], [str(w.message) for w in caught]
    axis = figures[0].axes[0]
    labels = [t.get_text() for t in axis.get_legend().get_texts()]
    assert labels[0] == f'{WTTM} (n=1)' and len(labels) == 2 and all(len(label) <= 70 for label in labels)
    one_epoch = axis.get_lines()[0]
    assert list(one_epoch.get_xdata()) == [1] and one_epoch.get_marker() == 'o'  # a single epoch is a visible point
    assert axis.get_legend().get_bbox_to_anchor().y1 < axis.get_window_extent().y0  # the legend is below the axes
    assert len(axis.collections) == 1  # the band over the two seeds of the variant
    capsys.readouterr()


def test_runs_from_different_configs_are_separate_rows(tmp_path):
    """Two seeds of one experiment name trained from configs that differ (an edited file): their digests differ, so
    they are two rows labelled by digest, never one mean; runs that record no digest stay as before."""
    paths = [write_summary(tmp_path, 'a.json', WTTM, 0, 76.0, 75.0, config_digest='a' * 64),
             write_summary(tmp_path, 'b.json', WTTM, 1, 74.0, 73.0, config_digest='b' * 64),
             write_summary(tmp_path, 'c.json', WTTM, 2, 72.0, 71.0, config_digest='a' * 64)]
    text, rows, _ = report_lib.report_text([str(p) for p in paths])
    assert sorted((row.experiment, len(row.runs)) for row in rows) == [
        (f'{WTTM} [config aaaaaaaa]', 2), (f'{WTTM} [config bbbbbbbb]', 1)]
    same = [write_summary(tmp_path, f's{i}.json', WTTM, i, 76.0, 75.0, config_digest='a' * 64) for i in range(2)]
    assert [row.experiment for row in report_lib.report_text([str(p) for p in same])[1]] == [WTTM]


def test_a_run_changed_mid_run_is_listed_apart_and_never_averaged(tmp_path):
    changed = ['train.optimizer.kwargs.lr: 0.05 -> 0.1']
    paths = [write_summary(tmp_path, 'a.json', WTTM, 0, 76.0, 75.0),
             write_summary(tmp_path, 'b.json', WTTM, 1, 10.0, 10.0, changed_mid_run=changed)]
    text, rows, study = report_lib.report_text([str(p) for p in paths])
    assert [(row.experiment, len(row.runs)) for row in rows] == [(WTTM, 1)]
    assert f'**Changed mid-run, not averaged (1)**\n\n- {paths[1]}: {changed[0]}' in text
    csv_text = report_lib.report_text([str(p) for p in paths], 'csv')[0]
    assert f'changed mid-run,,{paths[1]}' in csv_text
    data = json.loads(report_lib.report_text([str(p) for p in paths], 'json')[0])
    assert data['changed_mid_run'] == [{'summary': str(paths[1]), 'changes': changed}]
    alone = report_lib.report_text([str(paths[1])])[0]  # only changed runs: still a report, not an error
    assert 'Changed mid-run, not averaged (1)' in alone


@pytest.mark.parametrize('key, value, message', [
    ('config_digest', 3, "'config_digest' must be a string or null, got 3"),
    ('changed_mid_run', 'x', "'changed_mid_run' must be a list of strings, got 'x'")])
def test_malformed_identity_fields_are_refused(tmp_path, key, value, message):
    path = write_summary(tmp_path, 'a.json', WTTM, 0, 76.0, 75.0, **{key: value})
    with pytest.raises(report_lib.ReportError, match=f'{path}: {message}'):
        report_lib.load_summary(path)


def test_runs_selected_on_a_held_out_split_are_their_own_row_with_the_test_top1_of_their_best_checkpoint(tmp_path):
    stock = {'device_data': False, 'amp': 'off', 'holdout': None, 'holdout_seed': 0}
    held = dict(stock, holdout=5000)
    test = lambda top1: {'student': {'top1': top1, 'top5': 90.0}, 'teacher': None}  # noqa: E731
    paths = [write_summary(tmp_path, 'p.json', WTTM, 0, 76.0, 75.0, runtime=stock, test=test(75.5)),
             write_summary(tmp_path, 'h0.json', WTTM, 0, 80.0, 79.0, runtime=held, test=test(74.0)),
             write_summary(tmp_path, 'h1.json', WTTM, 1, 81.0, 80.0, runtime=held, test=test(75.0))]
    text, rows, _ = report_lib.report_text([str(p) for p in paths])
    by_runtime = {row['runtime']: row for row in table_dicts(text)}
    assert set(by_runtime) == {'stock', 'holdout=5000'}
    assert by_runtime['holdout=5000']['best top-1'] == '80.50 ± 0.71'  # on the held-out images
    assert by_runtime['holdout=5000']['test top-1'] == '74.50 ± 0.71'  # of those checkpoints, on the test set
    assert by_runtime['stock']['test top-1'] == '75.50 ± n/a'
    assert 'chose its best epoch on N held-out training images' in text
