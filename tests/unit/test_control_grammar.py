import pytest
from hypothesis import given
from hypothesis import strategies as st

from pymultipathd.control.grammar import COMMANDS, CommandError, find_keyword, parse, reference, split_words


@pytest.mark.parametrize(
    ("text", "keywords", "params"),
    [
        ("show paths", ("show", "paths"), {}),
        ("list paths", ("show", "paths"), {}),
        ("show topology", ("show", "topology"), {}),
        ("show maps topology", ("show", "maps", "topology"), {}),
        ("show map mpatha topology", ("show", "map", "topology"), {"map": "mpatha"}),
        ("show multipath mpatha json", ("show", "map", "json"), {"map": "mpatha"}),
        ("disablequeueing map mpathX", ("disablequeueing", "map"), {"map": "mpathX"}),
        ("restorequeueing maps", ("restorequeueing", "maps"), {}),
        ("switchgroup map mpatha group 2", ("switchgroup", "map", "group"), {"map": "mpatha", "group": "2"}),
        ("switch map mpatha group 2", ("switchgroup", "map", "group"), {"map": "mpatha", "group": "2"}),
        ("remove path sdb", ("del", "path"), {"path": "sdb"}),
        ("del maps", ("del", "maps"), {}),
        ("reconfigure all", ("reconfigure", "all"), {}),
        ("exit", ("quit",), {}),
        ('show paths format "%d %w"', ("show", "paths", "format"), {"format": "%d %w"}),
        ('show maps raw format "%n %w"', ("show", "maps", "raw", "format"), {"format": "%n %w"}),
        ("forcequeueing daemon", ("forcequeueing", "daemon"), {}),
        ("  show   daemon  ", ("show", "daemon"), {}),
    ],
)
def test_parse_commands(text, keywords, params):
    cmd = parse(text)
    assert cmd.keywords == keywords
    assert cmd.params == params


@pytest.mark.parametrize(
    ("text", "keywords"),
    [
        ("sho paths", ("show", "paths")),      # unique prefixes; "pa" would be path or paths
        ("disable map x", ("disablequeueing", "map")),
        ("show top", ("show", "topology")),
        ("show map x topo", ("show", "map", "topology")),  # "map" exact even though "maps" shares the prefix
        ("rec", ("reconfigure",)),
        ("shut", ("shutdown",)),
    ],
)
def test_unique_prefixes(text, keywords):
    assert parse(text).keywords == keywords


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty command"),
        ("s paths", "s: not found"),            # ambiguous: show, switch, suspend, status, ...
        ("sh paths", "sh: not found"),          # show or shutdown
        ("frobnicate", "frobnicate: not found"),
        ("show map", "map: missing argument"),
        ("switchgroup map mpatha group", "group: missing argument"),
        ("show topology map x", "show topology map: not a command"),  # order matters as upstream 0.9
        ("show paths maps topology status", "too many keywords"),
        ('show paths format "%d', "unbalanced quote"),
        ("add", "add: not a command"),
    ],
)
def test_parse_errors(text, reason):
    with pytest.raises(CommandError) as err:
        parse(text)
    assert reason in str(err.value)


def test_quotes():
    assert split_words('a "b c" d') == ["a", "b c", "d"]
    assert split_words('"say ""hi"""') == ['say "hi"']
    assert split_words('x"y z"w') == ["xy zw"]
    assert split_words('""') == [""]


def test_aliases_are_not_ambiguous():
    assert find_keyword("switc") == ("switchgroup", False)
    assert find_keyword("multipath") == ("map", True)


def test_read_only_marks():
    assert parse("show paths").read_only
    assert parse("quit").read_only
    assert not parse("disablequeueing map x").read_only
    assert not parse("shutdown").read_only


def test_reference_lists_every_command():
    text = reference()
    assert text.count("\n") == len(COMMANDS) + 1
    assert " disablequeueing map|multipath $map\n" in text
    assert " show|list paths\n" in text


@given(st.text(max_size=200))
def test_any_text_parses_or_raises_command_error(text):
    try:
        cmd = parse(text)
    except CommandError:
        return
    assert cmd.keywords in COMMANDS


def test_ambiguous_prefix_between_path_and_paths():
    with pytest.raises(CommandError, match="pa: not found"):
        parse("show pa")


def test_join_words_round_trips_through_split():
    from pymultipathd.control.grammar import join_words

    argv = ["show", "maps", "raw", "format", "%n %w", 'say "x"', ""]
    assert split_words(join_words(argv)) == argv
    assert parse(join_words(["show", "maps", "raw", "format", "%n %w"])).params == {"format": "%n %w"}
