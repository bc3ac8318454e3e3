"""Run the IMKIT Postman collection against a Parley server with ``newman``; read back
every request's answer.

The collection's requests run in order and some of them destroy what later ones use
(:data:`DESTROYS`). The run is therefore cut into parts, each ending with such a request;
every part starts from a fresh :func:`tests.compat.seed.seed`, and runs as one ``newman
run`` with ``--folder`` selecting its requests. Every request runs exactly once, in the
collection's order, and gets the state it needs.

newman is the one from ``node/`` (``npm ci`` there; see :func:`install_newman`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.compat.seed import seed, write_environment

HERE = Path(__file__).parent
COLLECTION = HERE / "IMKit-API.postman_collection.json"
ENVIRONMENT = HERE / "IMKit-API.postman_environment.json"
NODE_DIR = HERE / "node"
NEWMAN = NODE_DIR / "node_modules" / ".bin" / "newman"
LOCKFILE = NODE_DIR / "package-lock.json"
# npm rewrites this copy of the lock file on every install: older than the lock file
# means node_modules predates the last change of the dependencies.
INSTALLED = NODE_DIR / "node_modules" / ".package-lock.json"
PART_TIMEOUT = 60  # seconds for one newman run; a part takes one or two

# Requests after which something later requests use is gone, and why.
DESTROYS = {
    "Update Token": "replaces the tokens of {{clientId}}: Revoke Token's token is gone",
    "Delete Room": "deletes {{roomId}}",
    "Delete Message": "deletes {{messageId}}",
    "Recall Message": "recalls {{messageId}}, and a recalled message cannot be pinned",
}


class NewmanError(RuntimeError):
    """newman could not be installed or did not produce its report."""


@dataclass(frozen=True)
class Request:
    """One request of the collection: its folder path, name, method and raw URL."""

    folder: tuple[str, ...]
    name: str
    method: str
    url: str

    @property
    def title(self) -> str:
        return " / ".join((*self.folder, self.name))


@dataclass
class Outcome:
    """What one request got: HTTP status (None when no answer came) and the body."""

    request: Request
    status: int | None
    body: str
    error: str | None = None  # newman's request error (connection refused, timeout)

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def succeeded(self) -> bool:
        """2xx with the success envelope's ``RC: 0``."""
        body = self.json
        return (
            self.status is not None
            and 200 <= self.status < 300
            and isinstance(body, dict)
            and body.get("RC") == 0
        )

    def describe(self) -> str:
        answer = f"HTTP {self.status}" if self.status is not None else f"no answer ({self.error})"
        request = f"{self.request.title}: {self.request.method} {self.request.url}"
        return f"{request} -> {answer} {self.body[:500]}"


@dataclass
class Run:
    """Every request's outcome, in collection order, and newman's own totals."""

    outcomes: list[Outcome] = field(default_factory=list)
    cli_output: list[str] = field(default_factory=list)  # newman's cli reporter, per part
    stats: Counter[str] = field(default_factory=Counter)


# -- the collection -------------------------------------------------------------------


def load_collection(path: Path = COLLECTION) -> dict[str, Any]:
    collection: dict[str, Any] = json.loads(path.read_text())
    return collection


def _walk(items: list[dict[str, Any]], folder: tuple[str, ...] = ()) -> Iterator[Request]:
    for item in items:
        if "item" in item:
            yield from _walk(item["item"], (*folder, item["name"]))
        else:
            request = item["request"]
            url = request["url"]
            raw = url["raw"] if isinstance(url, dict) else str(url)
            yield Request(folder, item["name"], request["method"], raw)


def requests_of(collection: dict[str, Any]) -> list[Request]:
    """The collection's requests in run order. Outcomes are matched to requests by name,
    so names must be unique."""
    requests = list(_walk(collection["item"]))
    twice = [name for name, n in Counter(r.name for r in requests).items() if n > 1]
    if twice:
        raise ValueError(f"request names used twice in the collection: {twice}")
    return requests


def parts(requests: list[Request]) -> list[list[Request]]:
    """``requests`` cut after each request of :data:`DESTROYS`."""
    missing = set(DESTROYS) - {r.name for r in requests}
    if missing:
        raise ValueError(f"DESTROYS names requests the collection lacks: {sorted(missing)}")
    cut: list[list[Request]] = [[]]
    for request in requests:
        cut[-1].append(request)
        if request.name in DESTROYS:
            cut.append([])
    return [part for part in cut if part]


def selectors(collection: dict[str, Any], part: list[Request]) -> list[str]:
    """The ``--folder`` names that select exactly ``part``: whole folders where the part
    holds all of a folder's requests, request names elsewhere. newman looks a name up
    among folders and requests alike, so a name must be unique among both."""
    wanted = {r.name for r in part}
    every_name = Counter(_folder_and_item_names(collection["item"]))
    names: list[str] = []

    def visit(items: list[dict[str, Any]]) -> None:
        for item in items:
            if "item" not in item:
                if item["name"] in wanted:
                    names.append(item["name"])
                continue
            under = {r.name for r in _walk(item["item"])}
            if under and under <= wanted and every_name[item["name"]] == 1:
                names.append(item["name"])
            elif under & wanted:
                visit(item["item"])

    visit(collection["item"])
    ambiguous = [name for name in names if every_name[name] > 1]
    if ambiguous:
        raise ValueError(f"--folder names that match more than one item: {ambiguous}")
    return names


