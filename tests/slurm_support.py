"""Test-only helpers for the tests that use the real one-node Slurm cluster (``bash tests/slurm/start.sh``) and a
second real Unix user: whether the cluster is there, reconfiguring it for one test, running code as another user."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

import pytest

import runner_support as support

START = 'bash tests/slurm/start.sh'
CONF = '/etc/slurm/slurm.conf'
#: The user and group that the multi-user tests create (and remove afterwards).
OTHER_USER, SHARED_GROUP = 'ttmstudy2', 'ttmshare'


def cluster_problem():
    """Why the Slurm tests cannot run here (None when they can)."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        return 'submitit is not installed (pip install -e ".[test]")'
    if shutil.which('sinfo') is None:
        return 'sinfo is not installed'
    result = subprocess.run(['sinfo', '-h', '-o', '%T'], capture_output=True, text=True)
    if result.returncode != 0 or not re.search(r'^(idle|mixed|allocated)', result.stdout, flags=re.M):
        return f'no idle Slurm node ({(result.stdout + result.stderr).strip() or "sinfo printed nothing"})'
    return None


def require_cluster():
    """Skip the calling test module without a cluster; fail it when CI=true (CI starts one)."""
    problem = cluster_problem()
    if problem is None:
        return
    message = f'the Slurm tests need a one-node cluster, started by `{START}` (as root): {problem}'
    if os.environ.get('CI') == 'true':
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_root(what):
    """Skip without root (fail when CI=true, which runs as root)."""
    if os.getuid() == 0 and shutil.which('useradd'):
        return
    message = f'{what} needs root and useradd (to create a second Unix user)'
    if os.environ.get('CI') == 'true':
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def squeue(*fields):
    result = subprocess.run(['squeue', '-h', '-r', '-o', ' '.join(fields)], capture_output=True, text=True, check=True)
    return [line.split(None, len(fields) - 1) for line in result.stdout.splitlines() if line.strip()]


def wait_for(condition, what, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f'{what} did not happen within {timeout} s; queue: {squeue("%i", "%T", "%r")}')


@contextmanager
def slurm_conf_lines(*lines):
    """The cluster with ``lines`` added to its slurm.conf (``scontrol reconfigure``), restored afterwards."""
    with open(CONF) as fp:
        original = fp.read()
    try:
        with open(CONF, 'w') as fp:
            fp.write(original + ''.join(line + '\n' for line in lines))
        subprocess.run(['scontrol', 'reconfigure'], check=True, capture_output=True)
        yield
    finally:
        with open(CONF, 'w') as fp:
            fp.write(original)
        subprocess.run(['scontrol', 'reconfigure'], check=True, capture_output=True)


@contextmanager
def other_user():
    """A second Unix user in a group shared with root: ``(uid, gid)``; both removed afterwards."""
    for command in (['userdel', OTHER_USER], ['groupdel', SHARED_GROUP]):  # leftovers of a killed test run
        subprocess.run(command, capture_output=True)
    subprocess.run(['groupadd', SHARED_GROUP], check=True, capture_output=True)
    subprocess.run(['useradd', '-M', '-N', '-g', SHARED_GROUP, '-s', '/bin/sh', OTHER_USER], check=True,
                   capture_output=True)
    try:
        yield int(subprocess.check_output(['id', '-u', OTHER_USER])), int(subprocess.check_output(['id', '-g',
                                                                                                  OTHER_USER]))
    finally:
        subprocess.run(['userdel', OTHER_USER], capture_output=True)
        subprocess.run(['groupdel', SHARED_GROUP], capture_output=True)


@contextmanager
def shared_folder(gid):
    """A new folder that the other user can reach (pytest's tmp_path lies below a folder only root may enter), owned
    by group ``gid`` with setgid (everything below belongs to the group); removed afterwards."""
    folder = tempfile.mkdtemp(prefix='ttm-shared-')
    try:
        os.chown(folder, -1, gid)
        os.chmod(folder, 0o2775)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


AS_USER = '''
import os, sys
from ttm_torchdistill import errors
from ttm_torchdistill.study import locks, slurm_queue  # imported as root: /root may be closed to the user
uid, gid = int(sys.argv[1]), int(sys.argv[2])
os.setgroups([gid])
os.setgid(gid)
os.setuid(uid)
os.umask(0o002)
exec(sys.argv[3])
'''


def run_as(uid, gid, code, cwd, *args):
    """Run Python ``code`` as user ``uid`` (group ``gid``, umask 002) in a new process, ``args`` as ``sys.argv[4:]``;
    the study modules are imported before the switch."""
    return subprocess.run([sys.executable, '-c', AS_USER, str(uid), str(gid), code, *args], cwd=cwd,
                          capture_output=True, text=True, env=support.subprocess_env(), timeout=120)
