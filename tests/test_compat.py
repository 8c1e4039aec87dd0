"""The torchvision compatibility step: active exactly when torchvision's compiled extension cannot load.

Each check runs in a fresh interpreter, since whether torchvision was already imported (and whether
the operator schemas were declared) is process-wide state.
"""
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Independent probe: does torch load torchvision's compiled extension? (no scarlet_lib, no torchvision import)
PROBE = r"""
import importlib.util, json, os, torch
spec = importlib.util.find_spec("torchvision")
lib_dir = os.path.dirname(spec.origin)
so = [f for f in os.listdir(lib_dir) if f.startswith("_C.") and f.endswith((".so", ".pyd"))]
try:
    torch.ops.load_library(os.path.join(lib_dir, so[0]))
    ok, why = True, ""
except Exception as e:
    ok, why = False, f"{type(e).__name__}: {e}"
print(json.dumps({"loads": ok, "why": why[:300]}))
"""

USE = r"""
import json
import scarlet_lib
from scarlet_lib import _torchvision_compat
import torch, torchvision
from torchvision import transforms
model = torchvision.models.mobilenet_v2(num_classes=7).eval()
with torch.no_grad():
    out = model(torch.randn(2, 3, 64, 64))
img = transforms.ToPILImage()(torch.rand(3, 40, 30))
x = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(32), transforms.ToTensor()])(img)
print(json.dumps({"patched": _torchvision_compat.patched, "shape": list(out.shape), "x": list(x.shape),
                  "again": _torchvision_compat.ensure_torchvision_importable()}))
"""


def _python(code):
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def extension_loads():
    proc = _python(PROBE)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_and_use_torchvision_after_scarlet_lib(extension_loads):
    proc = _python(USE)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["shape"] == [2, 7] and result["x"] == [3, 32, 32]
    # patched exactly when torch could not load the compiled extension
    assert result["patched"] is (not extension_loads["loads"]), extension_loads["why"]
    assert result["again"] is result["patched"]  # idempotent


def test_plain_torchvision_import_fails_exactly_when_extension_cannot_load(extension_loads):
    """Why the step exists: without it, importing torchvision breaks only when its ops cannot load."""
    proc = _python("import torchvision, torch; print(torchvision.models.resnet18()(torch.zeros(1, 3, 32, 32)).shape)")
    if extension_loads["loads"]:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode != 0 and "torchvision::nms" in proc.stderr


def test_no_patch_once_torchvision_is_imported():
    code = ("import sys, torch\n"
            "sys.modules['torchvision'] = type(sys)('torchvision')  # stands for an already imported torchvision\n"
            "from scarlet_lib import _torchvision_compat as c\n"
            "print(c.patched, c.ensure_torchvision_importable())")
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_extension_detection_on_fake_packages(tmp_path):
    from scarlet_lib._torchvision_compat import _extension_loads

    no_ext = tmp_path / "no_ext"
    no_ext.mkdir()
    (no_ext / "__init__.py").write_text("")
    assert _extension_loads(types.SimpleNamespace(origin=str(no_ext / "__init__.py"))) is False
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "__init__.py").write_text("")
    (broken / "_C.cpython-311-x86_64-linux-gnu.so").write_bytes(b"not a shared library")
    assert _extension_loads(types.SimpleNamespace(origin=str(broken / "__init__.py"))) is False
