"""coordinatord: a coordination daemon for AI coding agents.

Kept free of imports: the stdio shim imports this package and must start in tens of ms.
"""

__version__ = "0.1.0"
