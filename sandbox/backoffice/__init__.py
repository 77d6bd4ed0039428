"""Test doubles of the back office's surroundings (never shipped): a throw-away PKI (:mod:`.pki`), a
mosquitto with the shipped configuration (:mod:`.broker`) and a PostgreSQL cluster (:mod:`.postgres`),
all on 127.0.0.1. The back office itself is :mod:`sync.backoffice`."""
