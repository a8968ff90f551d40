"""The control loops: the autoscaler, the alert rules and their webhook, resource sampling.
They change desired state only through pool/services/members.py, like every button; the dashboard
shows what they measure and decide."""
