"""A load test of `famevil serve` on loopback: text-search latency with concurrent text clients alone, then
with clients uploading large images beside them; prints both figures and how the uploads were answered.

The uploads alternate a 168 kB PNG of 12000x12000 pixels, which the server must refuse from its header
(413), and a 20-megapixel JPEG, which it must decode (200, or 503 while the upload slots are busy; the
client then waits as Retry-After says). The target: the text search's p95 with uploads within 2x of its
p95 without.

    python benchmarks/serve_load.py runs/demo/index --clients 8 --uploaders 2 --seconds 30

Without an index it builds a tiny one in a temporary folder, as the tests do (synth's tiny preset, a
student after two updates): about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

from PIL import Image

from stages.distill import distill
from stages.index import index
from stages.prepare import prepare
from stages.synth import synth

QUERIES = ["navy wool cardigan", "red slip dress", "black leather tote bag", "striped cotton shirt", "grey joggers", "long sleeve coat"]
BOUNDARY = "famevil-serve-load"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tiny_index(work: Path) -> Path:
    """A catalogue index as tests/test_serve.py builds one: the tiny synthetic data set, a student after
    two multi-task updates, its FashionIQ images indexed."""
    synth(work / "raw", preset="tiny", seed=0, workers=2)
    prepare(work / "shards", fashiongen=work / "raw" / "fashiongen", fashioniq=work / "raw" / "fashioniq", shard_size=16, workers=2)
    tiny = {"model": "famevil-tiny", "batch_size": 8, "batches_per_epoch": 5, "warmup_steps": 2, "eval_every": 0, "max_steps": 2}
    distill(work / "shards", work / "student", kd_weight=0, overrides=tiny)
    index(work / "student", work / "raw" / "fashioniq" / "images", work / "index", batch_size=8)
    return work / "index"


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def large_uploads() -> list[tuple[str, bytes]]:
    """The two uploads, as multipart bodies: the pixel bomb, and a 20-megapixel photo-sized JPEG."""
    bomb = encoded(Image.new("L", (12000, 12000), 128), "PNG")
    gradient = Image.linear_gradient("L").resize((5472, 3648))
    photo = encoded(Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient.rotate(180))), "JPEG", quality=90)
    return [("12000x12000 png", multipart(bomb, "bomb.png")), ("20 MP jpeg", multipart(photo, "photo.jpg"))]


def multipart(image: bytes, name: str) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="modify"\r\n\r\nis red\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    return head.encode() + image + f"\r\n--{BOUNDARY}--\r\n".encode()


def text_client(base: str, stop: float, latencies: list[float], errors: list[str], worker: int) -> None:
    sent = 0
    while time.monotonic() < stop:
        query = urllib.parse.quote(f"{QUERIES[(worker + sent) % len(QUERIES)]} {sent}")
        began = time.perf_counter()
        try:
            with urllib.request.urlopen(f"{base}/api/search?q={query}&top=12", timeout=60) as response:
                if not json.load(response)["results"]:
                    errors.append("empty answer")
        except (urllib.error.URLError, OSError, ValueError) as error:
            errors.append(f"{error.__class__.__name__}: {error}")
        latencies.append(time.perf_counter() - began)
        sent += 1


def upload_client(base: str, stop: float, uploads: list[tuple[str, bytes]], answers: list[tuple[str, int, float]], worker: int) -> None:
    sent = worker  # the two clients start on different uploads
    while time.monotonic() < stop:
        name, body = uploads[sent % len(uploads)]
        request = urllib.request.Request(f"{base}/api/search/composed", data=body, headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        began, wait = time.perf_counter(), 0.0
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            status, wait = error.code, float(error.headers.get("Retry-After") or 0)
        except (urllib.error.URLError, OSError) as error:
            status = 0
            print(f"  upload error: {error.__class__.__name__}: {error}")
        answers.append((name, status, time.perf_counter() - began))
        sent += 1
        time.sleep(wait)  # as a well-behaved client does on 503


def percentiles(latencies: list[float]) -> str:
    cuts = statistics.quantiles(latencies, n=100)
    return f"p50 {1000 * cuts[49]:.1f} ms, p95 {1000 * cuts[94]:.1f} ms, max {1000 * max(latencies):.1f} ms"


def phase(base: str, clients: int, seconds: float, uploads: list[tuple[str, bytes]], uploaders: int) -> tuple[list[float], list[str], list]:
    latencies: list[float] = []
    errors: list[str] = []
    answers: list[tuple[str, int, float]] = []
    stop = time.monotonic() + seconds
    threads = [threading.Thread(target=text_client, args=(base, stop, latencies, errors, i)) for i in range(clients)]
    threads += [threading.Thread(target=upload_client, args=(base, stop, uploads, answers, i)) for i in range(uploaders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, answers


def wait_until_serving(base: str, server: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/api/search?q=warm&top=1", timeout=5):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise SystemExit(f"the server did not answer within {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index", type=Path, nargs="?", help="a catalogue index; without it, a tiny one is built in a temporary folder")
    parser.add_argument("--clients", type=int, default=8, help="concurrent text-search clients")
    parser.add_argument("--uploaders", type=int, default=2, help="concurrent upload clients in the second phase")
    parser.add_argument("--seconds", type=float, default=30, help="how long each phase lasts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="serve-load-") as work:
        served = args.index or tiny_index(Path(work))
        uploads = large_uploads()
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "famevil_cli", "serve", str(served), "--port", str(port)], stdout=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_serving(base, server, 300)
            alone, alone_errors, _ = phase(base, args.clients, args.seconds, uploads, 0)
            mixed, mixed_errors, answers = phase(base, args.clients, args.seconds, uploads, args.uploaders)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"uploads: {', '.join(f'{name} ({len(body) / 1e6:.2f} MB)' for name, body in uploads)}")
    print(f"text search, {args.clients} clients alone: {len(alone)} searches, {len(alone_errors)} errors, {percentiles(alone)}")
    print(f"text search, with {args.uploaders} uploading: {len(mixed)} searches, {len(mixed_errors)} errors, {percentiles(mixed)}")
    ratio = statistics.quantiles(mixed, n=100)[94] / statistics.quantiles(alone, n=100)[94]
    print(f"p95 with uploads / without: {ratio:.2f}x (target: at most 2x)")
    for (name, status), count in sorted(Counter((name, status) for name, status, _ in answers).items()):
        times = [seconds for n, s, seconds in answers if (n, s) == (name, status)]
        print(f"  upload {name}: {count} answered {status}, median {1000 * statistics.median(times):.0f} ms")
    for error in sorted(set(alone_errors + mixed_errors))[:5]:
        print(f"  error: {error}")


if __name__ == "__main__":
    main()
