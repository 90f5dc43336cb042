"""The Prometheus metric source: one PromQL instant query per metric.

``read`` sends ``GET {serverAddress}/api/v1/query?query=...&time=<now>&timeout=<t>s``
with the metric's ``timeoutSeconds`` as the client timeout, the credentials and
TLS settings the operator's :class:`PrometheusSettings` hold for that address
(credentials are operator settings, never part of a custom resource), and turns
the answer into a :class:`~stackscaler.metrics.base.Sample` or an error of the
error tree:

=====================================================  =====================================
Answer                                                 Result
=====================================================  =====================================
vector with exactly one series                         its value and timestamp
scalar                                                 its value and timestamp
empty vector                                           MetricUnavailable (unknown)
several series                                         :class:`InvalidQuery` (aggregate!),
                                                       label sets listed, cleaned and capped
range vector or string                                 :class:`InvalidQuery`
NaN, +Inf, -Inf                                        MetricUnavailable (unknown)
HTTP 400 ``bad_data`` / 422 ``execution``              :class:`InvalidQuery`, with
                                                       Prometheus's own error text
HTTP 401 / 403                                         AccessDenied
HTTP 429, 5xx                                          MetricUnavailable (temporary)
HTTP 200 that is not a Prometheus API response         MetricUnavailable (temporary)
redirect (never followed), 404, other 4xx              PermanentError
more than ``maxResponseBytes`` (declared or read)      :class:`ResponseTooLarge` (permanent)
no answer: refused, reset, closed, not HTTP, DNS,      MetricUnavailable (temporary), the
timeout (body included), TLS (untrusted certificate)   same message for all; cause logged
=====================================================  =====================================

The value is never 0 for unknown.

What "stale" means for this source
----------------------------------
Prometheus answers an instant query at evaluation time ``T`` (we pass
``time=now``) from each series' newest raw sample in ``(T - lookback, T]``
(lookback: ``--query.lookback-delta``, 5 minutes by default). A series without
a sample in that window is left out, and so is a series whose newest sample is
a *staleness marker*: Prometheus writes one when a series disappears from its
target's scrape, or when a scrape of the target fails (target down). Either way
the query comes back empty and the metric is **unknown** (MetricUnavailable),
typically one or two scrape intervals after the exporter lost the series, at
the latest after the lookback.

The timestamp in a vector or scalar answer is the *evaluation* time ``T``, not
the time of the underlying raw sample. Because we ask for ``time=now``, a
correct server answers with ``T == now``, and
:func:`~stackscaler.metrics.base.check_fresh` (``staleAfterSeconds``) on it only
fails when the answer was not evaluated for the time asked: a caching proxy or
query frontend replaying an old result, or a server that ignores ``time``. It
does **not** measure how old the raw samples are. Clock skew between the
operator and Prometheus shifts the lookback window; a server whose clock is
behind by more than the lookback has no samples in the window and answers
empty (unknown). A ``staleAfterSeconds`` shorter than the lookback therefore
needs the query's help, for example ``max_over_time(metric[60s])`` (empty once
the newest raw sample is older than 60 s) or
``metric and (time() - timestamp(metric) < 60)``.

What a resource's users see (the server address is theirs to write)
-------------------------------------------------------------------
``serverAddress`` comes from a namespaced resource, and the messages of this
source become its status and Events, which the namespace's users read. The
operator must not become a way to read, or map, what only it can reach:

* An answer is never quoted. Only a well-formed Prometheus error envelope
  (``{"status": "error", "errorType": ..., "error": ...}``) is shown, its
  ``errorType`` and ``error`` cut to :data:`MAX_ERROR_CHARS` characters with
  control, format (bidi, zero-width) and line-separator characters removed.
  Anything else is described by its shape only: ``the answer from <server> is
  not a Prometheus API response (HTTP 200, text/html, 1234 bytes)``. The label
  sets of a several-series answer are shown (they come from a real Prometheus
  query), cleaned the same way, :data:`MAX_SERIES_SHOWN` of them, each cut to
  :data:`MAX_LABELS_CHARS`.
* An answer is never read past ``maxResponseBytes`` (operator setting, 1 MiB
  by default): a larger ``Content-Length`` is refused before the body is read,
  and a chunked or compressed body (counted decompressed) is read in pieces and
  dropped, connection closed, as soon as it passes the limit. An oversized
  answer is a misconfiguration (a query for scaling returns one series), so
  :class:`ResponseTooLarge` is permanent.
* Every way of not getting an answer (connection refused or reset, closed
  early, a peer that does not speak HTTP, DNS failure, timeout, TLS failure
  including an untrusted certificate) gives one message, ``cannot get an
  answer from the Prometheus server <scheme://host:port>; see the operator's
  log``, with the same class (temporary) and retry delay, so status cannot
  tell a closed port from a filtered one or from a TLS service. An untrusted
  certificate is a platform misconfiguration (a missing ``caFile``), but a
  permanent error would post an Event a refused connection does not, which
  tells the ports apart; so it is temporary too, and the log says what to fix.
  The cause goes to the operator's log at WARNING, once a minute per server
  and cause (the log is the platform team's). What remains observable is the
  time a read takes (a timeout is slower than a refusal); the tenancy layer's
  allowlist of servers, checked before this source is called, is what keeps a
  namespace to its own servers.
* Redirects are never followed (the target is not shown either), and the
  deadline (the metric's ``timeoutSeconds``) covers the whole exchange,
  connecting, TLS, headers and body, not only each read.

:func:`normalize_address` gives the form requests are sent to and address
allowlists compare: ``scheme://host:port/path`` with the host lowercased
(IDNA-encoded), the default port explicit and no empty path segments.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import math
import os
import re
import socket
import ssl
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from yarl import URL

from stackscaler import __version__
from stackscaler.errors import (
    AccessDenied,
    FieldError,
    MetricUnavailable,
    PermanentError,
)
from stackscaler.metrics.base import MetricQuery, Sample, check_fresh
from stackscaler.model.spec import PrometheusSource

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "BasicAuth",
    "InvalidQuery",
    "InvalidSettings",
    "PrometheusAuth",
    "PrometheusMetricSource",
    "PrometheusServer",
    "PrometheusSettings",
    "ResponseTooLarge",
    "normalize_address",
]

log = logging.getLogger(__name__)

QUERY_PATH = "/api/v1/query"
QUERY_RANGE_PATH = "/api/v1/query_range"
MAX_SERIES_SHOWN = 5
"""How many label sets a several-series error shows."""
MAX_LABELS_CHARS = 160
"""How long one shown label set may get before it is cut."""
MAX_ERROR_CHARS = 300
"""How much of a Prometheus error envelope's ``error`` a message shows."""
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
"""``maxResponseBytes`` when the settings do not say: 1 MiB."""
MAX_RESPONSE_BYTES_RANGE = (1024, 64 * 1024 * 1024)
"""Allowed ``maxResponseBytes``: 1 KiB to 64 MiB (the chart's memory limit is 512 MiB)."""
READ_CHUNK = 64 * 1024
"""At most this much of a body is read at a time."""
LOG_EVERY_SECONDS = 60.0
"""One WARNING per server and cause of failure in this many seconds."""


