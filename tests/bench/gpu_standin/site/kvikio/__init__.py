"""KvikIO for child processes of the tests: the GPU stand-in's (see site/cupy)."""

from gpu_standin import from_environment

from_environment()
