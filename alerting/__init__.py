"""Alert lifecycle, transactional outbox and delivery (Alertmanager, webhook, e-mail).

`alerting.service.build(config, db, journal)` returns the `AlertingService` (an `AlertSink`
for detectors and a `BackgroundService` for the daemon); see docs/alerting.md.
"""
