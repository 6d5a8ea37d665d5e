"""Named OpenAI-compatible chat endpoints, and the one client that talks to them.

An endpoint is named once (``endpoint_register``, the API's ``/endpoints/`` or Django admin) and then used by name:
an arena's ``{"endpoint": NAME}`` source, a generation round's, an AI judge's. The endpoint configured for the AI
judge by settings (``PS_JUDGE_API_BASE``, ``PS_JUDGE_MODEL``, ``PS_JUDGE_API_KEY``) is in the registry too, under
the name its bot rater has (``judge_endpoint_name``): its model's name.

Keys are never stored: a registered endpoint names the environment variable that holds its key
(``api_key_env``), read by the process that sends the request (a worker, never the web process).

The client sends ``POST {api_base}/chat/completions``; ``chat_complete`` returns the whole answer,
``chat_stream`` yields it piece by piece (``stream: true``, server-sent events). Only workers call them.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from annotation.errors import Conflict, Invalid, NotFound

from .models import ChatEndpoint


@dataclass(frozen=True)
class Endpoint:
    """What a request needs: where, which model, the key (read from the environment) and how long to wait."""

    name: str
    api_base: str
    model: str
    api_key: str = ""
    timeout: float = 60.0

    @property
    def url(self) -> str:
        return self.api_base.rstrip("/") + "/chat/completions"


class EndpointError(RuntimeError):
    """The endpoint could not be reached or answered with something other than a chat completion."""


# --- the registry --------------------------------------------------------------------------------


def judge_endpoint_name() -> str:
    """The name of the endpoint configured for the AI judge by settings ("" when none is): its model's name, as
    its bot rater (``judge:<name>``) is called."""
    if not (settings.PS_JUDGE_API_BASE and settings.PS_JUDGE_MODEL):
        return ""
    return re.sub(r"[^A-Za-z0-9_.@+-]+", "-", settings.PS_JUDGE_MODEL)[:100] or "api"


def endpoint_names() -> list[str]:
    """Every endpoint a source may name: the registered ones and the judge's configured one."""
    names = list(ChatEndpoint.objects.order_by("name").values_list("name", flat=True))
    judge = judge_endpoint_name()
    if judge and judge not in names:
        names.append(judge)
    return names


def endpoint_exists(name: str) -> bool:
    return bool(name) and (name == judge_endpoint_name() or ChatEndpoint.objects.filter(name=name).exists())


def endpoint_get(name: str, *, field: str = "endpoint") -> Endpoint:
    """The endpoint registered as ``name`` (or the judge's configured one); Invalid naming ``field`` when there is
    none."""
    row = ChatEndpoint.objects.filter(name=str(name)).first()
    if row is not None:
        return Endpoint(name=row.name, api_base=row.api_base, model=row.model, timeout=row.timeout,
                        api_key=os.environ.get(row.api_key_env, "") if row.api_key_env else "")
    if name and name == judge_endpoint_name():
        return Endpoint(name=name, api_base=settings.PS_JUDGE_API_BASE, model=settings.PS_JUDGE_MODEL,
                        api_key=settings.PS_JUDGE_API_KEY, timeout=settings.PS_JUDGE_TIMEOUT)
    known = ", ".join(endpoint_names()) or "none yet"
    raise Invalid(f"no chat endpoint named {name!r} (registered: {known})", field=field)


@transaction.atomic
def endpoint_register(*, name: str, api_base: str, model: str, api_key_env: str = "", timeout: float = 60.0,
                      description: str = "") -> ChatEndpoint:
    """Name an OpenAI-compatible chat endpoint so that judges, rounds and arenas can use it."""
    endpoint = ChatEndpoint(name=(name or "").strip(), api_base=(api_base or "").strip(), model=(model or "").strip(),
                            api_key_env=(api_key_env or "").strip(), timeout=timeout, description=description or "")
    try:
        endpoint.full_clean(validate_unique=False)
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise Invalid(messages[0], field=field) from exc
    if not 1 <= endpoint.timeout <= 3600:
        raise Invalid("must be from 1 to 3600 seconds", field="timeout")
    if endpoint.api_key_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", endpoint.api_key_env):
        raise Invalid("must be the name of an environment variable (letters, digits, _)", field="api_key_env")
    if endpoint.name == judge_endpoint_name():
        raise Conflict(f"{endpoint.name!r} is the AI judge's configured endpoint.", field="name")
    try:
        with transaction.atomic():
            endpoint.save()
    except IntegrityError:
        raise Conflict(f"A chat endpoint named {endpoint.name!r} already exists.", field="name") from None
    return endpoint


