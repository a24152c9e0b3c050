"""A writer killed mid-way never leaves a half-written file."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

WRITER = """
import sys
from pathlib import Path
from corral.connectors.local import atomic_write_text
target = Path(sys.argv[1])
i = 0
print("ready", flush=True)
while True:
    i += 1
    atomic_write_text(target, (str(i % 10) * 1000 + "\\n") * 20000)  # 20 MB a time
"""


def test_writer_killed_mid_write_leaves_old_or_new_content_never_half(tmp_path):
    target = tmp_path / "state.json"
    rng = random.Random(1234)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if target.exists():
            text = target.read_text()
            assert len(text) == 20000 * 1001
            assert set(text) <= {text[0], "\n"}  # one whole version, not a mix or a prefix
