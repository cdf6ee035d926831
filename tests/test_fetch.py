"""monosem-fetch against a local HTTP server: never the internet.

The server (127.0.0.1, port 0) serves zips built here from tests/fixtures in
the official layouts (``ml-1m/...``, ``ml-100k/...``, Last.FM at the root);
the expected size and SHA-256 in ``fetch.DATASETS`` are patched to the
fixture archive's.
"""

import dataclasses
import hashlib
import http.server
import io
import os
import socket
import subprocess
import sys
import threading
import zipfile

import pytest

from monosem_jax.data import fetch, load_dataset
from tests.conftest import fixture_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_zip(name: str, extra: dict[str, bytes] | None = None) -> bytes:
  """A small archive in ``name``'s official layout, from tests/fixtures."""
  prefix = fetch.DATASETS[name].prefix
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as zf:
    if prefix:
      zf.writestr(zipfile.ZipInfo(prefix, (2000, 1, 1, 0, 0, 0)), b'')
    folder = fixture_dir(name)
    for fname in sorted(os.listdir(folder)):
      with open(os.path.join(folder, fname), 'rb') as f:
        zf.writestr(zipfile.ZipInfo(prefix + fname, (2000, 1, 1, 0, 0, 0)),
                    f.read())
    zf.writestr(zipfile.ZipInfo(prefix + 'README', (2000, 1, 1, 0, 0, 0)),
                b'fixture archive\n')
    for member, data in (extra or {}).items():
      zf.writestr(member, data)
  return buf.getvalue()


class Server:
  """Serves ``routes`` (path -> bytes); logs every requested path."""

  def __init__(self):
    self.routes: dict[str, bytes] = {}
    self.no_length: set[str] = set()
    self.requests: list[str] = []
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def do_GET(self):  # pylint: disable=invalid-name
        server.requests.append(self.path)
        body = server.routes.get(self.path)
        if body is None:
          self.send_error(404)
          return
        self.send_response(200)
        if self.path not in server.no_length:
          self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

      def log_message(self, *args):
        pass

    self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    self.base = f'http://127.0.0.1:{self.httpd.server_address[1]}/data'
    threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

  def count(self, filename: str) -> int:
    return self.requests.count(f'/data/{filename}')


@pytest.fixture(scope='module')
def server():
  s = Server()
  yield s
  s.httpd.shutdown()
  s.httpd.server_close()


def serve(server, monkeypatch, name, body=None, size=None, sha256=None):
  """Serves ``body`` (default: the fixture archive) as ``name``'s file and
  patches the table to expect ``size`` / ``sha256`` (default: the body's)."""
  body = make_zip(name) if body is None else body
  archive = fetch.DATASETS[name]
  server.routes[f'/data/{archive.filename}'] = body
  monkeypatch.setitem(fetch.DATASETS, name, dataclasses.replace(
      archive, size=len(body) if size is None else size,
      sha256=sha256 or hashlib.sha256(body).hexdigest()))
  monkeypatch.delenv(fetch.BASE_URL_ENV, raising=False)
  return body


def closed_port_url() -> str:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  return f'http://127.0.0.1:{port}/data'


def leftovers(dest) -> list[str]:
  """Every entry of ``dest`` (temporary files and folders included)."""
  return sorted(os.listdir(dest))


@pytest.mark.parametrize('name', ['ml-1m', 'ml-100k', 'lastfm-2k'])
def test_fetch_unpacks_the_loaders_layout(server, monkeypatch, tmp_path,
                                          name):
  serve(server, monkeypatch, name)
  lines = []
  path = fetch.fetch(name, str(tmp_path), base_url=server.base,
                     log=lines.append)
  assert path == str(tmp_path / name)
  assert leftovers(tmp_path) == [name]
  for f in os.listdir(fixture_dir(name)):
    with open(os.path.join(fixture_dir(name), f), 'rb') as a, \
        open(os.path.join(path, f), 'rb') as b:
      assert a.read() == b.read(), f
  assert os.path.isfile(os.path.join(path, fetch.MANIFEST))
  assert any('MB/s' in line for line in lines), lines
  ds = load_dataset(name, str(tmp_path))  # the root, as $MONOSEM_DATA_DIR
  assert ds.n_interactions > 0
  ref = load_dataset(name, fixture_dir(name))
  assert (ds.n_users, ds.n_items, ds.n_interactions) == (
      ref.n_users, ref.n_items, ref.n_interactions)


