"""weights/manifest.json lists every pretrained tag our families register, consistently with default_cfgs."""
import json
import sys
from pathlib import Path

import pytest
import timm
from timm.models import get_pretrained_cfg

import visionattn  # noqa: F401

MANIFEST = Path(__file__).resolve().parents[1] / "weights" / "manifest.json"
FIELDS = {"model", "tag", "url", "source_repo", "license", "top1", "sha256", "img_size"}


def _our_pretrained_tags():
    tags = []
    for name in timm.list_pretrained():
        arch = name.split(".")[0]
        module = sys.modules[timm.models.model_entrypoint(arch).__module__].__name__
        if module.startswith("visionattn."):
            tags.append(name)
    return tags


def _rows():
    data = json.loads(MANIFEST.read_text())
    return [row for rows in data.values() for row in rows]


def test_manifest_rows_are_complete():
    rows = _rows()
    assert rows
    for row in rows:
        assert FIELDS <= set(row), row
        assert row["url"].startswith("https://"), row
        assert row["sha256"] is None or len(row["sha256"]) == 64, row
        assert row["top1"] is None or 50 < row["top1"] < 100, row


def test_every_registered_tag_has_a_row_and_no_row_is_stale():
    by_name = {f"{r['model']}.{r['tag']}": r for r in _rows()}
    ours = _our_pretrained_tags()
    assert ours, "no visionattn model registers a pretrained tag"
    missing = sorted(set(ours) - set(by_name))
    stale = sorted(set(by_name) - set(ours))
    assert not missing, f"tags without a manifest row: {missing}"
    assert not stale, f"manifest rows for tags that are not registered: {stale}"


@pytest.mark.parametrize("name", _our_pretrained_tags())
def test_row_matches_pretrained_cfg(name):
    row = {f"{r['model']}.{r['tag']}": r for r in _rows()}[name]
    cfg = get_pretrained_cfg(name)
    source = cfg.url or (f"https://huggingface.co/{cfg.hf_hub_id}" if cfg.hf_hub_id else "")
    assert source and (row["url"] == cfg.url or row["url"].startswith(source)), (row["url"], source)
    assert row["img_size"] == cfg.input_size[-1]
    assert (row["license"] or "").lower() == (cfg.license or "").lower()
