"""The tests' own helpers fail where they must."""
import pytest
import torch

from conftest import assert_same_weights


def test_assert_same_weights_fails_on_a_missing_or_extra_entry():
    net = torch.nn.Linear(2, 2)
    grown = torch.nn.Linear(2, 2)
    grown.load_state_dict(net.state_dict())
    grown.register_buffer("extra", torch.zeros(1))  # after every shared entry: a zip of the two would skip it
    assert_same_weights({"net": net}, {"net": net}, ["net"])
    for actual, expected in (({"net": grown}, {"net": net}), ({"net": net}, {"net": grown})):
        with pytest.raises(AssertionError, match="extra"):
            assert_same_weights(actual, expected, ["net"])