def test_second_run_downloads_nothing(server, monkeypatch, tmp_path):
  serve(server, monkeypatch, 'ml-1m')
  before = server.count('ml-1m.zip')
  fetch.fetch('ml-1m', str(tmp_path), base_url=server.base, log=lambda _: 0)
  lines = []
  fetch.fetch('ml-1m', str(tmp_path), base_url=server.base, log=lines.append)
  assert server.count('ml-1m.zip') == before + 1
  assert len(lines) == 1 and 'already present and verified' in lines[0]
  assert 'nothing downloaded' in lines[0]


def test_damaged_file_is_downloaded_again(server, monkeypatch, tmp_path):
  serve(server, monkeypatch, 'ml-1m')
  path = fetch.fetch('ml-1m', str(tmp_path), base_url=server.base,
                     log=lambda _: 0)
  with open(os.path.join(path, 'ratings.dat'), 'a') as f:
    f.write('9::9::5::1\n')
  before = server.count('ml-1m.zip')
  lines = []
  fetch.fetch('ml-1m', str(tmp_path), base_url=server.base, log=lines.append)
  assert server.count('ml-1m.zip') == before + 1
  assert 'ratings.dat differs from the archive' in lines[0]
  with open(os.path.join(path, 'ratings.dat'), 'rb') as f, \
      open(os.path.join(fixture_dir('ml-1m'), 'ratings.dat'), 'rb') as g:
    assert f.read() == g.read()


def test_checksum_mismatch_is_refused_without_leftovers(server, monkeypatch,
                                                        tmp_path):
  serve(server, monkeypatch, 'ml-1m', sha256='0' * 64)
  with pytest.raises(fetch.FetchError, match='SHA-256') as e:
    fetch.fetch('ml-1m', str(tmp_path), base_url=server.base,
                log=lambda _: 0)
  assert '\n' not in str(e.value) and 'refusing' in str(e.value)
  assert leftovers(tmp_path) == []


def test_checksum_mismatch_keeps_a_previous_good_copy(server, monkeypatch,
                                                      tmp_path):
  serve(server, monkeypatch, 'ml-1m')
  path = fetch.fetch('ml-1m', str(tmp_path), base_url=server.base,
                     log=lambda _: 0)
  os.remove(os.path.join(path, 'users.dat'))
  good = sorted(os.listdir(path))
  serve(server, monkeypatch, 'ml-1m', body=make_zip('ml-1m', {'x': b'1'}),
        sha256='0' * 64)
  with pytest.raises(fetch.FetchError, match='SHA-256'):
    fetch.fetch('ml-1m', str(tmp_path), base_url=server.base,
                log=lambda _: 0)
  assert leftovers(tmp_path) == ['ml-1m'] and sorted(os.listdir(path)) == good


@pytest.mark.parametrize('announce', [True, False])
def test_size_mismatch_is_refused(server, monkeypatch, tmp_path, announce):
  body = serve(server, monkeypatch, 'ml-100k')
  monkeypatch.setitem(fetch.DATASETS, 'ml-100k', dataclasses.replace(
      fetch.DATASETS['ml-100k'], size=len(body) + 1))
  path = f'/data/{fetch.DATASETS["ml-100k"].filename}'
  if not announce:
    monkeypatch.setattr(server, 'no_length', {path})
  with pytest.raises(fetch.FetchError, match='bytes') as e:
    fetch.fetch('ml-100k', str(tmp_path), base_url=server.base,
                log=lambda _: 0)
  assert str(len(body) + 1) in str(e.value) and '\n' not in str(e.value)
  assert leftovers(tmp_path) == []


def test_http_404_is_one_line(server, monkeypatch, tmp_path):
  serve(server, monkeypatch, 'lastfm-2k')
  with pytest.raises(fetch.FetchError, match='HTTP 404') as e:
    fetch.fetch('lastfm-2k', str(tmp_path), url=server.base + '/nope.zip',
                log=lambda _: 0)
  assert '\n' not in str(e.value) and '/nope.zip' in str(e.value)
  assert leftovers(tmp_path) == []


def test_unreachable_server_is_one_line(monkeypatch, tmp_path):
  monkeypatch.setenv(fetch.BASE_URL_ENV, closed_port_url())
  with pytest.raises(fetch.FetchError, match='cannot reach') as e:
    fetch.fetch('ml-1m', str(tmp_path), log=lambda _: 0)
  assert '\n' not in str(e.value) and '--url=file://' in str(e.value)
  assert leftovers(tmp_path) == []


