"""Metrics against hand-computed worked examples and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tmor.train import metrics as M


def test_top_k_and_ties_go_to_higher_index() -> None:
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0], [0.3, 0.3, 0.4]])
    labels = np.array([1, 0, 0])
    # row 1: tie 0/1 -> argsort puts class 1 last, so top-1 is 1 (wrong); row 2: top-1 is 2
    assert M.top_k_accuracy(scores, labels, 1) == pytest.approx(1 / 3)
    # top-2: row 1 -> {0,1} ok; row 2 -> {2, 1} (tie 0/1 broken to 1) wrong
    assert M.top_k_accuracy(scores, labels, 2) == pytest.approx(2 / 3)
    assert M.top_k_accuracy(scores, labels, 3) == 1.0


def test_mean_class_accuracy_hand_example() -> None:
    # class 0: 3 samples, 2 right; class 1: 1 sample, right; class 2: absent from labels
    labels = np.array([0, 0, 0, 1])
    pred = np.array([0, 0, 2, 1])
    scores = np.eye(3)[pred]
    assert M.mean_class_accuracy(scores, labels) == pytest.approx((2 / 3 + 1) / 2)
    assert M.top_k_accuracy(scores, labels, 1) == pytest.approx(3 / 4)
    cm = M.confusion_matrix(pred, labels, 3)
    assert cm.tolist() == [[2, 0, 1], [0, 1, 0], [0, 0, 0]]
    rows = M.per_class_table(scores, labels, ["a", "b", "c"])
    assert rows[0]["accuracy"] == pytest.approx(2 / 3) and rows[2]["accuracy"] is None
    assert rows[2]["precision"] == 0.0 and rows[2]["predicted"] == 1


def test_confusion_png(tmp_path) -> None:
    cm = np.array([[3, 1], [0, 2]])
    out = tmp_path / "cm.png"
    M.save_confusion_png(cm, str(out), ["fall", "other"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_frame_ap_hand_and_sklearn() -> None:
    from sklearn.metrics import average_precision_score

    s = np.array([0.9, 0.8, 0.7, 0.6])
    t = np.array([1, 0, 1, 0])
    assert M.frame_ap(s, t)[0] == pytest.approx((1 + 2 / 3) / 2)
    rng = np.random.default_rng(0)
    scores = rng.random((200, 5))
    targets = (rng.random((200, 5)) < 0.3).astype(int)
    ap = M.frame_ap(scores, targets)
    ref = [average_precision_score(targets[:, c], scores[:, c]) for c in range(5)]
    np.testing.assert_allclose(ap, ref, rtol=1e-12)


def test_frame_ap_ties_and_no_positive_class() -> None:
    # ties keep input order (Matlab's stable sort): [1, 0, 1] -> precisions 1, 2/3 at positives
    s = np.array([[0.5, 0.3], [0.5, 0.2], [0.1, 0.1]])
    t = np.array([[1, 0], [0, 0], [1, 0]])
    ap = M.frame_ap(s, t)
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2)
    assert math.isnan(ap[1])
    # TSU: class 1 (no positives) left out of the mean; Charades-style nanmean agrees here
    assert M.tsu_frame_map(s, t).map == pytest.approx(ap[0])


def test_tsu_leaves_out_absent_classes() -> None:
    s = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.4], [0.1, 0.7, 0.3]])
    t = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    r = M.tsu_frame_map(s, t)
    assert r.map == pytest.approx(1.0)  # classes 0 and 1 ranked perfectly; class 2 absent
    assert math.isnan(r.ap[2])


def test_charades_sampling_and_map() -> None:
    assert M.charades_sample_indices(50).tolist() == list(range(0, 50, 2))
    assert M.charades_sample_indices(25).tolist() == list(range(25))
    y = M.charades_targets([(0, 0.0, 4.0), (1, 9.6, 10.0)], length=10.0, num_classes=2)
    assert y[:, 0].sum() == 11  # t = 0.0, 0.4, ..., 4.0 inclusive of both ends
    assert y[:, 1].tolist() == [0] * 24 + [1]  # t = 9.6 is the last sample time
    # per-frame scores over 50 frames: perfect for class 0 at the sampled frames
    sc = np.zeros((50, 2))
    sc[: 2 * 11, 0] = 1.0
    sc[48:, 1] = 1.0
    r = M.charades_frame_map([sc, None], [y, y])
    # video 2 has no prediction: its 25 frames score -inf and rank last
    ap0 = M.frame_ap(np.concatenate([sc[::2, 0], np.full(25, -np.inf)]),
                     np.concatenate([y[:, 0], y[:, 0]]))[0]
    assert r.ap[0] == pytest.approx(ap0)
    # hand: first 11 ranks are positives (prec 1); then 14 negatives of video 1, then video 2
    # in order: its 11 positives at ranks 26..36 -> precision (11+i)/(25+i)
    hand = (11 + sum((11 + i) / (25 + i) for i in range(1, 12))) / 22
    assert r.ap[0] == pytest.approx(hand)
    assert r.num_frames == 50


def test_segments_from_scores_and_labels_at_borders() -> None:
    sc = np.array([0.9, 0.8, 0.1, 0.6, 0.7])[:, None]
    segs = M.scores_to_segments(sc, "v", threshold=0.5)
    assert segs == [(0, 0.0, 2.0, pytest.approx(0.85), "v"), (0, 3.0, 5.0, pytest.approx(0.65),
                                                                "v")]
    lab = np.array([2, 2, -1, 0, 0, 0])
    g = M.labels_to_segments(lab, "v")
    assert sorted((c, s, e) for c, s, e, _, _ in g) == [(0, 3.0, 6.0), (2, 0.0, 2.0)]


def test_event_ap_hand_examples() -> None:
    gt = [(0, 10.0, 20.0, 1.0, "v")]
    # a perfect proposal alone: AP 1
    assert M.event_ap([(0, 10.0, 20.0, 0.9, "v")], 0.5, gt) == pytest.approx(1.0)
    # the reference's interpolation: the set with the false positive sets the precision
    # (0.5) and removing the unmatched lower-confidence proposal is not re-evaluated
    props = [(0, 10.0, 20.0, 0.9, "v"), (0, 30.0, 40.0, 0.8, "v")]
    assert M.event_ap(props, 0.5, gt) == pytest.approx(0.5)
    # overlap 5/15 = 1/3: a hit at theta 0.3, a miss at 0.5
    p = [(0, 15.0, 25.0, 0.7, "v")]
    assert M.event_ap(p, 0.3, gt) == pytest.approx(1.0)
    assert M.event_ap(p, 0.5, gt) == 0.0
    # other video never matches
    assert M.event_ap([(0, 10.0, 20.0, 0.9, "w")], 0.1, gt) == 0.0
    # two proposals on one ground truth count it once: full set P=1/2 R=1;
    # remove the 0.6 one: still hit -> P=1, R=1 (no recall change); remove the 0.9: R=0
    two = [(0, 10.0, 20.0, 0.9, "v"), (0, 11.0, 20.0, 0.6, "v")]
    assert M.event_ap(two, 0.5, gt) == pytest.approx(1.0)


def test_event_map_classes_and_thresholds() -> None:
    gt = M.labels_to_segments(np.array([0, 0, 0, 0, -1, -1, 1, 1, 1, 1]), "v")
    sc = np.zeros((10, 3))
    sc[0:4, 0] = 0.9
    sc[5:10, 1] = 0.8  # 5..10 vs 6..10: overlap 4/5
    props = M.scores_to_segments(sc, "v")
    r = M.event_map(props, gt, num_classes=3)
    assert r[0.5]["ap"][:2] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert r[0.5]["ap"][2] == 0.0  # no ground truth: 0, and counted in the reference mean
    assert r[0.5]["map"] == pytest.approx(2 / 3)
    assert r[0.5]["map_present"] == pytest.approx(1.0)
    sc[5:10, 1] = 0.0
    sc[8:10, 1] = 0.8  # 8..10 vs 6..10: overlap 2/4 = 0.5 -> hit at 0.5 (>=), 0.3, 0.1
    r2 = M.event_map(M.scores_to_segments(sc, "v"), gt, num_classes=2)
    assert r2[0.5]["ap"][1] == pytest.approx(1.0)
    sc[8:10, 1] = 0.0
    sc[9, 1] = 0.8  # 9..10: overlap 1/4 -> hit at 0.1 only
    r3 = M.event_map(M.scores_to_segments(sc, "v"), gt, num_classes=2)
    assert [r3[t]["ap"][1] for t in (0.1, 0.3, 0.5)] == [1.0, 0.0, 0.0]


def _reference_ap(lst: list, ratio: float, ground: list) -> float:
    """PKU-MMD evaluate.py's match + ap, restated loop for loop (Python 3) as the oracle."""

    def overlap(p, g):
        if int(p[0]) != int(g[0]) or p[4] != g[4]:
            return 0
        if max(p[2], g[2]) - min(p[1], g[1]) == 0:
            return 0
        return (min(p[2], g[2]) - max(p[1], g[1])) / (max(p[2], g[2]) - min(p[1], g[1]))

    def calc_pr(positive, proposal, n_ground):
        if proposal == 0 or n_ground == 0:
            return 0, 0
        return positive / proposal, positive / n_ground

    lst = sorted(lst, key=lambda x: x[3])
    cos_map = [-1] * len(lst)
    count_map = [0] * len(ground)
    for x in range(len(lst)):
        for y in range(len(ground)):
            if overlap(lst[x], ground[y]) < ratio:
                continue
            if overlap(lst[x], ground[y]) < overlap(lst[x], ground[cos_map[x]]):
                continue
            cos_map[x] = y
        if cos_map[x] != -1:
            count_map[cos_map[x]] += 1
    positive = sum(c > 0 for c in count_map)
    score, n_prop, n_ground = 0.0, len(lst), len(ground)
    old_p, old_r = calc_pr(positive, n_prop, n_ground)
    for x in range(len(lst)):
        n_prop -= 1
        if cos_map[x] == -1:
            continue
        count_map[cos_map[x]] -= 1
        if count_map[cos_map[x]] == 0:
            positive -= 1
        p, r = calc_pr(positive, n_prop, n_ground)
        old_p = max(old_p, p)
        score += old_p * (old_r - r)
        old_r = r
    return score


def test_event_ap_equals_reference_loop_on_random_segments() -> None:
    rng = np.random.default_rng(1)
    for trial in range(30):
        ground, props = [], []
        for v in ("a", "b", "c"):
            for _ in range(rng.integers(0, 5)):
                s = float(rng.integers(0, 80))
                ground.append((0, s, s + float(rng.integers(1, 30)), 1.0, v))
            for _ in range(rng.integers(0, 8)):
                s = float(rng.integers(0, 80))
                conf = float(rng.integers(0, 4)) / 4  # many ties in confidence
                props.append((0, s, s + float(rng.integers(1, 30)), conf, v))
        for theta in (0.1, 0.3, 0.5):
            assert M.event_ap(props, theta, ground) == pytest.approx(
                _reference_ap(props, theta, ground), abs=1e-12), (trial, theta)
