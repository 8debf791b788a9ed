"""gpubench: what can this kernel do for GPU data paths, and how fast is each path, really."""

__version__ = "0.1.0"
