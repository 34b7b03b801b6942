"""Tests of input_pipeline: sources (tfds mock, folder, digits) and grain batching."""

import contextlib
import json
import logging
import os
from pathlib import Path
import shutil

import jax
import numpy as np
from PIL import Image
import pytest

import input_pipeline
from input_pipeline import folder as folder_lib
from input_pipeline import sources

CIFAR_MINI = Path(__file__).parents[1] / ".." / "shared" / "data" / "cifar10-mini"
needs_mini = pytest.mark.skipif(not CIFAR_MINI.is_dir(),
                                reason=f"shared data not found at {CIFAR_MINI}")


def _labels_source(n, image_shape=(2, 2, 1)):
  """A source whose label is the example index, to track every example."""
  images = (np.arange(n)[:, None, None, None] % 256 * np.ones(image_shape)).astype(np.uint8)
  return input_pipeline.ArraySource(images, np.arange(n, dtype=np.int32))


def _take(it, count):
  return [next(it) for _ in range(count)]


def _small_copy(dst, classes=3, per_class=10):
  """A folder of real JPEGs: the first files of the first classes of cifar10-mini."""
  for c in sorted(os.listdir(CIFAR_MINI / "train"))[:classes]:
    (dst / "train" / c).mkdir(parents=True)
    for f in sorted(os.listdir(CIFAR_MINI / "train" / c))[:per_class]:
      shutil.copy(CIFAR_MINI / "train" / c / f, dst / "train" / c / f)
  return dst


# Sources.


def test_digits():
  ds = input_pipeline.load("digits")
  assert (len(ds.train), len(ds.test)) == (1437, 360)
  assert ds.image_shape == (8, 8, 1) and ds.num_classes == 10
  assert ds.class_names == tuple("0123456789")
  images = np.stack([ds.train[i]["image"] for i in range(len(ds.train))])
  assert images.dtype == np.uint8 and images.max() == 255 and images.min() == 0
  np.testing.assert_allclose(ds.mean_image, images.mean(0), rtol=1e-5)
  test_labels = np.array([ds.test[i]["label"] for i in range(len(ds.test))])
  assert np.bincount(test_labels).min() >= 35  # Stratified: 36 ± 1 per class.
  again = input_pipeline.load("digits")
  np.testing.assert_array_equal(again.test.images, ds.test.images)


def test_digits_read_without_scikit_learn_equal_its_load_digits():
  from sklearn import datasets  # pylint: disable=g-import-not-at-top  (the reference)
  reference = datasets.load_digits()
  images, labels = sources.digits_arrays()
  np.testing.assert_array_equal(images, reference.images)
  np.testing.assert_array_equal(labels, reference.target)


def test_unknown_spec_lists_valid_forms():
  for spec in ("cifar10", "tfds:", "folder:", "mnist:x"):
    with pytest.raises(ValueError, match="Valid forms: 'tfds:NAME'.*'folder:PATH'.*digits"):
      input_pipeline.load(spec)


def test_options_that_do_not_apply_are_errors():
  with pytest.raises(ValueError, match="image_size"):
    input_pipeline.load("digits", image_size=16)
  with pytest.raises(ValueError, match="split strings apply only to 'tfds:'"):
    input_pipeline.load("digits", train_split="train[:100]")


@pytest.fixture(scope="module")
def mini_and_cache(tmp_path_factory):
  cache = tmp_path_factory.mktemp("cache")
  return input_pipeline.load(f"folder:{CIFAR_MINI}", cache_dir=str(cache)), cache


