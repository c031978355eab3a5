"""Test servers and helpers for the edgegate Envoy end-to-end suite (127.0.0.1 only)."""
