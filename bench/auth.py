"""What authentication costs: requests/s of ``GET /me`` (Client Key + user token) against
``GET /health`` (no auth, no database) on the same server, in the same run.

    python bench/auth.py [--seconds 5] [--connections 32] [--rounds 3] [--workers 1]

Starts ``parley run`` on a fresh data dir (SQLite unless --database-url), creates a user,
then alternates the two endpoints for several rounds and prints the medians. The load
comes from ``wrk`` (Debian package ``wrk``) when it is installed, else from a small
asyncio keep-alive loader in a separate process. Target: ratio ≥ 0.8.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    data_dir: Path, port: int, database_url: str
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = dict(
        os.environ,
        PARLEY_DATA_DIR=str(data_dir),
        PARLEY_SECRET_KEY=secrets.token_hex(32),
        PARLEY_LOG_LEVEL="warning",
        PARLEY_DATABASE_URL=database_url,
    )
    if database_url:
        subprocess.run(
            [sys.executable, "-m", "parley", "migrate"], env=env, check=True, capture_output=True
        )
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "parley",
                "app",
                "create",
                "bench",
                "--domain",
                "127.0.0.1",
                "--json",
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        keys = json.loads(out)
    proc = subprocess.Popen(
        [sys.executable, "-m", "parley", "run", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    printed = ""
    deadline = time.monotonic() + 30
    while "listening" not in printed:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"server did not start:\n{printed}")
        printed += proc.stdout.readline()
    if not database_url:
        keys = {
            "apiKey": re.search(r"API Key[^:]*:\s+(\S+)", printed).group(1),  # type: ignore[union-attr]
            "clientKey": re.search(r"Client Key[^:]*:\s+(\S+)", printed).group(1),  # type: ignore[union-attr]
        }
    base = f"http://127.0.0.1:{port}"
    while True:
        try:
            httpx.get(base + "/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    return proc, keys


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def run_wrk(
    url: str, headers: dict[str, str], seconds: float, connections: int
) -> dict[str, float]:
    cmd = [
        "wrk",
        "-t",
        "1",
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--latency",
    ]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{non2xx.group(1)} failed responses from {url}")

    def latency(pct: str) -> float:
        m = re.search(rf"{pct}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return {"rps": rps, "p50": latency("50"), "p99": latency("99")}


async def _load(
    url: str, headers: dict[str, str], seconds: float, connections: int
) -> dict[str, float]:
    host, port_path = url.split("//", 1)[1].split(":", 1)
    port, path = port_path.split("/", 1)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET /{path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while time.monotonic() < deadline:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"failed response: {head[:200]!r}")
            length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - start) * 1000)
        writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    latencies.sort()
    return {
        "rps": len(latencies) / seconds,
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[int(len(latencies) * 0.99)],
    }


def measure(
    url: str, headers: dict[str, str], seconds: float, connections: int
) -> dict[str, float]:
    if shutil.which("wrk"):
        return run_wrk(url, headers, seconds, connections)
    return asyncio.run(_load(url, headers, seconds, connections))


def print_medians(
    results: dict[str, list[dict[str, float]]], heading: str, width: int
) -> dict[str, dict[str, float]]:
    """Print req/s, p50 and p99 medians per case; return them."""
    print(f"{heading:{width}} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    medians = {}
    for name, runs in results.items():
        medians[name] = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")}
        m = medians[name]
        print(f"{name:{width}} {m['rps']:9.0f} {m['p50']:8.2f} {m['p99']:8.2f}")
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc, keys = start_server(Path(tmp), port, args.database_url)
        try:
            base = f"http://127.0.0.1:{port}"
            created = httpx.post(
                base + "/admin/clients",
                headers={"IM-API-KEY": keys["apiKey"]},
                json={"_id": "bench-user", "nickname": "Bench", "issueAccessToken": True},
            ).json()
            token = created["result"]["token"]
            cases = {
                "GET /health (no auth)": (base + "/health", {}),
                "GET /me (Client Key + token)": (
                    base + "/me",
                    {"IM-CLIENT-KEY": keys["clientKey"], "IM-Authorization": token},
                ),
            }
            for url, headers in cases.values():  # warm caches and the JIT-less interpreter
                measure(url, headers, 1, args.connections)
            results: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
            for round_no in range(args.rounds):
                order = list(cases) if round_no % 2 == 0 else list(reversed(cases))
                for name in order:
                    url, headers = cases[name]
                    results[name].append(measure(url, headers, args.seconds, args.connections))
        finally:
            stop_server(proc)

    loader = "wrk" if shutil.which("wrk") else "asyncio loader"
    storage = "PostgreSQL" if args.database_url else "SQLite"
    print(
        f"\nParley auth cost — {storage}, 1 server process, {loader}, "
        f"{args.connections} connections, {args.rounds} rounds of {args.seconds:g} s (medians)\n"
    )
    medians = print_medians(results, "endpoint", 32)
    health, me = (medians[n]["rps"] for n in cases)
    print(f"\nratio /me ÷ /health = {me / health:.2f}  (target ≥ 0.80)")


if __name__ == "__main__":
    main()
