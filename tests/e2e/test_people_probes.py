"""Several probe photos of one person on the shared faces (issue 15, acceptance point 2).

Over every shared identity with 4 or more photos, its first 1 and first 3 photos are the probes
of a search at the deployment's threshold; its first 3 are held out of its results either way,
so both are scored against the same genuine matches, its other photos. bench/people_probes.py
prints the same figures for every fusion.
"""

from __future__ import annotations

from pathlib import Path

from vultus.evaluation import several_probes

#: The width (px) probe faces are shrunk to for the second measure: with the photos as they
#: are, one probe already finds every genuine match at the threshold, so only a harder probe
#: can show what more photos add.
SMALL_FACE = 24


def test_three_probe_photos_find_at_least_what_the_first_alone_finds(gallery, faces_root: Path):
    result = several_probes(gallery, faces_root, source="identities", counts=(1, 3))
    assert len(result.identities) == 12 and sum(result.genuine) == 30
    assert result.recall(3) >= result.recall(1) >= 0.95, (result.found, result.genuine)
    assert result.pooled(3) >= result.pooled(1)
    # No identity loses a match it found with its first photo alone.
    assert all(three >= one for one, three in zip(result.found[1], result.found[3])), result.found


def test_three_small_probe_photos_find_more_than_the_first_alone(gallery, faces_root: Path):
    result = several_probes(gallery, faces_root, source="identities", counts=(1, 3), probe_width=SMALL_FACE)
    assert len(result.identities) == 12
    assert result.recall(3) > result.recall(1), (result.found, result.genuine)
    assert result.pooled(3) > result.pooled(1)
    assert all(three >= one for one, three in zip(result.found[1], result.found[3])), result.found


#: A stricter threshold than the default 0.70, as a user sets it to keep false candidates down
#: (`--threshold`): one probe photo then misses genuine matches that the other two bring in.
STRICT_THRESHOLD = 0.80


def test_at_a_strict_threshold_three_probe_photos_find_more_than_the_first_alone(gallery, faces_root: Path):
    result = several_probes(gallery, faces_root, source="identities", counts=(1, 3), threshold=STRICT_THRESHOLD)
    print(f"recall@10 at {STRICT_THRESHOLD}: 1 probe {result.recall(1):.4f}, 3 probes {result.recall(3):.4f} "
          f"(pooled {result.pooled(1):.4f} -> {result.pooled(3):.4f})")
    assert len(result.identities) == 12 and result.recall(1) < 1.0  # not saturated: the comparison means something
    assert result.recall(3) > result.recall(1), (result.found, result.genuine)
    assert result.pooled(3) > result.pooled(1)
    assert all(three >= one for one, three in zip(result.found[1], result.found[3])), result.found
