"""Test doubles: a fake ESIS UWLR service, a test PKI and the demo. Production code never
imports this package; tests, `esis-sync demo` and `esis-sync fake-esis` do."""
