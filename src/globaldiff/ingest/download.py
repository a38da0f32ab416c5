"""Fetch a dataset's raw file(s): local copy or HTTPS download, checksum check, safe archive extraction.

Rules (docs/data.md):
- URLs: `file:relative/path` (relative to the repo root), `file:///abs/path`, `https://...`; plain `http://`
  only to a loopback host (the tests' local server). A redirect must keep the scheme and obey the same rules.
  URLs with credentials (`user@host`) or control characters (also percent-encoded, `%00`) are refused, and web
  URLs with spaces or backslashes (percent-encode them). A `file:` URL must name a regular file (not a device
  such as /dev/zero); the `custom` loader's must lie under data/custom/, the folder the download stage depends
  on (dvc.yaml), so that an edit to the file re-runs the stage.
- Size caps (params `limits`, MiB; defaults DOWNLOAD_MB and UNPACKED_MB below): a source is refused beyond
  `limits.download_mb` bytes fetched (declared or counted), and beyond `limits.unpacked_mb` unpacked.
- Checksums: the `sha256` in params.yaml when pinned; otherwise the first download's sha256 is recorded in the
  git-tracked `data/checksums.json` (trust on first use, keyed by URL) and every later download must match. A
  file changed on purpose is recorded by pinning its new sha256 in params.yaml (the error message says which
  key and value), or by deleting its entry in data/checksums.json.
- Archives (chosen by the URL's suffix: .zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz) are extracted; anything
  else is copied as is (a .gz text file stays compressed: the loaders read it directly, after this stage has
  decompressed it once to count its bytes under the same bomb rule as archives).
- Extraction refuses absolute member paths, `..` components, links and special files, encrypted zip members
  and unknown compression methods, and zip bombs:
  a declared uncompressed total above the hard cap (limits.unpacked_mb), or above SOFT_LIMIT while also more
  than MAX_RATIO times the archive's size, checked member by member as the headers are read; bytes are
  counted while extracting, so a member cannot write more than it declared.

Standard library only (plus tqdm), so the download stage does not depend on the parsing code.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from tqdm import tqdm

from globaldiff import ConfigError
from globaldiff.io import write_json

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
CHUNK = 1 << 20
MB = 1 << 20                  # the caps in params `limits` count MiB
DOWNLOAD_MB = 4096            # limits.download_mb when params has none (the largest named source, KuaiRec.zip,
                              # is well under 1 GiB)
UNPACKED_MB = 16384           # limits.unpacked_mb when params has none: never unpack more, whatever the ratio
SOFT_LIMIT = 1 << 30          # 1 GiB: below this any compression ratio is accepted
MAX_RATIO = 100               # real data sets compress 3-20x; bombs 1000x and more
HARD_LIMIT = UNPACKED_MB * MB
LOCAL_DIR = PurePosixPath("data/custom")  # where a custom loader's `file:` source lives (a dep of `download`)
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)  # what zipfile reads
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class DownloadError(ConfigError):
    """A fetch, checksum or extraction failure; the message names the URL or archive and what was expected."""


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from: its URL, pinned sha256 (or None) and the params key that holds them."""

    url: str
    sha256: str | None
    key: str


@dataclass(frozen=True)
class Limits:
    """Caps on what one source may bring in: params `limits` (MiB), the module defaults where it has none."""

    download_mb: float = DOWNLOAD_MB
    unpacked_mb: float = UNPACKED_MB

    @classmethod
    def from_params(cls, params: dict) -> "Limits":
        return cls(**(params.get("limits") or {}))


@dataclass(frozen=True)
class Fetched:
    """Outcome of `download_dataset`: the URL, the file's sha256, and whether it must be recorded (TOFU)."""

    url: str
    sha256: str
    record: bool


# --- params ------------------------------------------------------------------------------------------

def dataset_config(params: dict, name: str, params_file: str = "params.yaml") -> dict:
    """Return `datasets.<name>` of the params; ConfigError naming the key and the known names otherwise."""
    datasets = params.get("datasets") if isinstance(params, dict) else None
    if not isinstance(datasets, dict):
        raise ConfigError(f"{params_file}: key 'datasets' is missing or not a mapping")
    if name not in datasets:
        known = ", ".join(sorted(map(str, datasets)))
        raise ConfigError(f"{params_file}: datasets.{name}: unknown dataset '{name}'; known: {known}")
    cfg = datasets[name]
    if not isinstance(cfg, dict):
        raise ConfigError(f"{params_file}: datasets.{name}: expected a mapping, got {type(cfg).__name__}")
    return cfg


