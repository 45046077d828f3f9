"""The LubDub server as the client speaks to it: address, token, retries, downloads.

While the server answers 502/503/504 (a dependency is down, a proxy without its
upstream) reads, and writes that carry an Idempotency-Key, are tried again a
few times, waiting longer each time; anything else is sent once.
"""

import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import requests

from lubdub_client.errors import CliError, one_line

BLOCK = 1024 * 1024
TIMEOUT = (10, 300)
# Answers that mean "try again shortly" (an outage, a proxy without its upstream).
RETRY_STATUSES = frozenset({502, 503, 504})
MAX_ATTEMPTS = 5
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0


def server_url(url: str) -> str:
    """The server's base URL without a trailing slash; CliError unless it is an http(s) address."""
    if not url:
        raise CliError("no server: set LUBDUB_URL or pass --url")
    try:
        parts = urllib.parse.urlsplit(url)
        host, _port = parts.hostname, parts.port  # .port raises ValueError for "host:abc"
    except ValueError as exc:
        raise CliError(f"{url!r} is not a server address ({exc})") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise CliError(f"{url!r} is not a server address: give it as http://HOST:PORT or https://HOST")
    return url.rstrip("/")


class Client:
    def __init__(self, url: str, token: str, *, sleep: Callable[[float], Any] = time.sleep) -> None:
        self.url = server_url(url)
        if not token:
            raise CliError("no token: set LUBDUB_TOKEN or pass --token (manage.py create_api_token USER)")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"
        self.sleep = sleep

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = path if path.startswith("http") else f"{self.url}{path}"
        # Only what is safe to send twice is retried: reads, and writes with an Idempotency-Key.
        repeatable = method in ("GET", "HEAD") or "Idempotency-Key" in (kwargs.get("headers") or {})
        attempt = 1
        while True:
            response = self._send(method, url, **kwargs)
            if response.status_code not in RETRY_STATUSES or not repeatable or attempt >= MAX_ATTEMPTS:
                break
            delay = backoff_seconds(attempt, response.headers.get("Retry-After"))
            print(
                f"lubdub: server said {response.status_code}; retrying in {delay:g} s "
                f"(attempt {attempt + 1} of {MAX_ATTEMPTS})",
                file=sys.stderr,
            )
            self.sleep(delay)
            attempt += 1
        if response.status_code >= 400:
            raise CliError(explain(response), status=response.status_code)
        return response

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.ConnectionError as exc:
            raise CliError(f"cannot reach {self.url} ({type(exc).__name__})") from exc
        except requests.Timeout as exc:
            raise CliError(f"{self.url} did not answer in time") from exc
        except requests.RequestException as exc:  # an address requests cannot use, a broken answer
            raise CliError(f"request to {url} failed: {exc}") from exc

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise CliError(f"{self.url} did not answer with JSON: is it a LubDub server?") from exc

    def web_link(self, batch_id: str) -> str:
        """The batch's page in the web app."""
        return f"{self.url}/batches/{batch_id}/"


def backoff_seconds(attempt: int, retry_after: str | None) -> float:
    """The wait before the next attempt: the server's Retry-After, else doubling; capped."""
    if retry_after and retry_after.strip().isdigit():
        return min(float(retry_after), MAX_BACKOFF_SECONDS)
    return min(FIRST_BACKOFF_SECONDS * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)


def explain(response: requests.Response) -> str:
    """The server's error answer as one line: its `detail`, else its fields, else the reason."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if detail is None and isinstance(body, dict):
        detail = "; ".join(f"{k}: {v}" for k, v in body.items() if k != "code")
    # A detail may hold line breaks (a field's several messages): the error stays one line.
    return one_line(f"server said {response.status_code}: {detail or response.reason}")


def download(link: str) -> Iterator[bytes]:
    """The blocks of a signed link's file; the request is made before a file is opened for them."""
    try:
        # The link is signed: it needs no token (and S3 refuses one).
        response = requests.get(link, stream=True, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise CliError(f"download failed: {exc}") from exc
    if response.status_code >= 400:
        raise CliError(f"download failed: {response.status_code} {response.reason}")
    return _blocks(response)


def _blocks(response: requests.Response) -> Iterator[bytes]:
    try:
        yield from response.iter_content(BLOCK)
    except requests.RequestException as exc:
        raise CliError(f"download failed: {exc}") from exc
