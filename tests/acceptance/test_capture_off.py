"""With ``-s`` a test's output reaches the terminal, tagged with the worker that ran it.

Several workers print at the same time, so an untagged line could not be told apart;
the tag is ``[gwN]`` as in pytest-xdist.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import PluginRunner

TAGGED = re.compile(r"^\[gw\d+\] hello-from-test$")


def test_output_is_streamed_with_worker_tag(runner: PluginRunner) -> None:
    runner.pytester.makepyfile(
        test_printing="""
        import pytest


        def test_prints():
            print("hello-from-test")


        @pytest.mark.parametrize("n", range(3))
        def test_other(n):
            pass
        """
    )
    result = runner.run("-s", workers=2)

    assert result.ret == 0, result.stdout.str()
    assert result.parseoutcomes() == {"passed": 4}
    tagged = [line for line in result.outlines if TAGGED.match(line)]
    assert len(tagged) == 1, result.stdout.str()
