"""The codes a failed check names its diagnosis with (``CheckResult.mistake``).

A code is a :class:`Mistake`, which is also its string: ``result.mistake == "max_pool"``
holds, prints as ``max_pool`` and hashes like the string, so code written against the
plain strings keeps working.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Mistake"]


class Mistake(str, Enum):
    """What a learner got wrong, one member per diagnosis the checkers can make."""

    # Not a diagnosis of the architecture: the learner's code raised, or the call was wrong.
    RAISED = "raised"
    NOT_IMPLEMENTED = "not_implemented"
    WRONG_ARGUMENT = "wrong_argument"
    NOT_A_MODULE = "not_a_module"

    # Generic: where the data flow first differs, when no named mistake explains it.
    NOT_USED = "not_used"
    WRONG_SHAPE = "wrong_shape"
    WRONG_VALUES = "wrong_values"
    WRONG_KEY_NAMES = "wrong_key_names"
    BIAS_ON_CONV = "bias_on_conv"
    WRONG_GRADIENT = "wrong_gradient"
    NO_GRADIENT = "no_gradient"
    MODIFIED_INPUT = "modified_input"
    DROPOUT_IN_EVAL = "dropout_in_eval"

    # Channel arithmetic (Section 3, "Growth rate"; "Compression").
    WRONG_TYPE = "wrong_type"
    WRONG_VALUE = "wrong_value"
    OFF_BY_ONE = "off_by_one"
    MISSING_K0 = "missing_k0"
    MISSING_LAST_LAYER = "missing_last_layer"
    MISSING_BLOCK_INPUT = "missing_block_input"
    ONLY_LAST_LAYER = "only_last_layer"
    COMPRESSION_CEIL = "compression_ceil"
    COMPRESSION_ROUND = "compression_round"
    COMPRESSION_FLOAT_ERROR = "compression_float_error"
    NO_COMPRESSION = "no_compression"
    IGNORES_THETA = "ignores_theta"
    WRONG_COMPRESSION = "wrong_compression"

    # Dense connectivity (Eq. 2): what a layer or block concatenates.
    CONCAT_WRONG_DIM = "concat_wrong_dim"
    LIST_NOT_CONCATENATED = "list_not_concatenated"
    ADDED_INSTEAD_OF_CONCAT = "added_instead_of_concat"
    WRONG_CONCAT_ORDER = "wrong_concat_order"
    BN_ON_LAST_FEATURE = "bn_on_last_feature"
    BN_ON_FIRST_FEATURE = "bn_on_first_feature"
    RETURNED_CONCAT = "returned_concat"
    ADDS_BLOCK_INPUT = "adds_block_input"
    CHAIN_NOT_DENSE = "chain_not_dense"
    ONLY_BLOCK_INPUT = "only_block_input"
    WRONG_NUM_LAYERS = "wrong_num_layers"
    WRONG_LAYER_WIDTH = "wrong_layer_width"
    LAYER_DIFFERS = "layer_differs"

    # The composite function BN -> ReLU -> conv (Section 3).
    RELU_BEFORE_BN = "relu_before_bn"
    MISSING_RELU = "missing_relu"
    MISSING_BN = "missing_bn"
    BN_OUTPUT_UNUSED = "bn_output_unused"
    EXTRA_RELU = "extra_relu"
    WRONG_RUNNING_STATS = "wrong_running_stats"

    # Pooling: transitions, the stem and the head (Table 1).
    MAX_POOL = "max_pool"
    NO_POOLING = "no_pooling"
    CEIL_MODE = "ceil_mode"
    POOL_STRIDE = "pool_stride"
    STEM_MISSING_POOL = "stem_missing_pool"
    STEM_POOL_PADDING = "stem_pool_padding"
    STEM_AVG_POOL = "stem_avg_pool"
    MISSING_FINAL_RELU = "missing_final_relu"
    GLOBAL_MAX_POOL = "global_max_pool"
    SOFTMAX = "softmax"

    # The code, not "Mistake.MAX_POOL", wherever it is printed (str already gives the hash).
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return self.value.__format__(spec)
