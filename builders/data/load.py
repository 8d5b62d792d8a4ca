"""Read a shop's files (Parquet or CSV, via pyarrow) and turn each contract column into numpy arrays.

Every problem goes into the ``ValidationReport`` with the file, the column and the first rows; a
column that cannot be read at all is reported and skipped, so one run lists every problem at once.
Text columns are read as raw bytes and decoded here, so a row that is not UTF-8 is named instead
of failing the whole file. Repeated values (queries, categories, ids) are decoded and hashed once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from builders.data import ga4, merchant_center
from builders.data.config import DataConfig
from builders.data.contract import ATTRIBUTE_SEPARATOR, EVENT_KINDS, TABLES, Column, TableName
from builders.data.report import ValidationReport, sample
from shoprank_client.ids import stable_id

SUFFIXES = {"parquet": (".parquet", ".pq"), "csv": (".csv", ".csv.gz")}


@dataclass
class Ids:
    """An id column: the served INT64 ids, the original strings (None for integer ids), nulls."""

    values: np.ndarray  # int64 (0 where null)
    keys: np.ndarray | None  # object array of the original strings, or None
    null: np.ndarray  # bool

    @property
    def kind(self) -> str:
        return "int64" if self.keys is None else "string"


@dataclass
class Loaded:
    """One file: its path, its rows, and the contract columns that could be read."""

    name: TableName
    path: Path
    rows: int
    columns: dict[str, Any]  # contract name -> Ids | np.ndarray | list, by the column's type
    extra: dict[str, pa.ChunkedArray]  # columns the config names beyond the contract
    labels: dict[str, str]  # contract name -> how messages name it (the file's own name if mapped)


def find_file(folder: Path, name: str, fmt: str) -> Path | None:
    """``name`` as given, or ``name`` + a suffix of ``fmt`` (any known suffix for ``auto``)."""
    direct = folder / name
    if direct.is_file():
        return direct
    suffixes = SUFFIXES[fmt] if fmt != "auto" else SUFFIXES["parquet"] + SUFFIXES["csv"]
    for suffix in suffixes:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def fingerprint(paths: list[Path]) -> str:
    """SHA-256 of the files' names and contents: the data step's cache key."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _read(path: Path, mapping: dict[str, str], columns: tuple[Column, ...], id_type: str) -> pa.Table:
    if path.name.endswith(SUFFIXES["parquet"]):
        import pyarrow.parquet as pq

        return pq.read_table(path)
    import pyarrow.csv as csv

    types = {}
    for col in columns:
        source = mapping.get(col.name, col.name)
        if col.kind in ("text", "attributes", "event"):
            types[source] = pa.binary()  # decoded here, row by row, so bad UTF-8 is named
        elif col.kind == "id" and id_type == "string":
            types[source] = pa.binary()
    return csv.read_csv(path, convert_options=csv.ConvertOptions(column_types=types, strings_can_be_null=True))


def _decode(file: str, column: str, arr: pa.ChunkedArray, rep: ValidationReport) -> np.ndarray:
    """Object array of str (None for null); rows that are not UTF-8 are reported and set to None."""
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.binary() if pa.types.is_string(arr.type) else pa.large_binary())
    if not (pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)):
        # numbers in a text column (a CSV of numeric queries): their text is what the shop meant
        arr = arr.cast(pa.string()).cast(pa.binary())
    enc = arr.combine_chunks().dictionary_encode()
    words = enc.dictionary.to_pylist()
    decoded = np.empty(len(words) + 1, object)
    bad = {}
    for i, raw in enumerate(words):
        try:
            decoded[i] = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            decoded[i] = None
            bad[i] = f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start})"
    idx = enc.indices.to_numpy(zero_copy_only=False)
    idx = np.where(np.isnan(idx), len(words), idx).astype(np.int64) if idx.dtype.kind == "f" else idx.astype(np.int64)
    decoded[len(words)] = None
    if bad:
        for code, message in list(bad.items())[:3]:
            rep.error(file, column, message, idx == code)
        if len(bad) > 3:
            rep.error(
                file, column, f"{len(bad) - 3} more distinct values are not valid UTF-8", np.isin(idx, list(bad)[3:])
            )
    return decoded[idx]


