"""`codellm serve --backend vllm` with cProfile switchable by signal, for benchmarks/vllm_gateway.py --profile:
SIGUSR1 starts profiling the main thread's CPU time (the event loop: the request path), SIGUSR2 stops and
writes the stats to --out. Threads (store writer, detector) are not profiled: they are off the request path.

    python benchmarks/profiled_gateway.py --config CFG --port P --vllm-url URL --out gateway.prof
"""

from __future__ import annotations

import argparse
import cProfile
import signal
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--vllm-url", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    prof = cProfile.Profile(time.thread_time)       # CPU of the event-loop thread, not wall time

    def stop(*_: object) -> None:
        prof.disable()
        prof.dump_stats(args.out)

    signal.signal(signal.SIGUSR1, lambda *_: prof.enable())
    signal.signal(signal.SIGUSR2, stop)
    from codellm_assets.commands.serving import serve

    serve(host="127.0.0.1", port=args.port, backend="vllm", vllm_url=args.vllm_url, access_log=False,
          detach=False, stop=False, config=Path(args.config))


if __name__ == "__main__":
    main()
