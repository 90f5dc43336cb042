"""Prometheus settings: the settings file, longest-prefix credential matching and the
normal form of server addresses (what address allowlists compare)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stackscaler.devtools.pki import make_pki
from stackscaler.errors import PermanentError
from stackscaler.metrics.prometheus import (
    BasicAuth,
    InvalidSettings,
    PrometheusAuth,
    PrometheusServer,
    PrometheusSettings,
    normalize_address,
)


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    (tmp_path / "token").write_text("t0ken\n")
    (tmp_path / "password").write_text("pw\n")
    make_pki(tmp_path / "pki")
    return tmp_path


def test_reads_a_yaml_settings_file(secrets: Path) -> None:
    path = secrets / "prometheus.yaml"
    path.write_text(
        "timeoutSeconds: 4\n"
        "servers:\n"
        "  - address: https://prometheus.monitoring:9090/\n"
        "    bearerTokenFile: token\n"  # relative to the settings file
        "    caFile: pki/ca.crt\n"
        "  - address: https://mimir.example.com/prometheus\n"
        f"    basicAuth: {{username: scaler, passwordFile: {secrets / 'password'}}}\n"
        "    headers: {X-Scope-OrgID: tenant-a}\n"
        "    insecureSkipVerify: true\n"
    )
    settings = PrometheusSettings.from_file(path)
    assert settings == PrometheusSettings(
        (
            PrometheusServer(
                "https://prometheus.monitoring:9090",
                PrometheusAuth(bearer_token_file=secrets / "token", ca_file=secrets / "pki/ca.crt"),
            ),
            PrometheusServer(
                "https://mimir.example.com/prometheus",
                PrometheusAuth(
                    basic_auth=BasicAuth("scaler", secrets / "password"),
                    insecure_skip_verify=True,
                    headers=(("X-Scope-OrgID", "tenant-a"),),
                ),
            ),
        ),
        default_timeout_seconds=4.0,
    )


def test_reads_json_and_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.json"
    path.write_text(json.dumps({"servers": [{"address": "http://prom:9090"}]}))
    assert PrometheusSettings.from_file(path).servers == (
        PrometheusServer("http://prom:9090", PrometheusAuth()),
    )
    path.write_text("")
    assert PrometheusSettings.from_file(path) == PrometheusSettings()


def test_every_problem_is_reported_with_its_field(secrets: Path) -> None:
    (secrets / "not-a-ca.pem").write_text("hello")
    path = secrets / "bad.yaml"
    path.write_text(
        "timeoutSeconds: -1\n"
        "colour: blue\n"
        "servers:\n"
        "  - address: http://admin:hunter2@prom:9090\n"  # 0
        "  - address: https://prom:9090\n"  # 1
        "    bearerTokenFlie: token\n"
        "  - address: https://prom2:9090\n"  # 2
        "    bearerTokenFile: token\n"
        "    basicAuth: {username: a}\n"
        "  - bearerTokenFile: missing-token\n"  # 3
        "  - address: http://plain:9090\n"  # 4
        "    insecureSkipVerify: yes please\n"
        "  - address: https://other:9090\n"  # 5
        "    caFile: not-a-ca.pem\n"
        "    bearerTokenFile: token\n"
        "    headers: {Authorization: Bearer x, 'Bad Header': v}\n"
        "  - address: https://prom:9090/\n"  # 6: duplicate of 1
        "  - address: ftp://prom\n"  # 7
    )
    with pytest.raises(InvalidSettings) as info:
        PrometheusSettings.from_file(path)
    error = info.value
    assert isinstance(error, PermanentError)
    paths = {e.path for e in error.errors}
    assert paths >= {
        "timeoutSeconds",
        "colour",
        "servers[0].address",
        "servers[1].bearerTokenFlie",
        "servers[2]",
        "servers[2].basicAuth.passwordFile",
        "servers[3].address",
        "servers[3].bearerTokenFile",
        "servers[4].insecureSkipVerify",
        "servers[5].caFile",
        "servers[5].headers.Authorization",
        "servers[5].headers.Bad Header",
        "servers[6].address",
        "servers[7].address",
    }, error.errors
    message = str(error)
    assert message.startswith(str(path))
    assert "hunter2" not in message
    assert "must not contain credentials" in message
    assert "either bearerTokenFile or basicAuth" in message
    assert "already configured by servers[1]" in message


def test_unreadable_or_invalid_files_are_settings_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidSettings, match="cannot read"):
        PrometheusSettings.from_file(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("servers: [unclosed\n")
    with pytest.raises(InvalidSettings, match="not valid YAML"):
        PrometheusSettings.from_file(bad)
    bad.write_text("- a list\n")
    with pytest.raises(InvalidSettings, match="must be a mapping"):
        PrometheusSettings.from_file(bad)


def _server(address: str, token: str) -> PrometheusServer:
    return PrometheusServer(address, PrometheusAuth(bearer_token_file=Path(token)))


SETTINGS = PrometheusSettings(
    (
        _server("https://prom:9090", "root"),
        _server("https://prom:9090/tenants/b", "b"),
        _server("https://prom:9090/tenants", "tenants"),
        _server("http://PLAIN", "plain"),
    )
)


@pytest.mark.parametrize(
    ("address", "token"),
    [
        ("https://prom:9090", "root"),
        ("https://prom:9090/", "root"),
        ("https://prom:9090/other", "root"),
        ("https://prom:9090/tenants", "tenants"),
        ("https://prom:9090/tenants/a", "tenants"),
        ("https://prom:9090/tenants/b", "b"),
        ("https://prom:9090/tenants/b/", "b"),
        ("https://prom:9090/tenants/bb", "tenants"),  # prefixes end at a '/'
        ("https://PROM:9090/tenants/b", "b"),  # host names are case-insensitive
        ("http://plain:80", "plain"),  # the default port is the port
        ("http://prom:9090", None),  # another scheme
        ("https://prom:9091", None),  # another port
        ("https://prom", None),  # 443 is not 9090
        ("https://prometheus:9090", None),  # not a host prefix
    ],
)
def test_longest_prefix_match(address: str, token: str | None) -> None:
    auth = SETTINGS.auth_for(address)
    assert auth.bearer_token_file == (Path(token) if token else None)
    if token is None:
        assert auth == PrometheusAuth()


# --- maxResponseBytes ---------------------------------------------------------------


def test_max_response_bytes_defaults_to_one_mebibyte_and_is_read_from_the_file(
    tmp_path: Path,
) -> None:
    assert PrometheusSettings().max_response_bytes == 1024 * 1024
    path = tmp_path / "prometheus.yaml"
    path.write_text("maxResponseBytes: 65536\n")
    assert PrometheusSettings.from_file(path).max_response_bytes == 65536


@pytest.mark.parametrize("value", ["0", "-1", "1023", "1.5", "true", "'1MiB'", "68719476736"])
def test_an_invalid_max_response_bytes_names_the_field(tmp_path: Path, value: str) -> None:
    path = tmp_path / "prometheus.yaml"
    path.write_text(f"maxResponseBytes: {value}\n")
    with pytest.raises(InvalidSettings) as info:
        PrometheusSettings.from_file(path)
    assert [e.path for e in info.value.errors] == ["maxResponseBytes"]
    assert "whole number of bytes" in str(info.value)


# --- normalize_address --------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "normal"),
    [
        ("http://prom:9090", "http://prom:9090"),
        ("HTTP://Prom.Monitoring", "http://prom.monitoring:80"),
        ("http://prom.monitoring:80/", "http://prom.monitoring:80"),
        ("https://prom.monitoring", "https://prom.monitoring:443"),
        ("https://prom.monitoring:443/", "https://prom.monitoring:443"),
        ("https://mimir.example.com/Prometheus/", "https://mimir.example.com:443/Prometheus"),
        ("http://prom:9090//tenants//a/", "http://prom:9090/tenants/a"),
        ("http://prom:9090/a/../b", "http://prom:9090/b"),
        ("http://prom:9090/%7Eme", "http://prom:9090/~me"),
        ("http://prom:9090/a%20b", "http://prom:9090/a%20b"),
        ("http://[::1]:9090/x", "http://[::1]:9090/x"),
        ("http://[::1]", "http://[::1]:80"),
        ("http://10.0.0.1:9090", "http://10.0.0.1:9090"),
        # every spelling of an IP address the resolver accepts is one form
        ("http://2130706433", "http://127.0.0.1:80"),
        ("http://0x7f.1:9090", "http://127.0.0.1:9090"),
        ("http://0177.0.0.1", "http://127.0.0.1:80"),
        ("http://127.1", "http://127.0.0.1:80"),
        ("http://[0:0:0:0:0:0:0:1]:9090", "http://[::1]:9090"),
        ("http://[::FFFF:127.0.0.1]", "http://[::ffff:7f00:1]:80"),
        ("http://1password.example", "http://1password.example:80"),
        ("http://Bücher.example", "http://xn--bcher-kva.example:80"),
    ],
)
def test_normalize_address(address: str, normal: str) -> None:
    assert normalize_address(address) == normal
    assert normalize_address(normal) == normal  # idempotent: a normal form stays put


def test_equal_addresses_normalize_equal() -> None:
    forms = ["http://prom:80", "HTTP://PROM", "http://prom/", "http://prom:80/", "http://Prom:80//"]
    assert {normalize_address(f) for f in forms} == {"http://prom:80"}
    assert normalize_address("http://prom/a") != normalize_address("http://prom/A")
    assert normalize_address("http://prom") != normalize_address("https://prom")


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("ftp://prom", "http:// or https://"),
        ("prom:9090", "http:// or https://"),
        ("http://", "http:// or https://"),
        ("http://admin:hunter2@prom", "must not contain credentials"),
        ("http://prom/?x=1", "query string or fragment"),
        ("http://prom/#top", "query string or fragment"),
        ("http://prom:0", "port"),
        ("http://%70rom", "host"),
        ("http://prom:99999", "not a URL"),
    ],
)
def test_normalize_address_refuses_what_cannot_be_compared(address: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        normalize_address(address)
    assert "hunter2" not in str(info.value)
