"""The names the configuration accepts for path_checker and prio are exactly the ones the daemon can run:
a name accepted at load but missing from a registry would be a path found down (or a silent const) at run
time, which is what the load-time check exists to prevent."""

from pymultipathd.config import keywords
from pymultipathd.paths import checkers, prio


def _choice(name: str) -> set[str]:
    vt = keywords.attribute(name).type
    assert isinstance(vt, keywords.Choice), f"{name} is not a Choice"
    return set(vt.values)


def test_path_checker_names_equal_the_checker_registry():
    assert _choice("path_checker") == set(checkers.CHECKERS)


def test_prio_names_equal_the_prioritizer_registry():
    assert _choice("prio") == set(prio.PRIORITIZERS)
