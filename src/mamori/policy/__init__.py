"""PURE RPZ engine: zone -> rules, indexes, evaluation with precedence. No I/O here
except reading zone files in ``zone.load``; no event loop."""
