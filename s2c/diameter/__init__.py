"""Diameter for the testbed: RFC 6733 base, S6b and SWx (TS 29.273).

* :mod:`s2c.codec.diameter` / :mod:`s2c.codec.diameter_dict`: bytes <-> messages, AVP dictionary, framing
* :mod:`s2c.diameter.messages`: builders and typed views (CER/DWR/DPR, DER/DEA, STR/STA, MAR/MAA)
* :mod:`s2c.diameter.peer`: sans-IO ``DiameterPeer`` (one connection, either role)
* :mod:`s2c.diameter.dispatch`: ``(application_id, command_code, is_request) -> handler`` table
* :mod:`s2c.diameter.transport`: asyncio ``serve`` / ``connect`` glue

See docs/diameter.md.
"""