@needs_mini
def test_folder_real_jpegs(mini_and_cache):
  ds, _ = mini_and_cache
  classes = sorted(os.listdir(CIFAR_MINI / "train"))
  assert ds.class_names == tuple(classes) and ds.num_classes == 10
  assert (len(ds.train), len(ds.test)) == (4000, 1000)
  assert ds.image_shape == (32, 32, 3)
  assert np.bincount(ds.train.labels).tolist() == [400] * 10
  assert np.bincount(ds.test.labels).tolist() == [100] * 10
  # Example order is class by class, files sorted: check some against Pillow directly.
  for split, index in (("train", 0), ("train", 1234), ("test", 999)):
    per_class = 400 if split == "train" else 100
    c = classes[index // per_class]
    file = sorted(os.listdir(CIFAR_MINI / split / c))[index % per_class]
    expected = np.asarray(Image.open(CIFAR_MINI / split / c / file).convert("RGB"))
    example = getattr(ds, split)[index]
    assert example["label"] == classes.index(c)
    np.testing.assert_array_equal(example["image"], expected)
  images = ds.train.images
  assert images.dtype == np.uint8 and images.min() < 10 and images.max() > 245
  assert ds.mean_image.shape == (32, 32, 3) and ds.mean_image.dtype == np.float32
  np.testing.assert_allclose(ds.mean_image, images.mean(0), rtol=1e-5)


@needs_mini
def test_folder_second_load_uses_cache(mini_and_cache, monkeypatch):
  ds, cache = mini_and_cache
  assert len(list(cache.glob("folder-cifar10-mini-*.npz"))) == 1

  def fail(*args, **kwargs):
    raise AssertionError("decoded again despite the cache")

  monkeypatch.setattr(folder_lib, "decode_image", fail)
  again = input_pipeline.load(f"folder:{CIFAR_MINI}", cache_dir=str(cache))
  np.testing.assert_array_equal(again.test.images, ds.test.images)
  np.testing.assert_array_equal(again.train.labels, ds.train.labels)


@needs_mini
def test_folder_resize_grayscale_holdout(tmp_path):
  root = _small_copy(tmp_path / "data", classes=3, per_class=10)
  kwargs = dict(image_size=16, grayscale=True, holdout=6, cache_dir=str(tmp_path / "c"))
  ds = input_pipeline.load(f"folder:{root}", **kwargs)
  assert (len(ds.train), len(ds.test)) == (24, 6)
  assert ds.image_shape == (16, 16, 1) and ds.train[0]["image"].shape == (16, 16, 1)
  assert np.bincount(ds.test.labels).tolist() == [2, 2, 2]
  again = input_pipeline.load(f"folder:{root}", **kwargs)
  np.testing.assert_array_equal(again.test.images, ds.test.images)
  (root / "test" / ds.class_names[0]).mkdir(parents=True)
  with pytest.raises(ValueError, match="has a test/ folder"):
    input_pipeline.load(f"folder:{root}", **kwargs)


def test_stratified_holdout_is_exact_and_proportional():
  labels = np.repeat(np.arange(4), [50, 30, 15, 5])
  keep, held = sources.stratified_holdout(labels, 20)
  assert len(held) == 20 and len(np.intersect1d(keep, held)) == 0
  assert len(keep) + len(held) == 100
  assert np.bincount(labels[held]).tolist() == [10, 6, 3, 1]


def test_folder_varying_sizes_need_image_size(tmp_path):
  for i, size in enumerate([(10, 12), (8, 8)]):
    (tmp_path / "train" / "a").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (i * 50, 0, 0)).save(tmp_path / "train" / "a" / f"{i}.png")
  with pytest.raises(ValueError, match="different shapes.*Set image_size"):
    input_pipeline.load(f"folder:{tmp_path}", cache_dir=str(tmp_path / "c"))
  ds = input_pipeline.load(f"folder:{tmp_path}", image_size=6, cache_dir=str(tmp_path / "c"))
  assert ds.image_shape == (6, 6, 3) and len(ds.test) == 0


def test_folder_layout_errors(tmp_path):
  with pytest.raises(ValueError, match="PATH/train/<class>"):
    input_pipeline.load(f"folder:{tmp_path}", cache_dir=str(tmp_path))


