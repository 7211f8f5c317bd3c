"""Benchmarks of the provider against PostHog's limits (``make bench``; not part of the tests).

Every figure is measured next to a baseline taken in the same run and reported as a
ratio, so the numbers stay comparable from one machine to another.
"""
