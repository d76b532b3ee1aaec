"""Grouping templates into people (vultus.faces.clustering) and its score, on synthetic templates."""

from __future__ import annotations

import numpy as np
import pytest

from vultus.faces import clustering
from vultus.faces.clustering import assign, assign_many, centroid, cluster, spread
from vultus.metrics import pairwise_scores

DISTANCE = 0.6  # a match distance like dlib's: the cut is CUT_RATIO times it
CUT = clustering.CUT_RATIO * DISTANCE


def _blobs(people: int, per_person: int, *, seed: int = 0, dim: int = 128, within: float = 0.3,
           apart: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Templates of ``people`` people, ``per_person`` each, shuffled, and whose each one is:
    two faces of one person lie about ``within`` apart, two people's centres about ``apart``."""
    rng = np.random.default_rng(seed)
    scale = 1 / np.sqrt(2 * dim)  # per value, for a distance of 1 between two draws
    centres = rng.standard_normal((people, dim)) * apart * scale
    owner = rng.permutation(np.repeat(np.arange(people), per_person))
    vectors = centres[owner] + rng.standard_normal((len(owner), dim)) * within * scale
    return vectors.astype(np.float32), owner


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two labellings group the rows alike (the numbers themselves aside)."""
    return len(set(zip(a.tolist(), b.tolist()))) == len(set(a.tolist())) == len(set(b.tolist()))


def _reference(vectors: np.ndarray, cut: float, min_size: int = 2) -> np.ndarray:
    """Textbook average linkage on squared distances over the full matrix, O(n^3)."""
    groups = [[i] for i in range(len(vectors))]
    sq = ((vectors[:, None, :].astype(np.float64) - vectors[None, :, :]) ** 2).sum(axis=2)
    while len(groups) > 1:
        best, pair = np.inf, None
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                cost = sq[np.ix_(groups[i], groups[j])].mean()
                if cost < best:
                    best, pair = cost, (i, j)
        if best >= cut * cut:
            break
        i, j = pair
        groups[i] += groups.pop(j)
    labels = np.full(len(vectors), -1)
    for label, group in enumerate(g for g in groups if len(g) >= min_size):
        labels[group] = label
    return labels


def test_well_separated_people_are_found_one_group_each():
    vectors, owner = _blobs(12, 6)
    labels = cluster(vectors, distance=DISTANCE)
    assert labels.dtype == np.int64 and labels.shape == (len(vectors),)
    assert (labels >= 0).all()
    assert _same_partition(labels, owner)
    score = pairwise_scores(labels, owner)
    assert (score.precision, score.recall) == (1.0, 1.0)


def test_people_are_numbered_in_the_order_of_their_first_face():
    vectors, _ = _blobs(5, 4, seed=3)
    labels = cluster(vectors, distance=DISTANCE)
    firsts = [int(np.flatnonzero(labels == label)[0]) for label in range(labels.max() + 1)]
    assert firsts == sorted(firsts) and labels[0] == 0


def test_faces_far_from_everyone_are_left_unassigned():
    vectors, owner = _blobs(4, 5, seed=1)
    rng = np.random.default_rng(9)
    loners = (rng.standard_normal((3, vectors.shape[1])) * 3).astype(np.float32)  # far from all and each other
    labels = cluster(np.concatenate([vectors, loners]), distance=DISTANCE)
    assert (labels[-3:] == -1).all()
    assert _same_partition(labels[:-3], owner)


def test_groups_smaller_than_min_size_are_unassigned():
    vectors, owner = _blobs(3, 3, seed=2)
    pair, _ = _blobs(1, 2, seed=7)
    both = np.concatenate([vectors, pair])
    assert (cluster(both, distance=DISTANCE)[-2:] >= 0).all()
    labels = cluster(both, distance=DISTANCE, min_size=3)
    assert (labels[-2:] == -1).all() and (labels[:-2] >= 0).all()
    assert (cluster(both, distance=DISTANCE, min_size=4) == -1).all()


def test_empty_and_one_face_inputs():
    empty = cluster(np.zeros((0, 128), dtype=np.float32), distance=DISTANCE)
    assert empty.dtype == np.int64 and empty.shape == (0,)
    one = np.ones((1, 128), dtype=np.float32)
    assert cluster(one, distance=DISTANCE).tolist() == [-1]
    assert cluster(one, distance=DISTANCE, min_size=1).tolist() == [0]
    # Two copies of one face are one person.
    assert cluster(np.concatenate([one, one]), distance=DISTANCE).tolist() == [0, 0]


def test_the_same_input_gives_the_same_labels_and_reordering_it_the_same_groups():
    vectors, _ = _blobs(20, 5, seed=4, within=0.45, apart=0.7)  # close enough for some hard calls
    first = cluster(vectors, distance=DISTANCE)
    assert np.array_equal(first, cluster(vectors.copy(), distance=DISTANCE))
    order = np.random.default_rng(1).permutation(len(vectors))
    shuffled = cluster(vectors[order], distance=DISTANCE)
    assert _same_partition(shuffled, first[order])


@pytest.mark.parametrize("neighbours", [200, clustering.NEIGHBOURS, 6])
def test_it_is_average_linkage_on_squared_distances(neighbours: int):
    """The neighbour-graph algorithm gives exactly the textbook result: on the full graph by
    construction, and on a sparse one when each person's faces are among the neighbours."""
    vectors, owner = _blobs(15, 5, seed=5, within=0.55, apart=0.6)  # people the cut splits and leaves out
    expected = _reference(vectors, CUT)
    assert not _same_partition(expected, owner) and (expected >= 0).sum() > len(vectors) / 2
    got = cluster(vectors, distance=DISTANCE, neighbours=neighbours)
    assert _same_partition(got, expected)


def test_two_look_alikes_with_one_close_pair_stay_apart():
    """Single link would join them through their closest pair; the average keeps them apart."""
    rng = np.random.default_rng(6)
    dim = 128
    direction = np.zeros(dim)
    direction[0] = 1.0
    a = rng.standard_normal((5, dim)) * 0.005  # faces of one person about 0.08 apart
    b = a + direction * 0.7
    a[0] += direction * 0.2  # one photo of each leans toward the other: those two 0.3 apart
    b[0] -= direction * 0.2
    vectors = np.concatenate([a, b]).astype(np.float32)
    assert np.linalg.norm(vectors[0] - vectors[5]) < CUT
    labels = cluster(vectors, distance=DISTANCE)
    assert len(set(labels[:5])) == 1 and len(set(labels[5:])) == 1 and labels[0] != labels[5]


def test_a_chain_of_faces_is_not_one_person():
    steps = np.zeros((30, 128), dtype=np.float32)
    steps[:, 0] = np.arange(30) * 0.3  # each face 0.3 from the next: single link makes one group
    labels = cluster(steps, distance=DISTANCE)
    assert labels.max() + 1 > 5
    sizes = np.bincount(labels[labels >= 0])
    assert sizes.max() <= 4


def test_the_cut_comes_from_the_match_distance():
    vectors, _ = _blobs(6, 4, seed=8, within=0.4, apart=0.6)
    usual = cluster(vectors, distance=DISTANCE)
    assert cluster(vectors, distance=DISTANCE * 2).max() < usual.max()  # fewer, larger people
    assert (cluster(vectors, distance=DISTANCE / 3) < 0).sum() > (usual < 0).sum()
    assert np.array_equal(cluster(vectors, distance=DISTANCE), cluster(vectors, distance=1.0, cut=CUT))


@pytest.mark.parametrize("bad, message", [
    (np.zeros(128, dtype=np.float32), "2-D"),
    (np.full((3, 128), np.nan, dtype=np.float32), "NaN"),
])
def test_bad_templates_are_refused_with_what_to_do(bad, message):
    with pytest.raises(ValueError, match=message):
        cluster(bad, distance=DISTANCE)


@pytest.mark.parametrize("options", [dict(distance=0.0), dict(distance=-1.0), dict(distance=float("nan")),
                                     dict(distance=0.6, min_size=0), dict(distance=0.6, neighbours=0)])
def test_bad_parameters_are_refused(options):
    with pytest.raises(ValueError):
        cluster(np.zeros((3, 4), dtype=np.float32), **options)


# -- assign ---------------------------------------------------------------------------------------


def _people(seed: int = 0):
    vectors, owner = _blobs(8, 6, seed=seed)
    groups = [vectors[owner == p] for p in range(8)]
    return vectors, owner, np.stack([centroid(g) for g in groups]), np.array([spread(g) for g in groups])


def test_a_new_face_of_a_known_person_goes_to_that_person():
    _, _, centroids, spreads = _people()
    rng = np.random.default_rng(11)
    for person in range(8):
        face = centroids[person] + rng.standard_normal(centroids.shape[1]).astype(np.float32) * 0.03
        assert assign(face, centroids, distance=DISTANCE) == person
        assert assign(face, centroids, distance=DISTANCE, spreads=spreads) == person


def test_a_face_of_nobody_known_is_not_placed():
    _, _, centroids, spreads = _people()
    stranger = (np.random.default_rng(12).standard_normal(centroids.shape[1]) * 2).astype(np.float32)
    assert assign(stranger, centroids, distance=DISTANCE) is None
    assert assign(stranger, centroids, distance=DISTANCE, spreads=spreads) is None
    assert assign(stranger, np.zeros((0, centroids.shape[1]), dtype=np.float32), distance=DISTANCE) is None


def test_a_face_halfway_between_two_people_is_not_placed():
    dim = 128
    a, b = np.zeros(dim, dtype=np.float32), np.zeros(dim, dtype=np.float32)
    b[0] = 0.5
    centroids = np.stack([a, b])
    between = (a + b) / 2  # 0.25 from each: well inside the cut, but no margin
    assert assign(between, centroids, distance=DISTANCE) is None
    assert assign(between, centroids, distance=DISTANCE, margin=0.0) is not None
    nearer_a = between.copy()
    nearer_a[0] = 0.25 - clustering.ASSIGN_MARGIN_RATIO * DISTANCE  # margin and a little
    nearer_a[0] -= 0.01
    assert assign(nearer_a, centroids, distance=DISTANCE) == 0


def test_a_wide_persons_spread_counts_against_placing_a_face_near_its_centroid():
    dim = 128
    centroids = np.zeros((1, dim), dtype=np.float32)
    face = np.zeros(dim, dtype=np.float32)
    face[0] = 0.4  # 0.4 from the centroid: placed when the person is tight
    assert assign(face, centroids, distance=DISTANCE, spreads=np.array([0.01])) == 0
    # A person whose faces lie 0.45 (RMS) from their centroid: 0.6 from this face on average.
    assert assign(face, centroids, distance=DISTANCE, spreads=np.array([0.45 ** 2])) is None


def test_assign_many_is_assign_for_each_face():
    vectors, _, centroids, spreads = _people(seed=3)
    rng = np.random.default_rng(4)
    faces = np.concatenate([vectors + rng.standard_normal(vectors.shape).astype(np.float32) * 0.02,
                            (rng.standard_normal((10, vectors.shape[1])) * 2).astype(np.float32)])
    many = assign_many(faces, centroids, distance=DISTANCE, spreads=spreads)
    one_by_one = [assign(f, centroids, distance=DISTANCE, spreads=spreads) for f in faces]
    assert many.tolist() == [-1 if p is None else p for p in one_by_one]
    assert (many[-10:] == -1).all() and (many[:-10] >= 0).all()


def test_assign_refuses_templates_of_another_embedder_and_bad_spreads():
    _, _, centroids, spreads = _people()
    with pytest.raises(ValueError, match="different embedders"):
        assign(np.zeros(64, dtype=np.float32), centroids, distance=DISTANCE)
    with pytest.raises(ValueError, match="spreads"):
        assign(centroids[0], centroids, distance=DISTANCE, spreads=spreads[:3])
    with pytest.raises(ValueError, match="spreads"):
        assign(centroids[0], centroids, distance=DISTANCE, spreads=-spreads)


def test_centroid_and_spread():
    faces = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]], dtype=np.float32)
    assert centroid(faces).tolist() == [1.0, 1.0]
    assert spread(faces) == pytest.approx((2 + 2 + 4) / 3)
    assert spread(faces[:1]) == 0.0
    # With the centroid, the spread gives the mean squared distance from a face to the group.
    probe = np.array([4.0, -1.0])
    assert ((faces - probe) ** 2).sum(axis=1).mean() == pytest.approx(((centroid(faces) - probe) ** 2).sum() + spread(faces))
    with pytest.raises(ValueError):
        centroid(np.zeros((0, 2), dtype=np.float32))