def test_an_evaluation_reads_a_folder_of_class_folders_as_its_split(tmp_path):
  plain = tmp_path / "plain"
  _one_image_folders(plain, ["b", "a"])
  (plain / "c").mkdir()  # an evaluation's class may have no images: still a class
  cache = str(tmp_path / "cache")
  for split in ("test", "train"):
    ds = input_pipeline.load(f"folder:{plain}", cache_dir=cache, evaluation_split=split)
    evaluated, other = (ds.test, ds.train) if split == "test" else (ds.train, ds.test)
    assert ds.class_names == ("a", "b", "c") and evaluated.labels.tolist() == [0, 1]
    assert len(other) == 0 and ds.image_shape == (4, 4, 3)
  # A training needs train/: the error names what the folder holds.
  with pytest.raises(ValueError, match=r"No .*plain/train folder \(it holds 3 folder\(s\) "
                                       r"\(a/, b/, c/\), 2 of them holding images, and 0 image "
                                       r"file\(s\) of its own\): training .* needs the layout "
                                       r"PATH/train/<class>/\*\.jpg"):
    input_pipeline.load(f"folder:{plain}", cache_dir=cache)
  with pytest.raises(ValueError, match=r"holdout=2 takes a hold-out from PATH/train/, and .* "
                                       r"has no train/ folder"):
    input_pipeline.load(f"folder:{plain}", cache_dir=cache, holdout=2, evaluation_split="test")


def test_an_evaluation_reads_test_alone_and_refuses_what_is_neither_layout(tmp_path):
  cache = str(tmp_path / "cache")
  _one_image_folders(tmp_path / "only" / "test", ["a", "b"])
  ds = input_pipeline.load(f"folder:{tmp_path / 'only'}", cache_dir=cache,
                           evaluation_split="test")
  assert ds.class_names == ("a", "b") and len(ds.test) == 2 and len(ds.train) == 0
  # test/ but no train/: not a folder of classes "test", nor its train split.
  with pytest.raises(ValueError, match=r"only has no train/ folder, nor class "
                                       r"folders holding images \(it holds 1 folder\(s\) "
                                       r"\(test/\), 0 of them holding images"):
    input_pipeline.load(f"folder:{tmp_path / 'only'}", cache_dir=cache, evaluation_split="train")
  (tmp_path / "empty" / "a").mkdir(parents=True)
  with pytest.raises(ValueError, match=r"empty has no train/ or test/ folder, nor class "
                                       r"folders holding images \(it holds 1 folder\(s\) "
                                       r"\(a/\), 0 of them .*: evaluating its test split needs "
                                       r"PATH/test/<class>/\*\.jpg, PATH/train/<class>/\*\.jpg, or"):
    input_pipeline.load(f"folder:{tmp_path / 'empty'}", cache_dir=cache,
                        evaluation_split="test")
  with pytest.raises(ValueError, match="nowhere has no train/ .*it does not exist"):
    input_pipeline.load(f"folder:{tmp_path / 'nowhere'}", cache_dir=cache,
                        evaluation_split="test")


def test_a_folder_with_train_keeps_its_layout_for_an_evaluation(tmp_path):
  _one_image_folders(tmp_path / "data" / "train", ["a", "b"])
  _one_image_folders(tmp_path / "data" / "test", ["b"])
  ds = input_pipeline.load(f"folder:{tmp_path / 'data'}", cache_dir=str(tmp_path / "cache"),
                           evaluation_split="test")
  assert ds.class_names == ("a", "b") and ds.test.labels.tolist() == [1]
  assert len(ds.train) == 2


