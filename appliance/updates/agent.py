"""The update agent's state machine: install a release beside the running one, switch, check, commit
or roll back — and finish or undo an interrupted install at boot.

States of one install transaction, each written to the journal *before* what follows it is done::

    started -> downloaded -> installed -> migrated -> verified          (the old release still runs)
            -> switching -> switched -> restarted                        (the new release is on trial)
            -> healthy -> committed                                      (the new release is good)
    any pre-switch state --failure--> aborted        (new release dir removed; nothing else changed)
    any on-trial state   --failure--> rollback -> rolled_back   (current -> previous, units restarted)

Recovery (:meth:`UpdateAgent.recover`, run at boot from the ``good`` release by
``comptoir-update-recover.service`` before the kiosk starts, and by the agent before each install)
reads the last transaction and acts on its last event:

================================  ==========================================================
last event                        recovery
================================  ==========================================================
none / committed / rolled_back /  nothing (temporary links and partial directories removed;
aborted / refused                 ``current`` put back on ``good`` if they differ)
started … verified                abort: ``releases/<to>`` removed, journal ``aborted``
switching, switched, restarted    roll back: ``current`` -> ``<from>``, journal ``rolled_back``
rollback                          roll back again (every step is idempotent)
healthy                           commit: ``good`` -> ``<to>``, journal ``committed``
================================  ==========================================================

The database is migrated before the switch and never un-migrated: the expand-only rule
(:mod:`appliance.updates.migration_rule`) lets the previous release run on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from appliance.updates.events import StageEvent, StageReporter
from appliance.updates.health import COMPONENTS, wait_healthy
from appliance.updates.installer import DEFAULT_PYTHON, install_archive, read_manifest
from appliance.updates.journal import Entry, Journal
from appliance.updates.layout import Layout, StepHook, remove_tree
from appliance.updates.manifest import MANIFEST_NAME, ManifestError, ReleaseManifest, parse_version

log = logging.getLogger(__name__)

DEFAULT_UNITS = ("comptoir-kiosk.service", "comptoir-sync.service")
PRE_SWITCH = frozenset({"started", "downloaded", "installed", "migrated", "verified"})
ON_TRIAL = frozenset({"switching", "switched", "restarted"})
FINISHED = frozenset({"committed", "rolled_back", "aborted", "refused"})


class ArchiveSource(Protocol):
    """Where verified release archives come from (TUF over HTTPS on a box: ``sync.update_agent``)."""

    def fetch(self, version: str, dest_dir: Path) -> Path:
        """Download and verify the archive of ``version`` into ``dest_dir``; return its path.
        Raises when it is not offered by the signed metadata or fails verification."""
        ...


class Restarter(Protocol):
    """Restarts the app's units after ``current`` moved (systemd on a box: ``sync.update_agent``)."""

    def restart(self, units: Sequence[str]) -> None: ...


class UpdateRefused(Exception):
    """The offer is not acceptable (downgrade, not newer, no release installed yet)."""


class HookFailed(Exception):
    """A release hook (migrate, selftest) exited non-zero or timed out."""


