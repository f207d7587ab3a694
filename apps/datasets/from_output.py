"""``POST /api/datasets/`` with ``{"from_output": {"process": ID, "path": P}}``: an output of a
process becomes a dataset of the process's team, so one run feeds the next. The bytes are
copied inside the store's side (read from the output's object, written to the new dataset's),
never through the client; their SHA-256 is checked against the output's on the way."""

from __future__ import annotations

import uuid
from pathlib import PurePosixPath
from typing import Any

from rest_framework.exceptions import ValidationError

from apps.datasets.models import Dataset, ProcessOutput
from apps.datasets.serializers import DESCRIPTION_MAX, NAME_MAX, _has_control_characters
from apps.datasets.services import dataset_create
from apps.datasets.storage import data_storage, dataset_key
from apps.datasets.uploads import StoredUpload
from apps.processes.selectors import process_list
from apps.teams.access import Caller
from workers.storage import ObjectMissing

FIELDS = ("from_output", "name", "description")
OUTPUT_FIELDS = ("process", "path")


def _refused(field: str, message: str) -> ValidationError:
    return ValidationError({field: [message]})


def from_output_fields(data: Any) -> dict[str, Any]:
    """The request's fields, checked: process (a UUID), path, name (default: the file's
    name), description; a ValidationError naming the first field it refuses."""
    if not isinstance(data, dict):
        raise _refused("body", "Must be a JSON object such as "
                               '{"from_output": {"process": "...", "path": "result.json"}}.')
    for name in sorted(set(data) - set(FIELDS)):
        raise _refused(name, f"Unknown field; expected {', '.join(FIELDS)}.")
    source = data.get("from_output")
    if not isinstance(source, dict):
        raise _refused("from_output", 'Must be an object: {"process": ID, "path": P}.')
    for name in sorted(set(source) - set(OUTPUT_FIELDS)):
        raise _refused(f"from_output.{name}", "Unknown field; expected process, path.")
    try:
        process = uuid.UUID(source.get("process"))
    except (TypeError, ValueError, AttributeError):
        raise _refused("from_output.process", "Must be a process's id.") from None
    path = source.get("path")
    if not isinstance(path, str) or not path:
        raise _refused("from_output.path", "Must be the path of one of the process's "
                                           "outputs, as GET .../outputs/ lists it.")
    name = data.get("name", PurePosixPath(path).name)
    if not isinstance(name, str) or not name or len(name) > NAME_MAX:
        raise _refused("name", f"Must be a string of 1 to {NAME_MAX} characters.")
    if _has_control_characters(name):
        raise _refused("name", "Must not contain control characters (a newline, a tab, ...).")
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > DESCRIPTION_MAX:
        raise _refused("description", f"Must be a string of at most {DESCRIPTION_MAX} "
                                      "characters.")
    return {"process": process, "path": path, "name": name, "description": description}


def dataset_from_output(caller: Caller, *, process: uuid.UUID, path: str, name: str,
                        description: str, owner=None, application=None) -> Dataset:
    """A new dataset of the process's team holding a copy of its output ``path``. A process
    outside the caller's teams is refused as an unknown one (400 naming from_output.process);
    uploading there needs the role operator (403)."""
    found = process_list(caller).filter(pk=process).first()
    if found is None:
        raise _refused("from_output.process", "No such process.")
    caller.require(found.team_id, "upload")
    output = ProcessOutput.objects.filter(process=found, path=path).first()
    if output is None:
        raise _refused("from_output.path", f"Process {found.pk} has no output {path!r}; "
                                           "GET /api/processes/<id>/outputs/ lists them.")
    storage, dataset_id = data_storage(), uuid.uuid4()
    key = dataset_key(dataset_id)
    try:
        with storage.open(output.key) as source:
            size, sha256 = storage.put(key, source)
    except ObjectMissing:
        raise _refused("from_output.path", "The output's bytes are no longer in the "
                                           "store.") from None
    stored = StoredUpload(storage, dataset_id, key, name, size, sha256)
    if (size, sha256) != (output.size, output.sha256):
        stored.discard()
        raise _refused("from_output.path", "The output's bytes in the store are not those "
                                           "its job stored (size or SHA-256 differ).")
    return dataset_create(stored=stored, name=name, description=description, team=found.team,
                          owner=owner, application=application, actor=caller)
