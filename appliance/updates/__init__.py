"""Fleet updates of the app (DESIGN §6): release manifests, the schema compatibility rule, the install
state machine with its journal, the health-check contract, stage events and the staged roll-out policy.

The core side imports no network library: the TUF client and the systemd restarter are adapters in
``sync/update_agent.py`` behind the ports of :mod:`appliance.updates.agent`. The repository side
(:mod:`appliance.updates.repository`) uses python-tuf's metadata API and runs on the release
engineer's machine, never on a box. See ``docs/updates.md``.
"""
