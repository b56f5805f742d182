"""Batch input (CSV / JSONL rows of identifiers) and output (records, CSV cells a spreadsheet cannot run)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO

from .._native import (
    DuplicationResult,
)
from .common import CLIError, _clean_text, _is_valid_text, _unicode_ok

# ---- batch input -----------------------------------------------------------------------------


@dataclass
class _Row:
    """One input registrant: its line, key and identifiers, or why it cannot be checked."""

    line: int
    key: Any
    identifiers: list[tuple[str, str]]
    error: str | None = None
    source: str | None = None  # the input as written, for display


def _parse_identifier_list(text: str) -> list[tuple[str, str]]:
    """``TYPE=VALUE;TYPE=VALUE`` → pairs; ``ValueError`` naming the bad part."""
    out: list[tuple[str, str]] = []
    for part in text.split(";"):
        if not part.strip():
            continue
        id_type, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"'{part.strip()}' is not TYPE=VALUE")
        if not id_type.strip():
            raise ValueError(f"'{part.strip()}' has an empty identifier type")
        if not value.strip():
            raise ValueError(f"'{part.strip()}' has an empty identifier value")
        out.append((id_type.strip(), value.strip()))
    return out


def _scalar_text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{what} must be a string")


def _identifier_item(item: Any) -> tuple[str, str]:
    """One JSONL identifier: ``"T=V"``, ``[t, v]`` or an object with type/value members."""
    if isinstance(item, str):
        pairs = _parse_identifier_list(item)
        if len(pairs) != 1:
            raise ValueError(f"'{item}' is not one TYPE=VALUE")
        return pairs[0]
    if isinstance(item, list) and len(item) == 2:
        id_type, value = _scalar_text(item[0], "a type"), _scalar_text(item[1], "a value")
    elif isinstance(item, dict):
        for t, v in (
            ("type", "value"),
            ("id_type", "id_value"),
            ("identifier_type", "identifier_value"),
        ):
            if t in item or v in item:
                id_type = _scalar_text(item.get(t, ""), f"'{t}'")
                value = _scalar_text(item.get(v, ""), f"'{v}'")
                break
        else:
            raise ValueError("an identifier object needs 'type' and 'value'")
    else:
        raise ValueError("each identifier must be 'TYPE=VALUE', [type, value] or an object")
    if not id_type:
        raise ValueError("an identifier has an empty type")
    if not value:
        raise ValueError(f"the {id_type} identifier has an empty value")
    return id_type, value


def _row_from_mapping(line: int, obj: dict[str, Any], *, key_required: bool) -> _Row:
    """A registrant from a JSONL object or a CSV row (``key`` plus ``id_type``/``id_value`` or
    ``identifiers``); problems become the row's ``error``."""
    key = obj.get("key")
    if isinstance(key, str):
        key = key.strip()
    row = _Row(line, key, [])
    if key_required and (key is None or key == ""):
        row.error = "the key is empty"
        return row
    try:
        id_type, id_value = obj.get("id_type"), obj.get("id_value")
        has_pair = id_type not in (None, "") or id_value not in (None, "")
        if has_pair:
            row.identifiers.append(
                _identifier_item({"id_type": id_type or "", "id_value": id_value or ""})
            )
        ids = obj.get("identifiers")
        if isinstance(ids, str):
            row.identifiers.extend(_parse_identifier_list(ids))
        elif isinstance(ids, list):
            row.identifiers.extend(_identifier_item(item) for item in ids)
        elif ids is not None:
            raise ValueError("'identifiers' must be a 'TYPE=VALUE;…' string or a list")
    except ValueError as exc:
        row.error = str(exc)
        return row
    if not row.identifiers:
        row.error = "no identifiers"
    return row


def _read_csv(stream: TextIO) -> Iterator[_Row]:
    """Registrants from CSV text read with ``surrogateescape`` (bad bytes fail their row)."""
    reader = csv.reader(stream)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise CLIError(f"the CSV header cannot be read: {exc}") from None
    names = [_clean_text(h).strip().lower() for h in header]
    if names and names[0].startswith("\ufeff"):
        names[0] = names[0][1:]
    if not ({"id_type", "id_value"} <= set(names) or "identifiers" in names):
        raise CLIError(
            "the CSV header needs 'id_type' and 'id_value' columns or an 'identifiers' column "
            f"(found: {', '.join(names) or 'nothing'})"
        )
    has_key = "key" in names
    last_line = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if reader.line_num == last_line:  # the reader cannot move on: stop, reported
                yield _Row(reader.line_num + 1, None, [], f"unreadable CSV: {exc}")
                return
            last_line = reader.line_num
            yield _Row(reader.line_num, None, [], f"unreadable CSV: {exc}")
            continue
        last_line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        line = reader.line_num
        if not all(_is_valid_text(c) for c in cells):
            key = (
                _clean_text(cells[names.index("key")]).strip()
                if has_key and len(cells) > names.index("key")
                else None
            )
            yield _Row(line, key, [], "the row is not valid UTF-8")
            continue
        if len(cells) != len(names):
            key = (
                cells[names.index("key")].strip()
                if has_key and len(cells) > names.index("key")
                else None
            )
            yield _Row(
                line, key, [], f"the row has {len(cells)} fields, the header has {len(names)}"
            )
            continue
        yield _row_from_mapping(line, dict(zip(names, cells, strict=True)), key_required=has_key)


