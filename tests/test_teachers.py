"""fetch-teachers, offline: a server on 127.0.0.1 serves tar archives built here from randomly initialised
checkpoints of the registered architectures, in RepDistiller's checkpoint format."""
import hashlib
import http.server
import io
import re
import socket
import tarfile
import threading
from pathlib import Path

import pytest
import torch

from torchdistill.models.registry import MODEL_DICT
from ttm_torchdistill import teachers
from ttm_torchdistill.commands.fetch_teachers import main
from ttm_torchdistill.teachers import FetchError, fetch_teachers

# Smallest public teachers; both are real registered architectures.
SMALL = ('resnet56', 'resnet110')


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _checkpoint_bytes(key, seed):
    torch.manual_seed(seed)
    model = MODEL_DICT[key]()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    buffer = io.BytesIO()
    # RepDistiller's train_teacher.py format: {'epoch', 'model', 'accuracy', 'optimizer'}.
    torch.save({'epoch': 240, 'model': model.state_dict(), 'accuracy': torch.tensor(72.34),
                'optimizer': optimizer.state_dict()}, buffer)
    return buffer.getvalue()


def _tar_bytes(members):
    """A tar holding ``members`` ({name: bytes}, or a TarInfo for special entries)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w') as tar:
        for name, data in members.items():
            if isinstance(data, tarfile.TarInfo):
                tar.addfile(data)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope='module')
def checkpoints():
    return {name: _checkpoint_bytes(f'cifar_{name}', seed) for seed, name in enumerate(SMALL)}


@pytest.fixture(scope='module')
def archive(checkpoints):
    members = {teachers.member_name(name): data for name, data in checkpoints.items()}
    # Things a safe extractor must never write: a path-traversal name and a member for another teacher.
    members['cifar_teachers/../../escaped.pth'] = b'not a checkpoint'
    members['cifar_teachers/wrn_40_2_vanilla/ckpt_epoch_240.pth'] = b'not requested'
    return _tar_bytes(members)


class _Server:
    """ThreadingHTTPServer on 127.0.0.1 with fixed routes; counts requests per path."""

    def __init__(self, routes):
        self.routes = routes  # path -> (status, body, mode) with mode 'full' or 'cut' (close mid-body)
        self.hits = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                status, body, mode = server.routes.get(self.path, (404, b'', 'full'))
                self.send_response(status)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                if mode == 'cut':
                    # Announce the whole body, send half of it, then drop the connection.
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                else:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a connection this test cut on purpose; keep the captured stderr to the tool's own line

        self.httpd = Server(('127.0.0.1', 0), Handler)
        self.httpd.timeout = 5
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)

    def url(self, path):
        return f'http://127.0.0.1:{self.httpd.server_address[1]}{path}'

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope='module')
def server(archive):
    cut = archive[:int(len(archive) * 0.6)]
    routes = {
        '/cifar_teachers.tar': (200, archive, 'full'),
        '/rerun.tar': (200, archive, 'full'),
        '/truncated.tar': (200, cut, 'full'),
        '/garbage.tar': (200, b'\x00garbage' * 1000, 'full'),
        '/interrupted.tar': (200, archive, 'cut'),
    }
    with _Server(routes) as s:
        yield s


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob('*') if p.is_file())


def _run(argv, capsys):
    status = main(['--quiet'] + argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_success_writes_verified_checkpoints_where_the_configs_expect_them(server, tmp_path, capsys, checkpoints):
    dest = tmp_path / 'teachers'
    status = main(['--url', server.url('/cifar_teachers.tar'), '--dest', str(dest), '--names', 'resnet56,resnet110'])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert _files(dest) == ['resnet110_vanilla/ckpt_epoch_240.pth', 'resnet56_vanilla/ckpt_epoch_240.pth']
    for name in SMALL:
        assert (dest / f'{name}_vanilla' / 'ckpt_epoch_240.pth').read_bytes() == checkpoints[name]
        assert f'{name}: fetched and valid' in out
    assert '100%' in err  # the progress bar reached the end (on stderr)
    assert not (tmp_path / 'escaped.pth').exists()


def test_rerun_is_a_no_op_without_network_access(server, tmp_path, capsys):
    dest = tmp_path / 'teachers'
    argv = ['--url', server.url('/rerun.tar'), '--dest', str(dest), '--names', 'resnet56']
    assert _run(argv, capsys)[0] == 0
    assert server.hits['/rerun.tar'] == 1
    status, out, _ = _run(argv, capsys)
    assert status == 0 and 'resnet56: present and valid' in out
    assert server.hits['/rerun.tar'] == 1


def test_keep_archive_keeps_the_complete_download(server, tmp_path, capsys, archive):
    status, _, _ = _run(['--url', server.url('/cifar_teachers.tar'), '--dest', str(tmp_path), '--names', 'resnet56',
                         '--keep-archive'], capsys)
    assert status == 0
    assert (tmp_path / 'cifar_teachers.tar').read_bytes() == archive
    assert _files(tmp_path) == ['cifar_teachers.tar', 'resnet56_vanilla/ckpt_epoch_240.pth']


def test_invalid_present_file_is_replaced(server, tmp_path, capsys, checkpoints):
    target = teachers.checkpoint_path(tmp_path, 'resnet56')
    target.parent.mkdir(parents=True)
    target.write_bytes(b'half a checkpoint')
    status, out, _ = _run(['--url', server.url('/cifar_teachers.tar'), '--dest', str(tmp_path),
                           '--names', 'resnet56'], capsys)
    assert status == 0 and 'present but invalid' in out
    assert target.read_bytes() == checkpoints['resnet56']


def test_known_hash_is_checked(server, tmp_path, checkpoints):
    right = {'resnet56': hashlib.sha256(checkpoints['resnet56']).hexdigest()}
    paths = fetch_teachers(['resnet56'], dest=tmp_path, url=server.url('/cifar_teachers.tar'),
                           known_sha256=right, progress=False, log=lambda line: None)
    assert paths['resnet56'].read_bytes() == checkpoints['resnet56']


def test_wrong_hash_fails_and_leaves_no_checkpoint(server, tmp_path):
    with pytest.raises(FetchError, match=r'sha256 mismatch for resnet56: expected 0{64}, got [0-9a-f]{64}'):
        fetch_teachers(['resnet56'], dest=tmp_path, url=server.url('/cifar_teachers.tar'),
                       known_sha256={'resnet56': '0' * 64}, progress=False, log=lambda line: None)
    assert _files(tmp_path) == []


@pytest.mark.parametrize('path, message', [
    ('/truncated.tar', r'archive .*cifar_teachers\.tar is corrupt or truncated: '),
    ('/garbage.tar', r'archive .*cifar_teachers\.tar is corrupt or not a tar file$'),
    ('/interrupted.tar', r'download of http://127\.0\.0\.1:\d+/interrupted\.tar interrupted: '
                         r'received \d+ of \d+ bytes'),
    ('/missing.tar', r'HTTP 404 Not Found for http://127\.0\.0\.1:\d+/missing\.tar'),
])
def test_bad_transfers_fail_with_one_line_and_leave_nothing_finished(server, tmp_path, capsys, path, message):
    status, out, err = _run(['--url', server.url(path), '--dest', str(tmp_path), '--names', 'resnet56'], capsys)
    assert status == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in err
    assert lines[0].startswith('error: ')
    assert re.search(message, lines[0]), lines[0]
    assert _files(tmp_path) == []  # neither the archive nor a checkpoint nor a .part file


def test_no_network(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    status, _, err = _run(['--url', f'http://127.0.0.1:{port}/x.tar', '--dest', str(tmp_path),
                           '--names', 'resnet56', '--timeout', '5'], capsys)
    assert status == 1 and err.startswith('error: cannot reach http://127.0.0.1:')
    assert err.strip().endswith(f'; without network, copy cifar_teachers.tar from a machine that has it (it is '
                                f'http://127.0.0.1:{port}/x.tar) and give its path: python -m ttm_torchdistill '
                                f'fetch-teachers --url /path/to/cifar_teachers.tar (or set '
                                f'TTM_TORCHDISTILL_TEACHERS_URL=/path/to/cifar_teachers.tar)')
    assert len(err.strip().splitlines()) == 1


def test_unknown_teacher_name(tmp_path, capsys):
    status, _, err = _run(['--names', 'resnet57', '--dest', str(tmp_path)], capsys)
    assert status == 1
    assert err.strip() == ("error: unknown teacher 'resnet57'; expected some of: "
                           'wrn_40_2, resnet56, resnet110, resnet32x4, vgg13, ResNet50')


def test_unwritable_destination(archive, tmp_path, capsys):
    local = tmp_path / 'cifar_teachers.tar'
    local.write_bytes(archive)
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    status, _, err = _run(['--url', str(local), '--dest', str(blocker / 'teachers'), '--names', 'resnet56'], capsys)
    assert status == 1
    assert err.startswith(f'error: destination {blocker / "teachers"} is not a writable directory')


def test_local_path_and_file_url_and_environment_variable(archive, tmp_path, monkeypatch, capsys):
    local = tmp_path / 'mirror' / 'cifar_teachers.tar'
    local.parent.mkdir()
    local.write_bytes(archive)
    assert _run(['--url', str(local), '--dest', str(tmp_path / 'a'), '--names', 'resnet56'], capsys)[0] == 0
    assert _run(['--url', local.as_uri(), '--dest', str(tmp_path / 'b'), '--names', 'resnet56'], capsys)[0] == 0
    monkeypatch.setenv(teachers.URL_ENV_VAR, str(local))
    assert _run(['--dest', str(tmp_path / 'c'), '--names', 'resnet56'], capsys)[0] == 0
    for sub in 'abc':
        assert _files(tmp_path / sub) == ['resnet56_vanilla/ckpt_epoch_240.pth']
    assert local.exists()  # a local archive is read in place, never deleted


def test_missing_local_archive(tmp_path, capsys):
    status, _, err = _run(['--url', str(tmp_path / 'nowhere.tar'), '--dest', str(tmp_path / 'd'),
                           '--names', 'resnet56'], capsys)
    assert status == 1 and err.strip() == f'error: archive {tmp_path / "nowhere.tar"} not found'


def test_member_that_is_not_a_regular_file_is_refused(tmp_path):
    link = tarfile.TarInfo(teachers.member_name('resnet56'))
    link.type = tarfile.SYMTYPE
    link.linkname = '/etc/passwd'
    local = tmp_path / 'links.tar'
    local.write_bytes(_tar_bytes({link.name: link}))
    with pytest.raises(FetchError, match='is not a regular file; refusing it'):
        fetch_teachers(['resnet56'], dest=tmp_path / 'd', url=str(local), progress=False, log=lambda line: None)
    assert _files(tmp_path / 'd') == []


def test_checkpoint_of_another_architecture_is_rejected(tmp_path):
    # A valid RepDistiller checkpoint, but of resnet20 stored under the resnet56 name.
    local = tmp_path / 'swapped.tar'
    local.write_bytes(_tar_bytes({teachers.member_name('resnet56'): _checkpoint_bytes('cifar_resnet20', 0)}))
    with pytest.raises(FetchError, match='does not load strictly into cifar_resnet56: .*Missing key'):
        fetch_teachers(['resnet56'], dest=tmp_path / 'd', url=str(local), progress=False, log=lambda line: None)
    assert _files(tmp_path / 'd') == []


def test_checkpoint_without_model_entry_is_rejected(tmp_path):
    buffer = io.BytesIO()
    torch.save(MODEL_DICT['cifar_resnet56']().state_dict(), buffer)  # a bare state_dict, not RepDistiller's dict
    local = tmp_path / 'bare.tar'
    local.write_bytes(_tar_bytes({teachers.member_name('resnet56'): buffer.getvalue()}))
    with pytest.raises(FetchError, match='is not a dict with a "model" state_dict'):
        fetch_teachers(['resnet56'], dest=tmp_path / 'd', url=str(local), progress=False, log=lambda line: None)


def test_default_source_and_destination():
    assert teachers.DEFAULT_URL == \
        'https://github.com/megvii-research/mdistiller/releases/download/checkpoints/cifar_teachers.tar'
    assert teachers.checkpoint_path(teachers.DEFAULT_DEST, 'resnet32x4') == \
        Path('resource/ckpt/cifar100/teachers/resnet32x4_vanilla/ckpt_epoch_240.pth')
    assert teachers.member_name('resnet32x4') == 'cifar_teachers/resnet32x4_vanilla/ckpt_epoch_240.pth'
    assert set(teachers.TEACHERS) == {'wrn_40_2', 'resnet56', 'resnet110', 'resnet32x4', 'vgg13', 'ResNet50'}
    assert all(f'cifar_{name}' in MODEL_DICT for name in teachers.TEACHERS)


def test_help_returns_zero(capsys):
    assert main(['--help']) == 0
    assert '--names' in capsys.readouterr().out
