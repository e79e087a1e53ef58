"""The network half of publishing: the token, a bounded wait for every Hub call, the upload itself,
and every way it can fail turned into one user-worded HubError.

huggingface_hub (2.x, on httpx2) waits forever by default: its shared client has no timeout, and
create_repo/commit calls pass none, so a Hub or proxy that accepts the connection and never answers
would block a push for good. Every call here gets `VVW_HUB_TIMEOUT` seconds (default 60) for each
connect, read and write; calls that huggingface_hub retries (pre-upload, LFS) can take a few of
those, but never forever. This module does not build the folder (core.hub.publish does) and never
reads a token from anywhere huggingface_hub does not.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError, HubError

log = logging.getLogger(__name__)

TIMEOUT_ENV = "VVW_HUB_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0
NO_TOKEN = ("no Hugging Face token: run `hf auth login` or set HF_TOKEN to a token with write access "
            "(https://huggingface.co/settings/tokens)")
_CHECK = "check the network or HF_ENDPOINT"
_factory_installed = False


@dataclass
class UploadState:
    """How far an upload got, for saying plainly what an interruption left on the Hub."""

    committing: bool = False  # the commit request was sent: the Hub has all of the upload or none


def hub_timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: give the seconds to wait for an answer from the Hub "
                          f"(a number above 0; default {DEFAULT_TIMEOUT_S:g})")
    return value


def _client_with_timeout():
    import httpx2
    from huggingface_hub.utils._http import default_client_factory

    client = default_client_factory()
    client.timeout = httpx2.Timeout(hub_timeout())
    return client


def _bound_waits(seconds: float) -> None:
    """Give huggingface_hub's shared client a timeout. The factory is installed once (installing closes
    the current client, which a download in another thread may be using), so it also covers the
    client huggingface_hub recreates after an SSL error; the live client gets the current value."""
    global _factory_installed
    import httpx2
    from huggingface_hub import get_session, set_client_factory

    if not _factory_installed:
        set_client_factory(_client_with_timeout)
        _factory_installed = True
    get_session().timeout = httpx2.Timeout(seconds)


def hub_token(token: str | None = None) -> str:
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise HubError(NO_TOKEN)
    return token


def _plain_reason(exc: BaseException, timeout: float) -> str:
    import httpx2

    if isinstance(exc, (httpx2.TimeoutException, TimeoutError)):
        return f"no answer within {timeout:g} s ({TIMEOUT_ENV})"
    if isinstance(exc, json.JSONDecodeError):
        return "the answer was not the Hub's API (a proxy or login page?)"
    text = str(exc).strip() or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    if "name or service not known" in text.lower() or "nodename nor servname" in text.lower():
        return "host name not found"
    return text.split("] ", 1)[-1].splitlines()[0]  # "[Errno -2] ..." -> the words


def _http_error(exc, endpoint: str, repo_id: str) -> HubError:
    status = exc.response.status_code if exc.response is not None else None
    if status is not None and (status >= 500 or status in (407, 408)):
        return HubError(f"could not reach the Hub at {endpoint} (it answered {status}; a server or proxy "
                        f"problem, try again later): {_CHECK}")
    why = {401: "the token was rejected (expired or mistyped?)",
           403: f"the token may not write to {repo_id.split('/')[0]} (needs a write token for that namespace)"}
    return HubError(f"{endpoint}: {why.get(status, str(exc).splitlines()[0])}")


def upload(folder: Path, repo_id: str, repo_type: str, private: bool, token: str, message: str,
           state: UploadState | None = None) -> str:
    """create_repo (exist_ok), then the files in one commit (pre-upload first, so `state` knows when
    the commit itself starts). Every failure becomes one HubError; the URL of the commit on success."""
    import httpx2
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    state = state or UploadState()
    timeout = hub_timeout()
    _bound_waits(timeout)
    api = HfApi(token=token)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    ops = [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p)) for p in files]
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        api.preupload_lfs_files(repo_id, additions=ops, repo_type=repo_type)
        state.committing = True
        info = api.create_commit(repo_id, operations=ops, commit_message=message, repo_type=repo_type)
    except OfflineModeIsEnabled as exc:
        raise HubError("HF_HUB_OFFLINE is set, so nothing can be published: unset it and re-run") from exc
    except HfHubHTTPError as exc:
        raise _http_error(exc, api.endpoint, repo_id) from exc
    # huggingface_hub 2.x lets httpx2's own errors through (connect, timeout, protocol, bad URL), and a
    # proxy's or captive portal's page surfaces as a JSONDecodeError: none of them reached the Hub.
    except (httpx2.HTTPError, httpx2.InvalidURL, ConnectionError, TimeoutError, json.JSONDecodeError) as exc:
        log.info("upload to %s failed", api.endpoint, exc_info=True)
        raise HubError(f"could not reach the Hub at {api.endpoint} ({_plain_reason(exc, timeout)}): "
                       f"{_CHECK}") from exc
    return str(getattr(info, "commit_url", None) or f"{api.endpoint}/{repo_id}")
