"""Helpers shared by every test tier: sample payloads, fakes and fixtures."""
