"""``s2c hss`` command line (hss/cli.py) through the lead's ``s2c`` parser."""

from __future__ import annotations

import json

import pytest

from s2c.cli import main

K = "465b5ce8b199b49faa5f0a2ee238a6bc"
OP = "cdc202d5123e20f62b6d676ac72cb318"
OPC = "cd63cb71954a9f4e48a5994e37a02baf"
IMSI = "001010000000001"


@pytest.fixture
def run(tmp_path, capsys):
    db = str(tmp_path / "hss.db")

    def _run(*argv):
        rc = main(["hss", "--db", db, *argv])
        out = capsys.readouterr()
        return rc, out.out, out.err

    return _run


def test_add_list_show_delete(run):
    rc, out, _ = run("add", "--imsi", IMSI, "--k", K, "--op", OP, "--apn", "internet", "--sqn", "0x40")
    assert rc == 0 and IMSI in out
    rc, out, _ = run("list")
    assert rc == 0 and IMSI in out and "1 subscriber" in out
    assert K not in out and OPC not in out
    rc, out, _ = run("show", IMSI, "--json")
    data = json.loads(out)
    assert data["imsi"] == IMSI and data["sqn"] == 0x40 and data["apn"] == "internet"
    assert data["opc"].startswith(OPC[:4]) and data["opc"].endswith(OPC[-4:]) and OPC not in out and K not in out
    rc, out, _ = run("delete", IMSI)
    assert rc == 0
    rc, out, err = run("show", IMSI)
    assert rc == 1 and err.strip() == f"s2c hss: unknown subscriber {IMSI}"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["add", "--imsi", "12x", "--k", K, "--opc", OPC], "imsi"),
        (["add", "--imsi", IMSI, "--k", "00", "--opc", OPC], "k:"),
        (["add", "--imsi", IMSI, "--k", K, "--opc", "qq"], "opc:"),
        (["add", "--imsi", IMSI, "--k", K, "--opc", OPC, "--amf", "1"], "amf:"),
        (["add", "--imsi", IMSI, "--k", K, "--opc", OPC, "--home-prefix-len", "200"], "home_prefix_len"),
        (["delete", IMSI], "unknown subscriber"),
        (["import", "/nonexistent/x.yaml"], "no such file"),
    ],
)
def test_bad_input_one_line_exit_1(run, argv, needle):
    rc, _, err = run(*argv)
    assert rc == 1
    assert len(err.strip().splitlines()) == 1 and needle in err


def test_duplicate_and_replace(run):
    assert run("add", "--imsi", IMSI, "--k", K, "--opc", OPC)[0] == 0
    rc, _, err = run("add", "--imsi", IMSI, "--k", K, "--opc", OPC)
    assert rc == 1 and "already exists" in err
    assert run("add", "--imsi", IMSI, "--k", K, "--opc", OPC, "--apn", "ims", "--replace")[0] == 0


def test_import(run, tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(f"subscribers:\n  - {{imsi: '{IMSI}', k: '{K}', op: '{OP}'}}\n  - {{imsi: '001010000000002', k: '{K}', opc: '{OPC}', sqn: 7}}\n")
    rc, out, _ = run("import", str(f))
    assert rc == 0 and "imported 2" in out
    rc, out, _ = run("list", "--json")
    assert [s["imsi"] for s in json.loads(out)] == [IMSI, "001010000000002"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("subscribers: [{imsi: '001010000000003', k: '00'}]\n")
    rc, _, err = run("import", str(bad))
    assert rc == 1 and "subscribers[0].k" in err
