"""Node types: one module each, registered in `nodes.registry`."""
