"""Meshsmith backend: mesh pipelines behind a local HTTP job API (never imports bpy)."""

__version__ = "0.1.0"
