import os

import pytest

from s2c.lab import strongswan


@pytest.fixture(autouse=True)
def _need_root_and_strongswan():
    if os.geteuid() != 0:
        pytest.skip("interop tests need root (network namespaces)")
    ok, why = strongswan.available()
    if not ok:
        pytest.skip(why)
