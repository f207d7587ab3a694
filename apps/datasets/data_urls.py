"""Signed, expiring URLs on the control plane for workers that reach neither the store's path
nor its bucket (a pool whose settings say ``data_access: url``, e.g. a Slurm submission node):
one GET URL per input of a job, one PUT prefix per process for its outputs.

A URL carries its own right, signed with the control plane's SECRET_KEY (``django.core.signing``,
its time included): which process, and which dataset it may read. No bearer token is needed,
and no other dataset, process or path can be reached with it; it is good for
DATA_URL_EXPIRES_S seconds."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.urls import reverse

INPUT_SALT = "orchestration.data.input"
OUTPUT_SALT = "orchestration.data.output"


class BadDataToken(Exception):
    """A token that is forged, expired or not one of ours: the words say which."""


@dataclass(frozen=True)
class InputRight:
    process_id: uuid.UUID
    dataset_id: uuid.UUID


def data_access_by_url(pool_settings: dict) -> bool:
    return pool_settings.get("data_access") == "url"


def input_url(process_id, dataset_id) -> str:
    token = signing.dumps({"p": str(process_id), "d": str(dataset_id)}, salt=INPUT_SALT)
    return settings.PUBLIC_URL + reverse("data-input", args=[token])


def upload_url(process_id) -> str:
    """The prefix a worker PUTs each output to, with the output's relative path appended."""
    token = signing.dumps({"p": str(process_id)}, salt=OUTPUT_SALT)
    return settings.PUBLIC_URL + reverse("data-output", args=[token, "_"]).removesuffix("_")


def _loaded(token: str, salt: str) -> dict:
    try:
        body = signing.loads(token, salt=salt, max_age=settings.DATA_URL_EXPIRES_S)
    except signing.SignatureExpired:
        raise BadDataToken("This URL has expired.") from None
    except signing.BadSignature:
        raise BadDataToken("This URL is not signed by this control plane.") from None
    if not isinstance(body, dict):
        raise BadDataToken("This URL is not signed by this control plane.")
    return body


def input_right(token: str) -> InputRight:
    body = _loaded(token, INPUT_SALT)
    try:
        return InputRight(uuid.UUID(body["p"]), uuid.UUID(body["d"]))
    except (KeyError, TypeError, ValueError):
        raise BadDataToken("This URL is not signed by this control plane.") from None


def output_right(token: str) -> uuid.UUID:
    body = _loaded(token, OUTPUT_SALT)
    try:
        return uuid.UUID(body["p"])
    except (KeyError, TypeError, ValueError):
        raise BadDataToken("This URL is not signed by this control plane.") from None
