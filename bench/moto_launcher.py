"""The launcher of moto_server with bench.moto_indexed's patch, for the benches that
run it (bench.scale, bench.forecast_reads). Imports nothing of moto itself."""

from __future__ import annotations

import sys
from pathlib import Path


def indexed_moto(workdir: Path) -> str:
    """An executable in ``workdir`` that runs moto_server with bench.moto_indexed's patch."""
    path = workdir / "moto_server_indexed"
    root = Path(__file__).resolve().parent.parent
    path.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        "from bench.moto_indexed import main\n"
        "main()\n"
    )
    path.chmod(0o755)
    return str(path)
