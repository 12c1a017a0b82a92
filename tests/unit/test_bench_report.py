"""The benchmark report renders every section from a results dict (pure formatting, run by `make bench`)."""

from tests.vm import bench_host, bench_report

SHOW = {c: {k: {"median_ms": m, "p90_ms": m, "max_ms": m, "calls": 20} for k in ("idle", "storm")}
        for c, m in (("show paths", 8.0), ("show maps", 5.0))}
THEIR_SHOW = {c: {k: {"median_ms": 10.0, "p90_ms": 12.0, "max_ms": 20.0, "calls": 20}
                  for k in ("idle", "storm")} for c in ("show paths", "show maps")}


def _results():
    rows = [{"daemon": "ours", "paths": 512, "seconds": 20.0, "rss_mib": 50.2, "cpu_s_per_interval": 0.1,
             "cpu_s_per_interval_after_start": 0.4, "creates": 256, "reloads": 0, "show": SHOW, "stop_s": 0.3,
             "cpu_by_thread": {"first intervals": {"user": 0.3, "system": 0.1, "threads": {
                 "pymultipathd": 0.06, "checker": 0.32, "dm": 0.02}}},
             "profile": {"steady": {"seconds": 30, "samples": 10, "own": [["tick (daemon/core.py)", 6, 60.0]],
                                    "total": [["run (asyncio/events.py)", 10, 100.0]]}}},
            {"daemon": "theirs", "paths": 512, "seconds": 40.0, "rss_mib": 47.1, "cpu_s_per_interval": 0.5,
             "cpu_s_per_interval_after_start": 0.5, "show": THEIR_SHOW, "stop_s": 45.0,
             "stalled": {"wchan": {"1": "do_epoll_wait", "2": "futex_wait_queue"}, "stacks": "..."}}]
    return {"meta": {"commit": "abc123", "dirty": False, "date": "2026-12-07 06:00 UTC"},
            "daemon": {"startup": rows, "hotplug": [], "failover": {"ours": {"seconds": 0.1},
                                                                    "theirs": {"seconds": 8.0}},
                       "pathdown": {"ours": {"rounds": [3.0, 5.0], "median_s": 4.0, "mean_s": 4.0},
                                    "theirs": {"rounds": [2.0, 4.0], "median_s": 3.0, "mean_s": 3.0}},
                       "errors": ["hot-plug 256 paths ours: TimeoutError()"]}}


def test_the_report_names_its_commit_and_checks_each_target():
    text = bench_report.render(_results())
    assert text.startswith("# Benchmarks")
    assert "- commit: abc123\n" in text
    assert "| start-up convergence, by paths | <= 0.7 | 512 0.50 | yes |" in text
    assert "| RSS, by paths | <= 1.0 | 512 1.07 | no (1 of 1) |" in text
    assert "| `show paths`, idle and storm, by paths | <= 0.8 | 512 idle 0.80, 512 storm 0.80 | yes |" in text
    assert "| failover detection, link cut | < 0.05 |  0.01 | yes |" in text
    assert "| path-down detection, links up (checker only) | <= 1.0 | mean 1.33 | no (1 of 1) |" in text
    assert ("| 512 | 20.0 / 40.0 | 0.50 | 50.2 / 47.1 | 1.07 | 0.4 / 0.5 | 0.80 | 0.1 / 0.5 | 0.20 "
            "| 256 / 0 | 0.3 / 45.0 |") in text
    assert ("theirs at 512 paths took over 30 s to stop; its threads waited in do_epoll_wait, "
            "futex_wait_queue") in text
    assert "| tick (daemon/core.py) | 60.0 | run (asyncio/events.py) | 100.0 |" in text
    assert "- hot-plug 256 paths ours: TimeoutError()" in text


def test_the_hand_written_analysis_survives_a_new_report():
    first = bench_report.render(_results())
    edited = first.replace(bench_report.ANALYSIS_END, "Why: because.\n" + bench_report.ANALYSIS_END)
    again = bench_report.render(_results(), edited)
    assert "Why: because.\n" in again and again.count(bench_report.ANALYSIS) == 1


