"""Pure DNS helpers: no I/O, no event loop."""
