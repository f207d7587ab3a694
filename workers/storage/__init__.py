"""Where datasets and outputs are kept: one small interface (``base.Storage``: put, open,
stat, delete, url) and a store picked by URL, the same for the control plane and the workers:

- ``file:///abs/path``: a directory (``files.FileStorage``): the embedded default and the
  shared file system of an HPC site;
- ``s3://bucket/prefix``: a bucket (``s3.S3Storage``, boto3; imported only when named, so a
  worker or a control plane that keeps its data on files needs no boto3).

No Django here: a worker stores outputs with it too.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from .base import BadKey, ObjectMissing, Storage, StorageError
from .files import FileStorage

__all__ = ["BadKey", "FileStorage", "ObjectMissing", "Storage", "StorageError",
           "storage_from_url"]


def storage_from_url(url: str) -> Storage:
    """The store ``url`` names; StorageError saying what is wrong with any other URL."""
    split = urlsplit(url)
    if split.query or split.fragment:
        raise StorageError(f"a storage URL takes no query or fragment: {url!r}")
    if split.scheme == "file":
        path = unquote(split.path)
        if split.netloc not in ("", "localhost") or not path.startswith("/"):
            raise StorageError(f"a file storage URL names an absolute path, as "
                               f"file:///srv/storage: not {url!r}")
        return FileStorage(path)
    if split.scheme == "s3":
        from .s3 import S3Storage

        if not split.netloc:
            raise StorageError(f"an S3 storage URL names a bucket, as s3://bucket/prefix: "
                               f"not {url!r}")
        return S3Storage(split.netloc, unquote(split.path))
    raise StorageError(f"a storage URL is file:///path or s3://bucket/prefix, not {url!r}")