@needs_mini
def test_folder_corrupt_files_reported_and_skipped(tmp_path, caplog):
  root = _small_copy(tmp_path / "data", classes=2, per_class=5)
  good = next((root / "train" / "airplane").iterdir()).read_bytes()
  garbage = root / "train" / "airplane" / "garbage.jpg"
  garbage.write_bytes(b"not an image at all")
  truncated = root / "train" / "automobile" / "truncated.jpg"
  truncated.write_bytes(good[: len(good) // 3])
  cache = str(tmp_path / "cache")
  with pytest.raises(input_pipeline.CorruptImagesError, match="skip_corrupt=True") as e:
    input_pipeline.load(f"folder:{root}", cache_dir=cache)
  assert set(e.value.errors) == {str(garbage), str(truncated)}
  assert str(garbage) in str(e.value) and str(truncated) in str(e.value)
  with caplog.at_level(logging.WARNING):
    ds = input_pipeline.load(f"folder:{root}", skip_corrupt=True, cache_dir=cache)
  assert len(ds.train) == 10
  assert set(ds.skipped_files) == {str(garbage), str(truncated)}
  assert "Skipped 2 unreadable" in caplog.text


@contextlib.contextmanager
def _mock_tfds(num_examples):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=num_examples,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    yield


def test_tfds_under_mock_data(tmp_path):
  with _mock_tfds(num_examples=24):
    ds = input_pipeline.load("tfds:cifar10", data_dir=str(tmp_path / "tfds"),
                             cache_dir=str(tmp_path / "cache"))
    assert ds.num_classes == 10 and len(ds.class_names) == 10
    assert ds.image_shape == (32, 32, 3) and len(ds.train) == 24
    example = ds.train[3]
    assert example["image"].dtype == np.uint8 and example["image"].shape == (32, 32, 3)
    assert isinstance(example["label"], int) and 0 <= example["label"] < 10
    images = np.stack([ds.train[i]["image"] for i in range(24)])
    np.testing.assert_allclose(ds.mean_image, images.mean(0), rtol=1e-5)
    assert len(list((tmp_path / "cache").glob("tfds-cifar10-mean-*.npy"))) == 1
    batch = next(input_pipeline.train_iterator(ds.train, batch_size=8, seed=0))
    assert batch["image"].shape == (8, 32, 32, 3) and batch["label"].dtype == np.int32
    evals = list(input_pipeline.eval_batches(ds.test, batch_size=10))
    assert sum(b["mask"].sum() for b in evals) == len(ds.test)


def test_tfds_missing_dataset_gives_preparation_command(tmp_path):
  with pytest.raises(input_pipeline.DatasetNotPreparedError) as e:
    input_pipeline.load("tfds:cifar10", data_dir=str(tmp_path))
  message = str(e.value)
  assert 'pip install ".[prepare]"' in message
  assert "tfds build cifar10 --file_format=array_record" in message
  assert str(tmp_path) in message


# Batching.


def test_eval_counts_every_example_once_across_shards():
  n, batch_size, shards = 103, 8, 3
  source = _labels_source(n)
  seen, num_batches = [], set()
  for shard in range(shards):
    batches = list(input_pipeline.eval_batches(
        source, batch_size=batch_size, shard_index=shard, shard_count=shards))
    num_batches.add(len(batches))
    for b in batches:
      assert b["image"].shape == (batch_size, 2, 2, 1) and b["image"].dtype == np.uint8
      assert b["label"].dtype == np.int32 and b["mask"].dtype == bool
      assert (b["image"][~b["mask"]] == 0).all()
      np.testing.assert_array_equal(b["image"][b["mask"], 0, 0, 0], b["label"][b["mask"]])
      seen.extend(b["label"][b["mask"]].tolist())
  assert num_batches == {5}  # ceil(ceil(103 / 3) / 8), the same on every shard.
  assert sorted(seen) == list(range(n))


def test_eval_single_shard_and_empty():
  batches = list(input_pipeline.eval_batches(_labels_source(10), batch_size=4))
  assert [int(b["mask"].sum()) for b in batches] == [4, 4, 2]
  empty = input_pipeline.ArraySource(np.zeros((0, 2, 2, 1), np.uint8), np.zeros(0, np.int32))
  assert not list(input_pipeline.eval_batches(empty, batch_size=4))


def test_train_shuffle_is_seeded_and_changes_per_epoch():
  source = _labels_source(60)
  epochs = lambda it: [np.concatenate([b["label"] for b in _take(it, 6)]) for _ in range(3)]
  first = epochs(input_pipeline.train_iterator(source, batch_size=10, seed=7))
  again = epochs(input_pipeline.train_iterator(source, batch_size=10, seed=7))
  other = epochs(input_pipeline.train_iterator(source, batch_size=10, seed=8))
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  for epoch in first:
    assert sorted(epoch) == list(range(60))
  assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])
  assert not np.array_equal(first[0], other[0])


