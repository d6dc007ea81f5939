"""Helpers the tests share; test modules import these, never each other or a conftest."""
