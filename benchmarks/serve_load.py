"""A load test of `famevil serve` on loopback: concurrent text searches for a bounded time and count;
prints requests, errors, throughput and latency percentiles.

    python benchmarks/serve_load.py runs/demo/index --clients 8 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

QUERIES = ["navy wool cardigan", "red slip dress", "black leather tote bag", "striped cotton shirt", "grey joggers", "long sleeve coat"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as attempt:
            if attempt.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"the server did not listen on port {port} within {seconds:.0f} s")


def client(base: str, stop: float, budget: list[int], lock: threading.Lock, latencies: list[float], errors: list[str], worker: int) -> None:
    sent = 0
    while time.monotonic() < stop:
        with lock:
            if budget[0] == 0:
                return
            budget[0] -= 1
        query = urllib.parse.quote(f"{QUERIES[(worker + sent) % len(QUERIES)]} {sent}")
        began = time.perf_counter()
        try:
            with urllib.request.urlopen(f"{base}/api/search?q={query}&top=12", timeout=30) as response:
                answer = json.load(response)
            if len(answer["results"]) == 0:
                errors.append("empty answer")
        except (urllib.error.URLError, OSError, ValueError) as error:
            errors.append(f"{error.__class__.__name__}: {error}")
        latencies.append(time.perf_counter() - began)
        sent += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index", type=Path)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=30, help="how long the load lasts")
    parser.add_argument("--max-requests", type=int, default=100_000, help="an upper bound on requests")
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "famevil_cli", "serve", str(args.index), "--port", str(port)], stdout=subprocess.DEVNULL)
    try:
        wait_for(port, 120)
        base = f"http://127.0.0.1:{port}"
        latencies: list[float] = []
        errors: list[str] = []
        budget, lock = [args.max_requests], threading.Lock()
        stop = time.monotonic() + args.seconds
        threads = [threading.Thread(target=client, args=(base, stop, budget, lock, latencies, errors, i)) for i in range(args.clients)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(timeout=30)
    cuts = statistics.quantiles(latencies, n=100)
    print(f"{len(latencies)} searches from {args.clients} clients in {elapsed:.1f} s ({len(latencies) / elapsed:.0f}/s), {len(errors)} errors")
    print(f"latency ms: p50 {1000 * cuts[49]:.1f}  p95 {1000 * cuts[94]:.1f}  p99 {1000 * cuts[98]:.1f}  max {1000 * max(latencies):.1f}")
    for error in sorted(set(errors))[:5]:
        print(f"  error: {error}")


if __name__ == "__main__":
    main()
