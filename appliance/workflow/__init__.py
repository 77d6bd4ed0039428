"""The counter workflow: a session from the patient's first scan to the claim (DESIGN §3)."""
