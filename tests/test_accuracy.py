"""Accuracy on real faces: leave-one-out search over every identity with two or more photos."""

from __future__ import annotations

from pathlib import Path

from vultus.evaluation import identity_photos, leave_one_out


def test_gallery_ingest_indexes_every_identity_photo(gallery, faces_root: Path):
    summary = gallery.ingest_summary
    total = sum(len(files) for files in identity_photos(faces_root).values())
    assert summary.refused == []
    assert summary.images + summary.no_face == total
    # HOG misses a few turned faces; it must find nearly all.
    assert summary.images >= 0.95 * total


def test_leave_one_out_rank1_is_at_least_99_percent(gallery, faces_root: Path):
    result = leave_one_out(gallery, faces_root, source="identities")
    assert result.identities == 26
    assert result.probes_with_face >= 0.95 * result.probes
    assert result.rank1 >= 0.99, result.misses
    assert result.recall_at_k >= 0.95