class InvalidQuery(PermanentError):
    """The PromQL query is wrong for scaling: malformed, or not exactly one series."""


class ResponseTooLarge(PermanentError):
    """The answer is larger than ``maxResponseBytes``; it was not read beyond that."""


class InvalidSettings(PermanentError):
    """The operator's Prometheus settings are invalid; each problem names its field."""

    def __init__(self, errors: Sequence[FieldError], *, source: str = "") -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(str(e) for e in self.errors))


# --- settings -----------------------------------------------------------------


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password_file: Path


@dataclass(frozen=True)
class PrometheusAuth:
    """How to reach one Prometheus server: credentials, TLS, extra headers.

    Secret files are read when a request is made and re-read when the file
    changes (inode, size or mtime), so rotated tokens and passwords (a
    Kubernetes Secret volume swaps its files atomically) are picked up.
    """

    bearer_token_file: Path | None = None
    basic_auth: BasicAuth | None = None
    ca_file: Path | None = None
    """PEM bundle of the CAs that may sign the server's certificate (instead of the system's)."""
    insecure_skip_verify: bool = False
    """Accept any server certificate: for tests only."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra request headers, e.g. ``X-Scope-OrgID`` for a multi-tenant Mimir/Cortex."""


@dataclass(frozen=True)
class PrometheusServer:
    address: str
    """URL prefix this entry applies to: scheme, host, port and an optional path."""
    auth: PrometheusAuth


@dataclass(frozen=True)
class PrometheusSettings:
    """The operator's Prometheus settings, read once at start-up."""

    servers: tuple[PrometheusServer, ...] = ()
    default_timeout_seconds: float = 10.0
    """Client timeout for a source whose ``timeout_seconds`` is not positive."""
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    """``maxResponseBytes``: no answer is read beyond this many bytes (decompressed)."""

    def auth_for(self, address: str) -> PrometheusAuth:
        """The auth of the server entry matching ``address`` with the longest prefix.

        Scheme, host and port must be equal; the entry's path must be a prefix of
        the address's path at a ``/`` boundary. No match: no credentials, system CAs.
        """
        target = _url_key(URL(address))
        best: tuple[int, PrometheusAuth] | None = None
        for server in self.servers:
            key = _url_key(URL(server.address))
            if key[:3] != target[:3] or target[3][: len(key[3])] != key[3]:
                continue
            if best is None or len(key[3]) > best[0]:
                best = (len(key[3]), server.auth)
        return PrometheusAuth() if best is None else best[1]

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PrometheusSettings:
        """Read settings from a YAML (or JSON) file; raise InvalidSettings naming each field.

        Blocking (reads files): call it at start-up, or via ``asyncio.to_thread``::

            timeoutSeconds: 10            # optional
            maxResponseBytes: 1048576     # optional: larger answers are errors
            servers:
              - address: https://prometheus.monitoring:9090
                bearerTokenFile: /var/run/secrets/prometheus/token
                caFile: /etc/prometheus-ca/ca.crt
              - address: https://mimir.example.com/prometheus
                basicAuth: {username: stackscaler, passwordFile: /secrets/mimir/password}
                headers: {X-Scope-OrgID: tenant-a}
                insecureSkipVerify: false

        Relative file paths are relative to the settings file's directory.
        """
        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise InvalidSettings(
                [FieldError("(file)", f"cannot read: {exc.strerror or exc}")], source=str(path)
            ) from exc
        except yaml.YAMLError as exc:
            raise InvalidSettings(
                [FieldError("(file)", f"not valid YAML or JSON: {exc}")], source=str(path)
            ) from exc
        return _SettingsParser(path.parent).parse(doc, source=str(path))


