"""DiameterConnection.request(after_send=...): the callback runs once the request is on the socket and
before its answer is handled (the PDN GW prepares its IKE AUTH there while the AAA server works)."""

from __future__ import annotations

import asyncio
import os

from s2c.codec.diameter import ResultCode, parse_message
from s2c.diameter.messages import build_der, make_session_id
from s2c.diameter.transport import connect

from tests.integration.test_diameter_tcp import PGW, eap, start_server


def test_after_send_runs_after_the_write_and_before_the_answer() -> None:
    async def main() -> None:
        server = await start_server()
        try:
            port = server.sockets[0].getsockname()[1]
            async with await connect("127.0.0.1", port, PGW, rng=lambda n: os.urandom(n)) as pgw:
                written: list[bytes] = []
                real_write = pgw._writer.write

                def write(data: bytes) -> None:
                    written.append(bytes(data))
                    real_write(data)
                pgw._writer.write = write  # type: ignore[method-assign]
                seen: list[tuple[int, bool]] = []
                pending: asyncio.Task | None = None

                def after() -> None:
                    seen.append((len(written), pending is not None and pending.done()))
                der = build_der(PGW, session_id=make_session_id("pgw.example.org", 9, 1),
                                destination_realm="example.org", eap_payload=eap(2, 0, 1, b"user"))
                pending = asyncio.ensure_future(pgw.request(der, after_send=after))
                ans = await pending
                assert ans.result_code == ResultCode.DIAMETER_MULTI_ROUND_AUTH
                assert len(seen) == 1
                n_written, answered = seen[0]
                assert n_written == 1 and not answered  # the DER was written, its answer not yet handled
                assert parse_message(written[0]).hop_by_hop == der.hop_by_hop
                # without after_send nothing changes
                ans2 = await pgw.request(build_der(PGW, session_id=make_session_id("pgw.example.org", 9, 2),
                                                   destination_realm="example.org", eap_payload=eap(2, 0, 1, b"u2")))
                assert ans2.result_code == ResultCode.DIAMETER_MULTI_ROUND_AUTH and len(seen) == 1
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())
