"""The control plane's side of the signed data URLs (``apps.datasets.data_urls``): a worker with
no path to the store and no bucket (``data_access: url``) GETs a job's inputs and PUTs its
outputs here. No bearer token: the URL's signature is the right, for one process (and, to read,
one dataset it names), until it expires, and only while the process has not ended."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponseBase, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from apps.accounts.errors import json_error
from apps.datasets.data_urls import BadDataToken, input_right, output_right
from apps.datasets.downloads import content_response
from apps.datasets.jobs import outputs_prefix
from apps.datasets.models import DatasetUse
from apps.datasets.storage import data_storage
from apps.processes.models import Process
from workers.contract import is_terminal
from workers.storage import StorageError
from workers.storage.base import CHUNK_BYTES, BadKey, checked_key


class BodyEnded(Exception):
    """The body ended before its Content-Length: the put must leave nothing."""


class ExactBody:
    """The request's body, exactly ``length`` bytes of it: a shorter one fails the read."""

    def __init__(self, request, length: int):
        self.request, self.left = request, length

    def read(self, size: int = -1) -> bytes:
        wanted = self.left if size is None or size < 0 else min(size, self.left)
        if wanted == 0:
            return b""
        data = self.request.read(min(wanted, CHUNK_BYTES))
        if not data:
            raise BodyEnded(f"the body ended {self.left} bytes before its Content-Length")
        self.left -= len(data)
        return data


def _refused(exc: BadDataToken) -> JsonResponse:
    return json_error(403, str(exc), fields={"url": [str(exc)]})


@method_decorator(csrf_exempt, name="dispatch")
class DataInputView(View):
    """GET /data/inputs/<token>: the bytes of the dataset the token names, for the
    process it names (ranges as for a dataset's content)."""

    http_method_names = ["get", "head"]  # noqa: RUF012 - as View declares it

    def get(self, request, token: str) -> HttpResponseBase:
        try:
            right = input_right(token)
        except BadDataToken as exc:
            return _refused(exc)
        use = (DatasetUse.objects.select_related("dataset", "process")
               .filter(process_id=right.process_id, dataset_id=right.dataset_id).first())
        if use is None or use.dataset.deleted_at is not None:
            return json_error(404, "No such input.")
        if is_terminal(use.process.state):
            return json_error(409, "The process has ended: its inputs are closed.",
                              code="ended")
        return content_response(use.dataset, request.headers.get("Range"),
                                request.headers.get("If-Range"))


@method_decorator(csrf_exempt, name="dispatch")
class DataOutputView(View):
    """PUT /data/outputs/<token>/<path>: one output of the token's process, stored under
    its prefix (atomic: a body cut short leaves nothing), at most ORCH_OUTPUT_MAX_BYTES."""

    http_method_names = ["put"]  # noqa: RUF012 - as View declares it

    @staticmethod
    def request_body_limit(method: str, actions: dict) -> tuple[int, str, str] | None:
        """Read by apps.accounts.middleware.BodySizeLimitMiddleware: one output's bytes."""
        cap = settings.OUTPUT_MAX_BYTES
        return cap, "body", f"an output is at most {cap} bytes (ORCH_OUTPUT_MAX_BYTES)."

    def put(self, request, token: str, path: str) -> HttpResponseBase:
        try:
            process_id = output_right(token)
        except BadDataToken as exc:
            return _refused(exc)
        try:
            checked_key(path)
        except BadKey as exc:
            return json_error(400, f"Not an output path: {exc}", fields={"path": [str(exc)]})
        state = Process.objects.filter(pk=process_id).values_list("state", flat=True).first()
        if state is None:
            return json_error(404, "No such process.")
        if is_terminal(state):
            return json_error(409, "The process has ended: its outputs are closed.",
                              code="ended")
        length = request.META.get("CONTENT_LENGTH")
        if not length or not length.isdigit():
            return json_error(411, "A PUT of an output needs a Content-Length.",
                              code="length_required",
                              fields={"Content-Length": ["Required."]})
        key = outputs_prefix(process_id) + path
        try:
            size, sha256 = data_storage().put(key, ExactBody(request, int(length)))
        except (BodyEnded, OSError) as exc:
            return json_error(400, f"Nothing was kept: {exc}", fields={"body": [str(exc)]})
        except StorageError as exc:
            return json_error(503, f"The store refused the output: {exc}", code="store")
        return JsonResponse({"path": path, "size": size, "sha256": sha256, "key": key},
                            status=201)
