"""``stackscaler demo``'s choice between the live demo and the preview (no processes started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackscaler.cli import main


def test_preview_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--preview", "--days", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "PREVIEW" in out
    assert "instance-hours" in out


def test_days_is_a_preview_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--days", "0.1", "--scale", "50"]) == 0
    out = capsys.readouterr().out
    assert "requests x 50" in out


def test_falls_back_to_the_preview_when_the_control_plane_cannot_be_had(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("STACKSCALER_CONTROLPLANE_BIN", str(tmp_path))  # no binaries there
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert main(["demo", "--duration", "5"]) == 0
    captured = capsys.readouterr()
    assert "the live demo cannot run here" in captured.err
    assert "lacks kube-apiserver/etcd" in captured.err
    assert "running the PREVIEW instead" in captured.err
    assert "PREVIEW" in captured.out
    assert list(tmp_path.iterdir()) == []  # nothing was started or created


def test_under_ci_the_fallback_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("STACKSCALER_CONTROLPLANE_BIN", str(tmp_path))
    assert main(["demo", "--duration", "5"]) == 1
    captured = capsys.readouterr()
    assert "CI=true requires the live demo" in captured.err
    assert "PREVIEW" not in captured.out


@pytest.mark.parametrize("bad", ["0", "-3", "nan", "soon"])
def test_duration_must_be_positive(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--duration", bad])
    assert exc.value.code == 2
    assert "--duration" in capsys.readouterr().err