_TOP_FIELDS = ("servers", "timeoutSeconds", "maxResponseBytes")
_SERVER_FIELDS = (
    "address",
    "bearerTokenFile",
    "basicAuth",
    "caFile",
    "insecureSkipVerify",
    "headers",
)
_BASIC_FIELDS = ("username", "passwordFile")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class _SettingsParser:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.errors: list[FieldError] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def parse(self, doc: Any, *, source: str) -> PrometheusSettings:
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise InvalidSettings(
                [FieldError("(root)", f"must be a mapping, not {type(doc).__name__}")],
                source=source,
            )
        self.unknown(doc, _TOP_FIELDS, "")
        timeout = 10.0
        if "timeoutSeconds" in doc:
            t = doc["timeoutSeconds"]
            if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t <= 600:
                self.error("timeoutSeconds", f"must be a number of seconds in (0, 600], got {t!r}")
            else:
                timeout = float(t)
        max_bytes = DEFAULT_MAX_RESPONSE_BYTES
        if "maxResponseBytes" in doc:
            m = doc["maxResponseBytes"]
            low, high = MAX_RESPONSE_BYTES_RANGE
            if isinstance(m, bool) or not isinstance(m, int) or not low <= m <= high:
                self.error(
                    "maxResponseBytes",
                    f"must be a whole number of bytes from {low} to {high}, got {m!r}",
                )
            else:
                max_bytes = m
        servers: list[PrometheusServer] = []
        raw_servers = doc.get("servers", [])
        if not isinstance(raw_servers, list):
            self.error("servers", "must be a list of server entries")
            raw_servers = []
        seen: dict[tuple[str, str, int | None, tuple[str, ...]], int] = {}
        for i, raw in enumerate(raw_servers):
            address = raw.get("address") if isinstance(raw, dict) else None
            if isinstance(address, str) and _address_problem(address) is None:
                key = _url_key(URL(address))
                if key in seen:
                    self.error(
                        f"servers[{i}].address",
                        f"{address} is already configured by servers[{seen[key]}]",
                    )
                else:
                    seen[key] = i
            server = self.server(raw, f"servers[{i}]")
            if server is not None:
                servers.append(server)
        if self.errors:
            raise InvalidSettings(self.errors, source=source)
        return PrometheusSettings(tuple(servers), timeout, max_bytes)

    def unknown(self, d: Mapping[str, Any], known: Sequence[str], path: str) -> None:
        for k in d:
            if k not in known:
                where = f"{path}.{k}" if path else str(k)
                self.error(where, f"unknown field; expected one of {', '.join(known)}")

    def string(self, d: Mapping[str, Any], key: str, path: str) -> str | None:
        if key not in d:
            return None
        v = d[key]
        if not isinstance(v, str) or not v.strip():
            self.error(f"{path}.{key}", f"must be a non-empty string, got {v!r}")
            return None
        return v

    def file(self, d: Mapping[str, Any], key: str, path: str) -> Path | None:
        v = self.string(d, key, path)
        if v is None:
            return None
        p = Path(v)
        if not p.is_absolute():
            p = self.base / p
        if not p.is_file():
            self.error(f"{path}.{key}", f"{p} does not exist or is not a file")
            return None
        if not os.access(p, os.R_OK):
            self.error(f"{path}.{key}", f"{p} is not readable by the operator")
            return None
        return p

    def server(self, raw: Any, path: str) -> PrometheusServer | None:
        if not isinstance(raw, dict):
            self.error(path, "must be a mapping with at least an address")
            return None
        before = len(self.errors)
        self.unknown(raw, _SERVER_FIELDS, path)
        address = self.string(raw, "address", path)
        if address is None and "address" not in raw:
            self.error(f"{path}.address", "required: the server URL, e.g. https://prom:9090")
        elif address is not None:
            problem = _address_problem(address)
            if problem:
                self.error(f"{path}.address", problem)
        token = self.file(raw, "bearerTokenFile", path)
        basic: BasicAuth | None = None
        if "basicAuth" in raw:
            b = raw["basicAuth"]
            bpath = f"{path}.basicAuth"
            if not isinstance(b, dict):
                self.error(bpath, "must be a mapping with username and passwordFile")
            else:
                self.unknown(b, _BASIC_FIELDS, bpath)
                user = self.string(b, "username", bpath)
                pw = self.file(b, "passwordFile", bpath)
                for k in _BASIC_FIELDS:
                    if k not in b:
                        self.error(f"{bpath}.{k}", "required")
                if user is not None and ":" in user:
                    self.error(f"{bpath}.username", "must not contain ':'")
                if user is not None and pw is not None:
                    basic = BasicAuth(user, pw)
        if "bearerTokenFile" in raw and "basicAuth" in raw:
            self.error(path, "set either bearerTokenFile or basicAuth, not both")
        ca = self.file(raw, "caFile", path)
        if ca is not None:
            try:
                ssl.create_default_context(cafile=str(ca))
            except (ssl.SSLError, OSError) as exc:
                self.error(f"{path}.caFile", f"{ca} is not a PEM CA bundle: {exc}")
        insecure = raw.get("insecureSkipVerify", False)
        if not isinstance(insecure, bool):
            self.error(f"{path}.insecureSkipVerify", f"must be true or false, got {insecure!r}")
            insecure = False
        if insecure and "caFile" in raw:
            self.error(path, "set either caFile or insecureSkipVerify, not both")
        if (
            (insecure or "caFile" in raw)
            and address is not None
            and URL(address).scheme.lower() != "https"
        ):
            self.error(path, "caFile and insecureSkipVerify apply to https addresses only")
        headers = self.headers(raw, path, has_auth="bearerTokenFile" in raw or "basicAuth" in raw)
        if len(self.errors) > before or address is None:
            return None
        return PrometheusServer(
            address.rstrip("/"),
            PrometheusAuth(
                bearer_token_file=token,
                basic_auth=basic,
                ca_file=ca,
                insecure_skip_verify=insecure,
                headers=headers,
            ),
        )

    def headers(
        self, raw: Mapping[str, Any], path: str, *, has_auth: bool
    ) -> tuple[tuple[str, str], ...]:
        if "headers" not in raw:
            return ()
        h = raw["headers"]
        hpath = f"{path}.headers"
        if not isinstance(h, dict):
            self.error(hpath, "must be a mapping of header name to value")
            return ()
        out: list[tuple[str, str]] = []
        for name, value in h.items():
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                self.error(f"{hpath}.{name}", "not a valid HTTP header name")
                continue
            if not isinstance(value, str) or "\r" in value or "\n" in value:
                self.error(f"{hpath}.{name}", "must be a one-line string")
                continue
            if name.lower() == "authorization" and has_auth:
                self.error(
                    f"{hpath}.{name}", "conflicts with bearerTokenFile/basicAuth; set one of them"
                )
                continue
            out.append((name, value))
        return tuple(out)


