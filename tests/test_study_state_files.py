"""The study's state files (``plan.json``, ``submitted.json``, ``failed.json``) under concurrent writers and killed
ones: real processes writing the same file at once, each rename a complete file, and leftovers cleaned up."""
import json
import multiprocessing
import os
import time

from ttm_torchdistill.study import task_state


def write_many(path, who):
    for i in range(300):
        task_state.write_json(path, {'writer': who, 'i': i, 'runs': ['x' * 64] * 200})


def test_two_concurrent_writers_of_plan_json_never_tear_it_or_fail(tmp_path):
    """Two processes (forked from this one: no interpreter start-up) write the file 300 times each while this one
    reads it."""
    path = str(tmp_path / 'plan.json')
    context = multiprocessing.get_context('fork')
    writers = [context.Process(target=write_many, args=(path, who)) for who in ('a', 'b')]
    for writer in writers:
        writer.start()
    seen = set()
    while any(w.is_alive() for w in writers):
        try:
            with open(path) as fp:
                seen.add(json.load(fp)['writer'])  # a reader sees a whole file, never a torn one
        except FileNotFoundError:  # before the first rename
            pass
    for writer in writers:
        writer.join()
    assert [w.exitcode for w in writers] == [0, 0]  # a writer whose rename failed ends with exit code 1
    with open(path) as fp:
        assert json.load(fp)['i'] == 299
    assert seen <= {'a', 'b'}
    assert os.listdir(tmp_path) == ['plan.json']  # no temporary file left behind


def test_a_killed_writers_temporary_file_is_removed_by_a_later_write_a_live_ones_is_kept(tmp_path):
    path = str(tmp_path / 'submitted.json')
    old, fresh = tmp_path / '.submitted.json.k1ll3d.tmp', tmp_path / '.submitted.json.l1ve.tmp'
    old.write_text('{"jobs": [')  # torn: what a writer killed mid-write leaves
    fresh.write_text('{')
    os.utime(old, (time.time() - task_state.STALE_TEMP_S - 5,) * 2)
    other = tmp_path / '.plan.json.k1ll3d.tmp'  # another file's: not this writer's business
    other.write_text('{')
    os.utime(other, (time.time() - task_state.STALE_TEMP_S - 5,) * 2)
    task_state.write_json(path, {'jobs': []})
    assert sorted(os.listdir(tmp_path)) == ['.plan.json.k1ll3d.tmp', '.submitted.json.l1ve.tmp', 'submitted.json']
    assert task_state.read_json(path) == {'jobs': []}


def test_state_files_get_the_mode_of_the_umask_for_a_group_sharing_the_folder(tmp_path):
    previous = os.umask(0o002)
    try:
        task_state.write_json(str(tmp_path / 'failed.json'), {'error': 'x'})
    finally:
        os.umask(previous)
    assert os.stat(tmp_path / 'failed.json').st_mode & 0o777 == 0o664
