"""Receiving a dataset's file: streamed from the request straight to the store as it
arrives (``workers.storage.pipe.PutPipe``: written once, never held whole in memory, never
in a temporary file of its own), counted on the way and refused as soon as it passes
DATASET_MAX_BYTES; and gone without a trace when the upload does not complete.

The request's body is read through ``DatasetUploadParser`` (the dataset view's only parser)
and its one ``DatasetUploadHandler``: Django's own handlers would keep small files in memory,
copy big ones through a temporary file and know no cap. The file in ``request.FILES`` is a
``StoredUpload``: the object in the store, its size and SHA-256 as the store wrote them. A body
that ends before its Content-Length (a client that went away) is refused and the object
removed, even when its file part looked complete."""

from __future__ import annotations

import uuid
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.files.uploadhandler import FileUploadHandler
from django.http.multipartparser import MultiPartParser as DjangoMultiPartParser
from django.http.multipartparser import MultiPartParserError
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import DataAndFiles, MultiPartParser

from apps.accounts.middleware import drain
from apps.datasets.storage import data_storage, dataset_key
from workers.storage import Storage
from workers.storage.pipe import PutPipe

FILE_FIELD = "file"
FORM_FIELDS = ("file", "name", "description", "team")
# Bytes handed from the parser to the handler at a time: few Python steps per GiB.
CHUNK_BYTES = 1024 * 1024


class DatasetTooLarge(ValidationError):
    """The file passed DATASET_MAX_BYTES: a 413 naming ``file`` and the cap."""

    status_code = 413


def too_large(cap: int) -> DatasetTooLarge:
    return DatasetTooLarge({FILE_FIELD: [
        f"The file is over the limit of {cap} bytes for a dataset (ORCH_DATASET_MAX_BYTES)."]})


def unknown_field(name: str) -> ValidationError:
    return ValidationError({name: [f"Unknown field; expected {', '.join(FORM_FIELDS)}."]})


class StoredUpload:
    """An uploaded file, already in the store under ``key`` (the new dataset's id is in it).
    ``discard`` removes it: an upload refused after its file arrived keeps nothing."""

    def __init__(self, storage: Storage, dataset_id: uuid.UUID, key: str, name: str,
                 size: int, sha256: str):
        self.storage, self.dataset_id, self.key = storage, dataset_id, key
        self.name, self.size, self.sha256 = name, size, sha256

    def discard(self) -> None:
        self.storage.delete(self.key)

    def close(self) -> None:
        """Nothing to close (Django closes every uploaded file after the response)."""


class DatasetUploadHandler(FileUploadHandler):
    """Streams the ``file`` part to the store while counting it; DatasetTooLarge once it
    passes ``max_bytes``. Any other file part is refused as an unknown field."""

    chunk_size = CHUNK_BYTES

    def __init__(self, request=None, max_bytes: int = 0):
        super().__init__(request)
        self.max_bytes = max_bytes
        self.pipe: PutPipe | None = None
        self.stored: StoredUpload | None = None
        self.dataset_id = uuid.uuid4()
        self.received = 0

    def new_file(self, field_name, *args, **kwargs):
        super().new_file(field_name, *args, **kwargs)
        if field_name != FILE_FIELD:
            raise unknown_field(field_name)
        if self.pipe is not None:
            raise ValidationError({FILE_FIELD: ["One file per dataset: this upload has two."]})
        self.pipe = PutPipe(data_storage(), dataset_key(self.dataset_id))

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.max_bytes:
            raise too_large(self.max_bytes)
        assert self.pipe is not None  # noqa: S101 - new_file came first
        self.pipe.write(raw_data)
        return None  # the only handler: nobody else gets the bytes

    def file_complete(self, file_size):
        assert self.pipe is not None  # noqa: S101 - new_file came first
        size, sha256 = self.pipe.finish()
        self.stored = StoredUpload(data_storage(), self.dataset_id, self.pipe.key,
                                   self.file_name or FILE_FIELD, size, sha256)
        return self.stored

    def upload_interrupted(self):
        self.discard()

    def discard(self) -> None:
        """Leave nothing in the store: the put stopped, or the object removed."""
        if self.stored is not None:
            self.stored.discard()
        elif self.pipe is not None:
            self.pipe.abort()


class CountingStream:
    """The request's body, counting the bytes read from it."""

    def __init__(self, stream):
        self.stream = stream
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.read_bytes += len(data)
        return data


class DatasetUploadParser(MultiPartParser):
    """multipart/form-data of a dataset upload, its file through DatasetUploadHandler."""

    def parse(self, stream, media_type=None, parser_context=None):
        context = parser_context or {}
        request = context["request"]
        meta = request.META.copy()
        meta["CONTENT_TYPE"] = media_type
        expected = int(meta.get("CONTENT_LENGTH") or 0)
        handler = DatasetUploadHandler(request, settings.DATASET_MAX_BYTES)
        body = CountingStream(stream)
        try:
            data, files = DjangoMultiPartParser(
                meta, cast(Any, body), [handler],
                context.get("encoding", settings.DEFAULT_CHARSET)).parse()
        except BaseException as exc:
            handler.discard()
            refusal = _refusal(exc)
            if refusal is None:  # the client went away, or a bug: nothing to answer here
                raise
            drain(stream, expected - body.read_bytes)  # refused part-way: the client reads why
            raise refusal from None
        if body.read_bytes < expected:  # the client stopped sending: keep nothing
            handler.discard()
            raise ValidationError({"body": [
                f"The body ended after {body.read_bytes} of its {expected} bytes "
                "(Content-Length); nothing was kept."]})
        return DataAndFiles(data, files)


def _refusal(exc: BaseException) -> ValidationError | None:
    """What to answer a body the parser refused (None: not the body's fault)."""
    if isinstance(exc, ValidationError):
        return exc
    if isinstance(exc, RequestDataTooBig):  # the fields beside the file
        return DatasetTooLarge({"body": [
            f"The fields other than file are over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} "
            "bytes (MAX_REQUEST_BODY_BYTES)."]})
    if isinstance(exc, MultiPartParserError | SuspiciousOperation):
        return ValidationError({"body": [f"Not a multipart form this server reads: {exc}"]})
    return None
