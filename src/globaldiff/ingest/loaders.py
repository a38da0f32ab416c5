"""Loaders: one raw folder (data/raw/<dataset>) -> a DataFrame of interactions in the file's row order.

Every loader returns columns
    user, item   raw ids: int64 when the publisher's ids are integers (MovieLens, KuaiRec), str otherwise
                 (Amazon ids such as "0205616461" keep their leading zeros); custom: int64 if every id is a
                 canonical integer, str otherwise
    rating       float64, NaN when the file has no ratings (preprocess then skips the rating threshold)
    timestamp    int64; files without times get each user's within-user order index (0, 1, ...), and the
                 frame's attrs["timed"] is False (no two rows of such a file could share a time)
and raises ConfigError naming the file, the line and what was expected on malformed input.
The registry LOADERS maps each params `loader` name to its function.

A dataset's `embedded` source is always the sequences layout (`user_id<TAB>item_ids`, read by `load_embedded`),
whichever loader it belongs to: the ML-1M split of the paper (`ml-1m`) and Amazon Beauty's 5-core (`beauty`).
The file is the one the download stage copied, named as the end of `sources.embedded.url`.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import sys
import urllib.parse
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np
import pandas as pd

from globaldiff import ConfigError
from globaldiff.config.schema import inside_raw_folder

_CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]{0,17})")  # fits int64, no leading zeros: safe to treat as a number


# --- helpers -------------------------------------------------------------------------------------------

def _raw_file(raw_dir: Path, rel: str, what: str) -> Path:
    """The raw file `rel` under `raw_dir`, or a ConfigError telling the user to run the download stage."""
    path = Path(raw_dir) / rel
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (expected {what}); run the download stage first")
    return path


def _read_text(path: Path) -> str:
    """Whole file as text (gzip transparently); undecodable bytes are an error naming the file."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text") from None
    except (OSError, EOFError, zlib.error) as e:  # OSError: also gzip.BadGzipFile
        raise ConfigError(f"{path}: cannot read ({e})") from None
    except MemoryError:
        raise ConfigError(f"{path}: too large to read into memory") from None


def _read_table(path: Path, sep: str, header: bool, what: str, *, text: str | None = None,
                ncols: int | None = None, usecols: list[int] | None = None) -> pd.DataFrame:
    """Parse a delimited file (or `text` read from it) into a DataFrame of strings.

    The frame's index is each row's 0-based line number in the file, so every error can name its line.
    With `header`, the first line gives the column names (it must have as many fields as the rows: pandas
    would otherwise silently turn a surplus first field into an index). `ncols` is the expected field count;
    `usecols` (0-based positions) keeps only those fields. Blank lines stay as rows of empty fields and short
    rows are padded with empty fields, so the per-column checks report them.
    """
    quoting = csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE
    source = io.StringIO(text) if text is not None else path
    # Plain text, or gzip for a .gz name (docs/data.md); never pandas' codec guess from other suffixes
    # (.zip, .xz, .bz2, ...), whose decoders raise their own errors and decompress without any size limit.
    compression = "gzip" if text is None and path.suffix == ".gz" else None
    try:
        df = pd.read_csv(source, sep=sep, header=None, dtype=str, keep_default_na=False, na_filter=False,
                         skip_blank_lines=False, quoting=quoting, engine="c", encoding="utf-8",
                         compression=compression, usecols=usecols)
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{path}: empty file (expected {what})") from None
    except pd.errors.ParserError as e:
        raise ConfigError(f"{path}: {_parser_message(e)} (expected {what})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text (expected {what})") from None
    except (ValueError, OSError, EOFError, zlib.error) as e:  # OSError: also gzip.BadGzipFile
        raise ConfigError(f"{path}: cannot parse ({e}; expected {what})") from None
    except MemoryError:
        raise ConfigError(f"{path}: too large to read into memory (expected {what})") from None
    if ncols is not None and df.shape[1] != ncols:
        raise ConfigError(f"{path}: line 1: found {df.shape[1]} field(s) separated by {sep!r}, "
                          f"expected {what} (wrong separator?)")
    if header:
        names = [str(n).strip() for n in df.iloc[0]]
        if len(set(names)) != len(names):
            raise ConfigError(f"{path}: line 1: duplicate column names in header {names}")
        df = df.iloc[1:]
        df.columns = names
    if len(df) == 0:
        raise ConfigError(f"{path}: no data rows (expected {what})")
    return df


def _parser_message(e: Exception) -> str:
    """Turn pandas' 'Expected 4 fields in line 3, saw 5' into 'line 3: ...' (pandas counts from 1)."""
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
    if m:
        return f"line {m.group(2)}: expected {m.group(1)} fields, got {m.group(3)}"
    return str(e).strip().splitlines()[-1] if str(e).strip() else "cannot parse"


