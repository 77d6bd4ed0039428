"""An update offer received over MQTT is picked up once by the update timer's next run."""

from __future__ import annotations

import json
from pathlib import Path

from appliance.store.database import get_setting, open_database, set_setting, transaction
from appliance.updates.cli import _take_offer
from sync.commands import UPDATE_OFFER_SETTING


def test_the_offer_stored_by_the_sync_process_is_taken_once(tmp_path: Path) -> None:
    db_path = tmp_path / "comptoir.db"
    db = open_database(db_path)
    offer = {"version": "0.2.0", "url": "https://updates.example.invalid", "command": "c-1", "offered_at": 1.0}
    with transaction(db) as conn:
        set_setting(conn, UPDATE_OFFER_SETTING, json.dumps(offer))
    db.close()

    assert _take_offer(db_path) == offer
    assert _take_offer(db_path) is None
    db = open_database(db_path)
    assert get_setting(db, UPDATE_OFFER_SETTING) is None
    db.close()


def test_no_database_yet_means_no_offer(tmp_path: Path) -> None:
    assert _take_offer(tmp_path / "absent.db") is None