def _address_problem(address: str) -> str | None:
    try:
        url = URL(address)
    except ValueError as exc:
        return f"not a URL: {exc}"
    if url.scheme.lower() not in ("http", "https") or not url.host:
        return f"must be an http:// or https:// URL with a host, got {_redact(address)}"
    if url.user is not None or url.password is not None:
        return "must not contain credentials; use bearerTokenFile or basicAuth"
    if url.query_string or url.fragment:
        return "must not contain a query string or fragment"
    return None


def _url_key(url: URL) -> tuple[str, str, int | None, tuple[str, ...]]:
    segments = tuple(s for s in url.path.split("/") if s)
    return (url.scheme.lower(), (url.host or "").lower(), url.port, segments)


def _redact(address: str) -> str:
    """The address without userinfo, for messages."""
    try:
        url = URL(address)
    except ValueError:
        return "<invalid URL>"
    if url.user is None and url.password is None:
        return address
    return str(url.with_user(None))


_HOST = re.compile(r"^(?:[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?|[0-9a-f:.]*:[0-9a-f:.]*)$")


def normalize_address(address: str) -> str:
    """The normal form of a Prometheus server address: ``scheme://host:port/path``.

    Pure and cheap. Scheme and host lowercased (a non-ASCII host IDNA-encoded,
    an IPv6 host in brackets), the port always explicit (80, 443 by default),
    an IP address in one spelling (IPv4 as a dotted quad however it was written,
    IPv6 compressed), the path percent-encoded with dot segments resolved, no
    empty segments and
    no trailing ``/`` (the path keeps its case). Two addresses that reach the
    same API have the same form, so allowlists compare forms with ``==`` and
    prefixes at a ``/``; the source sends its requests to this form, so what an
    allowlist checked is what is asked. Idempotent.

    Raises ValueError (naming the problem, never the credentials) for what
    cannot be compared: not http(s), no host, credentials, a query string or
    fragment, port 0, a host that is not a host name or IP address.

    >>> normalize_address("HTTP://Prom.Monitoring/")
    'http://prom.monitoring:80'
    >>> normalize_address("https://mimir.example.com/prometheus/")
    'https://mimir.example.com:443/prometheus'
    """
    problem = _address_problem(address)
    if problem is not None:
        raise ValueError(problem)
    url = URL(address)
    host = (url.raw_host or "").lower()
    if not _HOST.match(host):
        raise ValueError(f"the host {_clean(host, 100)!r} is not a host name or IP address")
    host = _canonical_ip(host)
    port = url.port
    if not port:
        raise ValueError("the port must be from 1 to 65535")
    path = "".join(f"/{segment}" for segment in url.raw_path.split("/") if segment)
    shown = f"[{host}]" if ":" in host else host
    return f"{url.scheme.lower()}://{shown}:{port}{path}"