def test_foreign_or_extra_files_are_never_replaced(server, monkeypatch,
                                                   tmp_path):
  serve(server, monkeypatch, 'ml-1m')
  foreign = tmp_path / 'a' / 'ml-1m'
  foreign.mkdir(parents=True)
  (foreign / 'ratings.dat').write_text('mine\n')
  with pytest.raises(fetch.FetchError, match='not written by monosem-fetch'):
    fetch.fetch('ml-1m', str(tmp_path / 'a'), base_url=server.base,
                log=lambda _: 0)
  assert (foreign / 'ratings.dat').read_text() == 'mine\n'
  path = fetch.fetch('ml-1m', str(tmp_path / 'b'), base_url=server.base,
                     log=lambda _: 0)
  with open(os.path.join(path, 'ratings_implicit.dat'), 'w') as f:
    f.write('mine\n')
  with pytest.raises(fetch.FetchError, match='ratings_implicit.dat'):
    fetch.fetch('ml-1m', str(tmp_path / 'b'), base_url=server.base,
                log=lambda _: 0)
  assert os.path.exists(os.path.join(path, 'ratings_implicit.dat'))


def test_unsafe_or_incomplete_archive_is_refused(server, monkeypatch,
                                                 tmp_path):
  serve(server, monkeypatch, 'ml-1m',
        body=make_zip('ml-1m', {'ml-1m/../../evil': b'x'}))
  with pytest.raises(fetch.FetchError, match='unsafe path'):
    fetch.fetch('ml-1m', str(tmp_path), base_url=server.base,
                log=lambda _: 0)
  assert leftovers(tmp_path) == [] and not os.path.exists(
      tmp_path.parent / 'evil')
  serve(server, monkeypatch, 'ml-100k', body=make_zip('ml-1m'))
  with pytest.raises(fetch.FetchError, match='lacks ml-100k/u.data'):
    fetch.fetch('ml-100k', str(tmp_path), base_url=server.base,
                log=lambda _: 0)
  assert leftovers(tmp_path) == []


def test_launcher_prints_the_data_dir_line(server, monkeypatch, tmp_path):
  """``monosem_jax/experiments/fetch.py``'s ``run()`` (the console script) in a
  subprocess; only the checksum table is patched there, as above."""
  body = serve(server, monkeypatch, 'ml-1m')
  code = ('import dataclasses, os, sys\n'
          'from monosem_jax.data import fetch\n'
          "a = fetch.DATASETS['ml-1m']\n"
          "fetch.DATASETS['ml-1m'] = dataclasses.replace(a, "
          "size=int(os.environ['T_SIZE']), sha256=os.environ['T_SHA'])\n"
          'from monosem_jax.experiments.fetch import run\n'
          'run()\n')
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu',
             T_SIZE=str(len(body)), T_SHA=hashlib.sha256(body).hexdigest())
  env[fetch.BASE_URL_ENV] = server.base
  dest = tmp_path / 'my data'
  proc = subprocess.run(
      [sys.executable, '-c', code, 'ml-1m', '--dest', str(dest)],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout == f"export MONOSEM_DATA_DIR='{dest}'\n"
  assert 'verified' in proc.stderr
  assert (dest / 'ml-1m' / 'ratings.dat').exists()


def test_launcher_network_failure_is_one_error_line(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.fetch', 'ml-1m',
       f'--dest={tmp_path}', f'--base_url={closed_port_url()}'],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1
  assert 'Traceback' not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith(
      'error: ml-1m: cannot reach http://127.0.0.1:')
  assert proc.stdout == '' and leftovers(tmp_path) == []


def test_file_url_of_a_hand_downloaded_archive(monkeypatch, tmp_path):
  body = make_zip('lastfm-2k')
  archive = fetch.DATASETS['lastfm-2k']
  monkeypatch.setitem(fetch.DATASETS, 'lastfm-2k', dataclasses.replace(
      archive, size=len(body), sha256=hashlib.sha256(body).hexdigest()))
  local = tmp_path / 'download' / archive.filename
  local.parent.mkdir()
  local.write_bytes(body)
  path = fetch.fetch('lastfm-2k', str(tmp_path / 'data'),
                     url=local.as_uri(), log=lambda _: 0)
  assert load_dataset('lastfm-2k', path).n_interactions > 0
