"""The keeper's integer mirror of issue 10's rules (keeper/engine/margin.py), against hand-worked numbers:
the victim pays at most max(E, 0) of the penalty, the fund pays at most insuranceReward of the rest, and a
loss epoch is a value-preserving rebase (x 1e9), not a wipe-out."""

from __future__ import annotations

from keeper.engine import margin as mirror
from keeper.engine.fixedpoint import WAD


def mark(epoch: int, index: int) -> int:
    return mirror.loss_mark(epoch, index)


def test_victim_pays_at_most_its_positive_equity() -> None:
    assert mirror.victim_share(135 * WAD, -1_000 * WAD) == (0, 135 * WAD)
    assert mirror.victim_share(135 * WAD, 35 * WAD) == (35 * WAD, 100 * WAD)
    assert mirror.victim_share(135 * WAD, 500 * WAD) == (135 * WAD, 0)


def test_insurance_reward_is_capped_by_the_parameter_and_the_fund() -> None:
    assert mirror.insurance_reward(135 * WAD, 100 * WAD, 5_000 * WAD) == 100 * WAD
    assert mirror.insurance_reward(135 * WAD, 100 * WAD, 40 * WAD) == 40 * WAD
    assert mirror.insurance_reward(135 * WAD, 100 * WAD, 0) == 0
    assert mirror.insurance_reward(135 * WAD, 100 * WAD, -5 * WAD) == 0


def test_a_rebased_epoch_keeps_value() -> None:
    cash = 405_000 * WAD
    # settled at 1.5e9; a 40% loss rebased the index to 0.9e9 * 1e9 in the next epoch: 40% charged, not 100%
    assert mirror.pending_loss_charge(cash, mark(0, 15 * 10**8), 9 * 10**17, 1) == cash * 40 // 100
    # same epoch: the plain multiplicative index
    assert mirror.pending_loss_charge(cash, mark(3, WAD), WAD // 2, 3) == cash // 2
    # two rebases later (1e18 of scale): what is left rounds down, the charge up, never above the cash
    left = cash - mirror.pending_loss_charge(cash, mark(0, 10**9), 10**17, 2)
    assert left == cash * 10**17 // (10**9 * 10**18)
    # a wipe-out advances the epoch by LOSS_EPOCHS_WIPED: older balances are worth nothing
    assert mirror.pending_loss_charge(cash, mark(0, WAD), WAD, mirror.LOSS_EPOCHS_WIPED) == cash
    assert mirror.pending_loss_charge(-cash, mark(0, WAD), WAD, 1) == 0