def resolve_source(cfg: dict, name: str, params_file: str = "params.yaml") -> Source:
    """The URL and sha256 of `sources[source]` (every dataset names its sources, so that the download stage
    can track exactly these two keys)."""
    key = f"datasets.{name}"
    sources, chosen = cfg.get("sources"), cfg.get("source")
    if not isinstance(sources, dict) or not sources:
        raise ConfigError(f"{params_file}: {key}.sources: expected a mapping of source name -> "
                          f"{{url, sha256}}, got {sources!r}")
    if chosen not in sources:
        raise ConfigError(f"{params_file}: {key}.source: unknown source {chosen!r}; "
                          f"known: {', '.join(sorted(map(str, sources)))}")
    entry, key = sources[chosen], f"{key}.sources.{chosen}"
    url = entry.get("url") if isinstance(entry, dict) else None
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{params_file}: {key}.url: expected a URL string, got {url!r}")
    sha = entry.get("sha256")
    if sha is not None:
        sha = str(sha).strip().lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ConfigError(f"{params_file}: {key}.sha256: expected 64 hex digits or null, got {entry['sha256']!r}")
    return Source(url.strip(), sha, key)


# --- URLs ----------------------------------------------------------------------------------------------

def check_url(url: str) -> urllib.parse.ParseResult:
    """Parse `url` and refuse any scheme/host outside the rules in the module docstring."""
    if any(ord(c) < 32 or c == "\x7f" for c in url):
        raise DownloadError(f"{url!r}: control characters in URL; refused")
    if any(ord(c) < 32 or c == "\x7f" for c in urllib.parse.unquote(url)):
        raise DownloadError(f"{url}: percent-encoded control characters (such as %00) in URL; refused")
    parts = urllib.parse.urlparse(url)
    if parts.scheme != "file" and any(c.isspace() or c == "\\" for c in url):
        # urlparse and the HTTP client split such URLs differently: the host checked is not the host contacted
        raise DownloadError(f"{url!r}: spaces or backslashes in a web URL; percent-encode them")
    if "@" in parts.netloc:
        # `user@host` hides the real host from a reader, and urllib cannot use the credentials anyway
        raise DownloadError(f"{url}: credentials (user@host) in URL are refused")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise DownloadError(f"{url}: file URLs must be local (file:relative/path or file:///abs/path)")
    elif parts.scheme == "https":
        if not parts.hostname:
            raise DownloadError(f"{url}: no host in URL")
    elif parts.scheme == "http":
        if parts.hostname not in LOOPBACK_HOSTS:
            raise DownloadError(f"{url}: plain http is refused (only to a loopback host); use https")
    else:
        raise DownloadError(f"{url}: unsupported URL scheme {parts.scheme!r}; expected https, or file:")
    return parts


def local_path(url: str, root: str | os.PathLike = ".") -> Path:
    """Path of a `file:` URL; a relative one is taken relative to `root` (the repo root)."""
    path = Path(urllib.parse.unquote(check_url(url).path))
    return path if path.is_absolute() else Path(root) / path


def check_local_source(cfg: dict, source: Source, params_file: str = "params.yaml") -> None:
    """A `custom` dataset's `file:` source must lie under LOCAL_DIR: the download stage depends on that folder
    (dvc.yaml), so an edit to the file re-runs it (dvc cannot give each dataset of a matrix its own deps)."""
    if cfg.get("loader") != "custom" or check_url(source.url).scheme != "file":
        return
    path = PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(source.url).path))
    if path.is_absolute() or ".." in path.parts or path.parts[:len(LOCAL_DIR.parts)] != LOCAL_DIR.parts:
        raise ConfigError(f"{params_file}: {source.key}.url = {source.url!r}: expected file:{LOCAL_DIR}/<file> "
                          f"(the download stage depends on {LOCAL_DIR}/, so that dvc re-runs it when the file "
                          f"changes); move or link the file there")


