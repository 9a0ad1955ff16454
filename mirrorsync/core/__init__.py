"""The sync engine: drift detection, sync, reports. No click, no paramiko here."""
