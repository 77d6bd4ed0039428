"""Adapters to the network: teleservices over HTTPS, MQTT to the back office, Pro Santé Connect, MSSanté.

httpx imports its command line (``httpx._main``: click, pygments, rich) whenever those happen to be installed;
on a box pygments is (Kivy's dependency) and rich is not, so the import fails half-way and leaves 1 MB of
pygments in the kiosk's memory for nothing. httpx is imported here first without them, on httpx's own path
for "the [cli] extra is not installed".
"""

from appliance.lean_import import import_without

import_without("httpx", optional=("pygments", "rich"))