def url_basename(url: str) -> str:
    """The file name at the end of the URL's path (what a copied raw file is called)."""
    name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name or name in (".", ".."):
        raise DownloadError(f"{url}: the URL does not end with a file name")
    return name


def archive_kind(url: str) -> str | None:
    """'zip', 'tar' or None (copy as is), from the URL path's suffix."""
    name = url_basename(url).lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    return None


class _SameSchemeRedirect(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only if it keeps the scheme and the target passes `check_url`."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urllib.parse.urlparse(req.full_url).scheme, urllib.parse.urlparse(newurl).scheme
        if new != old:
            raise DownloadError(f"{req.full_url}: redirect to {newurl} refused (scheme {old} -> {new})")
        check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


# --- fetch ---------------------------------------------------------------------------------------------

def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _open(url: str, root, timeout: float):
    """Open `url` for reading; return (binary stream, declared length or None)."""
    parts = check_url(url)
    if parts.scheme == "file":
        path = local_path(url, root)
        try:
            if not stat.S_ISREG(path.stat().st_mode):  # /dev/zero, a pipe or a folder: endless or not a file
                raise DownloadError(f"{url}: {path} is not a regular file; refused")
            return open(path, "rb"), path.stat().st_size
        except OSError as e:
            raise DownloadError(f"{url}: cannot read local file {path} ({e.strerror or e})") from None
    opener = urllib.request.build_opener(_SameSchemeRedirect())
    request = urllib.request.Request(url, headers={"User-Agent": "globaldiff-repro"})
    try:
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url}: HTTP error {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, DownloadError):  # a refused redirect, wrapped by urllib
            raise e.reason from None
        raise DownloadError(f"{url}: unreachable ({e.reason})") from None
    except OSError as e:  # timeouts, resets
        raise DownloadError(f"{url}: unreachable ({e})") from None
    length = response.headers.get("Content-Length")
    return response, int(length) if length and length.isdigit() else None


def _download_cap(url: str, max_bytes: int) -> DownloadError:
    return DownloadError(f"{url}: larger than the download cap of {max_bytes / MB:g} MB (params.yaml "
                         f"limits.download_mb); refused")


