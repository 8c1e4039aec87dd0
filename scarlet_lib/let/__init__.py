"""The paper's linearly equivalent transformation (LET): the algebra, network folding, and drop-error studies.

* ``algebra``: Lemmas 1 and 2 as folding functions and their numeric checks;
* ``folding``: ``fold_network``, a LET network to the LET-free stand-alone model;
* ``studies``: how large the error of dropping the LET is.

Every name is importable from ``scarlet_lib.let`` as before the split.
"""
from .algebra import (  # noqa: F401
    bias_border_check, fold_conv, fold_conv_printed, fold_fc, folded_conv_on_input, lemma_checks,
    let_relu_counterexample, let_then_conv,
)
from .folding import FOLD_MODES, InvertedResidualWithProjection, LetRun, find_let_runs, fold_network  # noqa: F401
from .studies import (  # noqa: F401
    LET_WEIGHT_KINDS, drop_error_study, make_let_weight, output_error, residual_counterexample, set_let_weights_,
)

__all__ = [
    "fold_fc", "fold_conv", "fold_conv_printed", "let_then_conv", "folded_conv_on_input", "lemma_checks",
    "let_relu_counterexample", "bias_border_check", "LetRun", "find_let_runs", "fold_network",
    "InvertedResidualWithProjection", "set_let_weights_", "make_let_weight", "LET_WEIGHT_KINDS",
    "output_error", "drop_error_study", "residual_counterexample", "FOLD_MODES",
]
