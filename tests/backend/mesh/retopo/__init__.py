"""Tests of backend.mesh.retopo."""