def _ids(file: str, column: str, arr: pa.ChunkedArray, id_type: str, rep: ValidationReport) -> Ids | None:
    t = arr.type
    null = arr.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_integer(t) and id_type != "string":
        values = arr.fill_null(0).cast(pa.int64()).to_numpy(zero_copy_only=False)
        return Ids(values.astype(np.int64), None, null)
    if (
        pa.types.is_integer(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    ):
        if id_type == "int64":
            rep.error(
                file,
                column,
                f"expected INT64 ids (data.id_type: int64), got text such as {sample(arr.to_pylist(), ~null, 2)}",
                ~null,
            )
            return None
        text = _decode(file, column, arr, rep)
        uniq, inverse = np.unique(text[~null].astype(str), return_inverse=True)
        hashed = np.array([stable_id(k) for k in uniq], np.int64)
        values = np.zeros(len(text), np.int64)
        values[~null] = hashed[inverse]
        return Ids(values, text, null)
    rep.error(file, column, f"expected integer or text ids, got {t}")
    return None


def _numbers(file: str, column: str, arr: pa.ChunkedArray, rep: ValidationReport, integer: bool) -> np.ndarray | None:
    """float64 values (NaN for null); text that is not a number is reported with its rows."""
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        values = arr.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    else:
        raw = _decode(file, column, arr, rep) if not pa.types.is_boolean(t) else np.array(arr.to_pylist(), object)
        values = np.full(len(raw), np.nan)
        bad = np.zeros(len(raw), bool)
        for i, v in enumerate(raw):
            if v is None:
                continue
            try:
                values[i] = float(v)
            except (TypeError, ValueError):
                bad[i] = True
        if bad.any():
            rep.error(
                file,
                column,
                f"expected {'an integer' if integer else 'a number'}, got text such as {sample(raw, bad)}",
                bad,
            )
    if integer:
        frac = ~np.isnan(values) & (values != np.round(values))
        if frac.any():
            rep.error(file, column, f"expected whole numbers, got {sample(values, frac)}", frac)
    return values


def _timestamps(file: str, column: str, arr: pa.ChunkedArray, rep: ValidationReport) -> np.ndarray:
    """int64 unix seconds (INT64 min for null or unreadable)."""
    t = arr.type
    missing = np.iinfo(np.int64).min
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        # floored to whole seconds (a cast would refuse to drop the fraction)
        secs = pc.divide(
            pc.cast(arr.cast(pa.timestamp("us", tz=getattr(t, "tz", None)), safe=False), pa.int64()), 1_000_000
        )
        return secs.fill_null(missing).to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        values = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
        return np.where(np.isnan(values), missing, np.floor(values)).astype(np.int64)
    text = _decode(file, column, arr, rep)
    try:
        parsed = pc.cast(pa.array(text, pa.string()), pa.timestamp("s"))
        return parsed.cast(pa.int64()).fill_null(missing).to_numpy(zero_copy_only=False).astype(np.int64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # ISO-8601 with a zone offset ("+02:00", "Z", " UTC") is read at that offset; without one, as UTC
    known = np.array([v is not None for v in text], bool)
    uniq, inverse = np.unique(text[known].astype(str), return_inverse=True)
    parsed = np.array([_iso_seconds(v) for v in uniq], np.int64) if len(uniq) else np.zeros(0, np.int64)
    out = np.full(len(text), missing, np.int64)
    out[known] = parsed[inverse.reshape(-1)]
    bad = known & (out == missing)
    if bad.any():
        rep.error(
            file,
            column,
            f"not a timestamp (ISO-8601 like 2026-11-24T10:15:00, or unix seconds): {sample(text, bad)}",
            bad,
        )
    return out


def _iso_seconds(text: str) -> int:
    """Unix seconds of an ISO-8601 timestamp (``datetime.fromisoformat``, "Z" and " UTC" as +00:00; naive
    = UTC), or INT64 min if it is not one."""
    value = text.strip()
    if value.endswith(" UTC"):
        value = value[:-4] + "+00:00"
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return int(np.iinfo(np.int64).min)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(np.floor(stamp.timestamp()))


def _attributes(file: str, column: str, arr: pa.ChunkedArray, rep: ValidationReport) -> list[list[str]]:
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        return [[str(a).strip() for a in (v or []) if a is not None and str(a).strip()] for v in arr.to_pylist()]
    text = _decode(file, column, arr, rep)
    return [[a.strip() for a in v.split(ATTRIBUTE_SEPARATOR) if a.strip()] if v else [] for v in text]


def _events(file: str, column: str, arr: pa.ChunkedArray, rep: ValidationReport) -> np.ndarray:
    """int8 codes into EVENT_KINDS; -1 for an unknown kind (reported here), -2 for null."""
    text = _decode(file, column, arr, rep)
    lookup = {k: i for i, k in enumerate(EVENT_KINDS)}
    codes = np.array([lookup.get(v, -1) if v is not None else -2 for v in text], np.int8)
    unknown = codes == -1
    if unknown.any():
        rep.error(file, column, f"{sample(text, unknown)} is not one of {', '.join(EVENT_KINDS)}", unknown)
    return codes


def data_files(cfg: DataConfig) -> list[Path]:
    """Every file the shop's tables are read from (the data step's cache key): the contract's files, the GA4
    export's daily tables, or the Merchant Center feed."""
    out = []
    if cfg.items_format == "merchant_center":
        out.append(merchant_center.find(cfg.folder, cfg.items))
    else:
        out.append(find_file(cfg.folder, cfg.items, cfg.format))
    if cfg.events_format == "ga4":
        out.extend(ga4.files(cfg.folder, cfg.events))
    else:
        out.append(find_file(cfg.folder, cfg.events, cfg.format))
    if cfg.users:
        out.append(find_file(cfg.folder, cfg.users, cfg.format))
    return [p for p in out if p is not None]


def _in_export_format(name: TableName, cfg: DataConfig) -> bool:
    return (name == "events" and cfg.events_format != "contract") or (
        name == "items" and cfg.items_format != "contract"
    )


def _exported(name: TableName, cfg: DataConfig, rep: ValidationReport) -> tuple[Path, pa.Table] | None:
    """The table read by the reader of its export format, as ``(path for messages, contract table)``; None when
    it could not be read (reported)."""
    if name == "events" and cfg.events_format == "ga4":
        got = ga4.read(cfg.folder, cfg.events, cfg.ga4, rep)
        if got is None:
            return None
        rep.sources["events"] = {"format": "ga4", **got.said}
        more = f" +{len(got.files) - 1} more" if len(got.files) > 1 else ""
        return cfg.folder / f"{got.files[0].name} (GA4 export{more})", got.table
    if name == "items" and cfg.items_format == "merchant_center":
        path = merchant_center.find(cfg.folder, cfg.items)
        if path is None:
            rep.error(
                f"{cfg.items}.*",
                None,
                f"no Merchant Center feed in {cfg.folder} (looked for {cfg.items} with "
                f"{', '.join(merchant_center.SUFFIXES)})",
            )
            return None
        table = merchant_center.read(path, rep)
        rep.sources["items"] = {
            "format": "merchant_center",
            "file": path.name,
            "products": 0 if table is None else len(table),
        }
        return None if table is None else (cfg.folder / f"{path.name} (Merchant Center feed)", table)
    raise ValueError(f"{name}: in the contract's own format")


def load_table(name: TableName, cfg: DataConfig, rep: ValidationReport, extra: tuple[str, ...] = ()) -> Loaded | None:
    """Read one contract table, or None (with the problems reported) if it cannot be read."""
    if _in_export_format(name, cfg):
        exported = _exported(name, cfg, rep)
        if exported is None:
            return None
        return _columns(name, exported[0], exported[1], {}, cfg.id_type, rep, extra)
    filename = getattr(cfg, name)
    path = find_file(cfg.folder, filename, cfg.format) if filename else None
    if path is None:
        if name == "users":
            return None
        rep.error(
            f"{filename}.*",
            None,
            f"no {name} file in {cfg.folder} (looked for {filename} with "
            f"{', '.join(SUFFIXES['parquet'] + SUFFIXES['csv'])})",
        )
        return None
    columns = TABLES[name]
    mapping = cfg.columns.get(name, {})
    try:
        table = _read(path, mapping, columns, cfg.id_type)
    except (pa.ArrowInvalid, OSError) as err:
        rep.error(path.name, None, f"cannot be read: {err}")
        return None
    return _columns(name, path, table, mapping, cfg.id_type, rep, extra)


def _columns(
    name: TableName,
    path: Path,
    table: pa.Table,
    mapping: dict[str, str],
    id_type: str,
    rep: ValidationReport,
    extra: tuple[str, ...],
) -> Loaded:
    """Each contract column of ``table`` (named through ``mapping``) read and checked."""
    columns = TABLES[name]
    out: dict[str, Any] = {}
    labels: dict[str, str] = {}
    present = set(table.column_names)
    for col in columns:
        source = mapping.get(col.name, col.name)
        label = labels[col.name] = col.name if source == col.name else f"'{source}' (contract '{col.name}')"
        if source not in present:
            if col.required:
                mapped = f" (mapped from '{col.name}' in data.columns.{name})" if source != col.name else ""
                rep.error(
                    path.name,
                    source,
                    f"missing required column{mapped}; the file has {', '.join(sorted(present)) or 'no columns'}",
                )
            continue
        arr = table.column(source)
        value: Any  # Ids, an array or a list, by the column's kind
        if col.kind == "id":
            value = _ids(path.name, label, arr, id_type, rep)
        elif col.kind == "text":
            value = _decode(path.name, label, arr, rep)
        elif col.kind in ("number", "count", "position"):
            value = _numbers(path.name, label, arr, rep, integer=col.kind != "number")
        elif col.kind == "timestamp":
            value = _timestamps(path.name, label, arr, rep)
        elif col.kind == "attributes":
            value = _attributes(path.name, label, arr, rep)
        else:
            value = _events(path.name, label, arr, rep)
        if value is not None:
            out[col.name] = value
    extras = {}
    for name_ in extra:
        if name_ not in present:
            rep.error(path.name, name_, f"the config names column '{name_}', which the file does not have")
        else:
            extras[name_] = table.column(name_)
    return Loaded(name, path, table.num_rows, out, extras, labels)


def check_nulls(loaded: Loaded, rep: ValidationReport) -> np.ndarray:
    """Report nulls in non-nullable columns; returns the mask of rows that have any."""
    bad = np.zeros(loaded.rows, bool)
    for col in TABLES[loaded.name]:
        if col.nullable or col.name not in loaded.columns:
            continue
        value = loaded.columns[col.name]
        if isinstance(value, Ids):
            null = value.null
        elif isinstance(value, np.ndarray) and value.dtype == object:
            null = np.array([v is None for v in value])
        elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
            null = np.isnan(value)
        elif isinstance(value, np.ndarray) and col.kind == "timestamp":
            null = value == np.iinfo(np.int64).min
        elif isinstance(value, np.ndarray) and col.kind == "event":
            null = value == -2
        else:
            continue
        if null.any():
            rep.error(
                loaded.path.name,
                loaded.labels[col.name],
                f"null {'id' if col.kind == 'id' else 'value'}s are not allowed",
                null,
            )
        bad |= null
    return bad


def write_export(out: Path, tables: dict[str, pa.Table], config: dict, comment: str) -> Path:
    """A generated shop written as a shop exports it: one Parquet file per table (each under a temporary
    name, then renamed) and the ``shoprank.yaml`` that builds them; returns the config's path."""
    import pyarrow.parquet as pq
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        tmp = out / f".{name}.parquet.tmp"
        pq.write_table(table, tmp)
        tmp.replace(out / f"{name}.parquet")
    path = out / "shoprank.yaml"
    path.write_text(f"# {comment}\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path
