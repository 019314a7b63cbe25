"""Datasets (CIFAR-10, image folders, npz, 2-D toy mixtures), subsets and the uint8 boundary."""

from generative_bench.data.codec import check_uint8_images, to_model_space, to_uint8
from generative_bench.data.loading import BatchStream, DataSplit, load_split

__all__ = ["BatchStream", "DataSplit", "load_split", "check_uint8_images", "to_model_space", "to_uint8"]
