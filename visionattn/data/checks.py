"""Unreadable images are named, not silently replaced.

timm's ``ImageDataset`` skips an image it cannot decode with a warning that gives only the sample index, and
trains on the next one. :func:`check_images` turns such a dataset into a :class:`CheckedImageDataset`, which

- by default raises :class:`BadImageError` naming the file and the decoder's complaint (a corrupt JPEG, a
  truncated PNG, a file that is not an image);
- with ``skip=True`` (``--skip-bad-images``) uses the next readable sample instead, logs each bad file once and
  counts them across DataLoader workers, so the run can print the count and the names at the end
  (:func:`skipped_images`, :func:`report_skipped_images`).
"""
from __future__ import annotations

import logging
from typing import List, Sequence

import torch
from PIL import Image
from timm.data import ImageDataset

_logger = logging.getLogger(__name__)

__all__ = ["BadImageError", "CheckedImageDataset", "check_images", "skipped_images", "report_skipped_images"]

# What PIL raises for bad files: OSError (truncated, unidentified), SyntaxError (broken PNG chunks), ValueError,
# EOFError, and its decompression-bomb guard.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


class BadImageError(ValueError):
    """An image file of a dataset cannot be decoded; the message names the file."""


class CheckedImageDataset(ImageDataset):
    """timm's ``ImageDataset`` that names unreadable files (raise) or skips and counts them (``skip_bad_images``).

    Build it from an existing dataset with :func:`check_images`; every other behaviour (reader, transforms,
    ``class_to_idx``) is timm's.
    """

    skip_bad_images: bool = False
    _bad_flags = None  # shared bool tensor [len(dataset)], set by whichever worker process meets a bad file

    def _path(self, index: int) -> str:
        try:
            return self.reader.filename(index, absolute=True)
        except Exception:  # readers without file names (tar shards, ...)
            return f"sample {index}"

    def _decode(self, index: int):
        img, target, *features = self.reader[index]
        try:
            if self.load_bytes:
                return img.read(), target, features
            with Image.open(img) as opened:
                opened.load()  # decode now: Image.open only reads the header
                decoded = opened.convert(self.input_img_mode) if self.input_img_mode else opened.copy()
            return decoded, target, features
        finally:
            close = getattr(img, "close", None)
            if close is not None:
                close()

    def __getitem__(self, index: int):
        first = index
        for _ in range(len(self)):
            try:
                img, target, features = self._decode(index)
                break
            except _DECODE_ERRORS as err:
                path = self._path(index)
                if not self.skip_bad_images:
                    raise BadImageError(
                        f"cannot read image {path}: {type(err).__name__}: {err}. Replace or remove the file, or pass "
                        "--skip-bad-images to train on the rest (skipped files are counted and listed at the end)"
                    ) from None
                if self._bad_flags is not None and not bool(self._bad_flags[index]):
                    self._bad_flags[index] = True
                    _logger.warning("skipping unreadable image %s (%s: %s)", path, type(err).__name__, err)
                index = (index + 1) % len(self)
        else:
            raise BadImageError(f"no readable image in the dataset (tried every sample from index {first})")
        if self.transform is not None:
            img = self.transform(img)
        if target is None:
            target = -1
        elif self.target_transform is not None:
            target = self.target_transform(target)
        return (img, target) if self.additional_features is None else (img, target, *features)


def check_images(dataset, skip: bool = False):
    """Return ``dataset`` as a :class:`CheckedImageDataset` (same reader, transforms and state).

    Datasets that are not timm ``ImageDataset`` objects (iterable / TFDS / HF datasets) are returned unchanged.
    """
    if type(dataset) is not ImageDataset and not isinstance(dataset, CheckedImageDataset):
        return dataset
    checked = CheckedImageDataset.__new__(CheckedImageDataset)
    checked.__dict__.update(dataset.__dict__)
    checked.skip_bad_images = bool(skip)
    # Shared memory, so DataLoader worker processes mark the files they skip where the main process can count them.
    checked._bad_flags = torch.zeros(len(checked), dtype=torch.bool).share_memory_() if skip else None
    return checked


def skipped_images(dataset) -> List[str]:
    """Files a :class:`CheckedImageDataset` with ``skip_bad_images`` has skipped so far (any worker)."""
    flags = getattr(dataset, "_bad_flags", None)
    if flags is None:
        return []
    return [dataset._path(int(i)) for i in torch.nonzero(flags).flatten()]


def report_skipped_images(datasets: Sequence, names: Sequence[str] = ("train", "val")) -> int:
    """Log how many unreadable images were skipped per dataset (and which); returns the total."""
    total = 0
    for name, dataset in zip(names, datasets):
        skipped = skipped_images(dataset)
        total += len(skipped)
        if skipped:
            shown = ", ".join(skipped[:10]) + (f", ... ({len(skipped)} in all)" if len(skipped) > 10 else "")
            _logger.warning("skipped %d unreadable image(s) in the %s data (--skip-bad-images): %s", len(skipped),
                            name, shown)
    return total
