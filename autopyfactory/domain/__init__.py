"""The core: the factory's vocabulary and its decisions. Pure: no network, subprocess, clock or
file here, and nothing else of the package is imported; everything around it feeds it numbers.
"""
