"""Benchmark: messages per second through `ingest.parse_message`, next to the standard library's compat32
parser alone on the same bytes, measured in the same run on one core (target ratio >= 0.5).

usage: python bench/parse.py [--count 2000] [--rounds 5] [--corpus DIR]

The corpus is `../shared/bench/gen_corpus.py COUNT DIR` (generated into a temporary folder unless --corpus is
given). Both parsers run over the same in-memory bytes, interleaved round by round; the best round of each is
reported, since this machine is shared and noisy.
"""
from __future__ import annotations

import argparse
import email.parser
import email.policy
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import parse_message  # noqa: E402

GENERATOR = ROOT.parent / 'shared' / 'bench' / 'gen_corpus.py'


def load_corpus(count: int, corpus: str | None) -> list[bytes]:
    if corpus is None:
        corpus = tempfile.mkdtemp(prefix='postdesk-bench-')
        subprocess.run([sys.executable, str(GENERATOR), str(count), corpus], check=True, stdout=subprocess.DEVNULL)
    files = sorted(pathlib.Path(corpus).rglob('*.eml'))[:count]
    return [f.read_bytes() for f in files]


def time_compat32(raws: list[bytes]) -> float:
    parser = email.parser.BytesParser(policy=email.policy.compat32)
    start = time.perf_counter()
    for raw in raws:
        parser.parsebytes(raw)
    return time.perf_counter() - start


def time_ingest(raws: list[bytes]) -> float:
    start = time.perf_counter()
    for raw in raws:
        parse_message(raw)
    return time.perf_counter() - start


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument('--count', type=int, default=2000)
    args.add_argument('--rounds', type=int, default=5)
    args.add_argument('--corpus')
    opts = args.parse_args()
    raws = load_corpus(opts.count, opts.corpus)
    stdlib, ours = [], []
    for _ in range(opts.rounds):
        stdlib.append(time_compat32(raws))
        ours.append(time_ingest(raws))
    best_stdlib, best_ours = min(stdlib), min(ours)
    print('messages:                 %d (%.1f MB)' % (len(raws), sum(map(len, raws)) / 1e6))
    print('compat32 parse only:      %8.0f msg/s' % (len(raws) / best_stdlib))
    print('postdesk ingest:          %8.0f msg/s' % (len(raws) / best_ours))
    print('ratio ingest / compat32:  %8.2f   (target >= 0.50; best of %d interleaved rounds)'
          % (best_stdlib / best_ours, opts.rounds))
    return 0


if __name__ == '__main__':
    sys.exit(main())
