"""CuPy for child processes of the tests: the GPU stand-in's (gpu_standin), built from the Config
the test put in the environment. Importing it replaces this module in sys.modules."""

from gpu_standin import from_environment

from_environment()
