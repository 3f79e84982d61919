"""Reproduce the papers: run every experiment script of the source checkout, collect the figures.

Each script in ``experiments/`` (beside the ``ufm`` package in a source checkout) checks one claim
family of the literature against ufm's closed forms and writes ``<name>.json`` with PNG and PDF
figures. :func:`run` runs them one after another, each in its own Python process (a script that
fails or crashes is reported and the others still run) into ``out_dir/<name>/``, times each, and
writes ``out_dir/reproduce.json`` (the outcome of every script) and ``out_dir/README.md`` (claim,
paper, command and figures of each). :data:`EXPERIMENTS` is the registry; a registered script
that is not in the checkout is skipped with a note.

A wheel install has no ``experiments/``: :func:`run` then raises ``ValueError`` saying that
``ufm reproduce`` needs a source checkout.

Examples:
    >>> [e.name for e in EXPERIMENTS][:3]
    ['mse', 'deep_threshold', 'loss_family']
    >>> run("/tmp/out", only="no-such-experiment")
    Traceback (most recent call last):
    ...
    ValueError: only: unknown experiment 'no-such-experiment'; known: mse, deep_threshold, loss_family, spherical_solvers, multilabel, regression, imbalanced, landscape, mlp_collapse, deep_rfm, deep_nrc
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from ufm import io


@dataclass(frozen=True)
class Experiment:
    """One registered experiment script: ``experiments/<name>.py``."""

    name: str
    claim: str
    paper: str
    figures: tuple[str, ...]  # PNG names written into its output directory (a PDF beside each)
    has_quick: bool = True  # takes --quick; a script without it runs at its default size

    @property
    def script(self) -> str:
        return f"{self.name}.py"


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("mse", "MSE: orthogonal frame without bias, simplex ETF with bias; the collapse "
               "threshold as a phase diagram over (λ_W, λ_H); d < K (partial rank)",
               "Tirer & Bruna, ICML 2022; Zhou et al., ICML 2022", ("mse.png",)),
    Experiment("deep_threshold", "extended and deep linear UFM: a first-order jump of F* and ‖W‖ "
               "at the two-layer threshold κ* = 2^(-4/3) (κ_max marked), the fraction of restarts "
               "reaching the global value, deep neural collapse layer by layer",
               "Tirer & Bruna, ICML 2022; Dang et al., ICML 2023; Súkeník et al., NeurIPS 2023",
               ("deep_threshold.png",)),
    Experiment("loss_family", "CE, label smoothing, focal loss and MSE all give a simplex ETF, at "
               "their own scale, up to their own collapse thresholds",
               "Zhu et al., NeurIPS 2021; Zhou et al., NeurIPS 2022", ("loss_family.png",)),
    Experiment("spherical_solvers", "spherical UFM: simplex ETF at every temperature with the "
               "closed-form value; Riemannian trust region against Riemannian gradient descent",
               "Yaras et al., NeurIPS 2022", ("spherical_solvers.png",)),
    Experiment("multilabel", "multi-label UFM (pick-all-label CE): the tag-wise factor ρ_m "
               "against λ", "Li, Li, Wang & Qu, ICML 2024", ("multilabel.png",)),
    Experiment("regression", "regression UFM: three regimes as λ_W λ_H crosses the target "
               "eigenvalues, NRC1-3", "Andriopoulos et al., NeurIPS 2024", ("regression.png",)),
    Experiment("imbalanced", "imbalanced classes: minority collapse (bias-free MSE closed form) and "
               "imbalanced CE solved numerically",
               "Fang et al., PNAS 2021; Dang et al., ICML 2023", ("imbalanced.png",)),
    Experiment("landscape", "landscape: Hessian spectra at the global minimum and at strict "
               "saddles, escape from each saddle to the global value",
               "Zhu et al., NeurIPS 2021; Yaras et al., NeurIPS 2022", ("spectra.png", "escape.png"),
               has_quick=False),
    Experiment("mlp_collapse", "a trained MLP collapses towards its UFM (NC1-NC4 over training)",
               "Papyan, Han & Donoho, PNAS 2020", ("mlp_collapse.png",)),
    Experiment("deep_rfm", "deep RFM: the AGOP drives deep neural collapse",
               "Beaglehole et al., NeurIPS 2024", ("deep_rfm.png", "deep_rfm_grams.png")),
    Experiment("deep_nrc", "deep neural regression collapse in trained MLPs, with and without "
               "weight decay", "Rangamani & Unal (deep neural regression collapse); Andriopoulos et al., "
               "NeurIPS 2024 (NRC)", ("deep_nrc.png",)),
)
_BY_NAME = {e.name: e for e in EXPERIMENTS}


def default_experiments_dir() -> Path:
    """``experiments/`` beside the ``ufm`` package: present in a source checkout only."""
    return Path(__file__).resolve().parents[1] / "experiments"


def _select(only) -> list[Experiment]:
    if only is None:
        return list(EXPERIMENTS)
    try:
        names = [only] if isinstance(only, str) else list(only)
    except TypeError:
        raise TypeError(f"only must be an experiment name or a sequence of names, got {only!r}") from None
    chosen = []
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"only must be an experiment name or a sequence of names, got {only!r}")
        for part in filter(None, (p.strip() for p in n.split(","))):
            if part not in _BY_NAME:
                raise ValueError(f"only: unknown experiment {part!r}; known: "
                                 f"{', '.join(_BY_NAME)}")
            if _BY_NAME[part] not in chosen:
                chosen.append(_BY_NAME[part])
    if not chosen:
        raise ValueError(f"only must name at least one experiment, got {only!r}")
    return chosen


def _command(exp: Experiment, quick: bool) -> str:
    quick = quick and exp.has_quick
    return f"python experiments/{exp.script} --out OUT/{exp.name}" + (" --quick" if quick else "")


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run(out_dir, *, quick: bool = False, only: Optional[str | Iterable[str]] = None,
        progress: Optional[Callable[[str], object]] = print, experiments_dir=None,
        timeout_s: Optional[float] = None) -> dict:
    """Run the registered experiment scripts, each into ``out_dir/<name>/``, in a subprocess each.

    Args:
        out_dir: output directory (created if missing).
        quick: pass ``--quick`` to every script (smoke-sized runs).
        only: an experiment name, a comma-separated list of names, or a sequence of names
            (default: every registered experiment).
        progress: called with one line per script as it starts and ends (``None``: silent).
        experiments_dir: the directory of the scripts (default: ``experiments/`` of the source
            checkout this ``ufm`` was imported from).
        timeout_s: wall-clock limit per script in seconds (``None``: no limit); a script past it
            is killed and reported as failed.

    Returns:
        The record also written to ``out_dir/reproduce.json``: per experiment its claim, paper,
        command, status (``"ok"``, ``"failed"`` or ``"missing"``), return code, seconds, the
        figures found, the log file and, for a failure, the last lines of its log; ``ok`` (no
        script failed), the counts, and the total seconds.

    Raises:
        ValueError: for an unknown name in ``only``, an ``out_dir`` that is a file, a bad
            ``timeout_s``, or when there is no experiments directory (``ufm reproduce`` needs a
            source checkout).
        TypeError: for arguments of the wrong type.
    """
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a path (str or os.PathLike), got {out_dir!r}")
    if not str(out_dir):
        raise ValueError("out_dir must be a directory name, got ''")
    if not isinstance(quick, bool):
        raise TypeError(f"quick must be True or False, got {quick!r}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, got {progress!r}")
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                  or not timeout_s > 0):
        raise ValueError(f"timeout_s must be a number > 0 or None, got {timeout_s!r}")
    chosen = _select(only)
    exp_dir = default_experiments_dir() if experiments_dir is None else Path(experiments_dir)
    if not exp_dir.is_dir():
        raise ValueError(f"ufm reproduce needs a source checkout: no experiments directory at "
                         f"{str(exp_dir)!r} (clone the repository and run it from there)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # below a file, a read-only place: bad input, not an internal error
        raise ValueError(f"out_dir {str(out)!r} cannot be created: {exc.strerror or exc}") from None
    io.check_writable(out / "reproduce.json")
    say = progress if progress is not None else (lambda _line: None)

    env = dict(os.environ, MPLBACKEND="Agg")
    # The scripts import ufm: make it this checkout's, whatever is installed.
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    rows, start = [], time.perf_counter()
    for i, exp in enumerate(chosen, start=1):
        script = exp_dir / exp.script
        row = dict(name=exp.name, claim=exp.claim, paper=exp.paper, script=f"experiments/{exp.script}",
                   command=_command(exp, quick), expected_figures=list(exp.figures))
        if not script.is_file():
            row.update(status="missing", note=f"experiments/{exp.script} is not in this checkout: skipped")
            say(f"[{i}/{len(chosen)}] {exp.name}: skipped ({row['note']})")
            rows.append(row)
            continue
        dest = out / exp.name
        dest.mkdir(parents=True, exist_ok=True)
        log = dest / "log.txt"
        cmd = [sys.executable, str(script), "--out", str(dest)] + (["--quick"] if quick and exp.has_quick
                                                                  else [])
        say(f"[{i}/{len(chosen)}] {exp.name}: running ...")
        t0 = time.perf_counter()
        with open(log, "w") as fh:
            try:
                rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=root,
                                    timeout=timeout_s).returncode
                note = None
            except subprocess.TimeoutExpired:
                rc, note = None, f"killed after the {timeout_s:g} s limit"
        seconds = time.perf_counter() - t0
        figures = sorted(p.name for p in dest.glob("*.png"))
        row.update(status="ok" if rc == 0 else "failed", returncode=rc, seconds=seconds,
                   figures=figures, pdfs=sorted(p.name for p in dest.glob("*.pdf")),
                   json=sorted(p.name for p in dest.glob("*.json")), log=f"{exp.name}/log.txt")
        if quick and not exp.has_quick:
            row["quick_note"] = "the script has no --quick: ran at its default size"
        if rc != 0:
            row.update(note=note or f"exit status {rc}", log_tail=_tail(log))
        say(f"[{i}/{len(chosen)}] {exp.name}: {row['status']} ({seconds:.1f} s"
            + (f"; {row['note']}; see {log}" if rc != 0 else "") + ")")
        rows.append(row)
    total = time.perf_counter() - start
    record = dict(quick=quick, experiments_dir=str(exp_dir), seconds=total,
                  ok=not any(r["status"] == "failed" for r in rows),
                  counts={s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "missing")},
                  experiments=rows)
    io.save_json(out / "reproduce.json", record)
    _write_index(out / "README.md", record)
    say(f"reproduce: {record['counts']['ok']} ok, {record['counts']['failed']} failed, "
        f"{record['counts']['missing']} missing, {total:.1f} s; index {out / 'README.md'}")
    return record


def _write_index(path: Path, record: dict) -> None:
    lines = ["# Reproduced claims", "",
             f"Written by `ufm reproduce`{' --quick (smoke-sized runs)' if record['quick'] else ''}; "
             f"{record['seconds']:.0f} s in all. Each row's directory holds its JSON (every number), "
             "the figures as PNG and PDF, and the script's log.", "",
             "| experiment | claim | paper | command | figures | status |",
             "|---|---|---|---|---|---|"]
    for r in record["experiments"]:
        figs = " ".join(f"[{f}]({r['name']}/{f})" for f in r.get("figures", [])) or "-"
        status = r["status"] + (f" ({r['seconds']:.0f} s)" if "seconds" in r else "")
        if r["status"] != "ok":
            status += f": {r.get('note', '')}"
        cells = [r["name"], r["claim"], r["paper"], f"`{r['command']}`", figs, status]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    target = io._check_target(path)
    with io._atomic(target, "w") as fh:  # the same atomic write as every other result
        fh.write("\n".join(lines) + "\n")
