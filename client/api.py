"""The Python client of the orchestration API: every route a client may call, as methods that
answer the API's JSON as dicts and raise the errors of :mod:`.errors`.

    from orchestration_client import Client

    client = Client("http://127.0.0.1:8000", CLIENT_ID, SECRET)
    process = client.run("hello", {"name": "Ada"}, wait=True)
    print(process["state"], "".join(client.logs(process["id"])))

Every method that takes a process id takes a unique prefix of it too (at least 4 hex digits).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import config
from .auth import Token
from .errors import AmbiguousPrefix, ApiError, NoSuchRoute, NotFound, WaitTimeout
from .multipart import MultipartFile, Progress
from .transport import Transport

TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "STOPPED", "LOST"})
PROCESSES = "/api/processes/"
SWEEPS = "/api/sweeps/"
DATASETS = "/api/datasets/"
PAGE_SIZE = 100
DOWNLOAD_BLOCK = 1024 * 1024


class Client:
    """A client of the server at ``url``, as the OAuth2 client ``client_id``.

    ``retry_for``: for how many seconds of failing in a row waiting and following go on
    retrying (a refused connection, a 502/503/504 while the web server restarts, a throttle).
    ``token`` and ``on_token``: a token kept from before, and a function told of each new one.
    """

    def __init__(self, url: str, client_id: str, secret: str, *, timeout: float = 30.0,
                 retry_for: float = 300.0, token: Token | None = None,
                 on_token: Callable[[Token], None] | None = None, scope: str | None = None):
        self.http = Transport(config.normalized_url(url), client_id, secret, token=token,
                              on_token=on_token, timeout=timeout, scope=scope)
        self.retry_for = retry_for

    @classmethod
    def from_login(cls, **kwargs: Any) -> Client:
        """A client with the credentials of ``orch login`` (and ORCH_URL, ORCH_CLIENT_ID,
        ORCH_CLIENT_SECRET over them), keeping its tokens in the same file."""
        credentials = config.load()
        return cls(credentials.url, credentials.client_id, credentials.client_secret,
                   token=credentials.token, on_token=config.keep_token, **kwargs)

    @property
    def url(self) -> str:
        return self.http.url

    def token(self) -> Token:
        """A token that is not due for renewal (asked for now when needed): checks the
        credentials."""
        return self.http.fresh_token()

    # --- pipelines, pools, teams, health ---------------------------------------------------

    def pipelines(self) -> list[dict[str, Any]]:
        return self.http.call("GET", "/api/pipelines/")

    def pipeline(self, name: str) -> dict[str, Any]:
        """One pipeline with every version loaded."""
        return self.http.call("GET", f"/api/pipelines/{_segment(name)}/")

    def pools(self) -> list[dict[str, Any]]:
        """Each pool's target, capacity, paused, status (up: a live worker), and counts of
        processes waiting and running (the client's own; all of them, and the live workers,
        for a staff client)."""
        return self.http.call("GET", "/api/pools/")

    def pool_queue(self, name: str) -> Iterator[dict[str, Any]]:
        """A pool's waiting processes in the order admission takes them."""
        return self._pages(f"/api/pools/{_segment(name)}/queue/", {})

    def pause_pool(self, name: str) -> dict[str, Any]:
        return self.http.call("POST", f"/api/pools/{_segment(name)}/pause/")

    def resume_pool(self, name: str) -> dict[str, Any]:
        return self.http.call("POST", f"/api/pools/{_segment(name)}/resume/")

    def teams(self) -> list[dict[str, Any]]:
        """The client's teams, with its role in each."""
        return list(self._pages("/api/teams/", {}))

    def team(self, slug: str) -> dict[str, Any]:
        """A team with its members and clients."""
        return self.http.call("GET", f"/api/teams/{_segment(slug)}/")

    def health(self) -> dict[str, Any]:
        """Each part of the control plane; a 503 (Unavailable) names the parts that are down."""
        return self.http.call("GET", "/api/health/")

    # --- processes -------------------------------------------------------------------------

    def run(self, pipeline: str, config: dict[str, Any] | None = None, *,
            team: str | None = None, version: int | None = None,
            secrets: dict[str, str] | None = None, priority: int | None = None,
            wait: bool = False, timeout: float | None = None,
            idempotency_key: str | None = None, retry: bool = False,
            on_state: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Start a run of ``pipeline`` with ``config`` (merged over its defaults). With
        ``wait``, wait for it to end and answer the ended process (whatever its state; a
        :class:`WaitTimeout` after ``timeout`` seconds).

        The POST always carries an Idempotency-Key (a new one unless given), so it is retried
        safely (with ``wait`` or ``retry``, as waits are): when an answer is lost, the retry
        returns the process the first request made, never a second."""
        body: dict[str, Any] = {"pipeline": pipeline, "used_config": config or {}}
        optional = {"team": team, "version": version, "secrets": secrets, "priority": priority}
        body.update({name: value for name, value in optional.items() if value is not None})
        key = idempotency_key or f"orch-{uuid.uuid4()}"
        process = self.http.call("POST", PROCESSES, json=body,
                                 headers={"Idempotency-Key": key},
                                 patient=self.retry_for if wait or retry else 0.0)
        if wait:
            return self.wait(process["id"], timeout, on_state=on_state)
        return process

    def get(self, process_id: str) -> dict[str, Any]:
        return self.http.call("GET", f"{PROCESSES}{self.full_id(process_id)}/")

    def status(self, process_id: str) -> dict[str, Any]:
        """``state``, ``finished``, ``exit_code``, ``message``."""
        return self.http.call("GET", f"{PROCESSES}{self.full_id(process_id)}/status/")

    def wait(self, process_id: str, timeout: float | None = None, *, interval: float = 1.0,
             on_state: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """The process once it has ended. ``on_state`` is told each status read on the way;
        a restart of the web server on the way is waited out (``retry_for``)."""
        pid = self.full_id(process_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = min(0.25, interval)
        while True:
            status = self.http.call("GET", f"{PROCESSES}{pid}/status/", patient=self.retry_for)
            if on_state is not None:
                on_state(status)
            if status["finished"]:
                return self.http.call("GET", f"{PROCESSES}{pid}/", patient=self.retry_for)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"{pid} is still {status['state']} after {timeout:g} s",
                                  process=status)
            time.sleep(pause)
            pause = min(pause * 2, interval)

    def logs(self, process_id: str, follow: bool = False, *, offset: int = 0,
             interval: float = 1.0) -> Iterator[str]:
        """The process's output as text chunks from byte ``offset`` on; with ``follow``, new
        output as it comes until the process has ended and all of it was read."""
        for chunk in self.log_chunks(process_id, follow, offset=offset, interval=interval):
            yield chunk["text"]

    def log_chunks(self, process_id: str, follow: bool = False, *, offset: int = 0,
                   interval: float = 1.0) -> Iterator[dict[str, Any]]:
        """As :meth:`logs`, each chunk as the API answers it: ``text``, ``offset``,
        ``next_offset``, ``skipped`` (bytes the log cap dropped before this text), ``complete``."""
        pid = self.full_id(process_id)
        patient = self.retry_for if follow else 0.0
        while True:
            chunk = self.http.call("GET", f"{PROCESSES}{pid}/logs/", params={"offset": offset},
                                   patient=patient)
            offset = chunk["next_offset"]
            if chunk["text"] or chunk.get("skipped"):
                yield chunk
            if chunk["complete"]:
                return
            if chunk["text"]:
                continue  # more may be there already: a read stops at about 1 MiB
            # Nothing new: over once the process has ended (and this read found nothing).
            if not follow or self.http.call("GET", f"{PROCESSES}{pid}/status/",
                                            patient=patient)["finished"]:
                return
            time.sleep(interval)

    def events(self, process_id: str) -> list[dict[str, Any]]:
        """Every transition: ``from``, ``to``, ``time``, ``recorded_at``, ``source``,
        ``detail``."""
        return self.http.call("GET", f"{PROCESSES}{self.full_id(process_id)}/events/")

    def stop(self, process_id: str) -> dict[str, Any]:
        """Ask for a stop (STOPPING, then STOPPED); a finished process is left as it is."""
        return self.http.call("POST", f"{PROCESSES}{self.full_id(process_id)}/stop/")

    def rerun(self, process_id: str, *, wait: bool = False,
              timeout: float | None = None) -> dict[str, Any]:
        """A new process: the same pipeline version, config, secrets and team."""
        process = self.http.call("POST", f"{PROCESSES}{self.full_id(process_id)}/rerun/")
        return self.wait(process["id"], timeout) if wait else process

    def ps(self, *, state: str | list[str] | None = None, pipeline: str | None = None,
           created_after: str | None = None, created_before: str | None = None,
           limit: int | None = None, page_size: int = PAGE_SIZE) -> Iterator[dict[str, Any]]:
        """The client's processes, newest first, read a page at a time as they are iterated
        (``limit``: at most that many)."""
        params: dict[str, Any] = {"state": [state] if isinstance(state, str) else state,
                                  "pipeline": pipeline, "created_after": created_after,
                                  "created_before": created_before}
        if limit is not None:
            page_size = max(1, min(page_size, limit))
        for count, process in enumerate(self._pages(PROCESSES, params, page_size), start=1):
            yield process
            if limit is not None and count >= limit:
                return

    def full_id(self, value: str) -> str:
        """The whole id of ``value``: a whole id as it is, else the one process whose id it
        starts (:meth:`resolve`)."""
        text = str(value).strip()
        if len(text.replace("-", "")) == 32:
            try:
                return str(uuid.UUID(text))
            except ValueError:
                pass  # not hex: the server's id_prefix check says what is wrong
        return self.resolve(text)

    def resolve(self, prefix: str) -> str:
        """The whole id of the one process whose id starts with ``prefix`` (hex digits, with
        or without dashes, at least 4): NotFound for none, AmbiguousPrefix for several."""
        wanted = prefix.strip().lower()
        answer = self.http.call("GET", PROCESSES, params={"id_prefix": wanted, "page_size": 2})
        found = [p["id"] for p in answer["results"]]
        bare = wanted.replace("-", "")
        if any(not pid.replace("-", "").startswith(bare) for pid in found):
            # A server before the id_prefix filter answers every process: no guessing.
            raise ApiError(f"this server cannot look up ids by prefix: give the whole id, "
                           f"not {prefix!r}")
        if not found:
            raise NotFound(f"no process of yours has an id starting with {prefix!r}",
                           status=404, code="not_found")
        if len(found) > 1:
            raise AmbiguousPrefix(prefix, found)
        return found[0]

    # --- datasets and outputs --------------------------------------------------------------

    def upload(self, path: str | Path, *, name: str | None = None,
               description: str | None = None, team: str | None = None,
               progress: Progress | None = None) -> dict[str, Any]:
        """Upload a file as a dataset of ``team`` (needed when the client is in several),
        streamed from disk; ``progress(done, total)`` is told of the bytes sent. The new
        dataset: ``id``, ``name``, ``size``, ``sha256``, ``team``."""
        path = Path(path)
        given = (("name", name), ("description", description), ("team", team))
        fields = {key: value for key, value in given if value is not None}
        body = MultipartFile(path, fields, progress=progress)
        try:
            with _route("datasets"):
                answer = self.http.send("POST", DATASETS, data=body,
                                        headers={"Content-Type": body.content_type})
        finally:
            body.close()
        return answer.json()

    def datasets(self, *, name: str | None = None) -> Iterator[dict[str, Any]]:
        """The datasets the client may use, newest first."""
        with _route("datasets"):
            yield from self._pages(DATASETS, {"name": name})

    def download_dataset(self, dataset_id: str, dest: str | Path, *,
                         progress: Progress | None = None) -> Path:
        """The dataset's bytes written to ``dest`` (a file, or a folder to put it in)."""
        with _route("datasets"):
            return self._download(f"{DATASETS}{_segment(dataset_id)}/content/", Path(dest),
                                  dataset_id, progress)

    def outputs(self, process_id: str) -> list[dict[str, Any]]:
        """The files the process wrote: ``path``, ``size``, ``sha256``."""
        with _route("outputs"):
            return self.http.call("GET", f"{PROCESSES}{self.full_id(process_id)}/outputs/")

    def download_output(self, process_id: str, path: str, folder: str | Path, *,
                        progress: Progress | None = None) -> Path:
        """The output ``path`` of the process, written under ``folder`` at that path."""
        target = _inside(Path(folder), path)
        url = f"{PROCESSES}{self.full_id(process_id)}/outputs/{quote(path.lstrip('/'))}"
        with _route("outputs"):
            return self._download(url, target, path, progress)

    # --- sweeps ----------------------------------------------------------------------------

    def sweep(self, pipeline: str, *, grid: dict[str, list[Any]] | None = None,
              configs: list[dict[str, Any]] | None = None,
              base_config: dict[str, Any] | None = None, team: str | None = None,
              version: int | None = None, priority: int | None = None,
              idempotency_key: str | None = None) -> dict[str, Any]:
        """Start one run of ``pipeline`` per combination of ``grid`` ({"lr": [0.1, 0.01],
        "seed": [1, 2, 3]}: 6 runs) or per config of ``configs``, each over ``base_config``,
        in one request; answers the sweep (``id``, ``size``, ``counts`` by state). Carries an
        Idempotency-Key (a new one unless given) and is retried safely with it."""
        body: dict[str, Any] = {"pipeline": pipeline, "base_config": base_config or {}}
        optional = {"grid": grid, "configs": configs, "team": team, "version": version,
                    "priority": priority}
        body.update({name: value for name, value in optional.items() if value is not None})
        key = idempotency_key or f"orch-{uuid.uuid4()}"
        with _route("sweeps"):
            return self.http.call("POST", SWEEPS, json=body, headers={"Idempotency-Key": key},
                                  patient=self.retry_for)

    def sweep_get(self, sweep_id: str) -> dict[str, Any]:
        """The sweep with its processes counted by state (``counts``)."""
        with _route("sweeps"):
            return self.http.call("GET", f"{SWEEPS}{_segment(sweep_id)}/")

    def sweep_processes(self, sweep_id: str) -> Iterator[dict[str, Any]]:
        """The sweep's processes in the order it created them, a page at a time."""
        with _route("sweeps"):
            yield from self._pages(f"{SWEEPS}{_segment(sweep_id)}/processes/", {})

    def sweep_stop(self, sweep_id: str) -> dict[str, Any]:
        """Stop every process of the sweep that has not ended: ``stopped`` and ``counts``."""
        with _route("sweeps"):
            return self.http.call("POST", f"{SWEEPS}{_segment(sweep_id)}/stop/")

    # --- helpers ---------------------------------------------------------------------------

    def _pages(self, path: str, params: dict[str, Any],
               page_size: int = PAGE_SIZE) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list (a list answered whole is taken as it is)."""
        query = {key: value for key, value in params.items() if value is not None}
        page = 1
        while True:
            answer = self.http.call("GET", path,
                                    params={**query, "page": page, "page_size": page_size})
            if isinstance(answer, list):
                yield from answer
                return
            yield from answer["results"]
            if not answer.get("next"):
                return
            page += 1

    def _download(self, path: str, dest: Path, name: str, progress: Progress | None) -> Path:
        answer = self.http.send("GET", path, stream=True)
        with answer:
            if dest.is_dir():
                dest = dest / _download_name(answer.headers.get("Content-Disposition"), name)
            total = int(answer.headers["Content-Length"]) if (
                answer.headers.get("Content-Length", "").isdigit()) else None
            dest.parent.mkdir(parents=True, exist_ok=True)
            partial = dest.with_name(f".{dest.name}.part")
            done = 0
            with partial.open("wb") as out:
                for block in answer.iter_content(DOWNLOAD_BLOCK):
                    out.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
            partial.replace(dest)
        return dest


@contextmanager
def _route(feature: str) -> Iterator[None]:
    """Turns the server's "no such route" 404 into one that says which feature it lacks."""
    try:
        yield
    except NoSuchRoute as exc:
        raise NoSuchRoute(f"this server has no {feature} route yet", status=404,
                          code="not_found") from exc


def _segment(text: str) -> str:
    """``text`` as one path segment of a URL."""
    return quote(str(text), safe="")


def _inside(folder: Path, path: str) -> Path:
    """``folder/path``, refused when ``path`` would leave ``folder`` (``..``, absolute)."""
    parts = Path(path.lstrip("/")).parts
    if not parts or any(part in ("..", ".") for part in parts):
        raise ApiError(f"refusing to write the output {path!r} outside {folder}")
    return folder.joinpath(*parts)


def _download_name(disposition: str | None, fallback: str) -> str:
    """The file name of a Content-Disposition header (its last path part), else ``fallback``."""
    if disposition and "filename=" in disposition:
        name = disposition.split("filename=", 1)[1].split(";", 1)[0].strip().strip('"')
        if Path(name).name not in ("", ".", ".."):
            return Path(name).name
    return Path(fallback).name or "download"
