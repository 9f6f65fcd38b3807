"""PURE RPZ engine: zone -> rules, compiled zones (one mmap-able file per zone, overlays
for IXFR), evaluation with precedence. No I/O here except reading zone files in
``zone.load`` (compiled zones work on buffers they are given); no event loop."""
