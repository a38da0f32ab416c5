"""download.py and the download stage: URL rules, checksums (pinned and trust-on-first-use), safe extraction,
each publisher's layout served from a local HTTP server, and every failure leaving nothing behind."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import socket
import stat
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO, entry, leftovers, tar_bytes, write_params, zip_bytes
from globaldiff import ConfigError
from globaldiff.ingest import download as dl
from globaldiff.ingest.download import DownloadError, Source


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def no_raw_output(workdir, dataset: str) -> None:
    """A failed download leaves neither data/raw/<dataset> nor temporary files beside it."""
    assert not (workdir / "data" / "raw" / dataset).exists()
    assert leftovers(workdir / "data" / "raw") == []


# --- URLs and fetch --------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["https://example.org/a.zip", "http://127.0.0.1:8000/a.zip",
                                 "http://localhost/a.zip", "http://[::1]:80/a.zip", "file:data/a.csv",
                                 "file:///tmp/a.csv"])
def test_allowed_urls(url):
    dl.check_url(url)


@pytest.mark.parametrize("url, words", [("http://example.org/a.zip", "plain http"), ("ftp://example.org/a", "scheme"),
                                        ("file://server/share/a.csv", "local"), ("https:///a.zip", "no host")])
def test_refused_urls(url, words):
    with pytest.raises(DownloadError, match=words):
        dl.check_url(url)


def test_fetch_local_relative_and_absolute(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.csv").write_bytes(b"1,2\n")
    digest = dl.fetch("file:src/a.csv", tmp_path / "out" / "a.csv", sha(b"1,2\n"), root=tmp_path, progress=False)
    assert digest == sha(b"1,2\n") and (tmp_path / "out" / "a.csv").read_bytes() == b"1,2\n"
    dl.fetch(f"file://{tmp_path}/src/a.csv", tmp_path / "b.csv", progress=False)
    assert (tmp_path / "b.csv").read_bytes() == b"1,2\n"


def test_fetch_http_and_same_scheme_redirect(server, tmp_path):
    server.add("real/file.bin", b"x" * 3_000_000)  # several chunks
    server.redirects["/moved.bin"] = server.url("real/file.bin")
    digest = dl.fetch(server.url("moved.bin"), tmp_path / "f.bin", progress=False)
    assert digest == sha(b"x" * 3_000_000)
    assert not list(tmp_path.glob(".*.part"))


def test_redirect_to_other_scheme_refused(server, tmp_path):
    server.redirects["/a.zip"] = f"https://127.0.0.1:{server.port}/a.zip"
    with pytest.raises(DownloadError, match="redirect .* refused"):
        dl.fetch(server.url("a.zip"), tmp_path / "a.zip", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_truncated_transfer(server, tmp_path):
    server.add("a.csv", b"1,2,3,4\n")
    server.lie_length["/a.csv"] = 100
    with pytest.raises(DownloadError, match="truncated download|connection lost"):
        dl.fetch(server.url("a.csv"), tmp_path / "a.csv", progress=False)
    assert list(tmp_path.iterdir()) == []


# --- extraction ------------------------------------------------------------------------------------------

def symlink_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("ml-100k/u.data")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def empty_name_zip() -> bytes:
    """A member whose name is empty (zipfile.ZipInfo.is_dir() raises IndexError on it)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo(""), b"x")
    return buf.getvalue()


@pytest.mark.parametrize("kind, data, words", [
    ("zip", zip_bytes({"../evil.txt": b"x"}), "'..' component"),
    ("zip", zip_bytes({"ok/../../evil.txt": b"x"}), "'..' component"),
    ("zip", zip_bytes({"/abs/evil.txt": b"x"}), "absolute"),
    ("zip", symlink_zip(), "symlink"),
    ("zip", empty_name_zip(), "absolute or empty path"),
    ("tar", tar_bytes({"../evil.txt": b"x"}), "'..' component"),
    ("tar", tar_bytes({}, symlinks={"link": "/etc/passwd"}), "link or special file"),
])
def test_hostile_members_refused(tmp_path, kind, data, words):
    archive = tmp_path / f"a.{kind}"
    archive.write_bytes(data)
    with pytest.raises(DownloadError, match=words):
        dl.extract(archive, tmp_path / "out" / "x", kind)
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()


def test_zip_bomb_rule(tmp_path):
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(zip_bytes({"zeros": bytes(4 << 20)}))  # 4 MiB of zeros deflate to ~4 KiB
    with pytest.raises(DownloadError, match="zip bomb"):
        dl.extract(archive, tmp_path / "out", "zip", soft_limit=1 << 20)
    with pytest.raises(DownloadError, match="zip bomb"):
        dl.extract(archive, tmp_path / "out", "zip", hard_limit=1 << 20)
    # Below the soft limit any ratio is fine (real CSVs of repeated ids compress very well).
    assert [p.name for p in dl.extract(archive, tmp_path / "ok", "zip")] == ["zeros"]


