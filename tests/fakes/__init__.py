"""Fakes of outside services for tests and benchmarks (Backpack, a cuttable TCP proxy)."""
