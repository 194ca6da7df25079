"""autopyfactory-monitor: the monitoring webservice of autopyfactory (apfmon API v2).

Modules: :mod:`states` (the pure job state machine), :mod:`models` (tables), :mod:`migrations`
(schema, applied by the service), :mod:`store` (writes), :mod:`queries` (aggregated reads),
:mod:`expiry` (timeouts and retention), :mod:`app` (``create_app(settings)``), :mod:`cli`.
Needs the ``monitor`` extra.
"""
