"""Signed checkpoints: the C2SP note format, keys, and that every changed byte is caught."""

from __future__ import annotations

import base64

import pytest
from claiim_core.checkpoint import Checkpoint, CheckpointError, Signer, Verifier, key_id
from hypothesis import given, settings
from hypothesis import strategies as st

SIGNER = Signer.from_seed("claiim-test", bytes(range(32)))
CP = Checkpoint("claiim.test/chron", 1234, bytes(range(32)), "2026-11-25T22:40:00.000000Z")


def test_note_layout_follows_c2sp() -> None:
    note = SIGNER.sign(CP)
    body, signatures = note.split("\n\n")
    assert body.split("\n") == ["claiim.test/chron", "1234", base64.b64encode(bytes(range(32))).decode(),
                                "time 2026-11-25T22:40:00.000000Z"]
    [line] = signatures.splitlines()
    assert line.startswith("\u2014 claiim-test ")
    raw = base64.b64decode(line.split(" ")[2])
    assert len(raw) == 68 and raw[:4] == SIGNER.verifier.key_id
    assert SIGNER.verifier.open(note) == CP


def test_keys_round_trip_in_go_note_format() -> None:
    v = SIGNER.verifier
    assert str(v).startswith(f"claiim-test+{key_id('claiim-test', v.public).hex()}+")
    assert Verifier.parse(str(v)) == v
    assert str(SIGNER).startswith("PRIVATE+KEY+claiim-test+")
    assert Signer.parse(str(SIGNER)) == SIGNER
    assert "PRIVATE" not in repr(SIGNER) and base64.b64encode(bytes(range(32))).decode() not in repr(SIGNER)


@pytest.mark.parametrize("text", [
    "", "a+b", "name+00000000+AAAA", "na me+00+AA==", f"{SIGNER.verifier.name}+ffffffff+"
    + base64.b64encode(b"\x01" + SIGNER.verifier.public).decode(),
])
def test_bad_verifier_keys_are_refused(text: str) -> None:
    with pytest.raises(CheckpointError):
        Verifier.parse(text)


def test_another_key_does_not_open_the_note() -> None:
    other = Signer.from_seed("claiim-test", bytes(32)).verifier
    with pytest.raises(CheckpointError, match="no signature"):
        other.open(SIGNER.sign(CP))


def test_same_name_other_key_with_forged_key_id_is_a_bad_signature() -> None:
    """A signature line carrying our key id but made by another key is reported as bad, not ignored."""
    forger = Signer.from_seed("claiim-test", bytes(32))
    raw = base64.b64decode(forger.sign(CP).split("\n\n")[1].split(" ")[2])
    line = base64.b64encode(SIGNER.verifier.key_id + raw[4:]).decode()
    forged = CP.body() + f"\n\u2014 claiim-test {line}\n"
    with pytest.raises(CheckpointError, match="bad signature"):
        SIGNER.verifier.open(forged)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_changed_byte_of_the_note_fails(data: st.DataObject) -> None:
    note = SIGNER.sign(CP).encode()
    i = data.draw(st.integers(0, len(note) - 1))
    b = data.draw(st.integers(0, 255).filter(lambda x: x != note[i]))
    changed = note[:i] + bytes([b]) + note[i + 1:]
    try:
        text = changed.decode()
    except UnicodeDecodeError:
        return  # not even text: nothing to open
    try:
        opened = SIGNER.verifier.open(text)
    except CheckpointError:
        return
    # Only a change outside what is signed, in the key *name* part of a line we do not read, could pass;
    # what it opens must then be exactly the signed checkpoint.
    assert opened == CP


@pytest.mark.parametrize("body", [
    "origin\n12\n", "origin\n012\n" + base64.b64encode(bytes(32)).decode() + "\n",
    "origin\n12\nnot-base64!\n", "origin\n12\n" + base64.b64encode(bytes(31)).decode() + "\n",
])
def test_bad_bodies_are_refused(body: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.parse_body(body)