def test_train_drops_the_remainder_of_every_epoch():
  it = input_pipeline.train_iterator(_labels_source(25), batch_size=10, seed=0)
  batches = _take(it, 4)
  assert all(b["label"].shape == (10,) for b in batches)
  for epoch in (batches[:2], batches[2:]):  # Two full batches per epoch, no repeats.
    assert len(set(np.concatenate([b["label"] for b in epoch]).tolist())) == 20
  assert input_pipeline.steps_per_epoch(25, 10) == 2
  assert input_pipeline.steps_per_epoch(45000, 128) == 351


def test_train_shards_are_disjoint_and_cover_the_data():
  n, shards, batch = 60, 2, 10  # A global batch of 20: three steps per epoch.
  source = _labels_source(n)
  parts = []
  for shard in range(shards):
    it = input_pipeline.train_iterator(source, batch_size=batch, seed=0,
                                       shard_index=shard, shard_count=shards)
    parts.append(set(np.concatenate([b["label"] for b in _take(it, 3)]).tolist()))
  assert not parts[0] & parts[1]
  assert parts[0] | parts[1] == set(range(n))


def test_train_shards_concatenate_to_the_single_process_batch():
  source = _labels_source(50)
  single = _take(input_pipeline.train_iterator(source, batch_size=12, seed=5), 6)
  sharded = [_take(input_pipeline.train_iterator(source, batch_size=3, seed=5, shard_index=i,
                                                 shard_count=4), 6) for i in range(4)]
  for step, want in enumerate(single):
    got = np.concatenate([sharded[i][step]["label"] for i in range(4)])
    np.testing.assert_array_equal(got, want["label"])


def test_train_state_restores_at_the_next_example():
  source = _labels_source(50)
  it = input_pipeline.train_iterator(source, batch_size=8, seed=3)
  _take(it, 5)  # Six batches per epoch: the next ones cross the epoch boundary.
  state = json.loads(json.dumps(it.get_state()))
  expected = [b["label"] for b in _take(it, 4)]
  restored = input_pipeline.train_iterator(source, batch_size=8, seed=3)
  restored.set_state(state)
  for want, got in zip(expected, _take(restored, 4)):
    np.testing.assert_array_equal(got["label"], want)


def test_train_worker_processes_give_the_same_batches():
  source = _labels_source(40)
  it = input_pipeline.train_iterator(source, batch_size=8, seed=1, worker_count=1)
  try:
    with_workers = [b["label"] for b in _take(it, 6)]
    json.dumps(it.get_state())
  finally:
    it.close()
  threads = input_pipeline.train_iterator(source, batch_size=8, seed=1)
  for a, b in zip(with_workers, _take(threads, 6)):
    np.testing.assert_array_equal(a, b["label"])


def test_train_argument_errors():
  source = _labels_source(10)
  with pytest.raises(ValueError, match="shard_index"):
    input_pipeline.train_iterator(source, batch_size=2, seed=0, shard_index=2,
                                  shard_count=2)
  with pytest.raises(ValueError, match=r"batch_size=6 must be in \[1, 5\]: the global batch"):
    input_pipeline.train_iterator(source, batch_size=6, seed=0, shard_count=2)


def test_to_device_places_the_batch_on_the_mesh():
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  batch = next(input_pipeline.train_iterator(_labels_source(16), batch_size=8, seed=0))
  on_device = input_pipeline.to_device(batch, sharding)
  assert on_device["image"].shape == (8, 2, 2, 1) and on_device["image"].sharding == sharding
  np.testing.assert_array_equal(np.asarray(on_device["label"]), batch["label"])


