"""The man pages are generated from the code (options, commands, keywords), render without a warning, and
name every option and keyword, so they cannot drift from what the programs accept."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from pymultipathd.cli import manpages


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    out = tmp_path_factory.mktemp("man")
    assert manpages.main([str(out)]) == 0
    return {rel: out / rel for rel in manpages.PAGES}


@pytest.mark.parametrize("rel", list(manpages.PAGES))
def test_each_page_renders_without_warnings(pages, rel):
    assert shutil.which("man") and shutil.which("groff"), "man-db and groff-base are needed (make setup)"
    path = str(pages[rel])
    groff = subprocess.run(["groff", "-z", "-wall", "-b", "-e", "-t", "-man", path], capture_output=True,
                           text=True, check=False)
    assert groff.returncode == 0 and groff.stderr == "", groff.stderr
    man = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", path],
                         capture_output=True, text=True, check=False,
                         env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"})
    assert man.returncode == 0 and man.stderr == "", man.stderr


def test_the_pages_name_every_option_command_and_keyword(pages):
    from pymultipathd.config import keywords
    from pymultipathd.daemon import main

    daemon = pages["man8/pymultipathd.8"].read_text()
    for action in main.build_parser()._actions:
        for flag in action.option_strings:
            assert manpages.esc(flag) in daemon, flag
    assert "reset map|multipath $map stats" in daemon.replace("\\-", "-")
    conf = pages["man5/pymultipath.conf.5"].read_text()
    for kw in keywords.KEYWORDS:
        if not kw.synonym_of:
            assert f".B {manpages.esc(kw.name)}\n" in conf, kw.name
    tool = pages["man8/pymultipath.8"].read_text().replace("\\-", "-")
    assert "-ll [MAP|DEV]" in tool and "holders MAP" in tool


def test_roff_escaping():
    assert manpages.esc(".dangerous") == "\\&.dangerous"
    assert manpages.esc("a-b\\c") == "a\\-b\\ec"
