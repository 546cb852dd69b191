"""The keeper's integer mirror of issue 10, class 7 ("borrowing is free"; keeper/engine/margin.py) against
hand-worked numbers: the kinked borrow rate, one accrual (the borrow index rounds up, the interest and the
lenders' credit down, what nobody can take goes to the insurance fund), what negative and positive cash are
worth at the accrued indices, and the risk file's bounds and step rule for the rate model."""

from __future__ import annotations

from dataclasses import replace

import pytest

from keeper.engine import margin as mirror
from keeper.engine.fixedpoint import WAD
from keeper.engine.params import RATE_FIELDS, build_params, standard_shocks
from keeper.errors import RiskFileError
from keeper.riskfile import RiskFile, clamp_step, step_violations, validate_risk_data

RP = build_params([0.05, 0.06], [[1.0, 0.3], [0.3, 1.0]], standard_shocks(2))
YEAR = 365 * 86_400
SCALE = 10**36


def test_default_rate_model() -> None:
    assert (RP.base_rate, RP.rate_slope1, RP.rate_slope2, RP.kink, RP.max_utilisation) == (
        WAD * 2 // 100,
        WAD * 8 // 100,
        WAD,
        WAD * 8 // 10,
        WAD * 9 // 10,
    )
    assert RP.rates() == {name: getattr(RP, name) for name in RATE_FIELDS}


