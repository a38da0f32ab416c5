"""Hostile inputs: random and malformed files for every loader, random and hostile archives for the extraction,
URLs and redirects outside the download rules.

The contract: a valid result, or the project's own ConfigError (DownloadError for downloads) naming the file,
key or URL; never a raw exception from inside pandas, zipfile, tarfile, gzip or urllib. Hypothesis reports any
other exception as a failure. test_loaders.py fuzzes three loaders on cells; here every loader gets raw bytes,
compressed and corrupt files, and rows in the other publishers' layouts.
"""

from __future__ import annotations

import gzip
import io
import stat
import struct
import tarfile
import tempfile
import urllib.request
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import tar_bytes, zip_bytes
from globaldiff import ConfigError
from globaldiff.ingest import download as dl
from globaldiff.ingest.download import DownloadError
from globaldiff.ingest.loaders import KUAIREC_FILE, KUAIREC_HEADER, LOADERS, load

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- loaders ----------------------------------------------------------------------------------------------

CUSTOM_NAMED = {"loader": "custom", "sep": ",", "header": True,
                "columns": {"user": "user_id", "item": "item_id", "rating": "rating", "timestamp": "timestamp"}}
CUSTOM_POSITIONS = {"loader": "custom", "sep": "\t", "header": False,
                    "columns": {"user": 0, "item": 1, "rating": None, "timestamp": 2}}

# name -> (params entry, raw file under data/raw/<name>, the header a well-formed file starts with)
LOADER_CASES = {
    "ml-1m-embedded": ({"loader": "ml-1m", "source": "embedded"}, "ml-1m-sequences.tsv.gz", "user_id\titem_ids"),
    "ml-1m-grouplens": ({"loader": "ml-1m", "source": "grouplens"}, "ml-1m/ratings.dat", None),
    "ml-100k": ({"loader": "ml-100k"}, "ml-100k/u.data", None),
    "beauty": ({"loader": "beauty"}, "ratings_Beauty.csv", None),
    "kuairec": ({"loader": "kuairec", "positive": {"column": "watch_ratio", "min": 0.5}}, KUAIREC_FILE,
                ",".join(KUAIREC_HEADER)),
    "custom-csv": ({**CUSTOM_NAMED, "file": "in.csv"}, "in.csv", "user_id,item_id,rating,timestamp"),
    # compressed custom files: pandas would infer the codec from the suffix and raise its own errors
    "custom-gz": ({**CUSTOM_POSITIONS, "file": "in.tsv.gz"}, "in.tsv.gz", None),
    "custom-zip-suffix": ({**CUSTOM_NAMED, "file": "in.csv.zip"}, "in.csv.zip", "user_id,item_id,rating,timestamp"),
    "custom-xz-suffix": ({**CUSTOM_POSITIONS, "file": "in.tsv.xz"}, "in.tsv.xz", None),
}


def test_every_loader_is_fuzzed():
    assert {case[0]["loader"] for case in LOADER_CASES.values()} == set(LOADERS)


CELLS = st.one_of(
    st.sampled_from(["", "1", "0", "-1", "+7", "007", "4.5", "nan", "inf", "-inf", "1e400", "9" * 25, "0x1F",
                     "\uff11", "1\u00a0", "é", '"', '"a,b"', "\x00", "1 2 3", "3 x", "::", "\\", "NULL", "2020-07-05"]),
    st.text(alphabet="0123456789abcé.-+ \t\"':,\r;", max_size=8),
)
SEPARATORS = st.sampled_from([",", "\t", "::", ";", " "])


