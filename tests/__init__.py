"""gpubench's tests. A package, so that tests share helpers by importing them (tests.factories)."""
