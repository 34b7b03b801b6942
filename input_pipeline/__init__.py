"""Input pipeline: dataset specs, grain batching, on-device augmentation.

  ds = input_pipeline.load("tfds:cifar10" | "folder:PATH" | "digits", ...)
  it = input_pipeline.train_iterator(ds.train, batch_size=..., seed=...)
  for batch in input_pipeline.eval_batches(ds.test, batch_size=...): ...
  x = input_pipeline.augment.preprocess(batch["image"], key, mean_image=ds.mean_image,
                                        config=input_pipeline.augment.AugmentConfig(),
                                        train=True)
"""

from input_pipeline import augment
from input_pipeline.batching import eval_batches
from input_pipeline.batching import steps_per_epoch
from input_pipeline.batching import to_device
from input_pipeline.batching import train_iterator
from input_pipeline.folder import CorruptImagesError
from input_pipeline.sources import ArraySource
from input_pipeline.sources import Dataset
from input_pipeline.sources import DatasetNotPreparedError
from input_pipeline.sources import default_cache_dir
from input_pipeline.sources import folder_test_files
from input_pipeline.sources import labels_of
from input_pipeline.sources import load
from input_pipeline.sources import Source
from input_pipeline.sources import stratified_subset
from input_pipeline.sources import take
from input_pipeline.sources import VALID_SPECS

__all__ = [
    "ArraySource", "CorruptImagesError", "Dataset", "DatasetNotPreparedError", "Source",
    "VALID_SPECS", "augment", "default_cache_dir", "eval_batches", "folder_test_files", "load",
    "labels_of", "steps_per_epoch", "stratified_subset", "take", "to_device",
    "train_iterator",
]
