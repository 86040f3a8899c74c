"""The standard benchmark corpus (`../shared/bench/gen_corpus.py`), made once per test session."""
from __future__ import annotations

import functools
import pathlib
import subprocess
import sys
import tempfile

import pytest

GENERATOR = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'bench' / 'gen_corpus.py'


@functools.lru_cache(maxsize=None)
def _corpus(count: int) -> pathlib.Path:
    folder = pathlib.Path(tempfile.mkdtemp(prefix='postdesk-corpus-%d-' % count))
    subprocess.run([sys.executable, str(GENERATOR), str(count), str(folder)], check=True, stdout=subprocess.DEVNULL)
    return folder / 'eml'


def standard_corpus(count: int) -> list[pathlib.Path]:
    """The files of the first `count` standard benchmark messages, in their order."""
    if not GENERATOR.exists():
        pytest.skip('the benchmark corpus generator is not at %s' % GENERATOR)
    return sorted(_corpus(count).glob('*.eml'))
