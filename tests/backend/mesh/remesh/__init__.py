"""Tests of backend.mesh.remesh."""