# Training-set size.


def test_stratified_subset_keeps_class_proportions_and_is_nested():
  labels = np.repeat(np.arange(4), [400, 200, 100, 100])
  small = sources.stratified_subset(labels, 80, seed=3)
  large = sources.stratified_subset(labels, 320, seed=3)
  assert np.bincount(labels[small]).tolist() == [40, 20, 10, 10]
  assert np.bincount(labels[large]).tolist() == [160, 80, 40, 40]
  assert np.all(np.diff(small) > 0) and set(small) <= set(large)
  other_seed = sources.stratified_subset(labels, 80, seed=4)
  assert not np.array_equal(small, other_seed)
  with pytest.raises(ValueError, match=r"size=801 must be in \[1, 800\]"):
    sources.stratified_subset(labels, 801, seed=0)


def test_train_examples_takes_a_stratified_subset_and_records_it():
  full = input_pipeline.load("digits")
  ds = input_pipeline.load("digits", train_examples=200, subset_seed=1)
  assert len(ds.train) == 200 and len(ds.test) == len(full.test) == 360
  assert (ds.full_train_examples, ds.subset_seed) == (1437, 1)
  assert np.bincount(ds.train.labels, minlength=10).min() >= 19  # 20 ± 1 per class
  rows = {(img.tobytes(), int(lab)) for img, lab in zip(full.train.images, full.train.labels)}
  assert all((img.tobytes(), int(lab)) in rows for img, lab in zip(ds.train.images, ds.train.labels))
  np.testing.assert_allclose(ds.mean_image, ds.train.images.mean(0), rtol=1e-5)
  assert (full.full_train_examples, full.subset_seed) == (1437, None)
  with pytest.raises(ValueError, match="train_examples=2000 but the training split has 1437"):
    input_pipeline.load("digits", train_examples=2000)
  with pytest.raises(ValueError, match="train_examples must be >= 0"):
    input_pipeline.load("digits", train_examples=-1)


def test_tfds_train_examples_subsets_a_random_access_source(tmp_path):
  with _mock_tfds(num_examples=40):
    full = input_pipeline.load("tfds:cifar10", data_dir=str(tmp_path / "tfds"),
                               cache_dir=str(tmp_path / "cache"))
    ds = input_pipeline.load("tfds:cifar10", data_dir=str(tmp_path / "tfds"),
                             cache_dir=str(tmp_path / "cache"), train_examples=20)
    labels = input_pipeline.labels_of(full.train)
    chosen = sources.stratified_subset(labels, 20, seed=0)
    assert len(ds.train) == 20 and ds.full_train_examples == 40 and ds.subset_seed == 0
    for i, j in enumerate(chosen):
      np.testing.assert_array_equal(ds.train[i]["image"], full.train[int(j)]["image"])
    images = np.stack([ds.train[i]["image"] for i in range(20)])
    np.testing.assert_allclose(ds.mean_image, images.mean(0), rtol=1e-5)


def test_empty_class_folders_are_refused_by_name(tmp_path):
  (tmp_path / "train" / "a").mkdir(parents=True)
  (tmp_path / "train" / "b").mkdir(parents=True)
  Image.new("RGB", (4, 4)).save(tmp_path / "train" / "a" / "0.png")
  with pytest.raises(ValueError, match=r"1 class folder\(s\) have no images: .*train/b\. "
                                       r"Every folder of train/ is a class"):
    input_pipeline.load(f"folder:{tmp_path}", cache_dir=str(tmp_path / "cache"))


def _one_image_folders(root, classes):
  for c in classes:
    (root / c).mkdir(parents=True)
    Image.new("RGB", (4, 4), (len(c), 0, 0)).save(root / c / "0.png")


