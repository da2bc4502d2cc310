"""The project as an installed package: a wheel in a fresh virtual environment runs the demo.

How this stays offline and never downloads torch:

1. the wheel is built from this checkout with ``pip wheel --no-deps --no-build-isolation``
   (the test environment's own setuptools; no index is contacted);
2. a fresh virtual environment is created (``python -m venv``; its pip comes from the
   standard library's ``ensurepip``, offline) and the wheel is installed with
   ``pip install --no-deps --no-index`` — nothing but the wheel itself;
3. the dependencies (torch, numpy, OpenCV, ...) are made importable by one ``.pth`` file in
   the new environment listing the test environment's ``site-packages``. A path listed in a
   ``.pth`` file is appended to ``sys.path`` *after* the new environment's own
   ``site-packages``, and ``.pth`` files inside it are not executed, so an editable install
   of this checkout there cannot shadow the wheel: the test checks that ``videoreid`` is
   imported from the new environment;
4. ``videoreid demo --quick`` runs from that environment's console script in an empty
   temporary folder, without ``PYTHONPATH``, so the configs must come from the wheel's package
   data.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
def test_wheel_in_fresh_venv_runs_the_demo(tmp_path):
    pytest.importorskip("setuptools")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_NO_INDEX"] = "1"  # belt and braces: pip never contacts an index here
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--wheel-dir", str(wheels), str(ROOT)], tmp_path, env)
    (wheel,) = wheels.glob("videoreid-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "videoreid/configs/demo.yaml" in names and "videoreid/configs/stan/mars.yaml" in names
    assert not [n for n in names if n.startswith("tests/")]

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    py = venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], tmp_path, env)
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     tmp_path, env).strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_videoreid_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")

    where = _run([str(py), "-c", "import videoreid, torch; print(videoreid.__file__)"],
                 tmp_path, env).strip()
    assert Path(where).is_relative_to(venv), where  # the wheel, not this checkout
    out = _run([str(venv / "bin" / "videoreid"), "--version"], tmp_path, env)
    assert out.strip() == "videoreid 0.1.0"

    work = tmp_path / "work"
    work.mkdir()
    out = _run([str(venv / "bin" / "videoreid"), "demo", "--quick", "--out", "demo"], work, env)
    assert "chance" in out and "market" in out
    assert (work / "demo" / "run_quick" / "report.json").is_file()
