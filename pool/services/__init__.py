"""The service layer: every change of desired state, checked, saved and audited."""
