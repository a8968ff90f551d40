"""The one webhook sender: an alert as Alertmanager sends it to its webhook receivers (JSON,
version 4), POSTed to the operator's URL. The alert rules (pool/loops/alerts.py) and the
quotas' soft threshold (pool/gateway/quotas.py) both send through it."""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings

log = logging.getLogger("pool.webhook")
TIMEOUT_S = 5.0
FIRING, RESOLVED = "firing", "resolved"
NOT_ENDED = "0001-01-01T00:00:00Z"  # Alertmanager's "still firing"


@dataclass(frozen=True)
class Alert:
    name: str
    status: str  # FIRING or RESOLVED
    severity: str
    summary: str
    starts_at: datetime
    ends_at: datetime | None = None  # set when resolved
    labels: dict[str, str] = field(default_factory=dict)  # besides alertname, severity, service
    annotations: dict[str, str] = field(default_factory=dict)  # besides the summary


def payload(alert: Alert) -> dict:
    labels = {"alertname": alert.name, "severity": alert.severity, **alert.labels, "service": "vibeadmin"}
    annotations = {"summary": alert.summary, **alert.annotations}
    page = f"http://{settings.HOST}:{settings.PORT}/dashboard/alerts/"
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alert.name}"}}',
        "truncatedAlerts": 0,
        "status": alert.status,
        "receiver": "vibeadmin",
        "groupLabels": {"alertname": alert.name},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": page,
        "alerts": [
            {
                "status": alert.status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": iso(alert.starts_at),
                "endsAt": iso(alert.ends_at) if alert.ends_at else NOT_ENDED,
                "generatorURL": page,
                "fingerprint": hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16],
            }
        ],
    }


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def send(url: str, alert: Alert) -> str:
    """POST the alert; returns what happened ("HTTP 200", "failed: ..."), for the event list.
    Never raises: a receiver that is down must not stop what raised the alert."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload(alert)).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("webhook %s failed: %s", url, exc)
        return f"failed: {getattr(exc, 'reason', exc)}"[:64]
