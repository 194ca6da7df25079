"""The demo (everything on one host) and its stand-ins: a PanDA and CRIC server, the real pilot 3."""
