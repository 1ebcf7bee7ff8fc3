"""IKEv2: wire codec (:mod:`.payloads`, :mod:`.message`, :mod:`.fragment`)
and, on top of it, the session and its tasks."""