_NUMERIC_V4 = re.compile(r"^[0-9][0-9a-fx.]*$")


def _canonical_ip(host: str) -> str:
    """An IP address in its one form: every IPv4 spelling the resolver accepts
    (``2130706433``, ``0x7f.1``, ``0177.0.0.1``) as a dotted quad, IPv6 compressed."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError as exc:
            raise ValueError(f"the host {host!r} is not an IPv6 address") from exc
    if _NUMERIC_V4.match(host):
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return host  # a host name that starts with a digit
    return host


def _origin(normal: str) -> str:
    """``scheme://host:port`` of a normalized address."""
    scheme, _, rest = normal.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode categories never shown: controls, format (bidi, zero-width, tags),
surrogates, private use, unassigned, line and paragraph separators."""


def _clean(text: str, limit: int) -> str:
    """``text`` on one line, without hidden characters, at most ``limit`` characters.

    Hidden characters become spaces and runs of white space one space, so a
    newline cannot forge a line and a right-to-left override cannot reorder one.
    """
    text = text[: 4 * limit + 64]  # bounded work: cleaning only ever shortens
    text = "".join(" " if unicodedata.category(c) in _HIDDEN else c for c in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- secrets --------------------------------------------------------------------


@dataclass(frozen=True)
class _Secret:
    key: tuple[int, int, int, int]
    value: str


def _load_secret(path: Path, cached: _Secret | None) -> _Secret:
    """Blocking: stat the file, re-read it only when it changed."""
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    if cached is not None and cached.key == key:
        return cached
    return _Secret(key, path.read_text().strip())


# --- the source -----------------------------------------------------------------


@dataclass
class _Server:
    session: aiohttp.ClientSession
    auth: PrometheusAuth


class PrometheusMetricSource:
    """Reads metrics with PromQL instant queries; see the module docstring.

    One ``aiohttp.ClientSession`` per auth (credentials and TLS settings), so per
    configured server and one for all others, created on first use and closed by
    :meth:`close`. Sessions keep no cookies.
    """

    def __init__(self, settings: PrometheusSettings | None = None) -> None:
        self.settings = settings if settings is not None else PrometheusSettings()
        self._servers: dict[PrometheusAuth, _Server] = {}
        self._secrets: dict[Path, _Secret] = {}
        self._lock = asyncio.Lock()
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}
        """(origin, cause kind) -> (when last logged, reads not logged since)."""

    async def close(self) -> None:
        servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            await server.session.close()

    async def read(self, query: MetricQuery, now: datetime) -> Sample:
        source = query.source
        if not isinstance(source, PrometheusSource):
            raise TypeError(f"{query.resource} metric {query.metric.name} is not a Prometheus one")
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be timezone-aware, e.g. datetime.now(UTC)")
        sample = await self._query(query, source, now)
        return check_fresh(query, sample, now)

    # -- HTTP ------------------------------------------------------------------

    async def _server(self, address: str, where: str) -> _Server:
        auth = self.settings.auth_for(address)
        server = self._servers.get(auth)
        if server is not None:
            return server
        async with self._lock:
            server = self._servers.get(auth)
            if server is None:
                tls: ssl.SSLContext | bool = True
                if auth.insecure_skip_verify:
                    tls = False
                elif auth.ca_file is not None:
                    try:
                        tls = await asyncio.to_thread(
                            ssl.create_default_context, cafile=auth.ca_file
                        )
                    except (OSError, ssl.SSLError) as exc:
                        raise InvalidSettings(
                            [FieldError("caFile", f"cannot load {auth.ca_file}: {exc}")],
                            source=f"{where}: Prometheus settings for {address}",
                        ) from exc
                session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=tls, limit=256, limit_per_host=8),
                    cookie_jar=aiohttp.DummyCookieJar(),
                    headers={
                        "User-Agent": f"stackscaler/{__version__}",
                        "Accept": "application/json",
                    },
                )
                server = self._servers[auth] = _Server(session, auth)
        return server

    async def _secret(self, path: Path) -> str:
        secret = await asyncio.to_thread(_load_secret, path, self._secrets.get(path))
        self._secrets[path] = secret
        return secret.value

    async def _headers(self, auth: PrometheusAuth, where: str, server: str) -> dict[str, str]:
        headers = dict(auth.headers)
        try:
            if auth.bearer_token_file is not None:
                token = await self._secret(auth.bearer_token_file)
                headers["Authorization"] = f"Bearer {token}"
            elif auth.basic_auth is not None:
                password = await self._secret(auth.basic_auth.password_file)
                credentials = f"{auth.basic_auth.username}:{password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
        except OSError as exc:
            missing = exc.filename or "secret file"
            raise InvalidSettings(
                [FieldError("credentials", f"cannot read {missing}: {exc.strerror or exc}")],
                source=f"{where}: Prometheus settings for {server}",
            ) from exc
        return headers

    async def read_range(
        self, query: MetricQuery, start: float, end: float, step: int
    ) -> list[tuple[float, float]]:
        """The query evaluated every ``step`` seconds from ``start`` to ``end`` (epoch
        seconds): ``GET /api/v1/query_range``, for the forecast's history.

        ``(time, value)`` pairs, oldest first; an empty result is an empty list (no
        history, never zeros), NaN and infinite samples are left out, and never more
        points than the range holds are read. Errors as for :meth:`read` (the same
        hostile-answer rules, the same ``maxResponseBytes``); several series are
        :class:`InvalidQuery`.
        """
        source = query.source
        if not isinstance(source, PrometheusSource):
            raise TypeError(f"{query.resource} metric {query.metric.name} is not a Prometheus one")
        if not (step > 0 and start <= end):
            raise ValueError(f"a range query needs step > 0 and start <= end, got {step}")
        where = f"{query.resource} metric {query.metric.name} history"
        address, answer = await self._exchange(
            where,
            source,
            QUERY_RANGE_PATH,
            {
                "query": source.query,
                "start": f"{start:.3f}",
                "end": f"{end:.3f}",
                "step": str(step),
            },
            hint="a range query of 14 days at a 300 s step is about 100 KiB",
        )
        return _interpret_range(
            where, address, source.query, answer, start=start, end=end, step=step
        )

    async def _query(self, query: MetricQuery, source: PrometheusSource, now: datetime) -> Sample:
        where = f"{query.resource} metric {query.metric.name}"
        address, answer = await self._exchange(
            where, source, QUERY_PATH, {"query": source.query, "time": f"{now.timestamp():.3f}"}
        )
        return _interpret(where, address, source.query, answer)

    async def _exchange(
        self,
        where: str,
        source: PrometheusSource,
        path: str,
        params: dict[str, str],
        *,
        hint: str = "an instant query for scaling returns one series",
    ) -> tuple[str, _Answer]:
        """One GET of ``path`` on the source's server: its normal address and the answer."""
        try:
            address = normalize_address(source.server_address)
        except ValueError as exc:
            shown = _clean(_redact(source.server_address), 200)
            raise PermanentError(f"{where}: prometheus.serverAddress {shown}: {exc}") from exc
        timeout = (
            float(source.timeout_seconds)
            if source.timeout_seconds > 0
            else self.settings.default_timeout_seconds
        )
        server = await self._server(address, where)
        headers = await self._headers(server.auth, where, address)
        url = URL(address + path, encoded=True)
        params = {**params, "timeout": f"{timeout:g}s"}
        limit = self.settings.max_response_bytes
        try:
            # one deadline for everything: connecting, TLS, headers and the whole body
            async with (
                asyncio.timeout(timeout),
                server.session.get(
                    url,
                    params=params,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                    allow_redirects=False,
                ) as resp,
            ):
                answer = await _read_answer(resp, limit, where, address, hint=hint)
        except (TimeoutError, aiohttp.ClientError, OSError, EOFError) as exc:
            raise self._unreachable(where, address, exc, timeout) from exc
        return address, answer

    def _unreachable(
        self, where: str, address: str, exc: BaseException, timeout: float
    ) -> MetricUnavailable:
        """One message for every way of not getting an answer; the cause goes to the log."""
        origin = _origin(address)
        cause = _clean(_cause(exc, timeout), 500)
        key = (origin, type(exc).__name__)
        now = time.monotonic()
        last, quiet = self._logged.get(key, (-math.inf, 0))
        if now - last >= LOG_EVERY_SECONDS:
            if len(self._logged) >= 1024:  # bounded, whatever the addresses
                self._logged.clear()
            self._logged[key] = (now, 0)
            more = f" ({quiet} more like it in the last {LOG_EVERY_SECONDS:g}s)" if quiet else ""
            log.warning(
                "%s: no answer from the Prometheus server %s: %s%s", where, origin, cause, more
            )
        else:
            self._logged[key] = (last, quiet + 1)
        return MetricUnavailable(
            f"{where}: cannot get an answer from the Prometheus server {origin}; "
            "see the operator's log"
        )


