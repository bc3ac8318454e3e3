"""``python -m tests.compat`` (what ``scripts/compat`` runs): the IMKIT Postman collection
against a fresh ``parley run`` (a new SQLite database under a temporary directory, the
in-memory broker), printing newman's own report of each part and then one line per
request. Exits 1 when a supported request fails or a not-yet-supported one changed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from parley.storage.db import run_migrations
from tests.cluster_harness import Cluster, cluster_env
from tests.compat.runner import NewmanError, Outcome, Run, install_newman, run_collection
from tests.compat.test_postman_collection import NOT_YET_SUPPORTED


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/compat", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        print("scripts/compat needs Node.js and npm (for newman)", file=sys.stderr)
        return 2
    try:
        install_newman(npm)
    except NewmanError as exc:
        print(exc, file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="parley-compat-"))
    try:
        run = run_fresh_server(workdir)
    finally:
        if args.keep:
            print(f"\nfiles (environments, newman reports, server log): {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for part, output in enumerate(run.cli_output, start=1):
        print(f"===== part {part} of {len(run.cli_output)} (fresh seed) =====")
        print(output)
    return report(run)


def run_fresh_server(workdir: Path) -> Run:
    env = cluster_env("", workdir)  # "": the in-memory broker
    env["PARLEY_DATABASE_URL"] = f"sqlite+aiosqlite:///{workdir / 'parley.db'}"
    cluster = Cluster(env, workdir)
    try:
        run_migrations(env["PARLEY_DATABASE_URL"])
        app = cluster.quick_app()
        node = cluster.start_node("parley")
        cluster.wait_healthy(node)
        return run_collection(node.url, app.api_key, app.client_key, workdir)
    finally:
        cluster.stop()


def report(run: Run) -> int:
    """One line per request; the totals; 1 if anything is not as expected."""
    unexpected = 0
    print("===== every request =====")
    for outcome in run.outcomes:
        verdict = _verdict(outcome)
        unexpected += verdict.startswith("FAILED") or verdict.startswith("CHANGED")
        status = outcome.status if outcome.status is not None else "-"
        print(f"{status!s:>4}  {verdict:<22} {outcome.request.title}")
        if verdict.startswith(("FAILED", "CHANGED")):
            print(f"      {outcome.body[:300]}")
    stats = run.stats
    supported = sum(o.request.name not in NOT_YET_SUPPORTED for o in run.outcomes)
    print(
        f"\nrequests: {stats['requests total']} sent by newman, {stats['requests failed']} "
        f"failed to get an answer; assertions: {stats['assertions total']} "
        f"({stats['assertions failed']} failed)\n"
        f"supported: {supported}, of which answered 2xx RC 0: "
        f"{sum(o.succeeded for o in run.outcomes if o.request.name not in NOT_YET_SUPPORTED)}; "
        f"not yet supported: {len(NOT_YET_SUPPORTED)}; unexpected: {unexpected}"
    )
    return 1 if unexpected else 0


def _verdict(outcome: Outcome) -> str:
    if outcome.request.name not in NOT_YET_SUPPORTED:
        return "ok" if outcome.succeeded else "FAILED"
    if outcome.succeeded:
        return "CHANGED (succeeds now)"
    return "not yet supported"


if __name__ == "__main__":
    sys.exit(main())
