"""Shipped generation recipes (TOML), one per traffic class; see docs/recipes.md."""
