"""The factory's cycle: read the edges through its ports (ports.py), decide (the domain's
planning), submit, tidy up, report. It imports only the domain and the batch interface.
"""
