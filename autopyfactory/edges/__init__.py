"""The systems the factory talks to: PanDA, CRIC (schedconfig), credentials, the monitor, and
the HTTP and file plumbing they share.
"""
