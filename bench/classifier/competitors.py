"""bogofilter and SpamAssassin Bayes driven on the same folds as scanner (for run.py).

Both come from Debian packages (``apt-get install bogofilter spamassassin``). Each fold
gets a fresh database trained on the other folds; scores are the tools' own spam
probabilities: bogofilter's spamicity (``-T``) and SpamAssassin's Bayes probability,
read at full precision by ``sa_bayes_score.pl`` with a rule set that only loads the
Bayes plugin and its BAYES_* rules (no other rules, no network tests).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
SA_RULES = ("23_bayes.cf", "20_aux_tlds.cf")
SA_INIT = """\
loadplugin Mail::SpamAssassin::Plugin::Check
loadplugin Mail::SpamAssassin::Plugin::Bayes
use_bayes 1
bayes_auto_learn 0
bayes_auto_expire 0
bayes_learn_to_journal 0
lock_method flock
"""


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _split(items: Sequence[str], parts: int) -> list[Sequence[str]]:
    return [items[i::parts] for i in range(parts)]


class Bogofilter:
    """bogofilter with a Berkeley DB word list per fold."""

    name = "bogofilter"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def train(self, db: Path, ham: Sequence[str], spam: Sequence[str]) -> None:
        db.mkdir(parents=True, exist_ok=True)
        for flag, files in (("-n", ham), ("-s", spam)):
            for chunk in _chunks(files, 500):
                subprocess.run(["bogofilter", "-d", str(db), flag, "-B", *chunk], check=True)

    def score(self, db: Path, files: Sequence[str], jobs: int = 1) -> dict[str, float]:
        def run(part: Sequence[str]) -> dict[str, float]:
            out: dict[str, float] = {}
            for chunk in _chunks(part, 500):
                done = subprocess.run(["bogofilter", "-d", str(db), "-T", "-B", *chunk],
                                      check=False, capture_output=True, text=True)
                for line in done.stdout.splitlines():
                    name, _, rest = line.rpartition(" ")
                    out[name.rsplit(" ", 1)[0]] = float(rest)
            return out

        results: dict[str, float] = {}
        with ThreadPoolExecutor(jobs) as pool:
            for part in pool.map(run, _split(files, jobs)):
                results.update(part)
        return results


class SpamAssassinBayes:
    """sa-learn for training, SpamAssassin's Bayes probability for scoring."""

    name = "SpamAssassin Bayes"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.rules = workdir / "sa-rules"
        self.rules.mkdir(parents=True, exist_ok=True)
        (self.rules / "init.pre").write_text(SA_INIT)
        for name in SA_RULES:
            shutil.copy(Path("/usr/share/spamassassin") / name, self.rules / name)
        self.prefs = workdir / "sa-user_prefs"
        self.prefs.write_text("")
        self.log = workdir / "sa-stderr.log"

    def _listfile(self, files: Sequence[str]) -> str:
        with tempfile.NamedTemporaryFile("w", dir=self.workdir, suffix=".list",
                                         delete=False) as handle:
            handle.write("\n".join(files) + "\n")
        return handle.name

    def train(self, db: Path, ham: Sequence[str], spam: Sequence[str]) -> None:
        db.mkdir(parents=True, exist_ok=True)
        for flag, files in (("--ham", ham), ("--spam", spam)):
            listfile = self._listfile(files)
            with open(self.log, "ab") as log:
                subprocess.run(["sa-learn", "--siteconfigpath", str(self.rules),
                                "--configpath", str(self.rules), "-p", str(self.prefs),
                                "--dbpath", str(db), flag, "-f", listfile],
                               check=True, stdout=subprocess.DEVNULL, stderr=log)
            os.unlink(listfile)

    def score(self, db: Path, files: Sequence[str], jobs: int = 1) -> dict[str, float]:
        def run(part: Sequence[str]) -> dict[str, float]:
            listfile = self._listfile(part)
            with open(self.log, "ab") as log:
                done = subprocess.run(
                    ["perl", str(HERE / "sa_bayes_score.pl"), str(self.rules),
                     str(self.prefs), str(db), listfile],
                    check=True, capture_output=False, stdout=subprocess.PIPE, stderr=log,
                    text=True)
            os.unlink(listfile)
            out = {}
            for line in done.stdout.splitlines():
                value, _, name = line.partition("\t")
                score = float(value)
                out[name] = 0.5 if math.isnan(score) else score
            return out

        for journal in db.glob("bayes_journal*"):
            journal.unlink()
        results: dict[str, float] = {}
        with ThreadPoolExecutor(jobs) as pool:
            for part in pool.map(run, _split(files, jobs)):
                results.update(part)
        return results


def timed(func, *args, **kwargs):  # type: ignore[no-untyped-def]
    """``(result, wall seconds)``."""
    started = time.perf_counter()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - started