def _cause(exc: BaseException, timeout: float) -> str:
    """What went wrong, for the operator's log (never for a resource's status)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s (the metric's prometheus.timeoutSeconds)"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return (
            f"TLS certificate not trusted: {exc.certificate_error}; set caFile for this "
            "server in the operator's Prometheus settings, or fix the server's certificate"
        )
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup failed: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return f"TLS handshake failed: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "connection refused"
        return f"cannot connect: {exc.os_error}"
    return f"{type(exc).__name__}: {exc}"


# --- answers --------------------------------------------------------------------


_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")


@dataclass(frozen=True)
class _Answer:
    """One HTTP answer, its body read up to the limit."""

    status: int
    content_type: str
    body: bytes
    retry_after: str = ""

    @property
    def shape(self) -> str:
        """What may be said about an answer that is not Prometheus's: never its content."""
        media = self.content_type.split(";", 1)[0].strip().lower()
        if not media:
            media = "no content type"
        elif len(media) > 64 or not _MEDIA_TYPE.match(media):
            media = "an invalid content type"
        return f"HTTP {self.status}, {media}, {len(self.body)} bytes"


async def _read_answer(
    resp: aiohttp.ClientResponse,
    limit: int,
    where: str,
    server: str,
    *,
    hint: str = "an instant query for scaling returns one series",
) -> _Answer:
    """Read status, headers and at most ``limit`` bytes of body (decompressed)."""
    hint = f"(maxResponseBytes in the operator's Prometheus settings); {hint}"
    declared = resp.content_length
    if declared is not None and declared > limit:
        resp.close()
        raise ResponseTooLarge(
            f"{where}: the answer from {server} declares {declared} bytes, larger than "
            f"{limit} bytes {hint}"
        )
    body = bytearray()
    while True:
        chunk = await resp.content.read(min(READ_CHUNK, limit + 1 - len(body)))
        if not chunk:
            break
        body += chunk
        if len(body) > limit:
            resp.close()  # drop the connection: nothing more is read
            raise ResponseTooLarge(
                f"{where}: the answer from {server} is larger than {limit} bytes {hint}"
            )
    return _Answer(
        resp.status,
        resp.headers.get("Content-Type", ""),
        bytes(body),
        resp.headers.get("Retry-After", ""),
    )