def _folder_and_item_names(items: list[dict[str, Any]]) -> Iterator[str]:
    for item in items:
        yield item["name"]
        if "item" in item:
            yield from _folder_and_item_names(item["item"])


EXPIRY = re.compile(r'("expirationDate"\s*:\s*")(\d{4})(-[^"]+)(")')


def keep_expiry_dates_ahead(collection: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A copy of the collection in which each token ``expirationDate`` of a request body
    that is less than a day ahead of ``now`` is moved forward by whole years. The
    collection fixes them (2027-01-01, 2027-12-31) and an expiry in the past is refused:
    without this the run would one day test the calendar rather than the request."""

    def ahead(match: re.Match[str]) -> str:
        year = int(match[2])
        while _parse(f"{year}{match[3]}") <= now + timedelta(days=1):
            year += 1
        return f"{match[1]}{year}{match[3]}{match[4]}"

    def visit(items: list[dict[str, Any]]) -> None:
        for item in items:
            if "item" in item:
                visit(item["item"])
            elif isinstance(body := item["request"].get("body"), dict) and "raw" in body:
                body["raw"] = EXPIRY.sub(ahead, body["raw"])

    runnable: dict[str, Any] = json.loads(json.dumps(collection))
    visit(runnable["item"])
    return runnable


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- newman ---------------------------------------------------------------------------


def install_newman(npm: str) -> None:
    """``npm ci`` in ``node/`` when node_modules is missing or older than the lock file."""
    installed = NEWMAN.exists() and INSTALLED.exists()
    if installed and INSTALLED.stat().st_mtime >= LOCKFILE.stat().st_mtime:
        return
    command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        done = subprocess.run(command, cwd=NODE_DIR, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as exc:
        raise NewmanError("npm ci of tests/compat/node timed out") from exc
    if done.returncode != 0:
        raise NewmanError(f"npm ci of tests/compat/node failed: {done.stderr.strip()[-500:]}")


def newman_command() -> list[str]:
    """How to start newman: the installed one, by node (no reliance on the bin's shebang)."""
    node = shutil.which("node")
    if node is None:
        raise NewmanError("node is not on PATH")
    script = NODE_DIR / "node_modules" / "newman" / "bin" / "newman.js"
    return [node, str(script)]


def run_collection(
    domain: str,
    api_key: str,
    client_key: str,
    workdir: Path,
    *,
    collection: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Run:
    """Seed, run every part of the collection with newman, collect the outcomes."""
    collection = collection if collection is not None else load_collection()
    requests = requests_of(collection)
    runnable = keep_expiry_dates_ahead(collection, now or datetime.now(UTC))
    collection_file = workdir / "collection.json"
    collection_file.write_text(json.dumps(runnable))
    run = Run()
    for number, part in enumerate(parts(requests), start=1):
        environment = workdir / f"environment-{number}.json"
        report = workdir / f"report-{number}.json"
        write_environment(ENVIRONMENT, seed(domain, api_key, client_key), environment)
        command = [*newman_command(), "run", str(collection_file), "-e", str(environment)]
        for name in selectors(collection, part):
            command += ["--folder", name]
        command += ["-r", "cli,json", "--reporter-json-export", str(report), "--color", "off"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=PART_TIMEOUT)
        run.cli_output.append(done.stdout)
        if not report.exists():
            raise NewmanError(f"newman wrote no report (exit {done.returncode}): {done.stderr}")
        _read_report(json.loads(report.read_text()), part, run)
    return run


def _read_report(report: dict[str, Any], part: list[Request], run: Run) -> None:
    stats = report["run"]["stats"]
    for kind in ("requests", "assertions"):
        run.stats[f"{kind} total"] += stats[kind]["total"]
        run.stats[f"{kind} failed"] += stats[kind]["failed"]
    by_name = {r.name: r for r in part}
    executed = [e["item"]["name"] for e in report["run"]["executions"]]
    if executed != [r.name for r in part]:
        raise NewmanError(f"newman ran {executed}, not the part {list(by_name)}")
    for execution in report["run"]["executions"]:
        request = by_name[execution["item"]["name"]]
        response = execution.get("response")
        if response is None:
            error = execution.get("requestError", {}).get("message", "no response")
            run.outcomes.append(Outcome(request, None, "", error))
            continue
        body = bytes(response.get("stream", {}).get("data", [])).decode("utf-8", "replace")
        run.outcomes.append(Outcome(request, int(response["code"]), body))
