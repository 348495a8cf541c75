"""The long fuzz run of decoding and preprocessing, for a time budget; not in CI (`pytest -m fuzz` is the short one).

    python -m fmnist_edge.harness.fuzz --minutes 10                      # atheris: coverage-guided, bytes
    python -m fmnist_edge.harness.fuzz --minutes 10 --engine hypothesis  # every property of fmnist_edge.harness.hostile

atheris (`pip install "fmnist-edge[fuzz]"`) mutates bytes from a seed corpus of small valid PNG, JPEG, WebP and
BMP images, guided by the coverage of Pillow's Python plugins and of fmnist_edge, into `to_array` and the
model input that `Classifier.predict` builds. hypothesis runs the properties of fmnist_edge.harness.hostile (bytes,
valid encodings, arrays, PIL images, paths, decompression bombs) in rounds of fresh random examples.

A finding is any exception that is not a FmnistEdgeError, an invalid result, or a call over the tests' time or
memory bound (`check` in fmnist_edge.harness.hostile). atheris stops at the first and writes its input (crash-*) under
--out; hypothesis shrinks and prints it, and goes on with the next property. Prints a summary (inputs, rate,
error types and messages, findings, peak RSS, slowest input) and exits 1 on a finding.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path


class Stats:
    """What the run saw: inputs, outcomes by error type and message, findings, the slowest input."""

    def __init__(self):
        self.start = self.reported = time.monotonic()
        self.pixels = lambda image: 0  # what an input has or claims: hostile.pixels, once imported
        self.tried, self.errors = 0, collections.Counter()
        self.findings: list[str] = []
        self.slowest = (0.0, "")

    def run(self, prop, value) -> None:
        """prop(value) -> outcomes, timed; error outcomes are counted by type and message (numbers as #)."""
        t0 = time.perf_counter()
        outcomes = prop(value)
        took = time.perf_counter() - t0
        self.tried += 1
        for o in outcomes:
            key = "ok" if o is None else f"{type(o).__name__}: {_shape(str(o))}"
            self.errors[key] += 1
        if took > self.slowest[0]:
            image = value[0] if isinstance(value, tuple) else value
            self.slowest = (took, f"{_describe(value)}, {self.pixels(image):,} pixels")

    def finding(self, what: str) -> None:
        self.findings.append(what)
        print(f"FINDING: {what}", flush=True)

    def progress(self) -> None:
        """A line a minute."""
        now = time.monotonic()
        if now - self.reported < 60:
            return
        self.reported, took = now, now - self.start
        print(f"[{took / 60:5.1f} min] {self.tried:,} inputs, {self.tried / took:,.0f}/s, "
              f"{len(self.errors)} distinct outcomes, {len(self.findings)} findings", flush=True)

    def summary(self, engine: str, peak_rss: int) -> None:
        took = time.monotonic() - self.start
        print(f"\n== fuzz summary ({engine}) ==")
        print(f"inputs tried       {self.tried:,} in {took / 60:.1f} min ({self.tried / took:,.1f}/s)")
        print(f"peak RSS           {peak_rss / 2**20:.0f} MiB")
        print(f"slowest input      {self.slowest[0] * 1000:.0f} ms ({self.slowest[1]})")
        calls = sum(self.errors.values())
        by_type = collections.Counter()
        for key, n in self.errors.items():
            by_type[key.split(":")[0]] += n
        print(f"outcomes           {calls:,} calls (to_array and the model input per input), "
              f"{len(self.errors.keys() - {'ok'})} distinct error messages")
        for name, n in by_type.most_common():
            print(f"  {n:>9,}  {name}")
        print("most frequent messages:")
        for key, n in self.errors.most_common(25):
            print(f"  {n:>9,}  {key[:150]}")
        print(f"findings           {len(self.findings)}")
        for f in self.findings:
            print(f"  {f}")
        sys.stdout.flush()


def _shape(message: str) -> str:
    """A message with its numbers, byte strings and paths made generic, so that messages group by kind."""
    message = re.sub(r"b'[^']*'|b\"[^\"]*\"", "b'…'", message)
    message = re.sub(r"(/[^\s:;,]+)+", "PATH", message)
    return re.sub(r"\d+(\.\d+)?(e[+-]?\d+)?", "#", message)


def _describe(value) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} bytes {value[:12]!r}"
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."


# ----------------------------------------------------------------------------- atheris


