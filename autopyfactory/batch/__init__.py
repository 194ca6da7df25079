"""The batch side: one interface (interface.py) and its backends, HTCondor (condor/) and local
processes (local/).
"""
