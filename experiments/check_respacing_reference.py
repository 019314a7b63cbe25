"""Compare ``space_timesteps`` with the reference implementation in improved-diffusion.

The reference is not a dependency of the project, so this check runs by hand against a local copy:

    git clone https://github.com/openai/improved-diffusion /tmp/improved-diffusion
    python experiments/check_respacing_reference.py --reference /tmp/improved-diffusion

(``git --git-dir=REPO.git archive HEAD | tar -x -C DIR`` gives a copy too; then pass ``--commit``
since the copy has no git metadata.) ``--reference`` may be given more than once, e.g. also for a
guided-diffusion copy, whose ``guided_diffusion/respace.py`` carries the same function.

Only the reference ``respace`` module is imported (it pulls in numpy and torch, nothing heavier).
Spec families compared, at T in {50, 1000, 4000}:

* every single-section count 1..T (as the string ``"N"``);
* multi-section specs: ``"10,15,20"`` plus random ones drawn with a fixed seed;
* every ``"ddimN"`` for N in 1..T (both must keep the same steps, or both must refuse N);
* a few invalid specs, to confirm that both refuse them.

The old project rule ``start + round(stride * j)`` is kept below as :func:`old_rule` so the report can
say how many specs it got wrong. The report goes to ``reports/respacing_vs_improved_diffusion.md``.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import random
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generative_bench.backends.diffusion.respace import space_timesteps  # noqa: E402
from generative_bench.errors import InputError  # noqa: E402

SIZES = (50, 1000, 4000)
PACKAGES = ("improved_diffusion", "guided_diffusion")
REPORT = ROOT / "reports" / "respacing_vs_improved_diffusion.md"


def old_rule(num_timesteps: int, sections: list[int]) -> set[int]:
    """The rule the project used before: each kept step computed directly as round(stride * j)."""
    size_per, extra = divmod(num_timesteps, len(sections))
    kept, start = [], 0
    for i, count in enumerate(sections):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"section of {size} steps cannot keep {count}")
        stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
        kept += [start + round(stride * j) for j in range(count)]
        start += size
    return set(kept)


def load_reference(directory: Path):
    """(package name, reference space_timesteps) from a copy of improved- or guided-diffusion."""
    for package in PACKAGES:
        if (directory / package / "respace.py").is_file():
            sys.path.insert(0, str(directory))
            try:
                module = importlib.import_module(f"{package}.respace")
            finally:
                sys.path.remove(str(directory))
            return package, module.space_timesteps
    raise SystemExit(f"{directory}: no {' or '.join(p + '/respace.py' for p in PACKAGES)} found")


def reference_commit(directory: Path, given: str | None) -> str:
    if given:
        return given
    try:
        out = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout; pass --commit)"


def outcome(fn, num_timesteps: int, spec: str):
    """The kept steps as a frozenset, or the string "error" if the function refuses the spec."""
    try:
        return frozenset(fn(num_timesteps, spec))
    except (ValueError, InputError):
        return "error"


def random_specs(num_timesteps: int, rng: random.Random, n: int) -> list[str]:
    specs = []
    for _ in range(n):
        k = rng.randint(2, 8)
        smallest = num_timesteps // k
        specs.append(",".join(str(rng.randint(1, smallest)) for _ in range(k)))
    return specs


def compare(ref) -> dict:
    rng = random.Random(0)
    rows = []
    for t in SIZES:
        single = [str(c) for c in range(1, t + 1)]
        multi = ["10,15,20"] + random_specs(t, rng, 200)
        ddim = [f"ddim{n}" for n in range(1, t + 1)]
        for family, specs in (("single section N=1..T", single), ("multi-section", multi), ("ddimN, N=1..T", ddim)):
            mismatch = old_mismatch = valid = 0
            for spec in specs:
                want = outcome(ref, t, spec)
                got = outcome(space_timesteps, t, spec)
                valid += want != "error"
                mismatch += want != got
                if not spec.startswith("ddim"):
                    old_mismatch += want != outcome(lambda n, sp: old_rule(n, [int(c) for c in sp.split(",")]), t, spec)
            rows.append(dict(T=t, family=family, specs=len(specs), valid=valid, mismatch=mismatch,
                             old=None if family.startswith("ddim") else old_mismatch))
    invalid = [(10, "11"), (300, "10,101,20"), (100, "ddim33"), (100, "ddim0"), (100, "ddim101"), (3, "1,1,1,1")]
    errors = []
    for t, spec in invalid:
        want, got = outcome(ref, t, spec), outcome(space_timesteps, t, spec)
        errors.append(dict(T=t, spec=spec, ref=want == "error", ours=got == "error"))
    return dict(rows=rows, errors=errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, action="append", required=True,
                        help="copy of openai/improved-diffusion (or guided-diffusion); may repeat")
    parser.add_argument("--commit", action="append", default=[],
                        help="commit of each --reference copy, in the same order (if not a git checkout)")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()

    command = "python experiments/check_respacing_reference.py " + " ".join(
        f"--reference {shlex.quote(str(d))}" for d in args.reference) + "".join(
        f" --commit {c}" for c in args.commit)
    sections, total_after = [], 0
    for i, directory in enumerate(args.reference):
        package, ref = load_reference(directory.resolve())
        commit = reference_commit(directory, args.commit[i] if i < len(args.commit) else None)
        result = compare(ref)
        after = sum(r["mismatch"] for r in result["rows"]) + sum(e["ref"] != e["ours"] for e in result["errors"])
        before = sum(r["old"] or 0 for r in result["rows"])
        total_after += after
        print(f"{package} @ {commit}: {after} mismatches now; old rule {before} mismatches")
        for r in result["rows"]:
            print(f"  T={r['T']:5d} {r['family']:24s} specs={r['specs']:5d} valid={r['valid']:5d} "
                  f"mismatch={r['mismatch']} old_rule={'-' if r['old'] is None else r['old']}")
        lines = [f"## `{package}` at commit `{commit}`", "",
                 f"Mismatches now: **{after}**. Mismatches of the old rule `start + round(stride * j)`: "
                 f"**{before}** (ddimN did not change, so it is not counted there).", "",
                 "| T | specs | compared | valid for the reference | mismatches now | old rule mismatches |",
                 "|---:|---|---:|---:|---:|---:|"]
        for r in result["rows"]:
            lines.append(f"| {r['T']} | {r['family']} | {r['specs']} | {r['valid']} | {r['mismatch']} | "
                         f"{'n/a' if r['old'] is None else r['old']} |")
        lines += ["", "Invalid specs (both must refuse):", "",
                  "| T | spec | reference refuses | project refuses |", "|---:|---|---|---|"]
        for e in result["errors"]:
            lines.append(f"| {e['T']} | `{e['spec']}` | {e['ref']} | {e['ours']} |")
        sections.append("\n".join(lines))

    report = "\n".join([
        "# Timestep respacing vs improved-diffusion's `space_timesteps`", "",
        "`generative_bench.backends.diffusion.respace.space_timesteps` must keep exactly the original "
        "steps that `space_timesteps` in openai/improved-diffusion (`improved_diffusion/respace.py`) keeps. "
        "guided-diffusion's `guided_diffusion/respace.py` has the same function (same body, only the "
        "`SpacedDiffusion` class below it differs).", "",
        "The rule: T steps are split into len(sections) parts (the first T % len parts one step longer); "
        "a part of `size` steps keeping `count` of them takes `start + round(pos)` while `pos` runs "
        "0, s, s+s, ... as a float running sum with s = (size - 1) / (count - 1) (s = 1 for count 1), "
        "Python's round-half-to-even. `ddimN` keeps `range(0, T, k)` for the smallest integer k giving "
        "exactly N steps. The earlier project formula `start + round(s * j)` differs from the running "
        "sum whenever float error in the sum crosses a .5 boundary.", "",
        f"Made by: `{command}`", "",
        f"Python {platform.python_version()}. Specs: every single-section count and every `ddimN` for "
        f"N = 1..T; `10,15,20` plus 200 random multi-section specs per T (2 to 8 sections, "
        f"`random.Random(0)`), all at T in {{{', '.join(map(str, SIZES))}}}. A spec matches when both keep "
        "the same set of steps or both refuse it.", "",
        "\n\n".join(sections), "",
        "Deliberate differences, outside the compared specs: a section count of 0 (or negative) makes the "
        "reference keep no steps for that section, while the project raises `InputError`; `ddim1` on a "
        "one-step process (T=1) makes the reference raise, while the project keeps step 0.", "",
        "The unit test `tests/test_respacing_reference.py` restates the running-sum rule independently and "
        "holds hard-coded steps produced by the reference, so CI checks this without the reference repo.",
        "",
    ])
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report)
    print(f"wrote {args.report}")
    sys.exit(1 if total_after else 0)


if __name__ == "__main__":
    main()
