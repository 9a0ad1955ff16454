"""Tests of the IRIS simulator (mirrorsync.sim) and the $LIST codec."""
