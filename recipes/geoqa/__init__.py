"""Recipes of the GeoQA experiments (see recipes/experiments/)."""
