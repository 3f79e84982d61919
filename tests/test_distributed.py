"""A sweep split across two JAX processes on localhost (jax.distributed, gloo collectives on CPU)
gives the same table as one process, written once by process 0."""

import json
import os
import socket
import subprocess
import sys

import pytest

from ufm import distributed

SWEEP = ["-m", "ufm", "sweep", "--model", "ufm", "--loss", "ce", "--K", "3", "--n", "2", "--d", "3",
         "--grid", "lambda_W=1e-3:1e-1:3:log", "--seeds", "2", "--no-progress"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_") and k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", UFM_NO_CACHE="1", **extra)
    return env


def _table(out_dir):
    with open(os.path.join(out_dir, "sweep.json")) as fh:
        record = json.load(fh)
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in record["rows"]]
    return record, rows


def test_two_processes_give_the_table_of_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    single = subprocess.run([sys.executable, *SWEEP, "--out", str(one)], capture_output=True, text=True,
                            env=_env(), timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, *SWEEP, "--out", str(two), "--distributed"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                                       JAX_PROCESS_ID=str(rank)))
             for rank in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (stdout, stderr) in zip(procs, outs):
        assert p.returncode == 0, stderr[-3000:]
    assert "process 1 of 2 solved 3 of 6 solves" in outs[1][0]
    assert "6 solves (3 points x 2 seeds)" in outs[0][0]
    rec_one, rows_one = _table(one)
    rec_two, rows_two = _table(two)
    assert rec_one["processes"] == 1 and rec_two["processes"] == 2
    assert len(rows_two) == 6 and all(r["ok"] for r in rows_two)
    # the same solves in the same order; values to rounding (the processes compile on their own)
    for a, b in zip(rows_one, rows_two):
        assert {k: v for k, v in a.items() if k not in ("value", "grad_norm", "errors", "worst")} == \
               {k: v for k, v in b.items() if k not in ("value", "grad_norm", "errors", "worst")}
        assert b["value"] == pytest.approx(a["value"], rel=1e-12)
    assert sorted(os.listdir(two)) == sorted(os.listdir(one))  # written once, no temporary files


@pytest.mark.parametrize("kw, match", [
    (dict(num_processes=0, process_id=0, coordinator_address="127.0.0.1:1"), "num_processes"),
    (dict(num_processes="two", process_id=0, coordinator_address="127.0.0.1:1"), "num_processes"),
    (dict(num_processes=2, process_id=2, coordinator_address="127.0.0.1:1"), "process_id"),
    (dict(num_processes=2, process_id=-1, coordinator_address="127.0.0.1:1"), "process_id"),
    (dict(num_processes=2, process_id=0), "all three"),
])
def test_bad_group_settings_are_refused_by_name(kw, match):
    with pytest.raises(ValueError, match=match):
        distributed.initialize(**kw)


def test_a_bad_group_is_one_line_and_exit_2_from_the_cli(tmp_path):
    proc = subprocess.run([sys.executable, *SWEEP, "--out", str(tmp_path / "x"), "--distributed"],
                          capture_output=True, text=True, timeout=120,
                          env=_env(JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="5", JAX_COORDINATOR_ADDRESS="127.0.0.1:1"))
    assert proc.returncode == 2
    assert "process_id must be in [0, 1]" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


def test_process_share_covers_every_item_once():
    shares = [distributed.process_share(10, process_index=r, process_count=3) for r in range(3)]
    assert sorted(i for s in shares for i in s) == list(range(10))
