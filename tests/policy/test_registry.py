import pytest

from commonpool.scheduler.policy import POLICY_NAMES, Policy, UnknownPolicyError, make_policy


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_registered_name_builds_a_policy(name: str) -> None:
    policy = make_policy(name)
    assert isinstance(policy, Policy)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="fifo") as err:
        make_policy("nope")
    assert isinstance(err.value, UnknownPolicyError)