def run_atheris(minutes: float, out: Path, stats: Stats) -> None:
    import atheris

    with atheris.instrument_imports(include=["PIL", "fmnist_edge"]):
        from PIL import Image

        Image.init()  # every plugin, now: Image.open imports them lazily, after instrumentation
        import fmnist_edge.runtime.decode
        import fmnist_edge.runtime.preprocess  # noqa: F401
    from . import hostile

    stats.pixels = hostile.pixels
    corpus = out / "corpus"
    corpus.mkdir(exist_ok=True)
    for data in _seed_corpus(hostile):
        (corpus / hashlib.sha1(data).hexdigest()).write_bytes(data)
    print(f"seed corpus: {len(list(corpus.iterdir()))} images in {corpus}", flush=True)
    stats.start = stats.reported = time.monotonic()  # the budget is for fuzzing, not for making the corpus
    end = stats.start + minutes * 60
    polarities = hostile.POLARITIES

    def one(data: bytes) -> None:
        if time.monotonic() >= end:
            stats.summary("atheris", hostile.peak_rss())
            os._exit(1 if stats.findings else 0)
        stats.progress()
        polarity = polarities[len(data) % len(polarities)]
        try:
            stats.run(lambda d: hostile.check(d, polarity), data)
        except BaseException as exc:  # a finding: atheris writes the input (crash-*) and stops
            stats.finding(f"{type(exc).__name__}: {str(exc)[:200]} ({_describe(data)}, polarity {polarity})")
            stats.summary("atheris", hostile.peak_rss())
            raise

    # libFuzzer's own time and RSS limits sit above check()'s bounds for a MAX_PIXELS image: they catch hangs
    args = [sys.argv[0], str(corpus), f"-max_total_time={int(minutes * 60) + 60}", f"-artifact_prefix={out}/",
            "-timeout=60", "-rss_limit_mb=4096", "-max_len=65536", "-print_final_stats=1"]
    atheris.Setup(args, one)
    atheris.Fuzz()


def _seed_corpus(hostile) -> list[bytes]:
    """Small valid encodings drawn from the tests' strategy: every format and mode, up to 16 KB each."""
    from hypothesis import HealthCheck, given, settings

    found: list[bytes] = []

    @settings(max_examples=300, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(hostile.encoded_images())
    def collect(encoding):
        if len(encoding[0]) <= 16384:
            found.append(encoding[0])

    collect()
    return found


# ----------------------------------------------------------------------------- hypothesis


def run_hypothesis(minutes: float, stats: Stats, examples: int) -> None:
    from . import hostile

    stats.pixels = hostile.pixels
    end, round_ = time.monotonic() + minutes * 60, 0
    with tempfile.TemporaryDirectory(prefix="fuzz-paths-") as root:
        props = hostile.properties(Path(root))
        while time.monotonic() < end:
            for name, (strategy, prop) in props.items():
                if time.monotonic() >= end:
                    break
                try:
                    _round(hostile, strategy, prop, round_, examples, end, stats)
                except Exception as exc:  # noqa: BLE001 - hypothesis has shrunk it and printed the example
                    stats.finding(f"{name}, seed {round_}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
                stats.progress()
            round_ += 1
    stats.summary("hypothesis", hostile.peak_rss())


def _round(hostile, strategy, prop, round_: int, examples: int, end: float, stats: Stats) -> None:
    """One property, `examples` fresh examples from seed `round_`."""
    from hypothesis import given, seed, settings

    @seed(round_)
    @settings(hostile.FUZZ, max_examples=examples, derandomize=False)
    @given(value=strategy)
    def run(value):
        if time.monotonic() < end:  # past the budget the round's remaining examples do nothing
            stats.run(prop, value)

    run()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="time budget (default 10)")
    parser.add_argument("--engine", choices=("atheris", "hypothesis"), default="atheris")
    parser.add_argument("--out", type=Path, help="atheris: folder for the corpus and findings (default: a new temporary one)")
    parser.add_argument("--examples", type=int, default=300, help="hypothesis: examples per property and round")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    print(f"fuzzing for {args.minutes:g} min with {args.engine}", flush=True)
    warnings.simplefilter("ignore")  # Pillow warns about every corrupt EXIF block and oversized header
    stats = Stats()
    if args.engine == "atheris":
        try:
            import atheris  # noqa: F401
        except ImportError:
            parser.error('atheris is not installed: pip install "fmnist-edge[fuzz]", or use --engine hypothesis')
        out = args.out or Path(tempfile.mkdtemp(prefix="fmnist-fuzz-"))
        out.mkdir(parents=True, exist_ok=True)
        print(f"corpus and findings in {out}", flush=True)
        run_atheris(args.minutes, out, stats)  # exits by itself
    run_hypothesis(args.minutes, stats, args.examples)
    return 1 if stats.findings else 0


if __name__ == "__main__":
    sys.exit(main())