def test_kinked_rate() -> None:
    assert mirror.borrow_rate(RP, 0) == 2 * WAD // 100
    assert mirror.borrow_rate(RP, 4 * WAD // 10) == 6 * WAD // 100  # half way to the kink: 2% + 4%
    assert mirror.borrow_rate(RP, 8 * WAD // 10) == 10 * WAD // 100  # at the kink
    assert mirror.borrow_rate(RP, 9 * WAD // 10) == 60 * WAD // 100  # half way above: 10% + 50%
    assert mirror.borrow_rate(RP, WAD) == 110 * WAD // 100
    # rounded down: 8% * 1 / 0.8 of a wei of utilisation
    assert mirror.borrow_rate(RP, 1) == 2 * WAD // 100 + 8 * WAD // 100 * 1 // (8 * WAD // 10)


def test_utilisation() -> None:
    assert mirror.utilisation(0, 0) == 0
    assert mirror.utilisation(5, 0) == WAD
    assert mirror.utilisation(9, 9) == WAD
    assert mirror.utilisation(1, 3) == WAD // 3  # rounded down


def test_one_accrual() -> None:
    # debt 11,880 at launch index over 131,880 of positive cash settled at the launch loss index
    debt, positive = 11_880 * WAD, 131_880 * WAD
    scaled_debt, scaled_positive = debt, positive * SCALE // WAD
    a = mirror.accrue(RP, WAD, WAD, scaled_debt, scaled_positive, YEAR)
    u = debt * WAD // positive
    assert a.rate == 2 * WAD // 100 + 8 * WAD // 100 * u // (8 * WAD // 10)
    assert a.borrow_index == WAD + a.rate  # a year at `rate`: exact here
    assert a.interest == debt * a.rate // WAD
    assert a.loss_index == WAD + a.interest * SCALE // scaled_positive
    assert a.unplaced == 0
    # the borrow index rounds up: one second at 2.9% on 1e18 is 919,583,967.5... -> 919,583,968
    b = mirror.accrue(RP, WAD, WAD, scaled_debt, scaled_positive, 1)
    assert b.borrow_index - WAD == -((-WAD * a.rate * 1) // (YEAR * WAD))
    # nothing borrowed or no time: nothing moves
    assert mirror.accrue(RP, WAD, WAD, 0, scaled_positive, YEAR) == mirror.Accrual(WAD, WAD, 0, 0, 0)
    assert mirror.accrue(RP, WAD, WAD, scaled_debt, scaled_positive, 0).borrow_index == WAD


def test_interest_nobody_can_take_goes_to_the_fund() -> None:
    a = mirror.accrue(RP, WAD, WAD, 1_000 * WAD, 0, YEAR)  # no positive cash: utilisation 100%, 110%
    assert (a.rate, a.loss_index, a.borrow_index) == (110 * WAD // 100, WAD, WAD + 110 * WAD // 100)
    assert a.unplaced == a.interest == 1_100 * WAD
    near = mirror.MAX_LOSS_INDEX - 10  # the loss index would overflow its 80 bits
    b = mirror.accrue(RP, near, WAD, 1_000 * WAD, 10_000 * WAD * SCALE // near, YEAR)
    assert b.loss_index == near and b.unplaced == b.interest > 0


def test_credits_never_exceed_the_interest() -> None:
    # three lenders settled at different marks, one accrual: what they are credited (rounded down each) is at
    # most the interest, and the debt (rounded up) at least
    lenders = [(7 * WAD + 3, WAD), (123_456 * WAD + 789, WAD + 12_345), (1, WAD + 1)]
    scaled_positive = sum(c * SCALE // s for c, s in lenders)
    a = mirror.accrue(RP, WAD + 12_345, WAD, 50_000 * WAD + 17, scaled_positive, 86_400 * 3)
    credited = sum(mirror.cash_value(c, s, a.loss_index, 0, a.borrow_index)
                   - mirror.cash_value(c, s, WAD + 12_345, 0, WAD) for c, s in lenders)  # fmt: skip
    charged = -mirror.cash_value(-(50_000 * WAD + 17), WAD, 0, 0, a.borrow_index) - (50_000 * WAD + 17)
    assert 0 < credited <= a.interest <= charged


def test_cash_value() -> None:
    # negative cash -d settled at borrow index s: -ceil(d * index / s)
    assert mirror.cash_value(-10, WAD, 0, 0, WAD + WAD // 3) == -14  # 13.33 -> 14
    assert mirror.cash_value(-10, WAD, 0, 0, WAD) == -10
    # positive cash: interest credited through the loss index, rounded down
    assert mirror.cash_value(10, mirror.loss_mark(0, WAD), WAD + WAD // 3, 0, 5 * WAD) == 13
    assert mirror.pending_loss_charge(10, mirror.loss_mark(0, WAD), WAD + WAD // 3, 0) == -3
    assert mirror.cash_value(0, 0, WAD, 0, WAD) == 0


def _file(**rates: str) -> dict[str, object]:
    rf = RiskFile.from_params(RP, ["BTC", "ETH"])
    data = rf.to_data()
    for name in RATE_FIELDS:
        data.pop(name, None)
    data.update(rates)
    return data


def test_risk_file_rate_fields() -> None:
    rf = RiskFile.from_params(replace(RP, base_rate=3 * WAD // 100), ["BTC", "ETH"])
    assert rf.base_rate == 3 * WAD // 100 and rf.rates_given() == RATE_FIELDS
    assert validate_risk_data(rf.to_data()).to_params() == rf.to_params()
    bare = validate_risk_data(_file())
    assert bare.rates_given() == () and bare.to_params().rates() == RP.rates()  # the defaults
    assert validate_risk_data(_file(kink="0.5")).to_params().kink == WAD // 2
    for field, value, bound in (
        ("base_rate", "1.01", "<= 1"),
        ("rate_slope1", "1.5", "<= 1"),
        ("rate_slope2", "10.5", "<= 10"),
        ("kink", "0.995", "<= 0.99"),
        ("kink", "0.001", ">= 0.01"),
        ("max_utilisation", "1.1", "<= 1"),
        ("max_utilisation", "0", ">= 0.01"),
    ):
        with pytest.raises(RiskFileError, match=f"{field}: .*bound \\({bound}\\)"):
            validate_risk_data(_file(**{field: value}))


def test_rate_steps() -> None:
    # within [old/2, 2 old] or the minimum step (base 0.01, slope1 0.02, slope2 0.2, kink 0.05, cap 0.05)
    ok = replace(RP, base_rate=4 * WAD // 100, rate_slope2=2 * WAD, kink=WAD * 85 // 100, max_utilisation=WAD)
    assert step_violations(RP, ok) == []
    bad = replace(RP, base_rate=5 * WAD // 100, rate_slope1=0)
    assert [(v.field, v.low, v.high) for v in step_violations(RP, bad)] == [
        ("base_rate", WAD // 100, 4 * WAD // 100),
        ("rate_slope1", 4 * WAD // 100, 16 * WAD // 100),
    ]
    clamped = {**RP.rates(), "base_rate": 4 * WAD // 100, "rate_slope1": 4 * WAD // 100}
    assert clamp_step(RP, bad).rates() == clamped
    # from 0 a rate leaves by its minimum step only
    zero = replace(RP, base_rate=0)
    assert [v.field for v in step_violations(zero, replace(zero, base_rate=WAD // 100 + 1))] == ["base_rate"]
    assert step_violations(zero, replace(zero, base_rate=WAD // 100)) == []
