"""Recipes of the GeoQA experiments (see scripts/experiments/)."""