def _bad_row(path: Path, values: pd.Series, bad: np.ndarray, column: str, expected: str) -> ConfigError:
    """ConfigError for the first row flagged in `bad` (`values.index` holds 0-based line numbers)."""
    pos = int(np.flatnonzero(bad)[0])
    line = int(values.index[pos]) + 1
    got = values.iloc[pos]
    got = "an empty field (short row or wrong separator?)" if got == "" else repr(got)
    return ConfigError(f"{path}: line {line}: column {column!r}: expected {expected}, got {got}")


def _to_int(path: Path, values: pd.Series, column: str) -> np.ndarray:
    """Strings -> int64 (decimal integers only), else ConfigError naming the first bad line."""
    stripped = values.str.strip()
    ok = stripped.str.fullmatch(r"[+-]?[0-9]{1,18}").to_numpy(dtype=bool)
    if not ok.all():
        raise _bad_row(path, values, ~ok, column, "an integer")
    return stripped.astype(np.int64).to_numpy()


def _to_float(path: Path, values: pd.Series, column: str) -> np.ndarray:
    """Strings -> finite float64, else ConfigError naming the first bad line."""
    out = pd.to_numeric(values.str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(out)
    if bad.any():
        raise _bad_row(path, values, bad, column, "a number")
    return out


def _ids(path: Path, values: pd.Series, column: str, numeric: bool | None) -> pd.Series:
    """Raw ids: int64 when `numeric` (or, for None, when every id is a canonical integer), else str."""
    values = values.str.strip()
    empty = (values == "").to_numpy(dtype=bool)
    if empty.any():
        raise _bad_row(path, values, empty, column, "a non-empty id")
    if numeric is None:
        numeric = bool(values.str.fullmatch(_CANONICAL_INT).all())
    if numeric:
        return pd.Series(_to_int(path, values, column), name=column)
    # Raw ids are written to users.tsv/items.tsv: tabs and line breaks would corrupt those files.
    control = values.str.contains(r"[\t\r\n]").to_numpy(dtype=bool)
    if control.any():
        raise _bad_row(path, values, control, column, "an id without tabs or line breaks")
    return values.astype(object).rename(column).reset_index(drop=True)


def _frame(user, item, rating, timestamp, timed: bool = True) -> pd.DataFrame:
    """Assemble the loader contract's DataFrame (fresh RangeIndex = the file's row order); `timed`: the
    timestamps come from the file, not from its row order."""
    n = len(user)
    rating = np.full(n, np.nan) if rating is None else np.asarray(rating, dtype=np.float64)
    df = pd.DataFrame({
        "user": pd.Series(user).reset_index(drop=True),
        "item": pd.Series(item).reset_index(drop=True),
        "rating": rating,
        "timestamp": np.asarray(timestamp, dtype=np.int64),
    })
    df.attrs["timed"] = timed
    return df


def _order_index(users: pd.Series) -> np.ndarray:
    """Within-user position of each row (0, 1, ...): the time order of files without timestamps."""
    return users.groupby(users, sort=False).cumcount().to_numpy(dtype=np.int64)


# --- loaders -------------------------------------------------------------------------------------------

def load_ml1m(raw_dir: Path, cfg: dict) -> pd.DataFrame:
    """MovieLens-1M: `embedded` sequences file (default) or GroupLens' `ml-1m/ratings.dat`."""
    source = cfg.get("source", "embedded")
    if source == "embedded":
        return load_embedded(raw_dir, cfg, "ml-1m-sequences.tsv.gz", "the embedded ML-1M sequences")
    if source == "grouplens":
        path = _raw_file(raw_dir, "ml-1m/ratings.dat", "GroupLens ml-1m.zip's ratings.dat")
        text = _read_text(path)
        # '::' is a two-character separator; swap it for a tab so the fast C parser can read the file.
        if "\t" in text:
            line = text.count("\n", 0, text.index("\t")) + 1
            raise ConfigError(f"{path}: line {line}: unexpected tab (expected UserID::MovieID::Rating::Timestamp)")
        df = _read_table(path, "\t", False, "UserID::MovieID::Rating::Timestamp", ncols=4,
                         text=text.replace("::", "\t"))
        return _frame(_ids(path, df[0], "UserID", True), _ids(path, df[1], "MovieID", True),
                      _to_float(path, df[2], "Rating"), _to_int(path, df[3], "Timestamp"))
    raise ConfigError(f"params.yaml: datasets.ml-1m.source: unknown source {source!r}; known: embedded, grouplens")


def load_embedded(raw_dir: Path, cfg: dict, default: str, what: str) -> pd.DataFrame:
    """An `embedded` source: the sequences file the download stage copied under the name that ends
    `sources.embedded.url`; `default` when params give no URL (a frame built by hand, as in the tests)."""
    url = ((cfg.get("sources") or {}).get("embedded") or {}).get("url")
    name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(str(url)).path)).name if url else default
    return _load_sequences(_raw_file(raw_dir, name or default, what))


