"""``gpuprov monitor`` and ``gpuprov exporter``: the GPUs and the inference server side by side, with the
applied profile as the reference.

:mod:`~provision.monitor.sampling` takes the readings (through the probe: no second NVML reader),
:mod:`~provision.monitor.servers` reads the engines' own endpoints, :mod:`~provision.monitor.view` draws
the live view, :mod:`~provision.monitor.soak` records samples into the bench history and summarises a
recorded run, :mod:`~provision.monitor.htmlreport` plots one, :mod:`~provision.monitor.exporter` serves
Prometheus, :mod:`~provision.monitor.section` is the profile's ``monitoring`` section (the exporter's unit).
The alert rules for the exporter's metrics: ``provision/data/prometheus/gpuprov-alerts.yml``.
"""
