"""Outputs: every report renders data it is given; none measures anything."""