def _load_sequences(path: Path) -> pd.DataFrame:
    """`user_id<TAB>item_ids` (items space-separated, chronological) -> one row per interaction, no ratings."""
    text = _read_text(path)
    first = text.split("\n", 1)[0].rstrip("\r")
    if first != "user_id\titem_ids":
        raise ConfigError(f"{path}: line 1: expected header 'user_id<TAB>item_ids', got {first[:80]!r}")
    df = _read_table(path, "\t", True, "user_id<TAB>space-separated item_ids", ncols=2, text=text)
    users = _ids(path, df["user_id"], "user_id", True)
    items = df["item_ids"].str.split()
    empty = (items.str.len() == 0).to_numpy(dtype=bool)
    if empty.any():
        raise _bad_row(path, df["item_ids"], empty, "item_ids", "at least one item id")
    rows = np.repeat(df.index.to_numpy(), items.str.len().to_numpy())  # 0-based line of each item
    flat = pd.Series(np.concatenate(items.to_numpy()) if len(df) else [], dtype=object)
    ok = flat.str.fullmatch(r"[0-9]{1,18}").to_numpy(dtype=bool)
    if not ok.all():
        pos = int(np.flatnonzero(~ok)[0])
        raise ConfigError(f"{path}: line {rows[pos] + 1}: column 'item_ids': expected integer ids, "
                          f"got {flat.iloc[pos]!r}")
    user = pd.Series(np.repeat(users.to_numpy(), items.str.len().to_numpy()))
    return _frame(user, flat.astype(np.int64), None, _order_index(user), timed=False)


def load_ml100k(raw_dir: Path, cfg: dict) -> pd.DataFrame:
    """MovieLens-100K: `ml-100k/u.data` of GroupLens' ml-100k.zip (tab-separated, no header)."""
    path = _raw_file(raw_dir, "ml-100k/u.data", "GroupLens ml-100k.zip's u.data")
    what = "user<TAB>item<TAB>rating<TAB>timestamp"
    df = _read_table(path, "\t", False, what, ncols=4)
    return _frame(_ids(path, df[0], "user", True), _ids(path, df[1], "item", True),
                  _to_float(path, df[2], "rating"), _to_int(path, df[3], "timestamp"))


def load_beauty(raw_dir: Path, cfg: dict) -> pd.DataFrame:
    """Amazon 2014 Beauty. Source `embedded`: the 5-core sequences file of the S3-Rec / ICLRec line of work
    (integer ids 1..N, chronological, no ratings or times; NOT the paper's split, docs/data.md); any other
    source: `ratings_Beauty.csv` (user,item,rating,timestamp, no header, string ids), the paper's raw file."""
    if cfg.get("source") == "embedded":
        return load_embedded(raw_dir, cfg, "beauty-5core-sequences.tsv.gz", "the embedded Beauty 5-core sequences")
    path = _raw_file(raw_dir, "ratings_Beauty.csv", "Amazon 2014 ratings_Beauty.csv")
    df = _read_table(path, ",", False, "user,item,rating,timestamp", ncols=4)
    return _frame(_ids(path, df[0], "user", False), _ids(path, df[1], "item", False),
                  _to_float(path, df[2], "rating"), _to_int(path, df[3], "timestamp"))


KUAIREC_FILE = "KuaiRec 2.0/data/big_matrix.csv"
KUAIREC_HEADER = ["user_id", "video_id", "play_duration", "video_duration", "time", "date", "timestamp",
                  "watch_ratio"]


