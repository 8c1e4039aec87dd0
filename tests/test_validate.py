"""The validation command on a tiny image folder written here, against an independent top-k count.

The reference below re-implements the released preprocessing with PIL and numpy (shorter side to 256,
bilinear; centre 224 crop; scale to [0, 1]; ImageNet mean/std) and counts top-k hits with numpy.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scarlet_lib.evaluation import recalibrate_bn
from scarlet_lib.models import get_model, init_weights
from scarlet_lib.validate import main, resolve_device, validate

CLASSES = ["n001", "n002", "n003"]
SIZES = [(64, 64), (80, 60), (50, 90), (300, 260)]  # (width, height): square, landscape, portrait, large
MODEL = "Scarlet_C"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("valid")
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir()
        for i, (w, h) in enumerate(SIZES):
            base = np.zeros((h, w, 3)) + rng.uniform(0, 255, 3)  # a class-and-image colour plus texture
            img = np.clip(base + rng.normal(0, 40, (h, w, 3)) * (c + 1) / 3, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"img{i}.png")
    (root / "README.txt").write_text("a stray file at the top level is ignored by ImageFolder")
    return root


@pytest.fixture(scope="module")
def state(folder):
    """Scarlet_C weights that give image-dependent predictions: BN statistics estimated on the folder's
    images, a classifier that ranks classes 0-7 (the folder's labels are 0-2) first."""
    model = init_weights(get_model(MODEL), seed=14)
    images = torch.tensor(np.stack(preprocess(folder)[0]), dtype=torch.float32)
    recalibrate_bn(model, model, [(images,)])
    with torch.no_grad():
        model.classifier.weight[:8] *= 10
        model.classifier.bias[8:] = -100
    return model.state_dict()


@pytest.fixture
def model(state):
    return _load(state)


def _load(state, **kwargs):
    m = get_model(MODEL, **kwargs)
    m.load_state_dict(state)
    return m.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, state):
    path = tmp_path_factory.mktemp("pretrained") / "ScarletC.pth.tar"
    torch.save({"model_state": state}, path)  # the released format
    return path


def preprocess(root, indices=None):
    """The released preprocessing re-done with PIL and numpy: (images CHW float32, labels)."""
    files = [(Path(root) / c / f, label) for label, c in enumerate(sorted(CLASSES))
             for f in sorted(os.listdir(Path(root) / c))]
    if indices is not None:
        files = [files[i] for i in indices]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    xs, ys = [], []
    for path, label in files:
        img = Image.open(path).convert("RGB")
        w, h = img.size
        nw, nh = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
        img = img.resize((nw, nh), Image.BILINEAR)
        top, left = int(round((nh - 224) / 2)), int(round((nw - 224) / 2))
        a = np.asarray(img, dtype=np.float32)[top:top + 224, left:left + 224] / 255.0
        xs.append(((a - mean) / std).transpose(2, 0, 1).astype(np.float32))
        ys.append(label)
    return xs, np.array(ys)


def reference_counts(model, root, indices=None):
    """Top-1/top-5 hit counts by an independent pipeline (``preprocess`` above, numpy top-k)."""
    xs, ys = preprocess(root, indices)
    with torch.no_grad():
        logits = model(torch.tensor(np.stack(xs))).numpy()
    ranked = np.argsort(-logits, axis=1)
    return int((ranked[:, 0] == ys).sum()), int((ranked[:, :5] == ys[:, None]).any(1).sum()), len(ys)


@pytest.fixture(scope="module")
def expected(folder, state):
    top1, top5, total = reference_counts(_load(state), folder)
    assert total == 12 and 0 < top1 < top5 < total  # the data exercise both counts non-trivially
    return top1, top5, total


def test_validate_function_matches_reference(folder, expected, model):
    # batches of 5, 5, 2 here; the reference runs all 12 images in one batch
    result = validate(model, folder, "cpu", batch_size=5, progress=False)
    top1, top5, total = expected
    assert (result["correct_top1"], result["correct_top5"], result["total"]) == (top1, top5, total)
    assert result["top1"] == top1 * 100 / total and result["top5"] == top5 * 100 / total
    assert result["num_classes"] == 3 and result["device"] == "cpu"


def test_limit_spreads_over_classes(folder, model):
    result = validate(model, folder, limit=4, progress=False)
    indices = [0, 4, 7, 11]  # linspace(0, 11, 4) rounded: every class is represented
    top1, top5, total = reference_counts(model, folder, indices)
    assert (result["correct_top1"], result["correct_top5"], result["total"]) == (top1, top5, total)