def test_tar_extraction(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_bytes({"d/x.csv": b"1,2\n"}))
    assert dl.archive_kind("https://h/a.tar.gz") == "tar"
    dl.extract(archive, tmp_path / "out", "tar")
    assert (tmp_path / "out" / "d" / "x.csv").read_bytes() == b"1,2\n"


# --- the stage, against the local server, each publisher's layout ---------------------------------------

def test_ml100k_zip_download(server, workdir, run_stage, ml100k_udata):
    data = zip_bytes({"ml-100k/u.data": ml100k_udata, "ml-100k/README": b"readme"})
    write_params(workdir, {"ml-100k": entry("ml-100k", server.add("ml-100k.zip", data))})
    rc, out, err = run_stage("download", "ml-100k")
    assert rc == 0, err
    assert (workdir / "data/raw/ml-100k/ml-100k/u.data").read_bytes() == ml100k_udata
    assert leftovers(workdir / "data/raw") == ["ml-100k", "ml-100k/ml-100k", "ml-100k/ml-100k/README",
                                               "ml-100k/ml-100k/u.data"]  # no archive, no temporaries
    # Trust on first use: the hash is recorded under the URL.
    assert json.loads((workdir / "data/checksums.json").read_text()) == {server.url("ml-100k.zip"): sha(data)}


def test_ml1m_grouplens_beauty_kuairec_layouts(server, workdir, run_stage):
    ratings = b"1::1193::5::978300760\n1::661::3::978302109\n"
    beauty = b"A39HTATAQ9V7YF,0205616461,5.0,1369699200\n"
    kuairec = b"user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio\n" \
              b"14,148,4381,6067,2020-07-05 05:27:48.378,20200705,1593898068.378,0.722\n"
    write_params(workdir, {
        "ml-1m": {"loader": "ml-1m", "source": "grouplens", "sources": {
            "grouplens": {"url": server.add("ml-1m.zip", zip_bytes({"ml-1m/ratings.dat": ratings})), "sha256": None}}},
        "beauty": entry("beauty", server.add("ratings_Beauty.csv", beauty), sha(beauty)),
        "kuairec": entry("kuairec", server.add("KuaiRec.zip", zip_bytes({"KuaiRec 2.0/data/big_matrix.csv": kuairec}))),
    })
    for name in ("ml-1m", "beauty", "kuairec"):
        rc, _, err = run_stage("download", name)
        assert rc == 0, err
    assert (workdir / "data/raw/ml-1m/ml-1m/ratings.dat").read_bytes() == ratings
    assert (workdir / "data/raw/beauty/ratings_Beauty.csv").read_bytes() == beauty
    assert (workdir / "data/raw/kuairec/KuaiRec 2.0/data/big_matrix.csv").read_bytes() == kuairec
    # beauty is pinned in params: nothing to record for it.
    assert set(json.loads((workdir / "data/checksums.json").read_text())) == {server.url("ml-1m.zip"),
                                                                              server.url("KuaiRec.zip")}


def test_embedded_copy(workdir, run_stage):
    data = gzip.compress(b"user_id\titem_ids\n1\t1 2 3\n")
    (workdir / "data/embedded").mkdir(parents=True)
    (workdir / "data/embedded/seq.tsv.gz").write_bytes(data)
    write_params(workdir, {"ml-1m": {"loader": "ml-1m", "source": "embedded", "sources": {
        "embedded": {"url": "file:data/embedded/seq.tsv.gz", "sha256": sha(data)}}}})
    rc, _, err = run_stage("download", "ml-1m")
    assert rc == 0, err
    assert (workdir / "data/raw/ml-1m/seq.tsv.gz").read_bytes() == data  # kept compressed
    assert not (workdir / "data/checksums.json").exists()


# --- bad input: a clear `error:` and nothing left behind ---------------------------------------------------

def test_unreachable_url(workdir, run_stage):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_params(workdir, {"d": entry("ml-100k", f"http://127.0.0.1:{port}/ml-100k.zip")})
    rc, _, err = run_stage("download", "d")
    assert rc == 1 and err.startswith("error: ") and "unreachable" in err and f":{port}/ml-100k.zip" in err
    no_raw_output(workdir, "d")


def test_http_error(server, workdir, run_stage):
    write_params(workdir, {"d": entry("ml-100k", server.url("missing.zip"))})
    rc, _, err = run_stage("download", "d")
    assert rc == 1 and "HTTP error 404" in err and "missing.zip" in err
    no_raw_output(workdir, "d")


