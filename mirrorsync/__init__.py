"""mirrorsync: keep InterSystems IRIS OAuth2 configuration identical on every mirror member."""

__version__ = "0.1.0"
