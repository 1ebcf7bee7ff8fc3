"""IKEv1 exchanges as tasks: Main Mode, Aggressive Mode, Quick Mode,
Informational (delete, notify), DPD, NAT-D."""
