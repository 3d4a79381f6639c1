"""A second process (``pipelines.second_process``) that writes its result, then stays until a file
exists: as one whose exit, freeing a large heap, takes long."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from pipelines.second_process import write_result


def main(argv: list[str]) -> int:
    result, value, release = argv
    write_result(result, value)
    stay_until = time.monotonic() + 30  # never longer than this, should the test die first
    while not Path(release).exists() and time.monotonic() < stay_until:
        time.sleep(0.02)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
