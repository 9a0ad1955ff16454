"""A faithful-enough InterSystems IRIS simulator for tests and the lab (see docs/design.md).

``python -m mirrorsync.sim --home HOSTDIR session INSTANCE [-U NAMESPACE] [routine]`` behaves like
``iris session``; ``qlist``/``list`` like ``iris qlist``/``iris list``. :mod:`mirrorsync.sim.host`
is the Python API for a host's settings and globals on disk; :mod:`mirrorsync.sim.seed` builds
realistic OAuth2 client data.

Modules: ``host`` (state on disk, locking), ``collation`` (numbers, subscript order, node trees),
``interpreter`` (commands and expressions over the tree-sitter CST), ``functions`` ($functions),
``classes`` (%SYSTEM.* and friends), ``xmlglobals`` (Export/Load XML), ``session`` (terminal),
``control`` (qlist/list), ``errors`` (errors, exception objects, %Status), ``seed``.

Behaviour the facts file marks INFERRED/UNKNOWN is tagged ``# ASSUMPTION (facts §x)`` in the code;
the main ones: ``<DataBase64>`` for values with control characters; a subscripted export keeps its
whole reference in the first ``<Sub>`` and Load kills exactly that subtree; Base64Encode wraps with
CR LF every 76 characters; DisplayString is ``Name Code Location Data``; the prompt has no trailing
space; all namespaces share one global store.
"""
