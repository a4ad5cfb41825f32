"""Tests of backend.mesh."""
