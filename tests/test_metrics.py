"""count_correct: the device-side count of correct predictions agrees with correct()."""

from __future__ import annotations

import pytest
import torch

from landscape.engine.metrics import correct, count_correct, count_counted

g = torch.Generator().manual_seed(0)
CASES = {
    "classes": (torch.randn(50, 4, generator=g), torch.randint(4, (50,), generator=g)),
    "classes with ignored": (
        torch.randn(50, 4, generator=g),
        torch.randint(-1, 4, (50,), generator=g),
    ),
    "sequence classes": (torch.randn(6, 7, 5, generator=g), torch.randint(5, (6, 7), generator=g)),
    "one-hot": (
        torch.randn(30, 3, generator=g),
        torch.nn.functional.one_hot(torch.randint(3, (30,), generator=g), 3).float(),
    ),
    "one logit, 0/1": (torch.randn(40, 1, generator=g), torch.randint(2, (40,), generator=g)),
    "one logit, -1/+1": (
        torch.randn(40, generator=g),
        torch.randint(2, (40,), generator=g) * 2 - 1,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_count_correct_agrees_with_correct(case):
    outputs, targets = CASES[case]
    counted = count_correct(outputs, targets)
    assert isinstance(counted, torch.Tensor) and counted.device == outputs.device
    assert float(counted) == correct(outputs, targets)[0]


def test_count_correct_none_where_the_shapes_do_not_say():
    assert count_correct(torch.randn(10, 3), torch.randn(10, 2)) is None


def test_predictions_take_the_first_maximum_like_argmax():
    from landscape.engine.metrics import count_correct

    out = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 5.0, 5.0]])
    # ties go to the first maximum, as torch.argmax does: classes 1, 0, 2
    assert int(count_correct(out, torch.tensor([1, 0, 2]))) == 3
    assert int(count_correct(out, torch.tensor([2, 3, 3]))) == 0
    assert correct(out, torch.tensor([1, 0, 2])) == (3.0, 3)


@pytest.mark.parametrize("case", list(CASES))
def test_count_counted_agrees_with_correct(case):
    outputs, targets = CASES[case]
    assert int(count_counted(outputs, targets)) == correct(outputs, targets)[1]


def test_count_counted_leaves_out_ignored_class_targets():
    targets = torch.tensor([1, -100, 0, -100, 2])
    assert int(count_counted(torch.randn(5, 3), targets)) == 3
    assert correct(torch.randn(5, 3), targets)[1] == 3
