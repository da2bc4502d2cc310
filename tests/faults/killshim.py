"""Run ``videoreid`` with a fault injected at a named point (used by the fault tests).

``python killshim.py MODE N [videoreid arguments ...]``; MODE is one of

- ``none``: no fault (the run can still be SIGKILLed from outside at a random time);
- ``in-write``: SIGKILL halfway through writing the N-th checkpoint's bytes;
- ``before-rename``: SIGKILL after the N-th checkpoint's temporary file is complete, before it
  is renamed into place;
- ``before-manifest``: SIGKILL after the N-th checkpoint is renamed into place, before its
  hash is recorded in ``SHA256SUMS``;
- ``in-eval``: SIGKILL inside the N-th evaluation;
- ``pause-epoch``: after epoch N, wait until the file named by ``$FAULT_GO`` exists (writes
  ``$FAULT_GO.ready`` first), then continue.

The patches replace module attributes only; nothing in the package knows about them.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(mode: str, n: int) -> None:
    import videoreid.engine.builders as builders
    import videoreid.engine.checkpoint as ckpt
    import videoreid.utils.io as io_mod

    calls = {"k": 0}

    def nth() -> bool:
        calls["k"] += 1
        return calls["k"] == n

    if mode == "in-write":
        real = ckpt._write_bytes

        def write(path, data):  # noqa: ANN001, ANN202
            if nth():
                with open(path, "wb") as f:
                    f.write(bytes(data[: len(data) // 2]))
                    f.flush()
                _die()
            real(path, data)

        ckpt._write_bytes = write
    elif mode == "before-rename":
        real = ckpt._write_bytes

        def write(path, data):  # noqa: ANN001, ANN202
            real(path, data)
            if nth():
                _die()

        ckpt._write_bytes = write
    elif mode == "before-manifest":
        real_record = ckpt._record

        def record(path, digest):  # noqa: ANN001, ANN202
            if digest is not None and nth():
                _die()
            real_record(path, digest)

        ckpt._record = record
    elif mode == "in-eval":
        real_eval = builders.evaluate_model

        def evaluate(*a, **k):  # noqa: ANN002, ANN003, ANN202
            if nth():
                _die()
            return real_eval(*a, **k)

        builders.evaluate_model = evaluate
    elif mode == "pause-epoch":
        from videoreid.engine.hooks import CSVLogHook

        real_after = CSVLogHook.after_epoch
        go = Path(os.environ["FAULT_GO"])

        def after_epoch(self):  # noqa: ANN001, ANN202
            real_after(self)
            if self.trainer.epoch + 1 == n:
                Path(str(go) + ".ready").write_text(str(os.getpid()))
                deadline = time.monotonic() + 300
                while not go.exists() and time.monotonic() < deadline:
                    time.sleep(0.05)

        CSVLogHook.after_epoch = after_epoch
    elif mode != "none":
        raise SystemExit(f"unknown fault mode {mode!r}")
    del io_mod  # imported so that the package is loaded before patching


if __name__ == "__main__":
    install(sys.argv[1], int(sys.argv[2]))
    from videoreid.cli.main import main

    sys.exit(main(sys.argv[3:]))
