"""predict.py: a run's export applied to a folder of unlabelled images of any size and mode,
decoded as the run's images were, written as a CSV of the top-k classes."""

import csv
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import predict
from tests.helpers import REPO, copy_run
from training import export


def write_images(root) -> dict[str, Image.Image]:
  """Unlabelled JPEGs and PNGs of mixed sizes and modes, two in a subfolder."""
  rng = np.random.default_rng(0)
  images = {
      "b.png": Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)),
      "a.jpg": Image.fromarray(rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)),
      "c.png": Image.fromarray(rng.integers(0, 256, (64, 64, 4), dtype=np.uint8)),
      "sub/d.jpeg": Image.fromarray(rng.integers(0, 256, (5, 90), dtype=np.uint8)),
      "sub/e.png": Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
                                   ).convert("P"),
  }
  for name, image in images.items():
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    image.save(root / name)
  return images


def read_csv(text: str) -> list[list[str]]:
  return list(csv.reader(io.StringIO(text)))


def test_each_image_gets_the_top_k_classes_of_the_runs_export(prelu_run, tmp_path):
  names = sorted(write_images(tmp_path / "images"))
  (tmp_path / "images" / "notes.txt").write_text("not an image, not named as one")
  rows = predict.predict(str(prelu_run), str(tmp_path / "images"), top_k=3)
  assert rows[0] == ["file", "class_1", "probability_1", "class_2", "probability_2",
                     "class_3", "probability_3"]
  assert [r[0] for r in rows[1:]] == names  # sorted relative paths, subfolders included
  m = export.load(str(prelu_run))
  for row in rows[1:]:
    # The run's decoding, spelled out: one channel, bilinear resize to its 8x8.
    with Image.open(tmp_path / "images" / row[0]) as image:
      pixels = np.asarray(image.convert("L").resize((8, 8), Image.Resampling.BILINEAR))
    logits = np.asarray(m.logits(pixels[None, :, :, None]))[0]
    assert row[1] == m.class_names[int(np.argmax(logits))]
    probabilities = [float(p) for p in row[2::2]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) <= 1 + 1e-5
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(probabilities, np.sort(softmax)[::-1][:3], atol=1e-5)


def test_all_classes_sum_to_one(prelu_run, tmp_path):
  write_images(tmp_path / "images")
  rows = predict.predict(str(prelu_run), str(tmp_path / "images"), top_k=10)
  for row in rows[1:]:
    assert sorted(row[1::2]) == [str(i) for i in range(10)]
    assert sum(float(p) for p in row[2::2]) == pytest.approx(1, abs=1e-5)


def test_the_command_line_writes_the_csv(prelu_run, tmp_path):
  write_images(tmp_path / "images")
  out = subprocess.run([sys.executable, "predict.py", f"--workdir={prelu_run}",
                        f"--images={tmp_path / 'images'}", "--top_k=2",
                        f"--out={tmp_path / 'p.csv'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  rows = read_csv((tmp_path / "p.csv").read_text())
  assert rows == predict.predict(str(prelu_run), str(tmp_path / "images"), top_k=2)


def _case(kind, prelu_run, tmp_path) -> tuple[list[str], str]:
  """predict.py's flags for one kind of bad input, and what its error line says."""
  images = tmp_path / "images"
  images.mkdir()
  run = str(prelu_run)
  if kind == "no images":
    (images / "readme.txt").write_text("x")
  else:
    write_images(images)
  if kind == "not an image":
    (images / "sub" / "broken.png").write_bytes(b"not a png")
    return [f"--workdir={run}", f"--images={images}"], "sub/broken.png is not an image"
  if kind == "no export":
    run = copy_run(prelu_run, tmp_path / "bare", drop=("model", "checkpoints"))
    return [f"--workdir={run}", f"--images={images}"], "has no exported model"
  if kind == "top_k":
    return [f"--workdir={run}", f"--images={images}", "--top_k=11"], \
        "--top_k must be in 1..10 (the run's classes), got 11"
  return [f"--workdir={run}", f"--images={images}"], "No image files in"


@pytest.mark.parametrize("kind", ["no images", "not an image", "no export", "top_k"])
def test_bad_input_is_one_line_and_exit_status_2(prelu_run, tmp_path, kind):
  args, says = _case(kind, prelu_run, tmp_path)
  out = subprocess.run([sys.executable, "predict.py", *args], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 2, out.stderr[-3000:]
  assert "Traceback" not in out.stderr
  assert says in out.stderr.strip().splitlines()[-1], out.stderr[-2000:]


def test_top_k_below_one_is_refused(prelu_run, tmp_path):
  write_images(tmp_path / "images")
  with pytest.raises(predict.PredictionError, match="got 0"):
    predict.predict(str(prelu_run), str(tmp_path / "images"), top_k=0)
