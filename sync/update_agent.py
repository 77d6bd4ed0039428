"""Adapters of the update agent (DESIGN §6): python-tuf's ``ngclient`` over HTTPS, systemd restarts,
and the entry points the MQTT command handler and the timer call.

- :class:`TufArchiveSource` implements :class:`appliance.updates.agent.ArchiveSource`: it refreshes
  the TUF metadata (root chain, timestamp, snapshot, targets: signatures, thresholds, versions never
  going back, expiry, hashes and lengths) and downloads the archive target into the downloads
  directory. A tampered archive, an older metadata version, expired metadata, a wrong signing key or
  metadata of another repository state (mix-and-match) all raise ``tuf.api.exceptions.RepositoryError``
  (or a subclass) and nothing is installed.
- :class:`HttpsFetcher` is ngclient's fetcher with the box's CA bundle (and client certificate for
  mutual TLS when the repository requires it); bounded timeouts.
- :class:`SystemctlRestarter` restarts the units (the agent's unit may ``systemctl restart`` them
  through a polkit rule, see ``systemd/``).
- :func:`handle_update_offer` is what the MQTT command handler calls with an ``update.offer``
  command's payload; :func:`check_channel` is what the timer runs.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from tuf.api import exceptions as tuf_errors
from tuf.ngclient import Updater, UpdaterConfig  # type: ignore[attr-defined]
from tuf.ngclient.fetcher import FetcherInterface

from appliance.updates.agent import Outcome, UpdateAgent, UpdateRefused
from appliance.updates.manifest import archive_name, parse_version

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0


class HttpsFetcher(FetcherInterface):
    """ngclient fetcher over urllib3 with an explicit CA bundle (the back office's CA, not the system's)."""

    def __init__(
        self,
        *,
        ca_file: Path | None,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self._pool = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(ca_file) if ca_file else None,
            cert_file=str(client_cert) if client_cert else None,
            key_file=str(client_key) if client_key else None,
            retries=urllib3.Retry(total=2, connect=2, read=0, redirect=0, backoff_factor=0.2),
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            headers={"User-Agent": "comptoir-update-agent"},
        )

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            response = self._pool.request("GET", url, preload_content=False)
        except urllib3.exceptions.MaxRetryError as exc:
            if isinstance(exc.reason, urllib3.exceptions.TimeoutError):
                raise tuf_errors.SlowRetrievalError from exc
            raise tuf_errors.DownloadError(f"cannot fetch {url}: {exc.reason}") from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise tuf_errors.SlowRetrievalError from exc
        if response.status >= 400:
            response.close()
            raise tuf_errors.DownloadHTTPError(f"HTTP {response.status} for {url}", response.status)
        return self._chunks(response)

    @staticmethod
    def _chunks(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
        try:
            yield from response.stream(64 * 1024)
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise tuf_errors.SlowRetrievalError from exc
        finally:
            response.release_conn()


@dataclass(frozen=True, slots=True)
class TufSettings:
    """Where the repository is and what this box trusts."""

    metadata_url: str  # https://updates.example/metadata/
    targets_url: str  # https://updates.example/targets/
    metadata_dir: Path  # the box's trusted metadata (root.json provisioned with the image)
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None


class TufArchiveSource:
    """Verified downloads of release archives and channel pointers through python-tuf."""

    def __init__(self, settings: TufSettings, *, fetcher: FetcherInterface | None = None) -> None:
        self.settings = settings
        self._fetcher = fetcher or HttpsFetcher(
            ca_file=settings.ca_file, client_cert=settings.client_cert, client_key=settings.client_key
        )

    def _updater(self, target_dir: Path) -> Updater:
        target_dir.mkdir(parents=True, exist_ok=True)
        root = self.settings.metadata_dir / "root.json"
        if not root.is_file():
            raise UpdateRefused(f"no trusted root at {root}: provision the box (docs/updates.md)")
        updater = Updater(
            metadata_dir=str(self.settings.metadata_dir),
            metadata_base_url=self.settings.metadata_url,
            target_dir=str(target_dir),
            target_base_url=self.settings.targets_url,
            fetcher=self._fetcher,
            config=UpdaterConfig(app_user_agent="comptoir"),
            bootstrap=None,
        )
        updater.refresh()
        return updater

    def _download(self, target: str, dest_dir: Path) -> Path:
        updater = self._updater(dest_dir)
        info = updater.get_targetinfo(target)
        if info is None:
            raise UpdateRefused(f"{target} is not offered by the signed targets metadata")
        path = dest_dir / target.replace("/", "_")
        cached = updater.find_cached_target(info, str(path))
        if cached is not None:
            return Path(cached)
        return Path(updater.download_target(info, str(path)))

    def fetch(self, version: str, dest_dir: Path) -> Path:
        return self._download(archive_name(version), dest_dir)

    def channel_version(self, channel: str, dest_dir: Path) -> str:
        """The version a channel points to (a signed target ``channels/<channel>.json``)."""
        path = self._download(f"channels/{channel}.json", dest_dir / "channels")
        pointer = json.loads(path.read_bytes())
        path.unlink(missing_ok=True)  # always re-read: the pointer moves
        version = str(pointer["version"])
        parse_version(version)
        return version


class SystemctlRestarter:
    """Restarts units with ``systemctl`` (bounded; a failure raises and the agent rolls back)."""

    def __init__(self, *, timeout: float = 90.0) -> None:
        self.timeout = timeout

    def restart(self, units: Sequence[str]) -> None:
        systemctl = shutil.which("systemctl") or "/bin/systemctl"
        subprocess.run([systemctl, "restart", *units], check=True, timeout=self.timeout)  # noqa: S603


def handle_update_offer(agent: UpdateAgent, payload: Mapping[str, Any]) -> Outcome:
    """Run an ``update.offer`` command: ``{"version": "0.2.0", "offer_id": "…"}``.

    The offer only says *what* to install: everything is verified through TUF. Returns the outcome;
    the command handler acknowledges the command with ``outcome.to_json()`` (stage events go through
    the outbox meanwhile). Never raises for a bad offer: it becomes a ``refused`` outcome."""
    version = str(payload.get("version", ""))
    try:
        parse_version(version)
        return agent.install(version)
    except (UpdateRefused, ValueError, tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
        log.warning("update offer %s refused: %s", payload.get("offer_id"), exc)
        return Outcome(
            "refused", version or None, agent.layout.current_version(), reason=f"{type(exc).__name__}: {exc}"
        )


def check_channel(agent: UpdateAgent, source: TufArchiveSource, channel: str) -> Outcome:
    """The timer's run: install what ``channel`` points to when it is newer than the running release."""
    try:
        version = source.channel_version(channel, agent.layout.downloads)
    except (UpdateRefused, tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
        return Outcome("refused", None, agent.layout.current_version(), reason=f"{type(exc).__name__}: {exc}")
    current = agent.layout.current_version()
    if current is not None and parse_version(version) <= parse_version(current):
        return Outcome("noop", version, current, reason=f"channel {channel} is at {version}")
    return handle_update_offer(agent, {"version": version, "offer_id": f"timer:{channel}"})