def test_a_class_folder_linked_from_outside_the_dataset_folder_is_refused_by_name(tmp_path):
  data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
  _one_image_folders(data / "train", ["a"])
  _one_image_folders(elsewhere, ["b"])
  (data / "train" / "b").symlink_to(elsewhere / "b")
  with pytest.raises(ValueError, match=r"The folder .*data/train/b is a link to .*elsewhere/b, "
                                       r"outside the dataset folder .*data: .* Copy that folder"):
    input_pipeline.load(f"folder:{data}", cache_dir=str(tmp_path / "cache"))


def test_links_inside_the_dataset_folder_and_a_linked_dataset_folder_are_followed(tmp_path):
  data = tmp_path / "data"
  _one_image_folders(data / "train", ["a", "b"])
  _one_image_folders(data / "extra", ["c"])
  (data / "train" / "c").symlink_to(data / "extra" / "c")  # inside: followed
  (tmp_path / "link").symlink_to(data)  # the whole dataset folder as a link: followed
  ds = input_pipeline.load(f"folder:{tmp_path / 'link'}", cache_dir=str(tmp_path / "cache"))
  assert ds.class_names == ("a", "b", "c") and len(ds.train) == 3


def test_a_damaged_cache_is_decoded_again_with_a_warning(tmp_path, caplog):
  for c in ("a", "b"):
    (tmp_path / "data" / "train" / c).mkdir(parents=True)
    Image.new("RGB", (4, 4), (10, 20, 30)).save(tmp_path / "data" / "train" / c / "0.png")
  cache = tmp_path / "cache"
  first = input_pipeline.load(f"folder:{tmp_path / 'data'}", cache_dir=str(cache))
  [cached] = list(cache.glob("folder-*.npz"))
  cached.write_bytes(cached.read_bytes()[:100])  # truncated, as by a full disk
  with caplog.at_level(logging.WARNING):
    again = input_pipeline.load(f"folder:{tmp_path / 'data'}", cache_dir=str(cache))
  assert "is unreadable" in caplog.text and "decoding" in caplog.text
  np.testing.assert_array_equal(again.train.images, first.train.images)
  assert np.load(cached)["train_images"].shape == first.train.images.shape  # rewritten


@needs_mini
def test_the_corrupt_image_hint_names_the_config_key(tmp_path):
  root = _small_copy(tmp_path / "data", classes=2, per_class=2)
  (root / "train" / "airplane" / "bad.jpg").write_bytes(b"not an image")
  with pytest.raises(input_pipeline.CorruptImagesError, match=r"config.skip_corrupt=True"):
    input_pipeline.load(f"folder:{root}", cache_dir=str(tmp_path / "cache"))


def test_damaged_tfds_label_and_mean_caches_are_computed_again_naming_the_file(
    tmp_path, caplog):
  options = dict(data_dir=str(tmp_path / "tfds"), cache_dir=str(tmp_path / "cache"),
                 train_examples=20)
  with _mock_tfds(num_examples=40):
    first = input_pipeline.load("tfds:cifar10", **options)
    [labels] = list((tmp_path / "cache").glob("tfds-cifar10-labels-*.npy"))
    [mean] = list((tmp_path / "cache").glob("tfds-cifar10-mean-*.npy"))
    labels.write_bytes(labels.read_bytes()[:100])  # truncated, as by a full disk
    np.save(mean, np.zeros((2, 2), np.float32))    # another array's
    with caplog.at_level(logging.WARNING):
      again = input_pipeline.load("tfds:cifar10", **options)
  for path in (labels, mean):
    assert f"The cache file {path} (" in caplog.text
  np.testing.assert_array_equal(again.mean_image, first.mean_image)
  assert np.load(labels).shape == (40,) and np.load(mean).shape == (32, 32, 3)  # rewritten


