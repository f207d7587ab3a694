"""Serving a dataset's bytes: streamed from the store a chunk at a time (a whole file from a
file store goes out with sendfile under gunicorn), as an attachment named after the dataset,
whole or one byte range (RFC 9110, section 14).

One range only: a request for several is answered with the whole file (200), as the RFC
allows, and so is a Range header this server cannot read. A range that starts past the end
is a 416 saying the size. ``If-Range`` with another validator than the dataset's ETag (its
SHA-256) gets the whole file, so a resumed download never mixes two files."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.http import FileResponse, HttpResponseBase

from apps.accounts.errors import json_error
from apps.datasets.models import Dataset
from apps.datasets.storage import data_storage
from workers.storage.base import CHUNK_BYTES

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # exclusive


class Unsatisfiable(Exception):
    """The range asks for nothing the file holds."""


def requested_range(header: str | None, size: int) -> ByteRange | None:
    """The one range of ``header`` within a file of ``size`` bytes, None to send it whole;
    Unsatisfiable when it starts at or past the end (or asks for the last 0 bytes)."""
    found = _RANGE.fullmatch((header or "").strip().replace(" ", ""))
    if found is None:
        return None  # none, several, or none we read: the whole file
    first, last = found.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(size - suffix, 0), size)
    start = int(first)
    if last and int(last) < start:
        return None  # not a valid range: ignored, as the RFC says
    if start >= size:
        raise Unsatisfiable
    end = size if not last else min(int(last) + 1, size)
    return ByteRange(start, end)


def content_response(dataset: Dataset, range_header: str | None,
                     if_range: str | None) -> HttpResponseBase:
    """The answer to GET .../content/: 200 with the whole file, 206 with one range, or 416."""
    return object_response(dataset.storage_key, dataset.size, dataset.sha256, dataset.name,
                           range_header, if_range, what="dataset")


def object_response(key: str, size: int, sha256: str, filename: str, range_header: str | None,
                    if_range: str | None, *, what: str) -> HttpResponseBase:
    """The bytes of the store's object ``key`` (a dataset's, or an output's), as an attachment
    named ``filename``: 200 whole, 206 one range, or 416 naming ``what`` it is."""
    etag = f'"{sha256}"'
    if if_range is not None and if_range.strip() != etag:
        range_header = None  # the client's copy is of another file: start again
    try:
        wanted = requested_range(range_header, size)
    except Unsatisfiable:
        refused = json_error(
            416, f"The range {range_header!r} is outside the {what}'s {size} bytes.",
            code="range_not_satisfiable",
            fields={"Range": [f"Ranges of this {what} lie within bytes 0-{size - 1}."
                              if size else f"This {what} is empty: it has no range."]})
        refused["Content-Range"] = f"bytes */{size}"
        return refused
    start, end = (wanted.start, wanted.end) if wanted else (0, size)
    stream = data_storage().open(key, start, None if end == size else end)
    response = FileResponse(stream, as_attachment=True, filename=filename,
                            content_type="application/octet-stream",
                            status=206 if wanted else 200)
    response.block_size = CHUNK_BYTES
    response["Content-Length"] = str(end - start)
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = etag
    if wanted:
        response["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return response
