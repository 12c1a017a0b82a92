"""A small built-in hardware table: settings for a few common arrays, below the user's devices entries.

Upstream ships more than 100 entries; this one covers only:
  - NVMe (any vendor string "NVME"): WWID from ID_WWN, no path checker (the kernel reports path state);
  - IBM S/390 DASD: WWID from ID_UID, multibus, directio checker, queueing;
  - LIO-ORG (Linux LIO iSCSI/FC targets, used by the test VM): ALUA, group_by_prio, immediate failback;
  - NETAPP LUN (ONTAP FAS/AFF): ALUA-less ontap prioritizer, queueing, pg_init retries;
  - DGC (Dell EMC CLARiiON/VNX/Unity): emc handler, checker and prioritizer; "LUNZ" placeholders blacklisted;
  - IBM 2145 (SVC/Storwize/FlashSystem): ALUA, group_by_prio, queueing;
  - PURE FlashArray: ALUA, group_by_prio, short fast_io_fail_tmo.
Every other array uses the defaults section (or the administrator's devices entries). Values follow upstream's
table for these products; `pymultipath -t` prints them. Entries use the keyword table's typed values.
"""

from __future__ import annotations

HWTABLE: tuple[dict[str, object], ...] = (
    {
        "vendor": "NVME",
        "product": ".*",
        "uid_attribute": "ID_WWN",
        "path_checker": "none",
        "retain_attached_hw_handler": False,
    },
    {
        "vendor": "IBM",
        "product": "S/390",
        "uid_attribute": "ID_UID",
        "path_grouping_policy": "multibus",
        "path_checker": "directio",
        "no_path_retry": "queue",
    },
    {
        "vendor": "LIO-ORG",
        "product": ".*",
        "hardware_handler": "1 alua",
        "path_grouping_policy": "group_by_prio",
        "prio": "alua",
        "failback": "immediate",
        "no_path_retry": 12,
    },
    {
        "vendor": "NETAPP",
        "product": "LUN",
        "features": "2 pg_init_retries 50",
        "path_grouping_policy": "group_by_prio",
        "prio": "ontap",
        "failback": "immediate",
        "no_path_retry": "queue",
        "flush_on_last_del": "always",
        "dev_loss_tmo": "infinity",
        "user_friendly_names": False,
    },
    {
        "vendor": "DGC",
        "product": ".*",
        "product_blacklist": "LUNZ",
        "hardware_handler": "1 emc",
        "path_grouping_policy": "group_by_prio",
        "path_checker": "emc_clariion",
        "prio": "emc",
        "failback": "immediate",
        "no_path_retry": 60,
    },
    {
        "vendor": "IBM",
        "product": "^2145",
        "path_grouping_policy": "group_by_prio",
        "prio": "alua",
        "failback": "immediate",
        "no_path_retry": "queue",
    },
    {
        "vendor": "PURE",
        "product": "FlashArray",
        "hardware_handler": "1 alua",
        "path_grouping_policy": "group_by_prio",
        "prio": "alua",
        "failback": "immediate",
        "fast_io_fail_tmo": 10,
        "max_sectors_kb": 4096,
    },
)
