"""IKE (both versions): shared constants and helpers; IKEv2 in :mod:`.v2`,
IKEv1 in :mod:`.v1`."""
