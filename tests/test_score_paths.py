"""evaluation.score_paths: shared-prefix scoring of a fixed path set gives evaluate_path's accuracies."""
import numpy as np
import pytest
import torch

from scarlet_lib import evaluation
from scarlet_lib.evaluation import evaluate_path, score_paths
from scarlet_lib.space import SPACE_NO_SE, Architecture
from scarlet_lib.supernet import Supernet


pytestmark = pytest.mark.usefixtures("one_thread")


def _batches(g, n, size=16):
    return [(torch.randn(size, 3, 32, 32, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


@pytest.mark.parametrize("mode", ["let", "identity"])
def test_score_paths_equals_evaluate_path(mode):
    net = Supernet(SPACE_NO_SE, mode, width_mult=0.25, num_classes=10, small_input=True, seed=0)
    g = torch.Generator().manual_seed(1)
    calib, evals = _batches(g, 2), _batches(g, 2, size=12)
    archs = SPACE_NO_SE.sample_stratified(9, seed=0)  # one path per stratum
    archs.append(Architecture(archs[1].tolist()[:12] + archs[2].tolist()[12:]))  # shares a long prefix
    before = {k: v.clone() for k, v in net.state_dict().items()}
    table = score_paths(net, [str(a) for a in archs], calib, evals)
    for k, v in net.state_dict().items():  # the supernet's own statistics are left alone
        assert torch.equal(v, before[k]), k
    reference = np.array([evaluate_path(net, a, calib, evals) for a in archs])
    np.testing.assert_array_equal(table["heldout_acc"].to_numpy(), reference)
    assert list(table.columns) == ["path_id", "arch", "num_identity", "identity_at_shape_change", "heldout_acc",
                                   "n_images"]
    assert list(table["path_id"]) == list(range(len(archs)))
    assert list(table["arch"]) == [str(a) for a in archs]
    assert list(table["num_identity"]) == [a.num_identity for a in archs]
    assert list(table["identity_at_shape_change"]) == [a.identity_at_shape_change for a in archs]
    assert set(table["n_images"]) == {24}
    assert len(set(reference)) > 1  # not a degenerate all-equal case


def test_score_paths_rejects_bad_input():
    net = Supernet(SPACE_NO_SE, "let", width_mult=0.25, num_classes=10, small_input=True, seed=0)
    batches = _batches(torch.Generator().manual_seed(0), 1, size=4)
    with pytest.raises(ValueError, match="at least one architecture"):
        score_paths(net, [], batches, batches)
    with pytest.raises(ValueError, match="not in this space"):
        score_paths(net, [[1] * 19], batches, batches)  # choice 1 (e3k3se) is not in the no-SE space
    assert "score_paths" in evaluation.__all__