def endpoint_delete(*, name: str) -> None:
    deleted, _ = ChatEndpoint.objects.filter(name=name).delete()
    if not deleted:
        raise NotFound(f"No chat endpoint named {name!r}.")


# --- the client (workers only) -------------------------------------------------------------------


def _body(endpoint: Endpoint, messages: list[dict], *, temperature: float | None, top_p: float | None,
          max_tokens: int | None, stream: bool) -> dict:
    body: dict = {"model": endpoint.model, "messages": messages}
    if temperature is not None:
        body["temperature"] = temperature
    if top_p is not None:
        body["top_p"] = top_p
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if stream:
        body["stream"] = True
    return body


def _headers(endpoint: Endpoint) -> dict:
    return {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}


def client(endpoint: Endpoint):
    """An HTTP client for many requests to one endpoint (close it, or use it in a ``with``)."""
    import httpx2  # only workers talk to endpoints

    return httpx2.Client(timeout=endpoint.timeout, headers=_headers(endpoint))


def _message_content(data) -> str:
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise EndpointError(f"not a chat completion: {str(data)[:200]}") from exc
    return content if isinstance(content, str) else ""


def chat_complete(endpoint: Endpoint, messages: list[dict], *, temperature: float | None = 0.0,
                  top_p: float | None = None, max_tokens: int | None = None, http=None) -> str:
    """The endpoint's answer to ``messages``, whole. ``http``: a ``client(endpoint)`` to reuse."""
    import httpx2

    own = http is None
    http = http or client(endpoint)
    try:
        reply = http.post(endpoint.url, json=_body(endpoint, messages, temperature=temperature, top_p=top_p,
                                                   max_tokens=max_tokens, stream=False))
        reply.raise_for_status()
        return _message_content(reply.json())
    except (httpx2.HTTPError, ValueError) as exc:
        raise EndpointError(f"{endpoint.url}: {type(exc).__name__}: {exc}") from exc
    finally:
        if own:
            http.close()


def chat_stream(endpoint: Endpoint, messages: list[dict], *, temperature: float | None = None,
                top_p: float | None = None, max_tokens: int | None = None) -> Iterator[str]:
    """The endpoint's answer as it is written: yields pieces of text (``stream: true``). A server that ignores
    ``stream`` and answers with one JSON completion yields it in one piece."""
    import httpx2

    body = _body(endpoint, messages, temperature=temperature, top_p=top_p, max_tokens=max_tokens, stream=True)
    try:
        with client(endpoint) as http, http.stream("POST", endpoint.url, json=body) as reply:
            if reply.status_code >= 400:
                reply.read()
                raise EndpointError(f"{endpoint.url} answered {reply.status_code}: {reply.text[:300]}")
            content_type = reply.headers.get("content-type", "").partition(";")[0].strip().lower()
            if content_type != "text/event-stream":
                reply.read()
                yield _message_content(reply.json())
                return
            for event in httpx2.EventSource(reply):
                data = event.data.strip()
                if not data:
                    continue
                if data == "[DONE]":
                    return
                try:
                    chunk = json.loads(data)
                    choice = chunk["choices"][0] if chunk.get("choices") else {}
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise EndpointError(f"{endpoint.url}: unreadable event {data[:200]!r}") from exc
                piece = (choice.get("delta") or {}).get("content") if isinstance(choice, dict) else None
                if isinstance(piece, str) and piece:
                    yield piece
    except httpx2.HTTPError as exc:
        raise EndpointError(f"{endpoint.url}: {type(exc).__name__}: {exc}") from exc