def test_a_dirty_tree_is_named():
    results = _results()
    results["meta"]["dirty"] = True
    assert "- commit: abc123 with uncommitted changes\n" in bench_report.render(results)


def test_the_guests_results_merge_into_one():
    a = {"udev": {"reps": 1},
         "daemon": {"startup": [{"paths": 64}], "errors": ["x"], "failover": {"ours": 1}}}
    b = {"daemon": {"startup": [{"paths": 1024}], "errors": []}}
    merged = bench_host.merge([a, b])
    assert merged["udev"] == {"reps": 1}
    assert [r["paths"] for r in merged["daemon"]["startup"]] == [64, 1024]
    assert merged["daemon"]["errors"] == ["x"] and merged["daemon"]["failover"] == {"ours": 1}


def test_start_up_rows_must_show_one_create_per_map_and_no_reload():
    from tests.vm.bench_daemon import made_once_errors

    good = {"daemon": "ours", "paths": 512, "seconds": 20.0, "creates": 256, "reloads": 0}
    theirs = {"daemon": "theirs", "paths": 512, "seconds": 30.0}
    never_started = {"daemon": "ours", "paths": 512, "errors": ["ours at 512 paths: TimeoutError()"]}
    assert made_once_errors([good, theirs, never_started]) == []
    errors = made_once_errors([{**good, "reloads": 3}, {**good, "paths": 64}])
    assert errors == ["start-up 512 paths: 256 maps created and 3 reloaded, want 256 and 0",
                      "start-up 64 paths: 256 maps created and 0 reloaded, want 32 and 0"]


def test_a_guest_stopped_at_its_limit_keeps_the_items_it_finished(tmp_path):
    (tmp_path / "run.log").write_text(
        "booted\n== bench udev\n{\n  \"reps\": 1\n}\n== bench udev: 3 s\n\n"
        "== bench dm\nstep | ms\ncreate | 1\n{\n  \"maps\": 2\n}\n== bench dm: 5 s\n\n== bench scale:64\n{\n"
        "  \"startup\": [{\"paths\": 64}],\n  \"errors\": []\n}\n== bench scale:64: 9 s\n\n"
        "== bench pathdown\n")
    got = bench_host.guest_results(tmp_path, "[scale]")
    assert got["udev"] == {"reps": 1} and got["daemon"]["startup"] == [{"paths": 64}]
    assert got["dm"] == {"maps": 2}
    assert "the rest not measured" in got["daemon"]["errors"][0]
    (tmp_path / "bench.json").write_text('{"dm": {}}')
    assert bench_host.guest_results(tmp_path, "[scale]") == {"dm": {}}


def test_the_rows_of_a_scale_item_cut_short_are_kept(tmp_path):
    (tmp_path / "run.log").write_text(
        "== bench scale:64,256\n  64 scsi_debug paths ready in 73 s\n"
        "  start-up {'daemon': 'ours', 'paths': 64, 'seconds': 7.7}\n"
        "  footprint {'daemon': 'ours', 'paths': 64, 'seconds': 7.7, 'rss_mib': 31.1}\n"
        "  show {'show paths': {'idle': {'median_ms': 7.7}}}\n"
        "  start-up {'daemon': 'theirs', 'paths': 64, 'seconds': 6.3}\n")
    rows = bench_host.guest_results(tmp_path, "[events]")["daemon"]["startup"]
    assert rows == [{"daemon": "ours", "paths": 64, "seconds": 7.7, "rss_mib": 31.1,
                     "show": {"show paths": {"idle": {"median_ms": 7.7}}}},
                    {"daemon": "theirs", "paths": 64, "seconds": 6.3}]


def test_cpu_by_thread_lists_the_busiest_threads_first():
    text = bench_report.render(_results())
    assert ("| 512 | ours | first intervals | 0.3 / 0.1 | checker 0.320, pymultipathd 0.060, dm 0.020 |"
            in text)