def fetch(url: str, dest: str | os.PathLike, sha256: str | None = None, *, root: str | os.PathLike = ".",
          sha256_source: str = "the pinned checksum", fix: Callable[[str], str] | None = None,
          max_bytes: int = DOWNLOAD_MB * MB, timeout: float = 60.0, progress: bool = True) -> str:
    """Stream `url` to `dest` through a temporary name, check `sha256` if given, then rename; return the sha256.

    On any failure the temporary file is removed and `dest` is untouched. `sha256_source` says in error
    messages where the expected hash came from, and `fix(new sha256)` how to accept a file changed on purpose.
    More than `max_bytes` (declared up front, or counted) is refused.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.part")
    h, got = hashlib.sha256(), 0
    try:
        stream, length = _open(url, root, timeout)
        if length is not None and length > max_bytes:
            stream.close()
            raise _download_cap(url, max_bytes)
        with stream, open(part, "wb") as out, tqdm(total=length, unit="B", unit_scale=True, leave=False,
                                                   desc=dest.name, disable=None if progress else True,
                                                   file=sys.stderr) as bar:  # None: off when not a tty
            while True:
                try:
                    chunk = stream.read(CHUNK)
                except OSError as e:
                    raise DownloadError(f"{url}: connection lost after {got} bytes ({e})") from None
                if not chunk:
                    break
                got += len(chunk)
                if got > max_bytes:  # an endless body, or more than it declared
                    raise _download_cap(url, max_bytes)
                h.update(chunk)
                out.write(chunk)
                bar.update(len(chunk))
        if length is not None and got != length:
            raise DownloadError(f"{url}: truncated download: got {got} of {length} bytes")
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256.lower():
            advice = fix(digest) if fix else (f"If the publisher changed the file on purpose, update "
                                              f"{sha256_source}; otherwise the download is corrupt or was "
                                              "tampered with")
            raise DownloadError(f"{url}: sha256 mismatch: expected {sha256.lower()} ({sha256_source}), "
                                f"got {digest}. {advice}")
        os.replace(part, dest)
        return digest
    finally:
        part.unlink(missing_ok=True)


# --- trust on first use --------------------------------------------------------------------------------

def read_checksums(path: str | os.PathLike) -> dict[str, str]:
    """The URL -> sha256 map of `data/checksums.json` ({} when the file does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ConfigError(f"{path}: expected a JSON object mapping URL -> sha256 hex string")
    return data


def record_checksum(path: str | os.PathLike, url: str, digest: str) -> None:
    """Add `url -> digest` to the checksums file (atomic rewrite, sorted keys so git diffs stay small)."""
    data = read_checksums(path)
    data[url] = digest
    write_json(path, data)


# --- extraction ----------------------------------------------------------------------------------------

def _safe_member(archive: Path, name: str) -> PurePosixPath:
    """Refuse empty, absolute or `..` member names; return the relative path to extract to."""
    norm = name.replace("\\", "/")  # archives made on Windows may use backslashes
    path = PurePosixPath(norm)
    if not norm.strip("/") or norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or "\x00" in norm:
        raise DownloadError(f"{archive.name}: member {name!r} has an absolute or empty path; refused")
    if ".." in path.parts:
        raise DownloadError(f"{archive.name}: member {name!r} has a '..' component; refused")
    return PurePosixPath(*[p for p in path.parts if p not in ("", ".")])


def _check_bomb(archive: Path, declared: int, soft: int, ratio: float, hard: int, verb: str = "declares") -> None:
    """Apply the zip-bomb rule of the module docstring to the (declared or counted) uncompressed total."""
    size = max(archive.stat().st_size, 1)
    if declared > hard or (declared > soft and declared > ratio * size):
        raise DownloadError(
            f"{archive.name}: {verb} {declared} uncompressed bytes from {size} compressed (cap: "
            f"{hard / MB:g} MB, params.yaml limits.unpacked_mb, or {soft / MB:g} MB at more than {ratio:g}x "
            "compression); refused as a zip bomb")


def _copy_member(archive: Path, src, target: Path, declared: int) -> int:
    """Stream one member to `target`, refusing to write more than it declared; return bytes written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(target, "wb") as out:
        for chunk in iter(lambda: src.read(CHUNK), b""):
            written += len(chunk)
            if written > declared:
                raise DownloadError(f"{archive.name}: member {target.name} is larger than it declares; refused")
            out.write(chunk)
    return written


def _extract_members(archive: Path, dest_dir: Path, members, refused_kind: str,
                     soft_limit: int, max_ratio: float, hard_limit: int) -> list[Path]:
    """Check every (name, is_dir, is_refused, size, opener) member first (the bomb rule on the running total, so
    that a tar member declaring too much is refused before its data is read), then write the files."""
    checked, total = [], 0
    for member in members:
        name, _, refused, size, _ = member
        _safe_member(archive, name)
        if refused:
            raise DownloadError(f"{archive.name}: member {name!r} is {refused_kind}; refused")
        total += size
        _check_bomb(archive, total, soft_limit, max_ratio, hard_limit)
        checked.append(member)
    written = []
    for name, is_dir, _, size, opener in checked:
        target = dest_dir / _safe_member(archive, name)
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        with opener() as src:
            _copy_member(archive, src, target, size)
        written.append(target)
    return written


def extract(archive: str | os.PathLike, dest_dir: str | os.PathLike, kind: str, *, soft_limit: int = SOFT_LIMIT,
            max_ratio: float = MAX_RATIO, hard_limit: int = HARD_LIMIT) -> list[Path]:
    """Extract a 'zip' or 'tar' archive into `dest_dir` after checking every member; return the files written."""
    archive, dest_dir = Path(archive), Path(dest_dir)
    corrupt = (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, OSError)
    written: list[Path] = []
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                for i in zf.infolist():
                    if i.flag_bits & 0x1:
                        raise DownloadError(f"{archive.name}: member {i.filename!r} is encrypted; refused")
                    if i.compress_type not in ZIP_METHODS:
                        raise DownloadError(f"{archive.name}: member {i.filename!r} uses compression method "
                                            f"{i.compress_type}, not one of stored/deflate/bzip2/lzma; refused")
                # endswith, not ZipInfo.is_dir(): that raises IndexError on an empty name, which
                # _safe_member refuses with the project's message
                members = [(i.filename, i.filename.endswith("/"), stat.S_ISLNK(i.external_attr >> 16), i.file_size,
                            lambda i=i: zf.open(i)) for i in zf.infolist()]
                written = _extract_members(archive, dest_dir, members, "a symlink", soft_limit, max_ratio, hard_limit)
        elif kind == "tar":
            with tarfile.open(archive, "r:*") as tf:
                # the headers one by one (the whole archive is read before anything is written: truncation
                # shows up here)
                members = ((m.name, m.isdir(), not (m.isfile() or m.isdir()), m.size,
                            lambda m=m: tf.extractfile(m)) for m in tf)
                written = _extract_members(archive, dest_dir, members, "a link or special file",
                                           soft_limit, max_ratio, hard_limit)
        else:
            raise ValueError(f"unknown archive kind {kind!r}")
    except DownloadError:
        raise
    except corrupt as e:
        raise DownloadError(f"{archive.name}: truncated or corrupt {kind} archive ({e})") from None
    except NotImplementedError as e:  # zipfile: a format version or feature it cannot read
        raise DownloadError(f"{archive.name}: unsupported {kind} archive ({e})") from None
    if not written:
        raise DownloadError(f"{archive.name}: the archive holds no files")
    return written


def check_gzip(path: str | os.PathLike, *, soft_limit: int = SOFT_LIMIT, max_ratio: float = MAX_RATIO,
               hard_limit: int = HARD_LIMIT) -> int:
    """Decompress a .gz file once, counting (not keeping) its bytes under the bomb rule; return the count."""
    path = Path(path)
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                total += len(chunk)
                _check_bomb(path, total, soft_limit, max_ratio, hard_limit, verb="unpacks to more than")
    except (OSError, EOFError, zlib.error) as e:  # OSError: also gzip.BadGzipFile
        raise DownloadError(f"{path.name}: truncated or corrupt gzip file ({e})") from None
    return total


# --- one dataset -----------------------------------------------------------------------------------------

def download_dataset(source: Source, dest_dir: str | os.PathLike, *, root: str | os.PathLike = ".",
                     checksums_path: str | os.PathLike = "data/checksums.json", params_file: str = "params.yaml",
                     limits: Limits = Limits(), progress: bool = True) -> Fetched:
    """Fetch `source` into the (new, empty) `dest_dir`: extract archives, copy other files under their URL name.

    The expected sha256 is the pinned one, else the one recorded for this URL in `checksums_path`. The caller
    records the returned sha256 when `record` is true, after its own output is in place, so that a failed
    run never pins a bad file.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    parts = check_url(source.url)
    what = urllib.parse.unquote(parts.path) if parts.scheme == "file" else "the publisher's file"
    key = f"{params_file} key {source.key}.sha256"
    if source.sha256 is not None:
        expected, where = source.sha256, key
        record = "set {key} to {digest}"
    else:
        expected = read_checksums(checksums_path).get(source.url)
        where = f"{checksums_path} (entry for this URL, recorded on first download)"
        record = "record its new checksum: set {key}: {digest} (or delete this URL's entry in {checksums}), then re-run"

    def fix(digest: str) -> str:
        how = record.format(key=key, digest=digest, checksums=checksums_path)
        return f"If {what} changed on purpose, {how}; otherwise it is corrupt or was tampered with"

    caps = {"hard_limit": int(limits.unpacked_mb * MB)}
    fetch_args = {"root": root, "sha256_source": where, "fix": fix, "max_bytes": int(limits.download_mb * MB),
                  "progress": progress}
    kind = archive_kind(source.url)
    name = url_basename(source.url)
    if kind is None:
        digest = fetch(source.url, dest_dir / name, expected, **fetch_args)
        if name.lower().endswith(".gz"):
            check_gzip(dest_dir / name, **caps)
    else:
        # The archive itself is not kept: it goes to a scratch folder beside dest_dir.
        with tempfile.TemporaryDirectory(prefix=".archive.", dir=dest_dir.parent) as scratch:
            archive = Path(scratch) / name
            digest = fetch(source.url, archive, expected, **fetch_args)
            extract(archive, dest_dir, kind, **caps)
    return Fetched(source.url, digest, record=expected is None)


def clear(path: str | os.PathLike) -> None:
    """Remove a file or folder if present (a failed stage leaves nothing at its output path)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
