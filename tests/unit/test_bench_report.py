"""The benchmark report renders every section from a results dict (pure formatting, run by `make bench`)."""

from tests.vm import bench_report


def test_render_daemon_section_with_both_cpu_figures():
    rows = [{"daemon": "ours", "paths": 512, "seconds": 88.7, "rss_mib": 50.2, "cpu_s_per_interval": 0.766,
             "cpu_s_per_interval_after_start": 1.786, "creates": 256, "reloads": 0,
             "show_paths": {k: {"median_ms": 36.7, "p90_ms": 58.1, "max_ms": 65.5, "calls": 30}
                            for k in ("idle", "storm")}},
            {"daemon": "theirs", "paths": 512, "seconds": 38.1, "rss_mib": 47.1, "cpu_s_per_interval": 0.532}]
    text = bench_report.render({"daemon": {"startup": rows, "hotplug": [], "failover": {}},
                                "notes": ["a note"]})
    assert text.startswith("# Benchmarks")
    assert "- a note" in text
    assert "| 512 | 88.7 | 38.1 | 2.33 | 50.2 / 47.1 | 0.766 (1.786) / 0.532 | 256 / 0 |" in text
    assert "| 512 | pymultipathd | 36.7 (58.1) | 36.7 (58.1, 65.5) |" in text


def test_start_up_rows_must_show_one_create_per_map_and_no_reload():
    from tests.vm.bench_daemon import made_once_errors

    good = {"daemon": "ours", "paths": 512, "creates": 256, "reloads": 0}
    theirs = {"daemon": "theirs", "paths": 512}
    assert made_once_errors([good, theirs]) == []
    errors = made_once_errors([{**good, "reloads": 3}, {**good, "paths": 64}])
    assert errors == ["start-up 512 paths: 256 maps created and 3 reloaded, want 256 and 0",
                      "start-up 64 paths: 256 maps created and 0 reloaded, want 32 and 0"]
