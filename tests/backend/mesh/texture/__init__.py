"""Tests of backend.mesh.texture."""