def test_pinned_checksum_mismatch(server, workdir, run_stage):
    url = server.add("ratings_Beauty.csv", b"u,i,5,1\n")
    write_params(workdir, {"beauty": entry("beauty", url, "0" * 64)})
    rc, _, err = run_stage("download", "beauty")
    assert rc == 1 and "sha256 mismatch" in err
    assert "0" * 64 in err and sha(b"u,i,5,1\n") in err and "params.yaml key datasets.beauty.sources.web.sha256" in err
    no_raw_output(workdir, "beauty")


def test_trust_on_first_use_then_mismatch(server, workdir, run_stage):
    url = server.add("ratings_Beauty.csv", b"u,i,5,1\n")
    write_params(workdir, {"beauty": entry("beauty", url)})
    assert run_stage("download", "beauty")[0] == 0
    assert run_stage("download", "beauty")[0] == 0  # same bytes: accepted again
    server.add("ratings_Beauty.csv", b"u,i,4,1\n")  # the publisher changed the file
    rc, _, err = run_stage("download", "beauty")
    assert rc == 1 and sha(b"u,i,5,1\n") in err and sha(b"u,i,4,1\n") in err and "data/checksums.json" in err
    no_raw_output(workdir, "beauty")  # the stale copy is gone too
    assert json.loads((workdir / "data/checksums.json").read_text()) == {url: sha(b"u,i,5,1\n")}


def test_corrupt_archive(server, workdir, run_stage, ml100k_udata):
    data = zip_bytes({"ml-100k/u.data": ml100k_udata})
    write_params(workdir, {"ml-100k": entry("ml-100k", server.add("ml-100k.zip", data[: len(data) // 2]))})
    rc, _, err = run_stage("download", "ml-100k")
    assert rc == 1 and "ml-100k.zip: truncated or corrupt zip archive" in err
    no_raw_output(workdir, "ml-100k")
    assert not (workdir / "data/checksums.json").exists()  # a failed run never records a hash


def test_corrupt_member_data(server, workdir, run_stage):
    data = bytearray(zip_bytes({"ml-100k/u.data": b"1\t2\t5\t3\n" * 1000}))
    data[60:70] = b"\xff" * 10  # inside the deflated member: CRC or inflate error on extraction
    write_params(workdir, {"ml-100k": entry("ml-100k", server.add("ml-100k.zip", bytes(data)))})
    rc, _, err = run_stage("download", "ml-100k")
    assert rc == 1 and "corrupt zip archive" in err
    no_raw_output(workdir, "ml-100k")


def test_dotdot_member(server, workdir, run_stage):
    data = zip_bytes({"ml-100k/u.data": b"1\t2\t5\t3\n", "../../escape.txt": b"x"})
    write_params(workdir, {"ml-100k": entry("ml-100k", server.add("ml-100k.zip", data))})
    rc, _, err = run_stage("download", "ml-100k")
    assert rc == 1 and "'../../escape.txt'" in err and "'..' component" in err
    no_raw_output(workdir, "ml-100k")
    assert not list(workdir.parent.rglob("escape.txt"))


def test_unknown_dataset(workdir, run_stage):
    write_params(workdir, {"ml-1m": {"loader": "ml-1m"}, "beauty": {"loader": "beauty"}})
    rc, _, err = run_stage("download", "nope")
    assert rc == 1 and err.strip() == "error: params.yaml: datasets.nope: unknown dataset 'nope'; known: beauty, ml-1m"
    no_raw_output(workdir, "nope")


def test_stage_script_prints_error_without_traceback(workdir):
    write_params(workdir, {"d": entry("ml-100k", "ftp://example.org/x.zip")})
    proc = subprocess.run([sys.executable, str(REPO / "pipeline/download.py"), "--dataset", "d"],
                          cwd=workdir, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ftp://example.org/x.zip: unsupported URL scheme")
    assert "Traceback" not in proc.stderr


def test_bad_params_values():
    with pytest.raises(ConfigError, match=r"datasets.d.sources.web.sha256: expected 64 hex digits"):
        dl.resolve_source(entry("x", "https://h/a.zip", "abc"), "d")
    with pytest.raises(ConfigError, match=r"datasets.d.sources: expected a mapping"):
        dl.resolve_source({"url": "https://h/a.zip"}, "d")
    with pytest.raises(ConfigError, match=r"datasets.d.source: unknown source 'x'; known: a"):
        dl.resolve_source({"source": "x", "sources": {"a": {"url": "https://h/a"}}}, "d")
    assert dl.resolve_source(entry("x", "https://h/a.zip", "AB" * 32), "d") == \
        Source("https://h/a.zip", "ab" * 32, "datasets.d.sources.web")
