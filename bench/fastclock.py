"""``python -m bench.fastclock RATE ARGS...``: run ``batchveo ARGS...`` on a fast run clock.

The run's clock then counts ``RATE`` seconds per real second (``batchveo.clock.RunClock``'s
``rate``, rung as fast by the loop): against a simulator whose generation times are scaled
by ``1 / RATE``, a night of minute-long generations passes in seconds, and every time the
run keeps (its polls, their schedule, its pacing, the times it stores) is in the night's
own seconds. Used by ``python -m bench polls``; like ``bench.counters`` it reaches into
batchveo from outside, and a real run never does this.
"""

from __future__ import annotations

import functools
import sys


def main() -> None:
    rate = float(sys.argv[1])
    import batchveo.run.runner as runner
    from batchveo.cli import main as cli_main
    from batchveo.clock import RunClock

    runner.RunClock = functools.partial(RunClock, rate=rate)  # type: ignore[misc]
    sys.argv = ["batchveo", *sys.argv[2:]]
    cli_main()


if __name__ == "__main__":
    main()
