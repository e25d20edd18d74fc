"""The machinery under the checkers: mistake codes, stage-by-stage comparison, learner errors.

The stages below are toys (a tensor of ones and one of twos) so that each behaviour of
the harness shows on its own; test_exercises.py checks the real catalogues.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from densenet_edu import DenseLayer
from densenet_edu.exercises import (
    Mistake,
    check_channel_count,
    check_dense_block,
    dense_block,
    dense_layer,
    transition,
)
from densenet_edu.exercises import densenet121 as whole_model
from densenet_edu.exercises.harness import Slip, Stage, Trace, compare_stages, input_of
from densenet_edu.exercises.result import Failure

# ----------------------------------------------------------------------------- mistake codes


def test_a_mistake_code_equals_hashes_and_prints_as_its_string():
    code = Mistake.MAX_POOL
    assert code == "max_pool"
    assert {"max_pool": "found"}[code] == "found"
    assert str(code) == f"{code}" == "max_pool"
    assert json.dumps({"mistake": code}) == '{"mistake": "max_pool"}'


def test_no_two_mistakes_share_a_code():
    # An Enum silently turns a repeated value into an alias of the first member.
    assert len(Mistake.__members__) == len(Mistake)


def test_a_failed_check_reports_a_mistake_member():
    result = check_channel_count(lambda k0, k, n: k0 + k * n)
    assert result.mistake is Mistake.OFF_BY_ONE


@pytest.mark.parametrize(
    "stages",
    [dense_layer.STAGES, dense_block.stages(3), transition.STAGES, whole_model.STAGES],
    ids=["dense_layer", "dense_block", "transition", "densenet121"],
)
def test_every_catalogued_slip_names_a_mistake_member(stages):
    slips = [slip for stage in stages for slip in stage.slips]
    assert slips and all(isinstance(slip.mistake, Mistake) for slip in slips)
    assert all(isinstance(stage.value_mistake, Mistake) for stage in stages)


# ----------------------------------------------------------------------------- stage by stage

ONES, TWOS = torch.ones(1, 2, 3, 3), torch.full((1, 2, 3, 3), 2.0)


def _trace(**seen):
    return Trace(ones=ONES, twos=TWOS, inputs=seen, outputs={}, result=None)


def _stages(slips=()):
    return (
        Stage("Stage A", expected=lambda t: t.ones, actual=input_of("a"), not_reached="A unused"),
        Stage(
            "Stage B",
            expected=lambda t: t.twos,
            actual=input_of("b"),
            slips=slips,
            not_reached="B unused",
            value_hint="Look at B.",
        ),
    )


def _failure(stages, trace, error=None) -> Failure:
    with pytest.raises(Failure) as info:
        compare_stages(stages, trace, error, "running the toy")
    return info.value


def test_stages_that_match_raise_nothing():
    compare_stages(_stages(), _trace(a=ONES, b=TWOS), None, "running the toy")


def test_the_first_stage_that_differs_is_reported_with_the_largest_difference_and_hint():
    failure = _failure(_stages(), _trace(a=ONES, b=TWOS + 0.5))
    assert failure.mistake is Mistake.WRONG_VALUES
    assert failure.message.startswith("Stage B has the right shape (1, 2, 3, 3)")
    assert "the largest difference is 0.5" in failure.message
    assert failure.message.endswith("Look at B.")


def test_a_slip_that_reproduces_the_learners_tensor_names_its_mistake():
    slips = (
        Slip(Mistake.MISSING_RELU, lambda t: None, "never applies"),
        Slip(Mistake.EXTRA_RELU, lambda t: t.twos * 3, lambda t: f"tripled {tuple(t.ones.shape)}"),
    )
    failure = _failure(_stages(slips), _trace(a=ONES, b=TWOS * 3))
    assert failure.mistake is Mistake.EXTRA_RELU
    assert failure.message == "tripled (1, 2, 3, 3)"


def test_a_stage_never_reached_says_so():
    failure = _failure(_stages(), _trace(a=ONES))
    assert failure.mistake is Mistake.NOT_USED and failure.message == "B unused"


def test_a_stage_never_reached_because_the_learner_raised_reports_the_error():
    failure = _failure(_stages(), _trace(a=ONES), ValueError("broken"))
    assert failure.mistake is Mistake.RAISED
    assert "ValueError while running the toy:\nbroken" in failure.message


def test_a_named_slip_keeps_the_learners_later_error_in_the_details():
    slips = (Slip(Mistake.EXTRA_RELU, lambda t: t.ones, "B got A"),)
    failure = _failure(_stages(slips), _trace(a=ONES, b=ONES), ValueError("later"))
    assert failure.mistake is Mistake.EXTRA_RELU
    assert failure.details.startswith("(your code then failed:") and "later" in failure.details


def test_a_wrong_shape_quotes_both_shapes():
    failure = _failure(_stages(), _trace(a=ONES, b=torch.ones(1, 4, 3, 3)))
    assert failure.mistake is Mistake.WRONG_SHAPE
    assert failure.message == "Stage B has shape (1, 4, 3, 3), expected (1, 2, 3, 3)."


# ----------------------------------------------------------------------------- learner errors


class BadDropRateBlock(nn.ModuleDict):
    """Builds densenet_edu's DenseLayer with an impossible drop rate."""

    def __init__(self, num_layers, in_channels, growth_rate, bn_size=4):
        super().__init__()
        self.add_module("denselayer1", DenseLayer(in_channels, growth_rate, drop_rate=2.0))


def test_an_error_raised_inside_densenet_edu_points_at_the_learners_line():
    # Every densenet_edu frame is internal, not only the exercises' own: the learner
    # sees the line of theirs that called into the package.
    result = check_dense_block(BadDropRateBlock)
    assert result.mistake == "raised"
    assert "DenseLayer(in_channels, growth_rate, drop_rate=2.0)" in result.details
    assert "densenet_edu" not in result.details
