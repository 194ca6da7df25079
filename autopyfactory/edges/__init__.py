"""The systems the factory talks to: PanDA, CRIC (schedconfig), credentials, the monitor, the
control file and the pilot log tree, and the HTTP and file plumbing they share.
"""
