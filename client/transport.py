"""One HTTP request to the API: the bearer token, the error of each kind, and retries for the
calls that must outlive a restart of the web server (waiting, following logs)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from .auth import Token, fetch_token, json_of, unreachable_reason
from .errors import ApiError, Refused, Throttled, Unavailable, Unreachable, error_for

# What a retry may cure: no answer, a server restarting behind its proxy, a throttle.
TRANSIENT = (Unreachable, Unavailable, Throttled)
FIRST_DELAY_S = 0.5
LONGEST_DELAY_S = 5.0


class Transport:
    """Requests to ``url`` as the client ``client_id``. ``token`` is one kept from before (a
    new one is asked for when it is missing or due); ``on_token`` is told of every new token,
    so a caller can keep it (the CLI does, in its credentials file)."""

    def __init__(self, url: str, client_id: str, secret: str, *, token: Token | None = None,
                 on_token: Callable[[Token], None] | None = None, timeout: float = 30.0,
                 scope: str | None = None, session: requests.Session | None = None):
        self.url = url.rstrip("/")
        self.client_id = client_id
        self.secret = secret
        self.token = token
        self.on_token = on_token
        self.timeout = timeout
        self.scope = scope
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = "orchestration-client"
        # Told of each retry (the error, the seconds until the next try): the CLI's status line.
        self.on_retry: Callable[[ApiError, float], None] | None = None

    def fresh_token(self) -> Token:
        """A token that is not due for renewal, asked for when needed."""
        if self.token is None or self.token.due():
            self.token = fetch_token(self.session, self.url, self.client_id, self.secret,
                                     timeout=self.timeout, scope=self.scope)
            if self.on_token is not None:
                self.on_token(self.token)
        return self.token

    def call(self, method: str, path: str, *, patient: float = 0.0, **kwargs: Any) -> Any:
        """The JSON of ``method path``; the error of its kind otherwise. ``patient``: for how
        many seconds of failing in a row to retry what a retry may cure (0: never)."""
        return self._retrying(lambda: _answer_json(self.send(method, path, **kwargs)), patient)

    def send(self, method: str, path: str, *, params: Any = None, json: Any = None,
             data: Any = None, headers: dict[str, str] | None = None,
             stream: bool = False) -> requests.Response:
        """The answer to one request, a 2xx (else its error raised), with one renewal of the
        token when the server no longer knows it (revoked, or the server's clock ran ahead)."""
        for attempt in (1, 2):
            sent_token = self.fresh_token().access_token
            try:
                answer = self.session.request(
                    method, f"{self.url}{path}", params=params, json=json, data=data,
                    headers={**(headers or {}), "Authorization": f"Bearer {sent_token}"},
                    timeout=self.timeout, stream=stream)
            except requests.RequestException as exc:
                raise Unreachable(f"cannot reach {self.url}: {unreachable_reason(exc)}") from exc
            # A body read from a file cannot be sent twice: its 401 stands.
            if answer.status_code == 401 and attempt == 1 and not hasattr(data, "read"):
                self.token = None
                answer.close()
                continue
            if answer.status_code >= 400:
                raise _error(answer)
            return answer
        raise Refused("the server refused every token")  # unreachable: the loop returns

    def _retrying(self, request: Callable[[], Any], patient: float) -> Any:
        give_up_at: float | None = None
        delay = FIRST_DELAY_S
        while True:
            try:
                return request()
            except TRANSIENT as exc:
                now = time.monotonic()
                give_up_at = give_up_at or now + patient
                wait = delay
                if isinstance(exc, Throttled) and exc.retry_after:
                    wait = exc.retry_after
                if patient <= 0 or now + wait > give_up_at:
                    raise
                if self.on_retry is not None:
                    self.on_retry(exc, wait)
                time.sleep(wait)
                delay = min(delay * 2, LONGEST_DELAY_S)

    def retrying(self, request: Callable[[], Any], patient: float) -> Any:
        """``request()`` retried like :meth:`call` (for requests that are not plain JSON)."""
        return self._retrying(request, patient)


def _error(answer: requests.Response) -> ApiError:
    body = json_of(answer)
    answer.close()
    return error_for(answer.status_code, body, retry_after=answer.headers.get("Retry-After"))


def _answer_json(answer: requests.Response) -> Any:
    if answer.status_code == 204 or not answer.content:
        return None
    body = json_of(answer)
    if body is None:
        raise ApiError(f"{answer.url} answered {answer.headers.get('Content-Type', 'no type')}"
                       ", not JSON: is the URL this service's?", status=answer.status_code)
    return body