def test_cli_in_process(folder, checkpoint, expected, capsys):
    rc = main(["--model", MODEL, "--device", "cpu", "--val-dataset-root", str(folder),
               "--pretrained-path", str(checkpoint), "--batch-size", "7", "--workers", "0"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    top1, top5, total = expected
    assert f"top-1 {top1 * 100 / total:.3f}% ({top1}/{total})" in out.out
    assert f"top-5 {top5 * 100 / total:.3f}% ({top5}/{total})" in out.out
    assert "validate" in out.err  # the progress bar


def test_cli_subprocess(folder, checkpoint, expected):
    proc = subprocess.run(
        [sys.executable, "-m", "scarlet_lib.validate", "--model", MODEL, "--device", "cpu",
         "--val-dataset-root", str(folder), "--pretrained-path", str(checkpoint), "--workers", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"top-1 [\d.]+% \((\d+)/(\d+)\), top-5 [\d.]+% \((\d+)/(\d+)\)", proc.stdout)
    assert m, proc.stdout
    top1, top5, total = expected
    assert tuple(int(g) for g in m.groups()) == (top1, total, top5, total)


def _cli_error(capsys, *argv):
    rc = main(["--model", MODEL, "--device", "cpu", "--workers", "0", "--no-progress", *argv])
    assert rc == 2
    return capsys.readouterr().err


def test_cli_errors(folder, checkpoint, tmp_path, capsys):
    assert "does not exist" in _cli_error(capsys, "--val-dataset-root", str(tmp_path / "missing"),
                                          "--pretrained-path", str(checkpoint))
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a.png")
    assert "no class folders" in _cli_error(capsys, "--val-dataset-root", str(flat),
                                            "--pretrained-path", str(checkpoint))
    empty = tmp_path / "empty"
    (empty / "n001").mkdir(parents=True)
    (empty / "n001" / "notes.txt").write_text("not an image")
    assert "no images found" in _cli_error(capsys, "--val-dataset-root", str(empty),
                                           "--pretrained-path", str(checkpoint))
    assert "checkpoint not found" in _cli_error(capsys, "--val-dataset-root", str(folder),
                                                "--pretrained-path", str(tmp_path / "nope.pth.tar"))
    corrupt = tmp_path / "corrupt.pth.tar"
    corrupt.write_bytes(checkpoint.read_bytes()[:1000])
    assert "cannot read checkpoint" in _cli_error(capsys, "--val-dataset-root", str(folder),
                                                  "--pretrained-path", str(corrupt))
    wrong = tmp_path / "a.pth.tar"
    torch.save({"model_state": get_model("Scarlet_A").state_dict()}, wrong)
    assert "unexpected keys" in _cli_error(capsys, "--val-dataset-root", str(folder), "--pretrained-path", str(wrong))
    with pytest.raises(SystemExit):  # argparse refuses an unknown model name
        main(["--model", "Scarlet_D", "--val-dataset-root", str(folder)])
    assert "Scarlet_A" in capsys.readouterr().err


def test_cuda_requested_but_unavailable(folder, checkpoint, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA is not available.*--device cpu"):
        resolve_device("cuda")
    rc = main(["--model", MODEL, "--device", "cuda", "--val-dataset-root", str(folder),
               "--pretrained-path", str(checkpoint)])
    assert rc == 2 and "CUDA is not available" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


def test_bad_arguments(folder, model):
    with pytest.raises(ValueError, match="batch_size"):
        validate(model, folder, batch_size=0)
    with pytest.raises(ValueError, match="limit"):
        validate(model, folder, limit=0)
    small = get_model(MODEL, num_classes=2)
    with pytest.raises(ValueError, match="3 class folders but the model has only 2 outputs"):
        validate(small, folder, progress=False)


def test_fewer_than_five_classes(folder, state):
    three = {k: (v[:3] if k.startswith("classifier.") else v) for k, v in state.items()}
    model = _load(three, num_classes=3)
    result = validate(model, folder, limit=3, progress=False)
    assert result["correct_top5"] == result["total"] == 3  # all 3 classes are within the top 5
    top1, _, _ = reference_counts(model, folder, [0, 6, 11])  # linspace(0, 11, 3) rounded (6 = round(5.5))
    assert result["correct_top1"] == top1
