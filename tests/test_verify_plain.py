"""Solve vs closed form for every plain-UFM row of the verification table (quick + default)."""

import pytest

from ufm.cases import plain, run_case

# The quick tier and the refusals run by default; the other default rows are slow here (`ufm verify`
# runs every one of them, and tests/test_constructions.py covers each regime's closed form).
ROWS = [c if c.in_tier("quick") or c.expect_no_closed_form else pytest.param(c, marks=pytest.mark.slow)
        for c in plain.CASES if c.in_tier("default")]


@pytest.mark.parametrize("case", ROWS, ids=[getattr(c, "name", None) or c.values[0].name for c in ROWS])
def test_plain_row(case):
    row = run_case(case)
    failed = [(c["quantity"], c["error"], c["tolerance"]) for c in row["checks"] if not c["ok"]]
    assert row["ok"], (row.get("notes"), failed)
    if not case.expect_no_closed_form:
        names = {c["quantity"] for c in row["checks"]}
        assert {"value", "grad_norm", "norm_W_sq", "gram_W_spectrum"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in plain.CASES if not c.in_tier("default")],
                         ids=lambda c: c.name)
def test_plain_full_row(case):
    assert run_case(case)["ok"]
