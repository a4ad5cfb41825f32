"""Tests of backend.bench."""
