"""Alerts: rules over policy hits and service state, sent to webhooks, syslog and e-mail."""
