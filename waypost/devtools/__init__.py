"""Tools for developing and trying Waypost, never imported by the runtime (tests/test_lint.py checks):
`waypost dev` (stack.py), `waypost simulate` (simulate.py), embedded PostgreSQL (embedded_pg.py),
the fake Graph API (fake_graph.py), the one WhatsApp webhook body builder (payloads.py), and what
the tests and benchmarks share (net.py, processes.py, browser.py). The production image leaves it out.
"""