def load_kuairec(raw_dir: Path, cfg: dict) -> pd.DataFrame:
    """KuaiRec 2.0 `big_matrix.csv`; keeps rows whose `positive.column` >= `positive.min`, no ratings.

    Timestamps are fractional seconds: they become int64 milliseconds so sub-second order survives.
    Rows with an empty timestamp cannot be ordered and are dropped (the count goes to stderr).
    """
    path = _raw_file(raw_dir, KUAIREC_FILE, "KuaiRec 2.0's big_matrix.csv")
    positive = cfg.get("positive")
    if not isinstance(positive, dict) or positive.get("column") not in KUAIREC_HEADER[2:] \
            or not isinstance(positive.get("min"), (int, float)):
        raise ConfigError("params.yaml: datasets.kuairec.positive: expected {column: one of "
                          f"{', '.join(KUAIREC_HEADER[2:])}, min: number}}, got {positive!r}")
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline().rstrip("\r\n")
    if first.split(",") != KUAIREC_HEADER:
        raise ConfigError(f"{path}: line 1: expected header {','.join(KUAIREC_HEADER)}, got {first[:200]!r}")
    column = positive["column"]
    # Only the columns used: the file has 12.5M rows, and every field is a Python string until converted.
    used = dict.fromkeys(["user_id", "video_id", "timestamp", column])
    df = _read_table(path, ",", True, ",".join(KUAIREC_HEADER), usecols=[KUAIREC_HEADER.index(c) for c in used])
    has_time = (df["timestamp"].str.strip() != "").to_numpy(dtype=bool)
    if not has_time.all():
        print(f"kuairec: dropped {int((~has_time).sum())} rows without a timestamp", file=sys.stderr)
        df = df[has_time]
    # Row filters keep the frame's index (the file's row position), so errors still name the right line.
    df = df[_to_float(path, df[column], column) >= float(positive["min"])]
    millis = np.round(_to_float(path, df["timestamp"], "timestamp") * 1000)
    return _frame(_ids(path, df["user_id"], "user_id", True), _ids(path, df["video_id"], "video_id", True),
                  None, millis)


def load_custom(raw_dir: Path, cfg: dict) -> pd.DataFrame:
    """A user's delimited file declared in params: `sep`, `header`, `columns` (names or 0-based positions).

    The file is `file` under the raw folder when given, else the chosen source URL's file name.
    """
    key = "params.yaml: datasets.custom"
    source = (cfg.get("sources") or {}).get(cfg.get("source")) or {}
    if cfg.get("file") is not None:
        inside_raw_folder("datasets.custom.file", cfg["file"])  # never a file outside the raw folder
    url_path = urllib.parse.unquote(urllib.parse.urlparse(str(source.get("url", ""))).path)
    name = cfg.get("file") or PurePosixPath(url_path).name
    path = _raw_file(raw_dir, name, "the custom interactions file")
    sep, header, columns = cfg.get("sep", ","), cfg.get("header", True), cfg.get("columns")
    if not isinstance(sep, str) or len(sep) != 1:
        raise ConfigError(f"{key}.sep: expected one character, got {sep!r}")
    if not isinstance(header, bool):
        raise ConfigError(f"{key}.header: expected true or false, got {header!r}")
    if not isinstance(columns, dict) or columns.get("user") is None or columns.get("item") is None:
        raise ConfigError(f"{key}.columns: expected a mapping with user and item (and optional rating, timestamp)")
    df = _read_table(path, sep, header, f"fields separated by {sep!r}")

    def column(role: str) -> pd.Series | None:
        spec = columns.get(role)
        if spec is None:
            return None
        if header:
            if spec not in df.columns:
                raise ConfigError(f"{path}: line 1: no column {spec!r} (datasets.custom.columns.{role}); "
                                  f"header has {', '.join(map(str, df.columns))} (wrong sep?)")
            return df[spec]
        if not isinstance(spec, int) or isinstance(spec, bool) or not 0 <= spec < df.shape[1]:
            raise ConfigError(f"{key}.columns.{role}: expected a 0-based position below {df.shape[1]} "
                              f"(header: false), got {spec!r}")
        return df[spec]

    user, item = _ids(path, column("user"), "user", None), _ids(path, column("item"), "item", None)
    rating_col, time_col = column("rating"), column("timestamp")
    rating = None if rating_col is None else _to_float(path, rating_col, str(columns["rating"]))
    timestamp = _order_index(user) if time_col is None else _to_int(path, time_col, str(columns["timestamp"]))
    return _frame(user, item, rating, timestamp, timed=time_col is not None)


LOADERS: dict[str, Callable[[Path, dict], pd.DataFrame]] = {
    "ml-1m": load_ml1m,
    "ml-100k": load_ml100k,
    "beauty": load_beauty,
    "kuairec": load_kuairec,
    "custom": load_custom,
}


def load(name: str, cfg: dict, raw_dir: str | Path) -> pd.DataFrame:
    """Run the loader that `datasets.<name>.loader` names on `raw_dir`."""
    loader = cfg.get("loader")
    if loader not in LOADERS:
        raise ConfigError(f"params.yaml: datasets.{name}.loader: unknown loader {loader!r}; "
                          f"known: {', '.join(sorted(LOADERS))}")
    return LOADERS[loader](Path(raw_dir), cfg)