@st.composite
def raw_files(draw, header: str | None):
    """Bytes of a raw file: arbitrary bytes, or rows of hostile cells (optionally under the right header)."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=120))
    sep = draw(SEPARATORS)
    rows = draw(st.lists(st.lists(CELLS, max_size=9), max_size=7))
    lines = [sep.join(row) for row in rows]
    if header is not None and draw(st.booleans()):
        lines.insert(0, header)
    ending = draw(st.sampled_from(["\n", "\r\n", ""]))
    data = ending.join(lines) + (ending if draw(st.booleans()) else "")
    return data.encode("utf-8", "surrogatepass") if data else b""


def encode_for(name: str, data: bytes, mode: int) -> bytes:
    """The file's bytes as a publisher might ship them: mode 0 raw, 1 the codec its suffix names,
    2 that codec truncated (a corrupt download)."""
    if mode == 0:
        return data
    if name.endswith(".gz"):
        packed = gzip.compress(data)
    elif name.endswith(".zip"):
        packed = zip_bytes({"in.csv": data})
    elif name.endswith(".xz"):
        import lzma
        packed = lzma.compress(data)
    else:
        return data
    return packed if mode == 1 else packed[: max(1, len(packed) // 2)]


def check_frame(df) -> None:
    """The loader contract (data/loaders.py): four columns, rating float64, timestamp int64, fresh index."""
    assert list(df.columns) == ["user", "item", "rating", "timestamp"]
    assert df["rating"].dtype == np.float64 and df["timestamp"].dtype == np.int64
    assert (df.index == np.arange(len(df))).all()  # may be empty (kuairec's positive rule): preprocess says so
    for column in ("user", "item"):
        assert df[column].notna().all()
        if df[column].dtype == object:
            assert all(isinstance(v, str) and v and "\t" not in v and "\n" not in v for v in df[column])


@pytest.mark.parametrize("case", sorted(LOADER_CASES))
@FUZZ
@given(data=st.data())
def test_loader_gets_a_frame_or_a_config_error(case, data):
    cfg, rel, header = LOADER_CASES[case]
    content = encode_for(rel, data.draw(raw_files(header), label="content"), data.draw(st.integers(0, 2), label="codec"))
    with tempfile.TemporaryDirectory() as raw:
        path = Path(raw) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        try:
            df = load(case, cfg, raw)
        except ConfigError as e:
            assert Path(rel).name in str(e) or "params.yaml" in str(e), str(e)
        else:
            check_frame(df)


def test_loader_on_a_folder_or_unreadable_file(tmp_path):
    (tmp_path / "ml-100k" / "u.data").mkdir(parents=True)  # a folder where the file should be
    with pytest.raises(ConfigError, match="u.data: file not found"):
        load("ml-100k", {"loader": "ml-100k"}, tmp_path)
    (tmp_path / "ratings_Beauty.csv").write_bytes(b"\xff\xfe\x00a,b,5,1\n")  # UTF-16-ish bytes
    with pytest.raises(ConfigError, match="ratings_Beauty.csv"):
        load("beauty", {"loader": "beauty"}, tmp_path)


# --- archives -----------------------------------------------------------------------------------------------

HOSTILE_NAMES = ["../evil", "a/../../evil", "/abs/evil", "..\\evil", "a\\..\\..\\evil", "C:/evil", "C:\\evil",
                 "", ".", "./ok", "a//b", "a/./b", "nul\x00byte", "ok.txt", "dir/", "dir/ok.txt", "dir", "é/ü.txt",
                 "x" * 300, "~/evil", "a/b/c/d/e.csv"]
MEMBER_NAMES = st.one_of(st.sampled_from(HOSTILE_NAMES), st.text(alphabet="ab./\\:~", min_size=1, max_size=10))


@st.composite
def archives(draw):
    """(kind, bytes): a zip or tar with hostile names, links and special files, maybe corrupted afterwards."""
    kind = draw(st.sampled_from(["zip", "tar"]))
    members = draw(st.dictionaries(MEMBER_NAMES, st.binary(max_size=40), max_size=4))
    links = draw(st.dictionaries(MEMBER_NAMES, st.sampled_from(["/etc/passwd", "../x", "ok.txt", "."]), max_size=1))
    specials = draw(st.lists(st.sampled_from([tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE]), max_size=1))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate member names are part of the game
        try:
            if kind == "zip":
                with zipfile.ZipFile(buf, "w", draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))) as zf:
                    for name, payload in members.items():
                        zf.writestr(name, payload)
                    for name, target in links.items():
                        info = zipfile.ZipInfo(name)
                        info.external_attr = (stat.S_IFLNK | 0o777) << 16
                        zf.writestr(info, target)
            else:
                with tarfile.open(fileobj=buf, mode=draw(st.sampled_from(["w:gz", "w", "w:xz"]))) as tf:
                    for name, payload in members.items():
                        info = tarfile.TarInfo(name)
                        info.size = len(payload)
                        tf.addfile(info, io.BytesIO(payload))
                    for name, target in links.items():
                        info = tarfile.TarInfo(name)
                        info.type, info.linkname = tarfile.SYMTYPE, target
                        tf.addfile(info)
                    for i, kind_of in enumerate(specials):
                        info = tarfile.TarInfo(f"special{i}")
                        info.type, info.linkname = kind_of, "ok.txt"
                        tf.addfile(info)
        except (ValueError, UnicodeError, IndexError):  # names the writers themselves refuse ('', NUL bytes, ...)
            buf = io.BytesIO(zip_bytes({"ok.txt": b"1"}) if kind == "zip" else tar_bytes({"ok.txt": b"1"}))
    data = bytearray(buf.getvalue())
    for pos, value in draw(st.lists(st.tuples(st.integers(0, max(len(data) - 1, 0)), st.integers(0, 255)), max_size=3)):
        if data:
            data[pos] = value
    if draw(st.booleans()) and data:
        data = data[: draw(st.integers(0, len(data)))]
    return kind, bytes(data)


def check_extraction(kind: str, data: bytes, **limits) -> list[Path]:
    """Extract into <tmp>/box/out; return the files written (relative) or raise DownloadError. Either way,
    nothing appears outside out/ (an escaping member would land in box/ or above)."""
    with tempfile.TemporaryDirectory() as root:
        box = Path(root) / "box"
        box.mkdir()
        archive = Path(root) / f"a.{kind}"
        archive.write_bytes(data)
        try:
            written = dl.extract(archive, box / "out", kind, **limits)
        finally:
            outside = [p for p in Path(root).rglob("*") if p != archive and p != box and box / "out" not in (p, *p.parents)]
            assert outside == [], outside
            out = (box / "out").resolve()
            for p in (box / "out").rglob("*") if (box / "out").exists() else []:
                assert not p.is_symlink() and (p.is_file() or p.is_dir()), p
                assert out in p.resolve().parents, p
        return [p.relative_to(box / "out") for p in written]


@FUZZ
@given(archive=archives())
def test_random_and_hostile_archives(archive):
    kind, data = archive
    try:
        written = check_extraction(kind, data)
    except DownloadError as e:
        assert f"a.{kind}" in str(e)
    else:
        assert written and all(".." not in p.parts and not p.is_absolute() for p in written)


def _zip_with(name: str, payload: bytes, patch) -> bytes:
    """A zip of one deflated member whose local and central headers `patch(data, header_offset, is_central)`
    rewrites (flags, method, sizes: what a forged archive lies about)."""
    data = bytearray(zip_bytes({name: payload}))
    patch(data, data.find(b"PK\x03\x04"), False)
    patch(data, data.find(b"PK\x01\x02"), True)
    return bytes(data)


def _set_flag_encrypted(data, at, central):
    data[at + (8 if central else 6)] |= 0x1


def _set_method_99(data, at, central):
    off = at + (10 if central else 8)
    data[off:off + 2] = struct.pack("<H", 99)


def _declare_10_bytes(data, at, central):
    off = at + (24 if central else 22)
    data[off:off + 4] = struct.pack("<I", 10)


@pytest.mark.parametrize("kind, data, words", [
    pytest.param("tar", tar_bytes({"/abs/evil.txt": b"x"}), "absolute", id="tar-absolute"),
    pytest.param("tar", tar_bytes({"ok/../../evil.txt": b"x"}), "'..' component", id="tar-dotdot"),
    pytest.param("zip", zip_bytes({"..\\evil.txt": b"x"}), "'..' component", id="zip-backslash-dotdot"),
    pytest.param("zip", zip_bytes({"C:/evil.txt": b"x"}), "absolute", id="zip-drive-letter"),
    pytest.param("zip", _zip_with("a.csv", b"1,2\n" * 50, _set_flag_encrypted), "encrypted", id="zip-encrypted"),
    pytest.param("zip", _zip_with("a.csv", b"1,2\n" * 50, _set_method_99), "compression method", id="zip-method-99"),
    pytest.param("zip", b"PK\x05\x06" + bytes(18), "holds no files", id="zip-empty"),
    pytest.param("tar", b"", "corrupt tar", id="tar-empty-file"),
    pytest.param("zip", b"not a zip at all", "corrupt zip", id="zip-garbage"),
])
def test_hostile_archive_refused(kind, data, words):
    with pytest.raises(DownloadError, match=words):
        check_extraction(kind, data)


@pytest.mark.parametrize("member", [tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE],
                         ids=["hardlink", "fifo", "chardev", "blockdev"])
def test_tar_links_and_special_files_refused(member):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("ok.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"1"))
        info = tarfile.TarInfo("special")
        info.type, info.linkname = member, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(DownloadError, match="link or special file"):
        check_extraction("tar", buf.getvalue())


def test_member_larger_than_declared_is_refused():
    # The headers claim 10 bytes, the deflated stream holds 20,000: refused (zipfile's own size/CRC check, or
    # the byte count of _copy_member), not extracted in full.
    data = _zip_with("big.csv", b"0" * 20_000, _declare_10_bytes)
    with pytest.raises(DownloadError, match="corrupt zip|larger than it declares"):
        check_extraction("zip", data)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_bomb_refused_by_declared_size_and_ratio(kind):
    zeros = bytes(4 << 20)  # 4 MiB of zeros compress ~1000x
    data = zip_bytes({"zeros": zeros}) if kind == "zip" else tar_bytes({"zeros": zeros})
    assert len(data) * dl.MAX_RATIO < len(zeros)
    with pytest.raises(DownloadError, match="zip bomb"):
        check_extraction(kind, data, soft_limit=1 << 20)        # over the soft limit at > MAX_RATIO
    with pytest.raises(DownloadError, match="zip bomb"):
        check_extraction(kind, data, hard_limit=1 << 20)        # over the hard limit, whatever the ratio
    assert check_extraction(kind, data) == [Path("zeros")]     # the real limits: 4 MiB is fine


def test_bomb_limits_are_module_constants():
    assert dl.SOFT_LIMIT < dl.HARD_LIMIT and dl.MAX_RATIO > 20  # above any real data set's ratio (3-20x)
    assert dl.extract.__kwdefaults__ == {"soft_limit": dl.SOFT_LIMIT, "max_ratio": dl.MAX_RATIO,
                                         "hard_limit": dl.HARD_LIMIT}


# --- URLs and redirects --------------------------------------------------------------------------------------

SCHEMES = ["https", "http", "file", "HTTPS", "Http", "ftp", "data", "javascript", "gopher", "jar:http", ""]
HOSTS = ["example.org", "127.0.0.1", "localhost", "[::1]", "127.0.0.1.evil.org", "localhost.evil.org",
         "user@127.0.0.1", "127.0.0.1@evil.org", "evil.org#@127.0.0.1", "evil.org\\@127.0.0.1", "127.0.0.2",
         "0.0.0.0", "2130706433", "[::ffff:127.0.0.1]", "", "127.0.0.1:8000", "LOCALHOST", " localhost"]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def allowed_by_rules(url: str) -> bool:
    """The rule of docs/data.md written out: https with a host, local file:, http only to loopback; no
    credentials or control characters, and no spaces or backslashes in web URLs."""
    import urllib.parse

    parts = urllib.parse.urlparse(url)
    if any(ord(c) < 32 for c in url) or "@" in parts.netloc:
        return False
    if parts.scheme != "file" and any(c.isspace() or c == "\\" for c in url):
        return False
    if parts.scheme == "https":
        return bool(parts.hostname)
    if parts.scheme == "http":
        return parts.hostname in LOOPBACK
    return parts.scheme == "file" and parts.netloc in ("", "localhost")


@FUZZ
@given(scheme=st.sampled_from(SCHEMES), host=st.sampled_from(HOSTS),
       path=st.sampled_from(["/a.zip", "", "/../a.csv", "/a%2e%2e/b", "/a b.csv", "/a\tb.zip"]),
       slashes=st.sampled_from(["://", ":", ":///", ":/"]))
def test_check_url_follows_the_rules(scheme, host, path, slashes):
    url = f"{scheme}{slashes}{host}{path}"
    try:
        parts = dl.check_url(url)
    except DownloadError as e:
        assert url in str(e) or repr(url) in str(e)
        return
    assert allowed_by_rules(url), url
    assert parts.scheme in ("https", "file") or (parts.scheme == "http" and parts.hostname in LOOPBACK)


@pytest.mark.parametrize("url", ["http://127.0.0.1.evil.org/a.zip", "http://localhost@evil.org/a.zip",
                                 "http://evil.org\\@127.0.0.1/a.zip", "http://127.0.0.2/a.zip",
                                 "http://0.0.0.0/a.zip", "https://user:pass@example.org/a.zip",
                                 "https://example.org/a b.zip", "jar:http://127.0.0.1/a.zip!/b"])
def test_lookalike_and_credential_urls_refused(url):
    with pytest.raises(DownloadError):
        dl.check_url(url)


def test_local_paths_keep_their_spaces(tmp_path):
    (tmp_path / "my data.csv").write_bytes(b"1,2\n")
    dl.fetch("file:my data.csv", tmp_path / "out.csv", root=tmp_path, progress=False)
    assert (tmp_path / "out.csv").read_bytes() == b"1,2\n"
    with pytest.raises(DownloadError, match="control characters"):
        dl.check_url("file:my\ndata.csv")


def _redirect(old: str, new: str):
    handler = dl._SameSchemeRedirect()
    return handler.redirect_request(urllib.request.Request(old), None, 302, "Found", {}, new)


@pytest.mark.parametrize("old, new, words", [
    ("https://example.org/a.zip", "http://example.org/a.zip", "scheme https -> http"),    # downgrade
    ("https://example.org/a.zip", "file:///etc/passwd", "scheme https -> file"),
    ("https://example.org/a.zip", "ftp://example.org/a.zip", "scheme https -> ftp"),
    ("http://127.0.0.1/a.zip", "http://example.org/a.zip", "plain http is refused"),    # loopback -> internet
    ("https://example.org/a.zip", "https://user:pw@example.org/a.zip", "credentials"),
])
def test_redirect_rules(old, new, words):
    with pytest.raises(DownloadError, match=words):
        _redirect(old, new)


def test_redirect_within_the_rules_is_followed():
    assert _redirect("https://example.org/a.zip", "https://mirror.example.net/b.zip").full_url == \
        "https://mirror.example.net/b.zip"


def test_server_redirect_to_internet_http_and_loops(server, tmp_path):
    server.redirects["/a.zip"] = "http://example.org/a.zip"   # same scheme, but not loopback: never contacted
    with pytest.raises(DownloadError, match="plain http is refused"):
        dl.fetch(server.url("a.zip"), tmp_path / "a.zip", progress=False)
    server.redirects["/loop.zip"] = server.url("loop.zip")
    with pytest.raises(DownloadError, match="loop.zip: HTTP error"):
        dl.fetch(server.url("loop.zip"), tmp_path / "loop.zip", progress=False)
    assert list(tmp_path.iterdir()) == []