def _png16(path, values, color_type):
  """A 16-bit PNG (color_type 0: grey, 2: RGB) written by hand: Pillow writes no 16-bit RGB."""
  import struct  # pylint: disable=g-import-not-at-top
  import zlib  # pylint: disable=g-import-not-at-top
  values = np.asarray(values, ">u2")
  height, width = values.shape[:2]
  raw = b"".join(b"\0" + row.tobytes() for row in values)
  chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                              + struct.pack(">I", zlib.crc32(kind + data)))
  path.write_bytes(b"\x89PNG\r\n\x1a\n"
                   + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, color_type,
                                                0, 0, 0))
                   + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_images_that_are_not_8_bit_are_refused_by_name_and_mode_not_clipped(tmp_path):
  root = tmp_path / "data"
  for c in ("a", "b"):
    (root / "train" / c).mkdir(parents=True)
    Image.new("L", (2, 2), 7).save(root / "train" / c / "ok.png")
  grey16, rgb16 = root / "train" / "a" / "grey16.png", root / "train" / "b" / "rgb16.png"
  _png16(grey16, [[256, 1000], [30000, 65535]], color_type=0)
  _png16(rgb16, [[[256, 1000, 30000], [65535, 0, 1]]], color_type=2)
  floats = root / "train" / "b" / "float.tif"
  Image.fromarray(np.array([[np.nan, 1e6], [0.5, -3.0]], np.float32)).save(floats)
  cache = tmp_path / "cache"
  for skip_corrupt in (False, True):  # not broken files: skip_corrupt does not apply.
    with pytest.raises(ValueError, match="3 image file") as e:
      input_pipeline.load(f"folder:{root}", cache_dir=str(cache), skip_corrupt=skip_corrupt)
    message = str(e.value)
    assert f"{grey16}: PIL mode I;16" in message and f"{floats}: PIL mode F" in message
    assert f"{rgb16}: PIL mode RGB from 16-bit samples" in message
    assert "Convert them to 8-bit images" in message
  assert not list(cache.glob("*.npz"))  # nothing cached: fixed files are decoded afresh
  for path in (grey16, rgb16, floats):
    path.unlink()
  assert input_pipeline.load(f"folder:{root}", cache_dir=str(cache)).train.images.max() == 7


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK"])
def test_8_bit_modes_are_decoded(tmp_path, mode):
  path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
  Image.new(mode, (3, 2)).save(path)
  assert folder_lib.decode_image(path, None, grayscale=False).shape == (2, 3, 3)


def test_images_above_the_pixel_limit_are_refused_by_name_before_decoding(tmp_path):
  import struct  # pylint: disable=g-import-not-at-top
  import zlib  # pylint: disable=g-import-not-at-top
  root = tmp_path / "data"
  for c in ("a", "b"):
    (root / "train" / c).mkdir(parents=True)
    Image.new("L", (10, 10), 7).save(root / "train" / c / "ok.png")
  Image.new("L", (20, 30), 7).save(big := root / "train" / "a" / "big.png")
  # A header that claims 12000x12000 pixels (1.8 GB decoded) and no pixel data: decoding
  # it would fail (a corrupt file); refused from its header, it never is.
  chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                              + struct.pack(">I", zlib.crc32(kind + data)))
  (bomb := root / "train" / "b" / "bomb.png").write_bytes(
      b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 12000, 12000, 8, 2, 0, 0, 0))
      + chunk(b"IEND", b""))
  cache = str(tmp_path / "cache")
  with pytest.raises(ValueError, match="1 image file") as e:
    input_pipeline.load(f"folder:{root}", cache_dir=cache, image_size=10)
  assert f"{bomb}: 12000x12000 = 144,000,000 pixels" in str(e.value)
  assert "max_image_pixels=40,000,000" in str(e.value)
  with pytest.raises(ValueError, match="2 image file") as e:
    input_pipeline.load(f"folder:{root}", cache_dir=cache, image_size=10, skip_corrupt=True,
                        max_image_pixels=500)
  assert f"{big}: 20x30 = 600 pixels" in str(e.value)
  bomb.unlink()
  assert len(input_pipeline.load(f"folder:{root}", cache_dir=cache, image_size=10,
                                 max_image_pixels=600).train) == 3
