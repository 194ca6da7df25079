"""Errors the store raises; the app turns each into its HTTP status with the message as detail."""

from __future__ import annotations


class MonitorError(Exception):
    status = 400


class Unauthorized(MonitorError):
    status = 401


class Forbidden(MonitorError):
    status = 403


class NotFound(MonitorError):
    status = 404


class Conflict(MonitorError):
    status = 409


class AlreadyExists(Conflict):
    pass
