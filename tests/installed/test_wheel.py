"""Installed, not cloned: build the wheel, install it (not editable) and use it from a user's project.

The fresh venv reuses this test venv's dependencies through a ``.pth`` line (so nothing is
downloaded); ``quant_batch`` itself comes only from the wheel. The user's folder has its own
``flows/`` package, as Prefect projects usually do.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "quant_batch", src / "quant_batch", ignore=shutil.ignore_patterns("__pycache__"))
    offline = importlib.util.find_spec("wheel") is not None and importlib.util.find_spec("setuptools") is not None
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(tmp / "dist")]
    subprocess.run(cmd + (["--no-build-isolation"] if offline else []), check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp / "dist").glob("quant_batch-*.whl")
    return wheel


def _venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(
        subprocess.run(
            [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # the dependencies of this test venv, after the new venv's own site-packages (plain paths: the
    # editable quant_batch of this checkout is a .pth hook there, which a .pth line does not run)
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return venv


def _readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- ci: python-api-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its marked Python API example"
    return match.group(1)


def test_installed_wheel_in_a_user_project(tmp_path, api_env):
    wheel = _build_wheel(tmp_path)
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"quant_batch", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    venv = _venv(tmp_path, wheel)
    bin_ = venv / "bin"

    project = tmp_path / "project"
    (project / "flows").mkdir(parents=True)
    (project / "flows" / "__init__.py").write_text("USER_FLOWS = True\n")
    shutil.copytree(REPO / "quant_batch" / "data" / "sample" / "corpus", project / "docs")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTHON"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PATH=f"{bin_}{os.pathsep}{env.get('PATH', '')}")

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=timeout)

    # the package, its data and its flows come from the venv, not from this checkout
    where = run(
        str(bin_ / "python"),
        "-c",
        "import quant_batch, quant_batch.flows.embed_corpus as f; print(quant_batch.__file__); print(f.__file__)",
    )
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(venv)) for line in where.stdout.split()), where.stdout

    res = run("quant-batch", "--version")
    assert res.returncode == 0 and res.stdout.strip() == "quant-batch 0.1.0", res.stdout + res.stderr

    res = run("quant-batch", "demo", "--out", "demo-out", timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (project / "demo-out" / "index" / "catalog.duckdb").exists()
    assert len(list((project / "demo-out" / "renders").glob("*.png"))) >= 10

    # the user's own flows package wins, and the wheel brought none
    spec = run(
        str(bin_ / "python"),
        "-c",
        "import importlib.util as u; s = u.find_spec('flows'); print(s.origin); import flows; print(flows.USER_FLOWS)",
    )
    assert spec.stdout.split() == [str(project / "flows" / "__init__.py"), "True"], spec.stdout + spec.stderr
    alone = run(str(bin_ / "python"), "-I", "-c", "import importlib.util as u; print(u.find_spec('flows'))")
    assert alone.stdout.strip() == "None", alone.stdout

    # against the test emulator: a spend cap that stops after the first batches
    env.update(
        QUANT_API_KEY=os.environ["QUANT_API_KEY"],
        QUANT_ORGANIZATION=os.environ["QUANT_ORGANIZATION"],
        QUANT_BASE_URL=os.environ["QUANT_BASE_URL"],
    )
    (project / "capped.yaml").write_text(json.dumps({"sources": [{"path": "docs"}], "out": "capped", "batch_size": 10}))
    res = run("quant-batch", "embed", "capped.yaml", "--max-cost", "0.0001", "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    summary = json.loads(res.stdout)
    assert summary["status"] == "partial" and summary["cost_usd"] > 0, summary
    assert summary["stats"]["runner"] == "in-process"

    # the README's Python API example, verbatim
    (project / "example.py").write_text(_readme_example())
    res = run(str(bin_ / "python"), "example.py")
    assert res.returncode == 0, res.stdout + res.stderr
    first, *hits = res.stdout.strip().splitlines()
    assert first.startswith("completed ") and first.endswith(" in-process"), res.stdout
    assert len(hits) == 3 and "opening-hours.md" in res.stdout
