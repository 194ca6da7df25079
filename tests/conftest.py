"""Shared pytest set-up. Test support code lives in tests/support/ (importable as ``tests.support``)."""

pytest_plugins = ["tests.support.condor_emulator.plugin", "tests.support.htcondor_pool"]