def run_hook(release: Path, args: Sequence[str], *, timeout: float) -> dict[str, Any]:
    """Run ``<release>/bin/comptoir-hook ARGS``; return the JSON object it printed last."""
    command = [str(release / "bin" / "comptoir-hook"), *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
    except subprocess.TimeoutExpired as exc:
        raise HookFailed(f"{' '.join(args[:1])} hook of {release.name} timed out after {timeout:.0f} s") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise HookFailed(f"{args[0]} hook of {release.name} exited {done.returncode}: {' | '.join(tail)}")
    lines = [line for line in done.stdout.splitlines() if line.strip().startswith("{")]
    if not lines:
        raise HookFailed(f"{args[0]} hook of {release.name} printed no result")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


HookRunner = Callable[[Path, Sequence[str]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class UpdateConfig:
    layout: Layout
    db_path: Path
    box_id: str = "unknown"
    units: tuple[str, ...] = DEFAULT_UNITS
    health_required: tuple[str, ...] = COMPONENTS
    health_deadline: float = 120.0
    hook_timeout: float = 600.0
    python: str = DEFAULT_PYTHON
    machine: str | None = None
    allow_downgrade: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an install (or a recovery) ended."""

    result: str  # committed | rolled_back | aborted | refused | noop
    to_version: str | None
    from_version: str | None
    txn: str | None = None
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "to": self.to_version,
            "from": self.from_version,
            "txn": self.txn,
            "reason": self.reason,
            **self.detail,
        }


class UpdateAgent:
    """One box's update agent. Not thread-safe: one install at a time (the CLI takes a lock file)."""

    def __init__(
        self,
        config: UpdateConfig,
        *,
        source: ArchiveSource | None,
        restarter: Restarter,
        reporter: StageReporter | None = None,
        hook: HookRunner | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_step: StepHook | None = None,
    ) -> None:
        self.config = config
        self.layout = config.layout
        self.journal = Journal(config.layout.journal, clock=clock)
        self.source = source
        self.restarter = restarter
        self.reporter = reporter
        self._hook = hook or (lambda release, args: run_hook(release, args, timeout=config.hook_timeout))
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._on_step = on_step

    # -- plumbing ------------------------------------------------------------------------------

    def _step(self, name: str) -> None:
        if self._on_step is not None:
            self._on_step(name)

    def _record(self, txn: str, event: str, from_v: str | None, to_v: str, *, ok: bool = True, **data: Any) -> Entry:
        entry = self.journal.append(txn, event, **{"from": from_v, "to": to_v, **data})
        self._step(event)
        if self.reporter is not None:
            try:
                self.reporter(StageEvent(self.config.box_id, txn, from_v, to_v, event, ok, entry.at, data))
            except Exception:
                log.exception("update: stage report failed (%s %s)", txn, event)
        return entry

    def _release_manifest(self, version: str | None) -> ReleaseManifest | None:
        if version is None:
            return None
        try:
            return ReleaseManifest.loads((self.layout.release_dir(version) / MANIFEST_NAME).read_bytes())
        except (OSError, ManifestError):
            return None

    # -- install ---------------------------------------------------------------------------------

    def install(self, version: str, *, archive: Path | None = None) -> Outcome:
        """Install ``version`` (fetched from the source, or the given verified ``archive``)."""
        recovered = self.recover(restart=True)
        if recovered is not None:
            log.info("update: finished an interrupted install first: %s", recovered.to_json())
        from_v = self.layout.current_version()
        if from_v is None:
            raise UpdateRefused("no release is installed: provision the box first (docs/updates.md)")
        parse_version(version)
        if version == from_v:
            return Outcome("noop", version, from_v, reason="already running this version")
        if parse_version(version) < parse_version(from_v) and not self.config.allow_downgrade:
            txn = f"{version}-{uuid.uuid4().hex[:8]}"
            reason = f"refused a downgrade from {from_v} to {version}"
            self._record(txn, "refused", from_v, version, ok=False, reason=reason)
            return Outcome("refused", version, from_v, txn, reason)
        txn = f"{version}-{uuid.uuid4().hex[:8]}"
        self._record(txn, "started", from_v, version)
        release = self.layout.release_dir(version)
        try:
            if archive is None:
                if self.source is None:
                    raise UpdateRefused("no archive source configured")
                self.layout.downloads.mkdir(parents=True, exist_ok=True)
                archive = self.source.fetch(version, self.layout.downloads)
            digest = hashlib.sha256(archive.read_bytes()).hexdigest()
            self._record(txn, "downloaded", from_v, version, archive=archive.name, sha256=digest)
            manifest = read_manifest(archive)
            if manifest.version != version:
                raise UpdateRefused(f"archive holds release {manifest.version}, not {version}")
            old = self._release_manifest(from_v)
            if old is not None and manifest.reads_schema_from > old.schema_version:
                raise UpdateRefused(
                    f"{version} contracts the schema below what {from_v} can run on "
                    f"({manifest.reads_schema_from} > {old.schema_version}): no safe roll-back"
                )
            install_archive(
                archive, self.layout, machine=self.config.machine, python=self.config.python, on_step=self._step
            )
            self._record(txn, "installed", from_v, version, release=str(release))
            migrated = self._hook(release, ["migrate", "--db", str(self.config.db_path)])
            self._record(txn, "migrated", from_v, version, schema=migrated.get("schema"))
            checked = self._hook(release, ["selftest", "--db", str(self.config.db_path)])
            if not checked.get("ok") or checked.get("version") != version:
                raise HookFailed(f"selftest of {version} said {checked}")
            self._record(txn, "verified", from_v, version)
        except Exception as exc:
            return self._abort(txn, from_v, version, f"{type(exc).__name__}: {exc}")
        try:
            self._record(txn, "switching", from_v, version)
            self.layout.switch_current(version, on_step=self._step)
            self._record(txn, "switched", from_v, version)
            since = self._clock()
            self.restarter.restart(self.config.units)
            self._record(txn, "restarted", from_v, version)
            verdict = wait_healthy(
                self.layout.health,
                version=version,
                since=since,
                deadline=self.config.health_deadline,
                required=self.config.health_required,
                monotonic=self._monotonic,
                sleep=self._sleep,
            )
        except Exception as exc:
            return self._rollback(txn, from_v, version, f"{type(exc).__name__}: {exc}", restart=True)
        if not verdict.ok:
            return self._rollback(txn, from_v, version, f"health check failed: {verdict.reason()}", restart=True)
        self._record(txn, "healthy", from_v, version, health=verdict.to_json())
        return self._commit(txn, from_v, version)

    def _abort(self, txn: str, from_v: str | None, to_v: str, reason: str) -> Outcome:
        log.warning("update: %s aborted before switching: %s", to_v, reason)
        if to_v not in (self.layout.current_version(), self.layout.good_version(), from_v):
            remove_tree(self.layout.release_dir(to_v))
        self.layout.clean_leftovers(keep=set())
        self._record(txn, "aborted", from_v, to_v, ok=False, reason=reason)
        return Outcome("aborted", to_v, from_v, txn, reason)

    def _rollback(self, txn: str, from_v: str | None, to_v: str, reason: str, *, restart: bool) -> Outcome:
        log.warning("update: rolling back from %s to %s: %s", to_v, from_v, reason)
        self._record(txn, "rollback", from_v, to_v, ok=False, reason=reason)
        if from_v is None:
            raise RuntimeError(f"transaction {txn} has no previous release to roll back to")
        self.layout.switch_current(from_v, on_step=self._step)
        if self.layout.good_version() != from_v:
            self.layout.switch_link(self.layout.good, from_v, on_step=self._step)
        if restart:
            self.restarter.restart(self.config.units)
        self._record(txn, "rolled_back", from_v, to_v, ok=False, reason=reason)
        return Outcome("rolled_back", to_v, from_v, txn, reason)

    def _commit(self, txn: str, from_v: str | None, to_v: str) -> Outcome:
        self.layout.switch_link(self.layout.good, to_v, on_step=self._step)
        self._record(txn, "committed", from_v, to_v)
        keep = {to_v} | ({from_v} if from_v else set())
        for version in self.layout.installed_versions():
            if version not in keep:
                remove_tree(self.layout.release_dir(version))
        return Outcome("committed", to_v, from_v, txn)

    # -- recovery --------------------------------------------------------------------------------

    def recover(self, *, restart: bool = False) -> Outcome | None:
        """Finish or undo the last transaction if it was interrupted; None when there was nothing
        to do. ``restart`` restarts the units after a roll-back (False at boot: they start after)."""
        entries = self.journal.last_transaction()
        if not entries or entries[-1].event in FINISHED:
            self.layout.clean_leftovers(keep=set())
            good, current = self.layout.good_version(), self.layout.current_version()
            if good is not None and current != good:
                log.warning("update: current (%s) is not the good release (%s); switching back", current, good)
                self.layout.switch_current(good, on_step=self._step)
                if restart:
                    self.restarter.restart(self.config.units)
                return Outcome("rolled_back", current, good, reason="current was not the good release")
            return None
        last = entries[-1]
        txn, from_v, to_v = last.txn, last.data.get("from"), str(last.data.get("to"))
        where = f"interrupted after {last.event}"
        if last.event in PRE_SWITCH or last.event == "started":
            return self._abort(txn, from_v, to_v, where)
        if last.event in ON_TRIAL:
            return self._rollback(txn, from_v, to_v, where, restart=restart)
        if last.event == "rollback":
            return self._rollback(txn, from_v, to_v, str(last.data.get("reason", where)), restart=restart)
        if last.event == "healthy":
            return self._commit(txn, from_v, to_v)
        return self._abort(txn, from_v, to_v, f"unknown journal event {last.event!r}")

    # -- provisioning ------------------------------------------------------------------------------

    def provision(self, archive: Path) -> Outcome:
        """First installation of a box (no previous release to fall back on): install, migrate,
        selftest, point ``current`` and ``good`` at it. Used by the image build and at the bench."""
        manifest = install_archive(archive, self.layout, machine=self.config.machine, python=self.config.python)
        release = self.layout.release_dir(manifest.version)
        self._hook(release, ["migrate", "--db", str(self.config.db_path)])
        checked = self._hook(release, ["selftest", "--db", str(self.config.db_path)])
        if not checked.get("ok"):
            raise HookFailed(f"selftest of {manifest.version} said {checked}")
        self.layout.switch_current(manifest.version)
        self.layout.switch_link(self.layout.good, manifest.version)
        txn = f"{manifest.version}-provision"
        self.journal.append(txn, "committed", **{"from": None, "to": manifest.version, "provisioned": True})
        return Outcome("committed", manifest.version, None, txn, "provisioned")


def journal_status(layout: Layout) -> dict[str, Any]:
    """What ``comptoir update status`` prints."""
    entries = Journal(layout.journal).last_transaction()
    return {
        "current": layout.current_version(),
        "good": layout.good_version(),
        "installed": layout.installed_versions(),
        "last": [e.to_json() for e in entries[-3:]],
    }