def _read_jsonl(stream: IO[bytes]) -> Iterator[_Row]:
    """Registrants from JSON Lines; a line that is not a JSON object fails its row."""
    for line, raw in enumerate(stream, 1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
        except UnicodeDecodeError:
            yield _Row(line, None, [], "the line is not valid UTF-8")
            continue
        try:
            obj = json.loads(text)
        except ValueError as exc:
            msg = getattr(exc, "msg", str(exc))
            yield _Row(line, None, [], f"the line is not JSON ({msg})")
            continue
        if not isinstance(obj, dict):
            yield _Row(line, None, [], "the line is not a JSON object")
            continue
        yield _row_from_mapping(line, obj, key_required=False)


_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


def _format_of(path: str, given: str | None, what: str) -> str:
    if given:
        return given
    if path == "-":
        if what == "input":
            raise CLIError("reading stdin needs --input-format csv|jsonl")
        return "jsonl"
    fmt = _FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        flag = "--input-format" if what == "input" else "--format"
        raise CLIError(f"cannot tell the {what} format from '{path}': give {flag} csv|jsonl")
    return fmt


def _count_lines(path: str) -> int | None:
    """Data lines of a regular file (for the progress bar), None when it cannot be known."""
    try:
        if not Path(path).is_file():
            return None
        count, last = 0, b"\n"
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                count += chunk.count(b"\n")
                last = chunk[-1:]
        return count + (last != b"\n")
    except OSError:
        return None


# ---- batch output ----------------------------------------------------------------------------


def _record_of(row: _Row, result: DuplicationResult | None, include_raw: bool) -> dict[str, Any]:
    """One output row: the input's line and key, the result, every identifier's outcome."""
    if result is None or row.error is not None:
        return {
            "line": row.line,
            "key": row.key,
            "state": "failed",
            "result": None,
            "is_duplicate": False,
            "matched_programs": [],
            "identifiers": [
                {"type": t, "value": v, "status": "not_checked", "reason": None, "record_count": 0}
                for t, v in row.identifiers
            ],
            "reasons": [f"invalid input: {row.error}"],
            "transaction_id": None,
        }
    record: dict[str, Any] = {
        "line": row.line,
        "key": row.key,
        "state": result.state,
        "result": result.result,
        "is_duplicate": result.is_duplicate,
        "matched_programs": result.matched_programs,
        "identifiers": [
            {
                "type": o.id_type,
                "value": o.id_value,
                "status": o.status,
                "reason": o.reason,
                "record_count": o.record_count,
            }
            for o in result.outcomes
        ],
        "reasons": result.reasons,
        "transaction_id": result.transaction_id,
    }
    if include_raw:
        record["raw_responses"] = result.raw_responses
    return record


# A cell a spreadsheet would run as a formula (OWASP "CSV injection"): it starts with = + - @ (or
# their full-width forms), perhaps after blanks, or with a tab, CR, LF or NUL. Such a cell is
# written with a leading apostrophe, which spreadsheets show as text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_CONTROL_STARTS = ("\t", "\r", "\n", "\x00")


def _csv_cell(value: str) -> str:
    if value.startswith(_CONTROL_STARTS) or value.lstrip().startswith(_FORMULA_STARTS):
        return "'" + value
    return value


_CSV_COLUMNS = (
    "line",
    "key",
    "state",
    "result",
    "is_duplicate",
    "matched_programs",
    "identifiers",
    "identifier_statuses",
    "reasons",
    "transaction_id",
)


class _Output:
    """Writes result records as JSON Lines or CSV."""

    def __init__(self, stream: IO[str], fmt: str) -> None:
        self.stream = stream
        self.fmt = fmt
        self.ascii = not _unicode_ok(stream)  # JSON escapes what the stream cannot encode
        self.csv: Any = None
        if fmt == "csv":
            self.csv = csv.writer(stream)
            self.csv.writerow(_CSV_COLUMNS)

    def write(self, record: dict[str, Any]) -> None:
        if self.csv is None:
            self.stream.write(json.dumps(record, ensure_ascii=self.ascii, default=str) + "\n")
            return
        ids = record["identifiers"]
        key = record["key"]
        cells = [
            str(record["line"]),
            "" if key is None else key if isinstance(key, str) else json.dumps(key),
            record["state"],
            record["result"] or "",
            "true" if record["is_duplicate"] else "false",
            ";".join(record["matched_programs"]),
            ";".join(f"{i['type']}={i['value']}" for i in ids),
            ";".join(i["status"] for i in ids),
            " | ".join(record["reasons"]),
            record["transaction_id"] or "",
        ]
        self.csv.writerow([_csv_cell(cell) for cell in cells])