# -- the score ------------------------------------------------------------------------------------


def test_pairwise_scores_count_pairs_and_unassigned_faces_pair_with_nobody():
    labels = np.array([0, 0, 1, 1, -1, -1])
    truth = np.array(["a", "a", "a", "b", "b", "b"])
    score = pairwise_scores(labels, truth)
    # Predicted together: (0,1) right and (2,3) wrong; the two unassigned faces pair with nobody.
    assert (score.predicted_pairs, score.right_pairs, score.true_pairs) == (2, 1, 6)
    assert (score.precision, score.recall) == (0.5, 1 / 6)
    nothing = pairwise_scores(np.full(3, -1), np.array(["a", "b", "c"]))
    assert (nothing.precision, nothing.recall) == (1.0, 1.0)
    with pytest.raises(ValueError, match="one of each"):
        pairwise_scores(np.zeros(2, dtype=np.int64), np.array(["a"]))


def test_pairwise_scores_agree_with_counting_every_pair():
    rng = np.random.default_rng(0)
    labels, truth = rng.integers(-1, 6, 80), rng.integers(0, 5, 80)
    pairs = [(i, j) for i in range(80) for j in range(i + 1, 80)]
    predicted = [(i, j) for i, j in pairs if labels[i] >= 0 and labels[i] == labels[j]]
    true = [(i, j) for i, j in pairs if truth[i] == truth[j]]
    score = pairwise_scores(labels, truth)
    assert score.predicted_pairs == len(predicted) and score.true_pairs == len(true)
    assert score.right_pairs == len(set(predicted) & set(true))
