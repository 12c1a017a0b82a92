"""One root for the project's errors, and callers that catch what is raised."""

from __future__ import annotations

import ast
import errno
import os
import socket

import pytest

from pymultipathd.cli import classify_cmd, persist_cmd, wwids_cmd
from pymultipathd.config import ConfigError, ere
from pymultipathd.control import client, framing, grammar, server
from pymultipathd.daemon import rtnl
from pymultipathd.dm import errors as dm_errors
from pymultipathd.dm import maps, table
from pymultipathd.errors import PymultipathError
from pymultipathd.listen import SocketInUse
from pymultipathd.paths import facts
from pymultipathd.reservation import codec, keys
from pymultipathd.store import StoreError

PACKAGE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + "/pymultipathd"
# not an error of the project's: a programming error that mirrors dataclasses.FrozenInstanceError
NOT_ROOTED = {"FrozenInstanceError"}


@pytest.mark.parametrize(("error", "also"), [
    (dm_errors.DMError, None), (dm_errors.DMBusy, None), (ConfigError, None), (StoreError, None),
    (facts.FactsError, None), (server.CommandFailed, None), (classify_cmd.FactsFileError, None),
    (wwids_cmd.WwidLookupError, None), (client.ClientError, OSError), (SocketInUse, OSError),
    (framing.FrameError, ValueError), (grammar.CommandError, ValueError), (table.TableError, ValueError),
    (maps.PartitionTableError, ValueError), (ere.RegexError, ValueError), (keys.BadKey, ValueError),
    (codec.CodecError, ValueError), (persist_cmd.Usage, None), (persist_cmd.NoMap, None),
    (rtnl.NetlinkError, OSError), (rtnl.Overrun, None),
])
def test_every_project_error_has_the_one_root(error, also):
    assert issubclass(error, PymultipathError)
    if also is not None:  # still the standard kind, for callers that catch that
        assert issubclass(error, also)


def test_no_exception_class_of_the_package_is_left_out():
    """Every class the package derives from an exception, directly or not, is under the root."""
    found = []
    for root, _dirs, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                tree = ast.parse(open(os.path.join(root, name), encoding="utf-8").read())
                found += [(name, node) for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    names = {node.name for _, node in found}
    rooted = {"PymultipathError"}
    for _ in range(5):  # inheritance within the package, a few levels deep
        for _, node in found:
            bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
            if bases & rooted:
                rooted.add(node.name)
    excepting = [(file, node.name) for file, node in found
                 if any(getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception"))
                        for b in node.bases)]
    assert {n for _, n in excepting} - rooted - NOT_ROOTED == set(), excepting
    assert NOT_ROOTED <= names


def test_a_reply_in_another_framing_is_a_client_error():
    a, b = socket.socketpair()
    with a, b:
        b.sendall((1 << 40).to_bytes(8, "little"))  # a length word past any reply
        with pytest.raises(client.ClientError, match="unreadable reply"):
            client.request(a, "show daemon")


def test_a_socket_error_reading_the_reply_is_a_client_error():
    class Broken(socket.socket):
        def recv(self, *_: object) -> bytes:
            raise OSError(errno.EIO, "Input/output error")

    a, b = socket.socketpair()
    with a, b, Broken(fileno=os.dup(a.fileno())) as broken:
        with pytest.raises(client.ClientError, match="Input/output error"):
            client.request(broken, "show daemon")


def test_a_facts_file_that_is_not_utf8_is_a_facts_file_error(tmp_path):
    bad = tmp_path / "facts.json"
    bad.write_bytes(b'{"paths": ["\xff"]}')
    with pytest.raises(classify_cmd.FactsFileError, match="not UTF-8"):
        classify_cmd.load_facts(str(bad))
