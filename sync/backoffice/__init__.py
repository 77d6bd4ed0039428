"""The fleet back office, shipped: ``comptoir backoffice`` (``systemd/comptoir-backoffice.service``).

- :mod:`sync.backoffice.service` — one worker: MQTT 5 over mutual TLS (alone, or several sharing the
  load with shared subscriptions), batches committed then acknowledged, commands signed and sent;
- :mod:`sync.backoffice.store` — what is applied and how (once, in order per box), on
  :mod:`sync.backoffice.engines` (SQLite embedded, PostgreSQL for several workers) with one list of
  :mod:`sync.backoffice.migrations`;
- :mod:`sync.backoffice.rollouts` — the loop of the staged roll-outs (the policy is
  :mod:`appliance.updates.rollout`);
- :mod:`sync.backoffice.web` — the fleet page and JSON API (127.0.0.1, no operator accounts yet);
- :mod:`sync.backoffice.config` and :mod:`sync.backoffice.cli` — the TOML file and the command.

``docs/backoffice.md`` is the operator's guide (configuration, several workers, a clustered broker).
The sandbox keeps only test doubles: a throw-away PKI, a mosquitto and a PostgreSQL cluster started
on 127.0.0.1 (``sandbox/backoffice/``).
"""