def _retry_delay(retry_after: str) -> float:
    try:
        return max(1.0, min(float(retry_after), 600.0))
    except ValueError:
        return 30.0


def _parse(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: deeply nested arrays
        return None
    return doc if isinstance(doc, dict) else None


def _error_envelope(doc: dict[str, Any] | None) -> tuple[str, str] | None:
    """``(errorType, error)`` of a well-formed Prometheus error envelope, cleaned and cut."""
    if doc is None or doc.get("status") != "error":
        return None
    error_type, error = doc.get("errorType", ""), doc.get("error")
    if not isinstance(error_type, str) or not isinstance(error, str):
        return None
    return _clean(error_type, 40), _clean(error, MAX_ERROR_CHARS)


def _data(where: str, server: str, promql: str, answer: _Answer) -> dict[str, Any]:
    """The ``data`` of a successful Prometheus API answer, or the error of the tree the
    answer stands for. Only a Prometheus error envelope's text is shown; anything else by
    its shape."""
    status = answer.status
    doc = _parse(answer.body)
    envelope = _error_envelope(doc)
    error_type = envelope[0] if envelope else ""
    said = (
        f"HTTP {status}" + (f" {error_type}" if error_type else "") + f": {envelope[1]}"
        if envelope
        else answer.shape
    )

    if status in (401, 403):
        raise AccessDenied(
            f"{where}: Prometheus at {server} refused the query ({said}); "
            "check the credentials for this server in the operator's Prometheus settings"
        )
    if 300 <= status < 400:
        raise PermanentError(
            f"{where}: {server} redirected the query (HTTP {status}); redirects are not "
            "followed: set prometheus.serverAddress to the address that answers"
        )
    if status == 429 or status >= 500 or error_type in ("timeout", "canceled", "unavailable"):
        raise MetricUnavailable(
            f"{where}: Prometheus at {server} is unavailable ({said})",
            delay=_retry_delay(answer.retry_after) if answer.retry_after else 30.0,
        )
    if status in (400, 422) or error_type in ("bad_data", "execution"):
        raise InvalidQuery(
            f"{where}: Prometheus at {server} rejected the query {promql!r} ({said})"
        )
    if status == 404:
        raise PermanentError(
            f"{where}: {server} does not serve the Prometheus API (HTTP 404 for {QUERY_PATH}); "
            "check prometheus.serverAddress (a missing path prefix such as /prometheus?)"
        )
    if status != 200:
        raise PermanentError(f"{where}: unexpected answer from Prometheus at {server} ({said})")
    if envelope:
        raise MetricUnavailable(f"{where}: Prometheus at {server} answered an error ({said})")
    data = doc.get("data") if doc and doc.get("status") == "success" else None
    if not isinstance(data, dict):
        raise MetricUnavailable(_not_prometheus(where, server, answer))
    return data


def _interpret(where: str, server: str, promql: str, answer: _Answer) -> Sample:
    """Turn one HTTP answer of /api/v1/query into a Sample or an error of the tree."""
    data = _data(where, server, promql, answer)
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar":
        return _sample(where, server, promql, result)
    if kind == "vector" and isinstance(result, list):
        if not result:
            raise MetricUnavailable(
                f"{where}: Prometheus at {server} returned an empty result for {promql!r}: "
                "no series matched, or its newest sample is older than the lookback "
                "(5m by default) or was marked stale (series gone from its target, or the "
                "scrape failed)"
            )
        if len(result) > 1:
            raise InvalidQuery(_several(where, promql, result))
        series = result[0]
        value = series.get("value") if isinstance(series, dict) else None
        return _sample(where, server, promql, value)
    if kind in ("matrix", "string"):
        what = "a range vector" if kind == "matrix" else "a string"
        raise InvalidQuery(
            f"{where}: query {promql!r} returns {what}; scaling needs one instant value, "
            "e.g. wrap a range selector in rate(...[5m]) or avg_over_time(...[5m])"
        )
    raise MetricUnavailable(_not_prometheus(where, server, answer))


def _interpret_range(
    where: str, server: str, promql: str, answer: _Answer, *, start: float, end: float, step: int
) -> list[tuple[float, float]]:
    """Turn one HTTP answer of /api/v1/query_range into (time, value) pairs."""
    data = _data(where, server, promql, answer)
    result = data.get("result")
    if data.get("resultType") != "matrix" or not isinstance(result, list):
        raise MetricUnavailable(_not_prometheus(where, server, answer))
    if not result:
        return []
    if len(result) > 1:
        raise InvalidQuery(_several(where, promql, result))
    values = result[0].get("values") if isinstance(result[0], dict) else None
    if not isinstance(values, list):
        raise MetricUnavailable(_not_prometheus(where, server, answer))
    slots: dict[int, tuple[float, float]] = {}
    for pair in values:  # as many as maxResponseBytes let in; one per step is kept
        try:
            ts, raw = pair
            t, value = float(ts), float(raw)
        except (TypeError, ValueError, OverflowError) as exc:
            raise MetricUnavailable(
                f"{where}: the answer from {server} has a malformed sample (not [time, value])"
            ) from exc
        if math.isfinite(value) and start <= t <= end:
            slots.setdefault(round((t - start) / step), (t, value))
    return [slots[k] for k in sorted(slots)]


def _not_prometheus(where: str, server: str, answer: _Answer) -> str:
    return f"{where}: the answer from {server} is not a Prometheus API response ({answer.shape})"


def _sample(where: str, server: str, promql: str, pair: Any) -> Sample:
    try:
        ts, raw = pair
        value = float(raw)
        timestamp = datetime.fromtimestamp(float(ts), UTC)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise MetricUnavailable(
            f"{where}: the answer from {server} has a malformed sample (not [time, value])"
        ) from exc
    if not math.isfinite(value):
        raise MetricUnavailable(
            f"{where}: query {promql!r} evaluated to {_clean(str(raw), 20)} "
            "(not a number): value unknown"
        )
    return Sample(value, timestamp)


def _labels(series: Any) -> str:
    metric = series.get("metric") if isinstance(series, dict) else None
    if not isinstance(metric, dict):
        return "{?}"
    name = _clean(str(metric.get("__name__", "")), MAX_LABELS_CHARS)
    pairs: list[str] = []
    size = len(name)
    for k, v in sorted(metric.items(), key=lambda kv: str(kv[0])):
        if k == "__name__":
            continue
        pair = f'{_clean(str(k), MAX_LABELS_CHARS)}="{_clean(str(v), MAX_LABELS_CHARS)}"'
        pairs.append(pair)
        size += len(pair) + 2
        if size > MAX_LABELS_CHARS:
            break  # cut below anyway: no need to clean the rest
    text = f"{name}{{{', '.join(pairs)}}}"
    return text if len(text) <= MAX_LABELS_CHARS else text[: MAX_LABELS_CHARS - 4] + "...}"


def _several(where: str, promql: str, result: list[Any]) -> str:
    shown = [_labels(s) for s in result[:MAX_SERIES_SHOWN]]
    more = len(result) - len(shown)
    listed = "; ".join(shown) + (f"; and {more} more" if more else "")
    return (
        f"{where}: query {promql!r} returned {len(result)} series, scaling needs exactly one: "
        f"{listed}. Aggregate them into one, e.g. sum({promql}) or max({promql})"
    )
